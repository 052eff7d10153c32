//! `relay-server`: the public side of the webhook relay.
//!
//! Webhooks arrive at `POST /hook/<bot>[/<rest>]`; each goes, over the WebSocket that the bot's
//! `relay-agent` opened to `/agent/v1`, to the agent, and the bot's answer comes back the same way.
//! Both share one listening port, with TLS from files, a self-signed certificate, or none.
//!
//! # Layout
//! - [`config`]: flags and file, validated once.
//! - [`files`]: the generated agent token and private files in the data dir.
//! - [`tls`]: server certificates, from files or self-signed.
//! - [`access`]: tokens and which bots they may serve.
//! - [`agents`]: connected sessions and the request/answer rendezvous.
//! - [`session`]: one agent's WebSocket session.
//! - [`store`]: the durable store of updates answered 200 for, with group commit.
//! - [`webhook`]: the webhook intake.
//! - [`server`]: the listener and routing.

pub mod access;
pub mod admin;
pub mod agents;
pub mod config;
pub mod delivery;
pub mod files;
mod http;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod tls;
pub mod update;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config, ConfigError, TlsMode};

use crate::access::Access;
use crate::agents::Registry;
use crate::delivery::Scheduler;
use crate::state::Shared;

/// How long agent sessions get to send "going away" once the webhooks are drained.
const SESSION_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The file in the data dir that lists the bots agents have declared under the any-bot token.
pub const KNOWN_BOTS_FILE: &str = "known-bots";

/// The file in the data dir that lists the delivery modes agents asked for their bots.
pub const MODES_FILE: &str = "bot-modes";

/// The database in the data dir that holds stored updates and dead letters.
pub const STORE_FILE: &str = "store.redb";

/// The file in the data dir that holds the generated agent token.
pub const TOKEN_FILE: &str = "agent-token";

/// Something that stops the relay from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    Tls(#[from] tls::TlsError),
    /// The update store could not be opened.
    #[error("cannot open the update store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: store::StoreError,
    },
}

/// A relay that is ready to serve: state and certificates are in place.
#[derive(Debug)]
pub struct Relay {
    config: Config,
    any_bot_token: Option<Secret>,
    token_file: Option<PathBuf>,
    token_is_new: bool,
    tls: Option<tls::Tls>,
    registry: Arc<Registry>,
    scheduler: Scheduler,
    admin_token: Option<Secret>,
}

impl Relay {
    /// Validates `config`, loads or creates the agent token and the certificate.
    pub fn prepare(config: Config) -> Result<Self, SetupError> {
        config.validate()?;
        let (any_bot_token, token_file, token_is_new) =
            match (&config.agent_token, config.agents.is_empty()) {
                (Some(token), _) => (Some(token.clone()), None, false),
                (None, false) => (None, None, false),
                (None, true) => {
                    let path = config.data_dir.join(TOKEN_FILE);
                    let (token, made) =
                        files::load_or_create_token(&path).map_err(|source| SetupError::Token {
                            path: path.clone(),
                            source,
                        })?;
                    (Some(token), Some(path), made)
                }
            };
        let tls = tls::load(&config.tls, &config.data_dir, config.public_host.as_deref())?;
        let admin_token = match config.admin_listen {
            None => None,
            Some(_) => {
                let path = config.data_dir.join(admin::TOKEN_FILE);
                let (token, _) = files::load_or_create_token(&path)
                    .map_err(|source| SetupError::Token { path, source })?;
                Some(token)
            }
        };
        let registry = Arc::new(Registry::default());
        let store_path = config.data_dir.join(STORE_FILE);
        let store_error = |source| SetupError::Store {
            path: store_path.clone(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| store_error(store::StoreError::Database(e.to_string())))?;
        let limits = store::StoreLimits {
            max_bytes: config.delivery.max_store_bytes,
            max_record_bytes: protocol::frame_limit(config.limits.max_body_bytes),
        };
        let (store, pending) = store::Store::open(&store_path, limits).map_err(store_error)?;
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
            any_bot_token,
            token_file,
            token_is_new,
            tls,
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
        self.tls
            .as_ref()
            .and_then(|tls| tls.self_signed_cert.as_deref())
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
        let remember = self
            .any_bot_token
            .is_some()
            .then(|| self.config.data_dir.join(KNOWN_BOTS_FILE));
        let mut access = Access::new(&self.config, self.any_bot_token);
        if let Some(file) = remember {
            access = access.remember_in(file);
        }
        let access = access.remember_modes_in(self.config.data_dir.join(MODES_FILE));
        let grace = self.config.limits.shutdown_grace;
        let acceptor = self
            .tls
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.config));
        let shared = Arc::new(Shared::new(
            self.config,
            access,
            self.registry,
            self.scheduler.clone(),
            acceptor.is_some(),
            shutdown,
        ));
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, tls = shared.tls, "relay listening");
        }
        if let (Some(admin), Some(token)) = (admin, self.admin_token.clone()) {
            if let Ok(address) = admin.local_addr() {
                tracing::info!(%address, "admin API listening");
            }
            tokio::spawn(admin::serve(admin, shared.clone(), token));
        }
        // Deliveries from the store stop starting when the relay stops accepting, and those
        // under way finish (they need their sessions) before the sessions are closed.
        let deliveries = tokio::spawn(self.scheduler.run(shared.shutdown.clone(), grace));
        server::accept_loop(listener, shared.clone(), acceptor).await;
        // Webhooks in flight still need their agents, so sessions end only after them.
        shared.tasks.close();
        if tokio::time::timeout(grace, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "shutdown grace period over; dropping what is still in flight"
            );
        }
        let _ = deliveries.await;
        shared.sessions_stop.cancel();
        shared.session_tasks.close();
        let _ = tokio::time::timeout(SESSION_CLOSE_GRACE, shared.session_tasks.wait()).await;
        tracing::info!("relay stopped");
    }
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
