//! How the agent writes what it reports: durations, peers' text and error chains, each on one
//! line. A leaf: imports nothing from the crate.

use std::time::Duration;

/// A duration for people: `0.4s`, `30s`, `29.5s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", (duration.as_secs_f64() * 10.0).round() / 10.0)
}

/// Text from a peer or a library squeezed onto one line, as every agent message is.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes on one line; hyper's top-level messages alone say little.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
