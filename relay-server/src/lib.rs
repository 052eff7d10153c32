//! `relay-server`: the public side of the webhook relay.
//!
//! Webhooks arrive at `POST /hook/<bot>[/<rest>]`; each goes, over the WebSocket that the bot's
//! `relay-agent` opened to `/agent/v1`, to the agent, and the bot's answer comes back the same way.
//! Both share one listening port, with TLS from files (read again when they change), an ACME CA,
//! a self-signed certificate, or none. While
//! no agent is there, updates wait in an embedded store and are delivered later, in each chat's
//! order.
//!
//! # Layout
//! In the order of the data path; each module imports only modules listed below it.
//! - [`Relay`] (here): prepares the state and runs the edge, the admin API and stored delivery.
//! - `fuzzing`: thin entry points for the fuzz targets in `fuzz/`, hidden from the docs; not an
//!   API.
//! - `edge`: the public port: listener, TLS, the webhook intake and its checks.
//! - [`admin`]: the admin API and its command-line client.
//! - [`join`]: the one value an agent joins with: relay URL, agent token, certificate pin.
//! - `delivery`: the live-or-stored decision, the per-chat scheduler and the durable store.
//! - [`tunnel`]: agent tokens, known bots, the agent endpoint, sessions and the registry.
//! - `tls`: the served certificate, its reloads and renewals, and the handshake policy.
//! - [`config`]: flags, file and validation, into one [`Config`].
//! - `response`: the relay's own short HTTP answers.
//! - [`data_dir`]: every file the relay keeps in its data dir.
//! - [`reload`]: the request to read certificates again (SIGHUP).

// Most modules are private (only the binary, the tests and the bench use the crate), and the docs
// are read with `cargo doc --document-private-items`, which these links are for.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod config;
pub mod data_dir;
mod delivery;
mod edge;
#[doc(hidden)]
pub mod fuzzing;
pub mod join;
pub mod reload;
mod response;
mod tls;
pub mod tunnel;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config, ConfigError, TlsMode};
pub use reload::Reload;
pub use tls::TlsError;

use admin::api::Admin;
use data_dir::DataDir;
use delivery::Scheduler;
use delivery::mode::Policy;
use delivery::store::{Store, StoreError, StoreLimits};
use edge::Edge;
use tunnel::access::Access;
use tunnel::bots::KnownBots;
use tunnel::{Registry, Tunnel};

/// How long agent sessions get to send "going away" once the webhooks are drained.
const SESSION_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Something that stops the relay from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir could not be created.
    #[error("cannot create the data dir {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The agent token file could not be read or written.
    #[error("cannot keep the agent token in {path}: {source}")]
    Token {
        /// The token file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The update store could not be opened.
    #[error("cannot open the update store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
}

/// A relay that is ready to serve: state and certificates are in place.
#[derive(Debug)]
pub struct Relay {
    config: Config,
    data_dir: DataDir,
    any_bot_token: Option<Secret>,
    token_file: Option<PathBuf>,
    token_is_new: bool,
    tls: Option<tls::Tls>,
    reload: Reload,
    registry: Arc<Registry>,
    scheduler: Scheduler,
    admin_token: Option<Secret>,
}

