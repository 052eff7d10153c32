//! A relay and the agent serving its bot: started together, ready once a webhook gets through.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::agent::Agent;
use crate::lab::Lab;
use crate::relay::{Relay, RelayConfig};

/// How long a new pair may take to carry its first webhook: the agent dials, says hello, and
/// the relay routes. A second is typical; the rest is margin for a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// One probe webhook.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between probes and between looks at the store.
const POLL: Duration = Duration::from_millis(20);

/// A relay and its agent.
#[derive(Debug)]
pub struct Pair {
    /// The relay.
    pub relay: Relay,
    /// The agent.
    pub agent: Agent,
    bot: String,
}

impl Pair {
    /// Starts a relay with `config` and an agent serving its first bot at `bot_url`, and waits
    /// until they are ready.
    pub async fn start(lab: &Lab, name: &str, config: &RelayConfig, bot_url: &str) -> Result<Pair> {
        let bot = config
            .bots
            .first()
            .map(|(bot, _)| bot.clone())
            .context("a pair needs a configured bot")?;
        let relay = Relay::start(lab, &format!("{name}-relay"), config).await?;
        let agent = Agent::start(lab, &format!("{name}-agent"), &relay, &bot, bot_url)?;
        let mut pair = Pair { relay, agent, bot };
        pair.wait_ready().await?;
        Ok(pair)
    }

    /// Waits until a webhook is answered 2xx and, for a relay with an admin API (whose 200 may
    /// come from its store), until the agent is connected and has been delivered everything.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let endpoint = self.relay.endpoint()?;
        let path = format!("/hook/{}", self.bot);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let last = match endpoint.post_update(&path, PROBE_TIMEOUT).await {
                Ok(status) if status.is_success() => break,
                Ok(status) => format!("answered {status}"),
                Err(error) => format!("{error:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_ready(&format!("last probe: {last}")));
            }
            tokio::time::sleep(POLL).await;
        }
        while !self.settled().await? {
            self.check_alive()?;
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_ready("the probe is still in the store"));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// The error for a pair that did not get ready, with both logs' tails printed.
    fn not_ready(&self, why: &str) -> anyhow::Error {
        self.relay
            .child()
            .failure("(relay side of the failure below)");
        self.agent.child().failure(format!(
            "does not carry webhooks after {READY_TIMEOUT:?}; {why}"
        ))
    }

    /// Waits until the store has delivered everything (relays with an admin API; others return
    /// at once). Returns how long that took.
    pub async fn drain(&mut self, timeout: Duration) -> Result<Duration> {
        let started = tokio::time::Instant::now();
        loop {
            self.check_alive()?;
            if self.settled().await? {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                let stats = self.relay.stats().await?;
                bail!(
                    "{} still has {} updates waiting {timeout:?} after the load ended",
                    self.relay.child().name(),
                    stats.waiting
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// An error if either process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.relay.child_mut().check_alive()?;
        self.agent.child_mut().check_alive()
    }

    /// Whether an agent is connected and nothing waits in the store; `true` without an admin API.
    async fn settled(&self) -> Result<bool> {
        if !self.relay.has_admin() {
            return Ok(true);
        }
        let stats = self.relay.stats().await?;
        Ok(stats.agents > 0 && stats.waiting == 0)
    }
}
