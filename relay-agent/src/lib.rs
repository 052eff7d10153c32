//! The private side of the webhook relay: dials out to `relay-server`, declares the bots it
//! serves, and forwards each relayed request to its bot's local HTTP endpoint.
//!
//! # Layout
//! - [`config`]: command-line flags, the TOML file, and the validated [`Config`].
//! - [`url`]: the relay's WebSocket URL and the bots' HTTP URLs.
//! - [`connect`]: TCP, TLS and the WebSocket upgrade with the bearer token.
//! - [`session`]: one connection: the hello, then many requests in flight at once.
//! - [`forward`]: the pooled HTTP client that delivers requests to the bots.
//! - [`backoff`]: jittered exponential delays between reconnects.
//! - [`error`]: the reasons the agent stops for good.
//!
//! [`run`] ties them together: dial, run a session, and on a retryable ending wait and dial again.

pub mod backoff;
pub mod config;
pub mod connect;
pub mod error;
pub mod forward;
pub mod session;
pub mod url;

#[cfg(test)]
mod test_bot;
#[cfg(test)]
mod test_relay;

use std::sync::Arc;
use std::time::Duration;

use protocol::{Hello, PROTOCOL_VERSION};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config, ConfigError};
pub use error::AgentError;

use backoff::{Backoff, HEALTHY_SESSION};
use connect::{DialError, Dialer};
use forward::Forwarder;
use session::{Ended, Settings};

/// This build's name and version, sent in the hello for the relay's logs.
pub const SOFTWARE: &str = concat!("relay-agent ", env!("CARGO_PKG_VERSION"));

/// Runs the agent until `shutdown` fires (then `Ok`) or something a human must fix happens.
///
/// Before the first session the relay must be reached within `config.startup_timeout`, so a
/// wrong `--relay` fails loudly; after that the agent retries forever, because relays restart and
/// networks flap.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    let dialer = Dialer::new(&config)?;
    // One forwarder for all sessions: its keep-alive pool and concurrency limit survive reconnects.
    let forwarder = Arc::new(Forwarder::new(&config));
    let settings = Settings {
        hello: Hello {
            version: PROTOCOL_VERSION,
            agent: config.name.clone(),
            software: SOFTWARE.to_owned(),
            bots: config.bots.iter().map(|bot| bot.name.clone()).collect(),
        },
        heartbeat_timeout: config.heartbeat_timeout,
    };
    let relay = config.relay.to_string();
    tracing::info!(%relay, bots = ?settings.hello.bots, agent = %config.name, "starting");

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
                match session::run(socket, &settings, forwarder.clone(), &shutdown).await? {
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

/// A duration for people: `0.4s`, `30s`, `29.5s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", (duration.as_secs_f64() * 10.0).round() / 10.0)
}

/// Text from a peer or a library squeezed onto one line, as every agent message is.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