impl Relay {
    /// Validates `config`, loads or creates the agent token and the certificate, and opens the
    /// store.
    pub fn prepare(config: Config) -> Result<Self, SetupError> {
        config.validate()?;
        let data_dir = DataDir::new(&config.data_dir);
        data_dir
            .create()
            .map_err(|e| SetupError::DataDir(data_dir.root().to_owned(), e))?;
        let token_error = |path: PathBuf| move |source| SetupError::Token { path, source };
        let (any_bot_token, token_file, token_is_new) =
            match (&config.agent_token, config.agents.is_empty()) {
                (Some(token), _) => (Some(token.clone()), None, false),
                (None, false) => (None, None, false),
                (None, true) => {
                    let path = data_dir.agent_token();
                    let (token, made) =
                        data_dir::load_or_create_token(&path).map_err(token_error(path.clone()))?;
                    (Some(token), Some(path), made)
                }
            };
        let tls = tls::load(&config.tls, &data_dir, config.public_host.as_deref())?;
        let admin_token = match config.admin_listen {
            None => None,
            Some(_) => {
                let path = data_dir.admin_token();
                let (token, _) =
                    data_dir::load_or_create_token(&path).map_err(token_error(path.clone()))?;
                Some(token)
            }
        };
        let registry = Arc::new(Registry::default());
        let store_path = data_dir.store();
        let store_error = |source| SetupError::Store {
            path: store_path.clone(),
            source,
        };
        let limits = StoreLimits {
            max_bytes: config.delivery.max_store_bytes,
            max_record_bytes: protocol::frame_limit(config.limits.max_body_bytes),
        };
        let (store, pending) = Store::open(&store_path, limits).map_err(store_error)?;
        data_dir::make_private(&store_path).map_err(|e| {
            store_error(StoreError::Database(format!("cannot make it private: {e}")))
        })?;
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "stored updates waiting for delivery"
            );
        }
        let scheduler = Scheduler::new(
            store,
            pending,
            registry.clone(),
            config.delivery,
            config.limits.bot_timeout,
        );
        Ok(Self {
            config,
            data_dir,
            any_bot_token,
            token_file,
            token_is_new,
            tls,
            reload: Reload::default(),
            registry,
            scheduler,
            admin_token,
        })
    }

    /// The token that may serve any bot, if one is in use.
    pub fn any_bot_token(&self) -> Option<&Secret> {
        self.any_bot_token.as_ref()
    }

    /// The data-dir file the any-bot token came from, when it was generated there.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// Whether this start generated the token (so it has never been shown before).
    pub fn token_is_new(&self) -> bool {
        self.token_is_new
    }

    /// The self-signed certificate's file, when the relay made one.
    pub fn self_signed_cert(&self) -> Option<&Path> {
        match &self.tls.as_ref()?.source {
            tls::Source::SelfSigned { cert } => Some(cert),
            _ => None,
        }
    }

    /// The SHA-256 fingerprint of the certificate served now, as agents pin it.
    pub fn fingerprint(&self) -> Option<protocol::Pin> {
        let key = self.tls.as_ref()?.certificates.current();
        tls::end_entity(&key).map(|der| protocol::Pin::of(der))
    }

    /// The handle that makes the running relay read its certificate files again (what SIGHUP
    /// does); take it before [`Relay::run`].
    pub fn reload_handle(&self) -> Reload {
        self.reload.clone()
    }

    /// Whether the listener speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The connected agents, for status reporting (and tests waiting for an agent).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token the admin API wants, when it is on.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// Serves on `listener` until `shutdown` fires, then lets in-flight work finish within the
    /// configured grace period.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        self.run_with_admin(listener, None, shutdown).await;
    }

    /// As [`Relay::run`], also serving the admin API on `admin` (with [`Relay::admin_token`]).
    pub async fn run_with_admin(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: CancellationToken,
    ) {
        let config = self.config;
        let mut bots = KnownBots::new(config.configured_bots());
        if self.any_bot_token.is_some() {
            bots = bots.remember_in(self.data_dir.known_bots());
        }
        let bots = Arc::new(bots.remember_modes_in(self.data_dir.bot_modes()));
        let tunnel = Arc::new(Tunnel::new(
            Access::new(&config.agents, self.any_bot_token),
            bots.clone(),
            self.registry.clone(),
            config.limits,
        ));
        let operator_modes = config
            .bots
            .iter()
            .filter_map(|(bot, settings)| Some((bot.clone(), settings.mode?)))
            .collect();
        let policy = Policy::new(
            operator_modes,
            config.delivery.default_mode,
            bots,
            self.registry.clone(),
            self.scheduler.clone(),
        );
        let acceptor = self
            .tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.config.clone()));
        if let Some(tls) = self.tls {
            let key = tls.certificates.current();
            if let (Some(der), Ok(address)) = (tls::end_entity(&key), listener.local_addr()) {
                tls::advice::warn_at_start(der, address.port(), config.advertised_host());
            }
            tls::maintain(tls, &self.reload, shutdown.clone());
        }
        let grace = config.limits.shutdown_grace;
        let edge = Arc::new(Edge {
            limits: config.limits,
            secrets: config
                .bots
                .iter()
                .filter_map(|(bot, settings)| Some((bot.clone(), settings.secret_token.clone()?)))
                .collect(),
            drop_path_suffix: config
                .bots
                .iter()
                .filter(|(_, settings)| settings.drop_path_suffix)
                .map(|(bot, _)| bot.clone())
                .collect(),
            tls: acceptor.is_some(),
            trusted_proxies: config.trusted_proxies.clone(),
            bodies: edge::body_budget::BodyBudget::new(config.limits.body_budget_bytes),
            budget_log: delivery::notice::LogBudget::new(),
            policy,
            tunnel: tunnel.clone(),
            shutdown,
            tasks: tokio_util::task::TaskTracker::new(),
        });
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, tls = edge.tls, "relay listening");
        }
        if let (Some(listener), Some(token)) = (admin, self.admin_token) {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "admin API listening");
                if !address.ip().is_loopback() {
                    tracing::warn!(
                        %address,
                        "the admin API listens beyond loopback: whoever reaches it with the admin \
                         token can replay and drop stored updates; prefer 127.0.0.1 and an SSH tunnel"
                    );
                }
            }
            let admin = Arc::new(Admin {
                scheduler: self.scheduler.clone(),
                registry: self.registry.clone(),
            });
            tokio::spawn(admin::api::serve(
                listener,
                admin,
                token,
                edge.shutdown.clone(),
            ));
        }
        // Deliveries from the store stop starting when the relay stops accepting, and those
        // under way finish (they need their sessions) before the sessions are closed.
        let deliveries = tokio::spawn(self.scheduler.run(edge.shutdown.clone(), grace));
        edge::listener::accept_loop(listener, edge.clone(), acceptor).await;
        // Webhooks in flight still need their agents, so sessions end only after them.
        edge.tasks.close();
        if tokio::time::timeout(grace, edge.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "shutdown grace period over; dropping what is still in flight"
            );
        }
        let _ = deliveries.await;
        tunnel.stop.cancel();
        tunnel.tasks.close();
        let _ = tokio::time::timeout(SESSION_CLOSE_GRACE, tunnel.tasks.wait()).await;
        tracing::info!("relay stopped");
    }
}

/// What `relay-server cert` prints: the served certificate's file, names, validity and
/// fingerprint; read from the data dir or the files, without a running relay.
pub fn certificate_report(config: &Config) -> Result<String, TlsError> {
    tls::advice::report(config)
}

/// Prepares and runs a relay: the whole server behind `relay-server`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    Relay::prepare(config)?.run(listener, shutdown).await;
    Ok(())
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
