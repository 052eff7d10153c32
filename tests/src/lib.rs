//! Fixtures for the end-to-end tests: a real relay, real agents, test bots and a fake Telegram,
//! all on 127.0.0.1 with ports the OS picks, so each test reads as a story.
//!
//! The relay and each agent run on their own Tokio runtime, so a test can kill one the way a
//! crash would (every task gone, every socket closed at once) and start it again.
//!
//! # Layout
//! - [`relay`]: [`TestRelay`], a relay-server on its own runtime.
//! - [`agent`]: [`TestAgent`], a relay-agent on its own runtime.
//! - [`TestBot`] (from `test-support`): a local bot that records what reaches it and answers
//!   as told.
//! - [`telegram`]: [`FakeTelegram`], which sends webhooks the way Telegram does.
//! - [`bot_api`]: [`FakeBotApi`], a Bot API server that records the calls the agent makes.
//! - [`pebble`]: [`Pebble`], Let's Encrypt's test ACME server and its DNS, for real.

pub mod agent;
pub mod bot_api;
pub mod pebble;
pub mod relay;
pub mod telegram;

use std::time::Duration;

pub use agent::TestAgent;
pub use bot_api::{ApiCall, FakeBotApi};
pub use pebble::{Pebble, PebbleOptions};
pub use relay::TestRelay;
pub use telegram::{FakeTelegram, Reply, TelegramQueue, update_json};
pub use test_support::{Answer, Received, TestBot, temp_dir, unused_addr};

/// How long any fixture waits for a condition before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Waits until `condition` holds, checking every 10 ms, or panics after [`DEADLINE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
