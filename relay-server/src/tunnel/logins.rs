//! Failed agent logins, per source address: past a few wrong tokens in a window, an address is
//! answered 429 without its token being looked at, and the log gets one line per address and
//! window instead of one per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Wrong tokens one address may present in a [`WINDOW`]. A misconfigured agent retries with
/// backoff and makes a handful; a guesser makes thousands. Ten leaves room for a few agents
/// behind one NAT restarting with a stale token at once.
pub(crate) const MAX_FAILURES: u32 = 10;
/// How long failures are remembered; also how long an address that ran out waits.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once. Past it, new addresses share one entry, so a spread-out guesser
/// cannot grow the map and is throttled as one.
const MAX_TRACKED: usize = 4096;

/// What to do with a failed login, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The first from this address in its window: worth a warning.
    First,
    /// This one used up the address's allowance: worth a warning that it is now throttled.
    Throttled,
    /// Counted silently.
    Counted,
}

/// Failures per address (`None` for the shared overflow entry).
#[derive(Debug, Default)]
pub(crate) struct FailedLogins {
    windows: Mutex<HashMap<Option<IpAddr>, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailedLogins {
    /// How long `source` must wait before it may try again, if it is throttled.
    pub(crate) fn throttled(&self, source: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().ok()?;
        let key = if windows.contains_key(&Some(source)) {
            Some(source)
        } else if windows.len() >= MAX_TRACKED {
            None
        } else {
            return None;
        };
        let window = windows.get(&key)?;
        let left = WINDOW.checked_sub(now.duration_since(window.started))?;
        (window.failures >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    /// Counts a wrong token from `source`.
    pub(crate) fn failed(&self, source: IpAddr) -> Failure {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return Failure::Counted;
        };
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&Some(source)) {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
        let key = if windows.len() < MAX_TRACKED || windows.contains_key(&Some(source)) {
            Some(source)
        } else {
            None
        };
        let window = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        match window.failures {
            1 => Failure::First,
            MAX_FAILURES => Failure::Throttled,
            _ => Failure::Counted,
        }
    }

    /// Forgets `source`'s failures once it presented a good token.
    pub(crate) fn succeeded(&self, source: IpAddr) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&Some(source));
        }
    }
}

#[cfg(test)]
#[path = "logins_tests.rs"]
mod tests;
