//! What the workspace's tests share, so that each piece is written once: unit tests in
//! `relay-server` and `relay-agent`, their binaries' tests, and the end-to-end tests in `tests/`.
//! It depends on no crate of the workspace, so any of them can use it as a dev-dependency.
//!
//! # Layout
//! - [`bot`]: [`TestBot`], a local bot that records what reaches it and answers as told.
//! - [`process`]: running the binaries: clean environment, deadlines, SIGTERM, output.
//! - [`temp_dir`]: a fresh directory per fixture.

pub mod bot;
pub mod process;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use bot::{Answer, IntoAnswer, Received, TestBot, respond};
pub use process::{DEADLINE, Lines, Program, Stderr, terminate};

/// A fresh, empty directory under the system temp dir, unique per call and per process.
pub fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("relay-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
