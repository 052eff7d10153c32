//! The private side of the webhook relay: dials out to `relay-server`, declares the bots it
//! serves, and forwards each relayed request to its bot's local HTTP endpoint.
//!
//! # Layout
//! Top to bottom: each module imports only modules listed below it.
//! - the crate root, [`run`]: dial, run a session, and on a retryable ending wait and dial again.
//! - `fuzzing`: thin entry points for the fuzz targets in `fuzz/`, hidden from the docs; not an
//!   API.
//! - [`relay`]: the link to the relay.
//!   - [`relay::session`]: one connection: the hello, then many requests in flight at once.
//!   - [`relay::connect`]: TCP, TLS and the WebSocket upgrade with the bearer token.
//!   - [`relay::backoff`]: jittered exponential delays between reconnects.
//! - [`bot`]: one request on its way to the bot and back.
//!   - [`bot::handler`]: one request: duplicate check, forward, record, reply, answer.
//!   - [`bot::forward`]: the pooled HTTP client that delivers requests to the bots.
//!   - [`bot::dedupe`]: per bot, the update ids already answered, and recent live answers.
//!   - [`bot::dedupe::window`]: one bot's window of answered ids, and its file.
//!   - [`bot::dedupe::answers`]: the recent live answers a Telegram retry gets again.
//!   - [`bot::dedupe::idlog`]: the file format that keeps a bot's ids on disk.
//! - [`api`]: Bot API calls made on a bot's behalf.
//!   - [`api::reply`]: the calls in bots' answers to stored updates, made with the bot's token.
//!   - [`api::client`]: the pooled HTTPS client for the Bot API.
//! - [`tls`]: the TLS client settings: the relay's exact certificate or pin, the Bot API's roots.
//! - [`error`]: the reasons the agent stops for good.
//! - [`config`]: the validated [`Config`], its defaults, and the merge of flags and file.
//!   - [`config::cli`]: the command-line flags ([`Cli`]).
//!   - [`config::relay`]: the relay's URL, token and trust, merged from `--join` and the rest.
//!   - [`config::file`]: the TOML config file.
//!   - [`config::error`]: why a setting is refused ([`ConfigError`]).
//! - [`url`]: the relay's WebSocket URL, the bots' HTTP URLs and the Bot API's URL.
//! - [`stats`]: counters of duplicates and replies.
//! - [`text`]: durations, peers' text and error chains, each written on one line.

// The modules are private (only the binary and the tests use the crate), and the docs are read
// with `cargo doc --document-private-items`, which these links are for.
#![allow(rustdoc::private_intra_doc_links)]

mod api;
mod bot;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod relay;
mod stats;
mod text;
mod tls;
pub mod url;

#[cfg(test)]
mod test_relay;

use protocol::{Hello, PROTOCOL_VERSION};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{Bot, Cli, Config, ConfigError};
pub use error::AgentError;
pub use stats::{Stats, StatsSnapshot};

use bot::handler::Handler;
use relay::backoff::{Backoff, HEALTHY_SESSION};
use relay::connect::{DialError, Dialer};
use relay::session::{self, Ended, Settings};
use text::seconds;

/// This build's name and version, sent in the hello for the relay's logs.
pub const SOFTWARE: &str = concat!("relay-agent ", env!("CARGO_PKG_VERSION"));

/// Runs the agent until `shutdown` fires (then `Ok`) or something a human must fix happens.
///
/// Before the first session the relay must be reached within `config.startup_timeout`, so a
/// wrong `--relay` fails loudly; after that the agent retries forever, because relays restart and
/// networks flap.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with_stats(config, shutdown, Arc::default()).await
}

/// [`run`], counting into `stats`, so that the caller can read the counters while it runs.
/// When it stops, the agent waits briefly for Bot API calls under way, syncs its state to disk
/// and logs the counters.
pub async fn run_with_stats(
    config: Config,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> Result<(), AgentError> {
    config.validate()?;
    let dialer = Dialer::new(&config)?;
    // One handler for all sessions: its duplicate windows, keep-alive pools and concurrency limit
    // survive reconnects.
    let handler = Arc::new(Handler::new(&config, stats)?);
    let stop_syncing = CancellationToken::new();
    let syncing = tokio::spawn({
        let handler = handler.clone();
        let stop = stop_syncing.clone();
        async move { handler.sync_until(stop).await }
    });
    let ended = serve(&config, &dialer, handler.clone(), &shutdown).await;
    stop_syncing.cancel();
    let _ = syncing.await;
    handler.close().await;
    ended
}

/// Dials and runs sessions until shutdown or a fatal error.
async fn serve(
    config: &Config,
    dialer: &Dialer,
    handler: Arc<Handler>,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let settings = Settings {
        hello: Hello {
            version: PROTOCOL_VERSION,
            agent: config.name.clone(),
            software: SOFTWARE.to_owned(),
            bots: config.bots.iter().map(|bot| bot.name.clone()).collect(),
            modes: config
                .bots
                .iter()
                .filter_map(|bot| Some((bot.name.clone(), bot.mode?)))
                .collect(),
        },
        heartbeat_timeout: config.heartbeat_timeout,
    };
    let relay = config.relay.to_string();
    let state_dir = config
        .state_dir
        .as_ref()
        .map(|dir| dir.display().to_string());
    tracing::info!(
        %relay,
        bots = ?settings.hello.bots,
        agent = %config.name,
        state_dir = state_dir.as_deref().unwrap_or("(memory only)"),
        "starting"
    );

    let started = Instant::now();
    let mut accepted_once = false;
    let mut backoff = Backoff::default();
    loop {
        let dialed = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            dialed = dialer.dial() => dialed,
        };
        let (reason, unreachable) = match dialed {
            Err(DialError::Fatal(error)) => return Err(error),
            Err(DialError::Retry(reason)) => (reason, true),
            Ok(socket) => {
                let connected = Instant::now();
                let progress = Some(socket.get_ref().progress());
                match session::run(socket, progress, &settings, handler.clone(), shutdown).await? {
                    Ended::Shutdown => return Ok(()),
                    Ended::HelloFailed(reason) => (reason, false),
                    Ended::Lost(reason) => {
                        accepted_once = true;
                        if connected.elapsed() >= HEALTHY_SESSION {
                            backoff.reset();
                        }
                        (reason, false)
                    }
                }
            }
        };

        let mut delay = backoff.next_delay();
        // The startup limit applies only until the relay has accepted the agent once.
        let startup_limit = if accepted_once {
            None
        } else {
            config.startup_timeout
        };
        if let Some(limit) = startup_limit {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(AgentError::Unreachable {
                    url: relay,
                    error: reason,
                });
            }
            // One last attempt right at the deadline rather than a long sleep past it.
            delay = delay.min(left);
        }
        if unreachable {
            tracing::warn!(
                "relay unreachable at {relay}: {reason}; retrying in {}",
                seconds(delay)
            );
        } else {
            tracing::warn!(
                "disconnected from the relay: {reason}; reconnecting in {}",
                seconds(delay)
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
