//! What stored delivery reports: the counters ([`Stats`]), and warnings about what it could not
//! do (dead letters, updates that expired, bots that cannot be reached), bounded in rate so that
//! a bot failing every update cannot flood the log while the counters keep the totals.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;

use super::store::StoreError;

/// What happened to stored updates, for logs, the admin API and metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Updates written to the store (and answered 200).
    pub stored: AtomicU64,
    /// Stored updates the bot acknowledged.
    pub delivered: AtomicU64,
    /// Failed delivery attempts (counted towards `max_attempts`) that will be retried.
    pub retried: AtomicU64,
    /// Attempts that could not reach the bot (bot or agent unreachable, agent silent): retried
    /// with backoff until retention, never counted towards `max_attempts`.
    pub unreachable: AtomicU64,
    /// Updates moved to the dead-letter list.
    pub buried: AtomicU64,
    /// Updates dropped for age.
    pub expired: AtomicU64,
    /// Updates refused because the store was full (answered 503).
    pub refused_full: AtomicU64,
}

/// The span over which [`NOTICE_BURST`] lines of one kind may be written. A minute matches how
/// an operator reads a log: a burst shows at once, and a steady stream is summed up minute by minute.
pub(crate) const NOTICE_WINDOW: Duration = Duration::from_secs(60);

/// Lines of one kind per [`NOTICE_WINDOW`]. Enough to name the first updates of an incident one
/// by one; past that, each line that gets through says how many were left out before it.
pub(crate) const NOTICE_BURST: u32 = 20;

/// The budget of one kind of warning.
#[derive(Debug)]
pub(crate) struct LogBudget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Instant,
    written: u32,
    left_out: u64,
}

impl LogBudget {
    /// A budget with nothing written yet.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                window_start: Instant::now(),
                written: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a line may be written now: `Some(n)` with the number of lines left out since
    /// the last one written (to put in it), or `None` (counted as left out).
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(state.window_start) >= NOTICE_WINDOW {
            state.window_start = now;
            state.written = 0;
        }
        if state.written >= NOTICE_BURST {
            state.left_out = state.left_out.saturating_add(1);
            return None;
        }
        state.written += 1;
        Some(std::mem::take(&mut state.left_out))
    }
}

/// Logs a store change a delivery could not make. While the store is failing, that was logged
/// once when it started, so each one is only a debug line.
pub(crate) fn store_trouble(bot: &str, seq: u64, error: &StoreError, change: &'static str) {
    if matches!(error, StoreError::Failing(_)) {
        tracing::debug!(bot, seq, %error, change, "store failing: change not made");
    } else {
        tracing::error!(bot, seq, %error, change, "store change failed");
    }
}

#[cfg(test)]
#[path = "notice_tests.rs"]
mod tests;
