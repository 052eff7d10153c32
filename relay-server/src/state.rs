//! What every connection task of one running relay shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::agents::Registry;
use crate::config::{Config, DeliveryMode};
use crate::delivery::Scheduler;

/// The running relay's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Tokens and bots.
    pub access: Access,
    /// Connected agents.
    pub registry: Arc<Registry>,
    /// Stored delivery.
    pub scheduler: Scheduler,
    /// Whether the listener speaks TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// Fires when the relay stops accepting: connections finish what they are doing and close.
    pub shutdown: CancellationToken,
    /// Fires once in-flight webhooks are answered (or the grace period is over): agent sessions
    /// say "going away" and end. Later than `shutdown`, so answers on their way still arrive.
    pub sessions_stop: CancellationToken,
    /// Every HTTP connection task, so shutdown can wait for in-flight webhooks.
    pub tasks: TaskTracker,
    /// Every agent session task.
    pub session_tasks: TaskTracker,
    next_session: AtomicU64,
}

impl Shared {
    /// State for a relay about to run.
    pub fn new(
        config: Config,
        access: Access,
        registry: Arc<Registry>,
        scheduler: Scheduler,
        tls: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            config,
            access,
            registry,
            scheduler,
            tls,
            shutdown,
            sessions_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            session_tasks: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        }
    }

    /// How `bot`'s webhooks are delivered: the operator's `mode` for it, else the mode its agent
    /// asked for, else the default.
    pub fn mode_of(&self, bot: &str) -> DeliveryMode {
        self.config
            .configured_mode(bot)
            .or_else(|| self.access.declared_mode(bot))
            .unwrap_or(self.config.delivery.default_mode)
    }

    /// A fresh session number.
    pub fn next_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}
