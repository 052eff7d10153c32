//! Jittered exponential backoff between attempts to reach the relay.
//!
//! "Equal jitter": each delay is half the current step plus a random amount up to the other half.
//! The fixed half keeps a crashed relay from being hammered; the random half keeps a fleet of
//! agents from reconnecting in lockstep after the relay restarts.

use std::time::Duration;

use rand::Rng;

/// The first step. Small, so that a relay restart sees its agents back within about a second or
/// two: the first four delays add up to at most 1.5 s.
pub(crate) const INITIAL_DELAY: Duration = Duration::from_millis(100);

/// The largest step: a relay that has been down for a while is retried twice a minute, which
/// costs nothing and brings the agent back soon after the relay is.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);

/// Each failed attempt doubles the step.
const FACTOR: u32 = 2;

/// A session that lasted this long was healthy, so the next failure starts again from
/// [`INITIAL_DELAY`] instead of where the last outage left off. Shorter sessions keep growing the
/// delay, so a relay that accepts and then drops the agent at once is not hammered either.
pub(crate) const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// The delays between attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    step: Duration,
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL_DELAY, MAX_DELAY)
    }
}

impl Backoff {
    /// Backoff that starts at `initial` and grows up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            step: initial,
            initial,
            max,
        }
    }

    /// The delay before the next attempt, drawn with the thread's random generator.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// The delay before the next attempt: between half the current step and the whole of it.
    /// The step then grows, up to the maximum.
    pub(crate) fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let half = self.step / 2;
        let jitter = rng.random_range(Duration::ZERO..=self.step - half);
        self.step = (self.step * FACTOR).min(self.max);
        half + jitter
    }

    /// Starts again from the initial step, after a healthy session.
    pub(crate) fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
