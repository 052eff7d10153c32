//! Durable intake: how many updates a second the relay takes into its store (each fsynced before
//! the 200) with no agent connected, so nothing is delivered and only the store works.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::Shape;
use crate::lab::Lab;
use crate::relay::{Relay, RelayConfig};
use crate::update;
use crate::wrk::{Outcome, Wrk};

/// The load: as many connections as Telegram opens per bot by default (40) and then some.
const SHAPE: Shape = Shape {
    connections: 100,
    keep_alive: true,
};
/// Room for every update a long run can send: 4 GiB.
const MAX_STORE_BYTES: u64 = 4 << 30;
/// The probe webhook.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The intake reading.
#[derive(Debug, Clone)]
pub struct StoreRate {
    /// What wrk measured.
    pub outcome: Outcome,
    /// Updates the relay counted as stored during the run.
    pub stored: u64,
    /// Relay CPU per stored update, µs.
    pub relay_us: f64,
}

/// Loads a fresh durable relay that has no agent.
pub async fn measure(lab: &Lab, wrk: &Wrk, duration: Duration) -> Result<StoreRate> {
    let mut config = RelayConfig::bench(false, "durable");
    config.admin = true;
    config
        .delivery
        .push(format!("max_store_bytes = {MAX_STORE_BYTES}"));
    let mut relay = Relay::start(lab, "store-rate", &config).await?;
    let status = relay
        .endpoint()?
        .post_update(&format!("/hook/{}", update::BOT), PROBE_TIMEOUT)
        .await?;
    if !status.is_success() {
        return Err(relay
            .child()
            .failure(format!("answered the probe update with {status}")));
    }
    let before = relay.stats().await?;
    let cpu_before = relay.child().cpu()?;
    let outcome = wrk
        .run(&relay.hook_url(update::BOT), SHAPE, duration)
        .await?;
    relay.child_mut().check_alive()?;
    let cpu = relay.child().cpu()?.saturating_sub(cpu_before);
    let after = relay.stats().await?;
    let stored = after.stored.saturating_sub(before.stored);
    if after.refused_full > before.refused_full {
        bail!("the store filled up during the durable intake run");
    }
    // wrk counts only the answers it read before its time was up, so the relay may have stored a
    // few more (at most one per connection), never fewer.
    let accepted = outcome.requests.saturating_sub(outcome.status);
    if stored < accepted {
        bail!("the relay answered {accepted} updates with 2xx but counts only {stored} stored");
    }
    Ok(StoreRate {
        outcome,
        stored,
        relay_us: cpu.as_secs_f64() * 1e6 / stored.max(1) as f64,
    })
}
