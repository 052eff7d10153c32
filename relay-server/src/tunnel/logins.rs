//! Failed agent logins, per source (an IPv4 address or an IPv6 /64, behind a trusted proxy the
//! address it forwards for): past a few wrong tokens in a window, a source is answered 429
//! without its token being looked at, and the log gets two lines per source and window (the first
//! failure, and the one that starts the wait) instead of one per attempt.

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
/// Sources tracked at once. Past it, the failures of new sources are not tracked (and logged at
/// debug only) until old windows end: the map cannot grow, and no agent is ever refused for what
/// other addresses did. A guesser with that many addresses still cannot guess a token of 16 or
/// more random characters.
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
    /// Not counted: too many sources are tracked already.
    Untracked,
}

/// Failures per source.
#[derive(Debug, Default)]
pub(crate) struct FailedLogins {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// The source an address counts as: IPv4 addresses one by one, IPv6 by /64, which one
/// customer usually holds whole.
fn source_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailedLogins {
    /// How long `address` must wait before it may try again, if its source is throttled.
    pub(crate) fn throttled(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().ok()?;
        let window = windows.get(&source_of(address))?;
        let left = WINDOW.checked_sub(now.duration_since(window.started))?;
        (window.failures >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    /// Counts a wrong token from `address`.
    pub(crate) fn failed(&self, address: IpAddr) -> Failure {
        let now = Instant::now();
        let source = source_of(address);
        let Ok(mut windows) = self.windows.lock() else {
            return Failure::Untracked;
        };
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&source) {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return Failure::Untracked;
            }
        }
        let window = windows.entry(source).or_insert(Window {
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

    /// Forgets the failures of `address`'s source once it presented a good token.
    pub(crate) fn succeeded(&self, address: IpAddr) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&source_of(address));
        }
    }
}

#[cfg(test)]
#[path = "logins_tests.rs"]
mod tests;
