//! Relay restart: how soon after a relay comes back webhooks reach the bot again, which in
//! passthrough mode needs the agent to have noticed, reconnected and said hello.

use std::time::Duration;

use anyhow::Result;

use crate::lab::Lab;
use crate::nginx::Nginx;
use crate::pair::Pair;
use crate::relay::RelayConfig;
use crate::update;

/// Webhooks go out this often while the relay comes back.
const INTERVAL: Duration = Duration::from_millis(10);
/// Each of them: refused connections fail at once; a relay that accepts answers in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);
/// When to stop waiting for a success.
pub const GIVE_UP: Duration = Duration::from_secs(30);

/// How the relay is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a graceful stop, as by systemd.
    Term,
}

impl Stop {
    /// The signal's name.
    pub fn label(self) -> &'static str {
        match self {
            Stop::Kill => "SIGKILL",
            Stop::Term => "SIGTERM",
        }
    }
}

/// The recovery time.
#[derive(Debug, Clone)]
pub struct Restart {
    /// How the relay was stopped.
    pub stop: Stop,
    /// How long the graceful stop took (SIGTERM only).
    pub stop_took: Option<Duration>,
    /// From the new relay's spawn to the first 200; `None` if none within [`GIVE_UP`].
    pub first_success: Option<Duration>,
    /// Webhooks sent until then.
    pub attempts: u32,
}

/// Stops the relay of a fresh passthrough pair, starts it again with the same arguments and data
/// dir, and times the first webhook that gets through.
pub async fn measure(lab: &Lab, nginx: &Nginx, stop: Stop) -> Result<Restart> {
    let config = RelayConfig::bench(false, "passthrough");
    let name = format!("restart-{}", stop.label().to_lowercase());
    let mut pair = Pair::start(lab, &name, &config, &nginx.url()).await?;
    let endpoint = pair.relay.endpoint()?;
    let path = format!("/hook/{}", update::BOT);

    let stop_took = match stop {
        Stop::Kill => {
            pair.relay.kill();
            None
        }
        Stop::Term => Some(pair.relay.stop().await?),
    };
    pair.relay.respawn()?;
    let spawned = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempts = 0;
    let mut first_success = None;
    while spawned.elapsed() < GIVE_UP {
        ticks.tick().await;
        pair.check_alive()?;
        attempts += 1;
        if let Ok(status) = endpoint.post_update(&path, REQUEST_TIMEOUT).await
            && status.is_success()
        {
            first_success = Some(spawned.elapsed());
            break;
        }
    }
    Ok(Restart {
        stop,
        stop_took,
        first_success,
        attempts,
    })
}
