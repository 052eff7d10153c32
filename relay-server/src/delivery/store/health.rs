//! How the store is doing, as the writer last found it: healthy, or failing since a time with
//! the last error while the writer reopens the file. Read by `/healthz` and the admin `stats`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The store's health. The error texts come from the database and the file system (an I/O
/// error, the file's path); they never hold update contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreHealth {
    /// Writes succeed.
    Healthy,
    /// A write failed; every change is refused until the writer has reopened the file and a
    /// write succeeds again.
    Failing {
        /// When the first write failed.
        since: SystemTime,
        /// The last error: the failed write's, then each failed reopen's.
        error: String,
        /// Reopens tried so far.
        reopen_attempts: u32,
    },
}

impl StoreHealth {
    /// Whether writes succeed.
    pub(crate) fn is_healthy(&self) -> bool {
        matches!(self, StoreHealth::Healthy)
    }

    /// How long it has been failing (zero when healthy).
    pub(crate) fn failing_for(&self) -> Duration {
        match self {
            StoreHealth::Healthy => Duration::ZERO,
            StoreHealth::Failing { since, .. } => since.elapsed().unwrap_or_default(),
        }
    }
}

/// The shared cell the writer updates and readers copy.
#[derive(Debug)]
pub(super) struct HealthCell(Mutex<StoreHealth>);

impl Default for HealthCell {
    fn default() -> Self {
        Self(Mutex::new(StoreHealth::Healthy))
    }
}

impl HealthCell {
    /// A copy of the state.
    pub(super) fn get(&self) -> StoreHealth {
        self.lock().clone()
    }

    /// A write failed with `error`: failing from now on.
    pub(super) fn failing(&self, error: String) {
        *self.lock() = StoreHealth::Failing {
            since: SystemTime::now(),
            error,
            reopen_attempts: 0,
        };
    }

    /// A reopen failed with `error`; the failure goes on.
    pub(super) fn reopen_failed(&self, error: String) {
        if let StoreHealth::Failing {
            error: last,
            reopen_attempts,
            ..
        } = &mut *self.lock()
        {
            *last = error;
            *reopen_attempts = reopen_attempts.saturating_add(1);
        }
    }

    /// The store works again; returns the state it leaves.
    pub(super) fn healthy(&self) -> StoreHealth {
        std::mem::replace(&mut *self.lock(), StoreHealth::Healthy)
    }

    fn lock(&self) -> MutexGuard<'_, StoreHealth> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
