//! Counters of what the agent did instead of, or besides, forwarding: duplicates it answered
//! itself and Bot API calls it made (or could not make) for the bots.
//!
//! Plain atomics, shared by every session and request, read with [`Stats::snapshot`]; the agent
//! logs them once when it stops, and a metrics endpoint can read the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};

/// The agent's counters since it started. Updated with relaxed atomics: each counter is exact,
/// but a snapshot taken while requests run may mix slightly different moments.
#[derive(Debug, Default)]
pub struct Stats {
    duplicates_stored: AtomicU64,
    duplicates_live: AtomicU64,
    replies_ok: AtomicU64,
    replies_failed: AtomicU64,
    replies_dropped: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Stored updates the bot had already answered: acknowledged without reaching the bot.
    pub duplicates_stored: u64,
    /// Live updates the bot had already answered (a Telegram retry): answered from the agent's
    /// memory of the first answer, or with an empty 200, without reaching the bot.
    pub duplicates_live: u64,
    /// Bot API calls made for a bot's answer to a stored update that Telegram answered `ok`.
    pub replies_ok: u64,
    /// Such calls that failed: Telegram refused them, or they could not be sent or timed out.
    pub replies_failed: u64,
    /// Such calls dropped because no token is configured for the bot.
    pub replies_dropped: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    DuplicateStored,
    DuplicateLive,
    ReplyOk,
    ReplyFailed,
    ReplyDropped,
}

impl Stats {
    /// Adds one to `counter`.
    pub(crate) fn count(&self, counter: Counter) {
        let cell = match counter {
            Counter::DuplicateStored => &self.duplicates_stored,
            Counter::DuplicateLive => &self.duplicates_live,
            Counter::ReplyOk => &self.replies_ok,
            Counter::ReplyFailed => &self.replies_failed,
            Counter::ReplyDropped => &self.replies_dropped,
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        StatsSnapshot {
            duplicates_stored: read(&self.duplicates_stored),
            duplicates_live: read(&self.duplicates_live),
            replies_ok: read(&self.replies_ok),
            replies_failed: read(&self.replies_failed),
            replies_dropped: read(&self.replies_dropped),
        }
    }

    /// Logs the counters on one line at info, as the agent does when it stops.
    pub fn log_summary(&self) {
        let now = self.snapshot();
        tracing::info!(
            duplicates_stored = now.duplicates_stored,
            duplicates_live = now.duplicates_live,
            replies_ok = now.replies_ok,
            replies_failed = now.replies_failed,
            replies_dropped_no_token = now.replies_dropped,
            "totals since start"
        );
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
