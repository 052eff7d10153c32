//! How many agent sessions may be open: all tokens together (`max_agent_sessions`) and per token
//! (`max_sessions_per_token`). A session holds its [`SessionSlot`] from the upgrade to its end;
//! sessions do not take webhook connection slots, so neither can crowd out the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use hyper::StatusCode;

/// The session counts.
#[derive(Debug)]
pub(crate) struct Quota {
    total_cap: usize,
    per_token_cap: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_token: HashMap<usize, usize>,
}

/// Why an agent may not open another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuotaError {
    /// Its token has `max_sessions_per_token` sessions already.
    #[error("too many sessions for this agent token")]
    TokenFull,
    /// The relay has `max_agent_sessions` sessions already.
    #[error("too many agent sessions")]
    RelayFull,
}

impl QuotaError {
    /// 429 when the token is over its own cap (its agents are the cause), 503 when the relay is.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            QuotaError::TokenFull => StatusCode::TOO_MANY_REQUESTS,
            QuotaError::RelayFull => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One session's place; dropping it frees it.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    quota: Arc<Quota>,
    token: usize,
}

impl Quota {
    /// At most `total_cap` sessions, and `per_token_cap` per token.
    pub(crate) fn new(total_cap: usize, per_token_cap: usize) -> Arc<Self> {
        Arc::new(Self {
            total_cap,
            per_token_cap,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for one more session of `token`, if there is one.
    pub(crate) fn admit(self: &Arc<Self>, token: usize) -> Result<SessionSlot, QuotaError> {
        let mut counts = self.lock();
        let of_token = counts.by_token.get(&token).copied().unwrap_or(0);
        if of_token >= self.per_token_cap {
            return Err(QuotaError::TokenFull);
        }
        if counts.total >= self.total_cap {
            return Err(QuotaError::RelayFull);
        }
        counts.total += 1;
        counts.by_token.insert(token, of_token + 1);
        Ok(SessionSlot {
            quota: self.clone(),
            token,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.quota.lock();
        counts.total -= 1;
        if let Some(count) = counts.by_token.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                counts.by_token.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
