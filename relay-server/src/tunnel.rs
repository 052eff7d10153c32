//! The tunnel: agents dial in on the agent endpoint, say hello, and each request for their bots
//! crosses their WebSocket and comes back answered. Imports only [`crate::config`] (values),
//! [`crate::response`] and the `protocol` crate; the edge and delivery use it, never the reverse.
//!
//! In the order of the data path; each module imports only modules listed below it.
//! - [`upgrade`]: the agent endpoint's HTTP upgrade and token check.
//! - [`session`]: one agent's session: hello, registration, answers.
//! - [`registry`]: which session serves which bot.
//! - [`handle`]: one request across the tunnel, and why it got no answer.
//! - [`bots`]: the bots the relay knows, and the modes agents asked for.
//! - [`access`]: agent tokens and the bots each may serve.
//! - [`logins`]: failed agent logins per address, throttled.
//! - [`quota`]: how many sessions may be open, in all and per token.

pub(crate) mod access;
pub(crate) mod bots;
pub(crate) mod handle;
pub(crate) mod logins;
pub(crate) mod quota;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handle::AgentHandle;
pub(crate) use handle::CallError;
pub use registry::Registry;

use crate::config::Limits;
use access::Access;
use bots::KnownBots;
use logins::FailedLogins;
use quota::Quota;

/// What every agent session of one running relay shares.
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// Tokens and grants.
    pub(crate) access: Access,
    /// Wrong tokens per address, throttled.
    pub(crate) logins: FailedLogins,
    /// Configured and declared bots.
    pub(crate) bots: Arc<KnownBots>,
    /// Connected sessions.
    pub(crate) registry: Arc<Registry>,
    /// Body size, heartbeat and in-flight bounds.
    pub(crate) limits: Limits,
    /// Sessions open, in all and per token.
    pub(crate) quota: Arc<Quota>,
    /// Fires once in-flight webhooks are answered (or the grace period is over): sessions say
    /// "going away" and end. Later than the listener's shutdown, so answers on their way arrive.
    pub(crate) stop: CancellationToken,
    /// Every session task, so shutdown can wait for their goodbyes.
    pub(crate) tasks: TaskTracker,
    next_session: AtomicU64,
}

impl Tunnel {
    /// A tunnel with no session yet.
    pub(crate) fn new(
        access: Access,
        bots: Arc<KnownBots>,
        registry: Arc<Registry>,
        limits: Limits,
    ) -> Self {
        Self {
            access,
            logins: FailedLogins::default(),
            bots,
            registry,
            quota: Quota::new(limits.max_agent_sessions, limits.max_sessions_per_token),
            limits,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        }
    }

    /// A fresh session number.
    pub(crate) fn next_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}
