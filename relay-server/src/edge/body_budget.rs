//! The bytes of webhook bodies the relay holds at once, across all connections. A body takes its
//! share before it is read (its declared `Content-Length`, or chunk by chunk as a chunked body
//! arrives) and gives it back when its webhook is answered; a webhook that would go over gets
//! 503 with `Retry-After`, and Telegram sends it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What a webhook refused for the budget is told to wait before Telegram tries again. Bodies in
/// flight are answered within `bot_timeout` at most and usually in milliseconds, so a second is
/// enough for room to free up without making Telegram wait long.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared budget.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cap: usize,
    used: AtomicUsize,
}

/// The budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

/// One body's share of the budget; dropping it gives the share back.
#[derive(Debug)]
pub(crate) struct Share {
    budget: BodyBudget,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                cap,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// A share of `bytes`, if that much is left.
    pub(crate) fn take(&self, bytes: usize) -> Result<Share, Exhausted> {
        self.reserve(bytes)?;
        Ok(Share {
            budget: self.clone(),
            bytes,
        })
    }

    /// An empty share for a body declared at `declared` bytes, if that much is left now. The
    /// body is charged as its bytes arrive ([`Share::grow`]), not before: a connection that
    /// declares a large body and then sends nothing holds no budget.
    pub(crate) fn admit(&self, declared: usize) -> Result<Share, Exhausted> {
        if self.in_use().saturating_add(declared) > self.inner.cap {
            return Err(Exhausted);
        }
        self.take(0)
    }

    /// Bytes held now.
    pub(crate) fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, bytes: usize) -> Result<(), Exhausted> {
        let cap = self.inner.cap;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= cap)
            })
            .map(|_| ())
            .map_err(|_| Exhausted)
    }
}

impl Share {
    /// Grows this share by `bytes`, if that much is left.
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        self.budget.reserve(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// The bytes this share holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget
            .inner
            .used
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "body_budget_tests.rs"]
mod tests;
