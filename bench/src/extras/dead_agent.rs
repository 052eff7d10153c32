//! Dead agent detection: how long after its agent freezes the relay stops waiting for it and
//! answers 503, so that Telegram retries later instead of timing out.
//!
//! SIGSTOP freezes the agent with its TCP connection open: the kernel keeps acknowledging, no FIN
//! or RST is sent, exactly like a machine that lost power behind a NAT. Only the relay's
//! heartbeat can notice.

use std::time::Duration;

use anyhow::Result;
use hyper::StatusCode;
use rustix::process::Signal;

use crate::lab::Lab;
use crate::nginx::Nginx;
use crate::pair::Pair;
use crate::relay::RelayConfig;
use crate::update;

/// Each webhook's client timeout, like a patient Telegram.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// When to stop waiting for the 503: well past any sensible heartbeat timeout plus a request
/// that was already waiting (the relay's bot timeout, 30 s by default).
pub const GIVE_UP: Duration = Duration::from_secs(120);
/// Pause between webhooks that were answered at once.
const PAUSE: Duration = Duration::from_millis(10);

/// The detection time.
#[derive(Debug, Clone)]
pub struct DeadAgent {
    /// From SIGSTOP to the first 503; `None` if none came within [`GIVE_UP`].
    pub detected: Option<Duration>,
    /// What came before the 503, such as `502 at 31.2 s`.
    pub before: Vec<String>,
    /// The relay's heartbeat timeout, when the bench set one (smoke runs).
    pub heartbeat: Option<Duration>,
}

/// Freezes the agent of a fresh passthrough pair and times the relay's first 503.
pub async fn measure(lab: &Lab, nginx: &Nginx, heartbeat: Option<Duration>) -> Result<DeadAgent> {
    let mut config = RelayConfig::bench(false, "passthrough");
    if let Some(timeout) = heartbeat {
        config
            .limits
            .push(format!("heartbeat_timeout = \"{}ms\"", timeout.as_millis()));
    }
    let mut pair = Pair::start(lab, "dead-agent", &config, &nginx.url()).await?;
    let endpoint = pair.relay.endpoint()?;
    let path = format!("/hook/{}", update::BOT);

    pair.agent.child().signal(Signal::STOP)?;
    let frozen = tokio::time::Instant::now();
    let mut before = Vec::new();
    let mut detected = None;
    while frozen.elapsed() < GIVE_UP {
        pair.relay.child_mut().check_alive()?;
        let answer = endpoint.post_update(&path, REQUEST_TIMEOUT).await;
        let at = frozen.elapsed();
        match answer {
            Ok(StatusCode::SERVICE_UNAVAILABLE) => {
                detected = Some(at);
                break;
            }
            Ok(status) => note(&mut before, format!("{}", status.as_u16()), at),
            Err(_) => note(&mut before, "no answer".into(), at),
        }
        tokio::time::sleep(PAUSE).await;
    }
    pair.agent.child_mut().kill();
    Ok(DeadAgent {
        detected,
        before,
        heartbeat,
    })
}

/// Records an answer, folding repeats of the same one into a count.
fn note(log: &mut Vec<String>, what: String, at: Duration) {
    if let Some(last) = log.last_mut()
        && last.starts_with(&format!("{what} "))
    {
        *last = format!("{what} until {:.1} s", at.as_secs_f64());
        return;
    }
    log.push(format!("{what} at {:.1} s", at.as_secs_f64()));
}
