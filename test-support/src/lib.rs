//! What the workspace's tests share, so that each piece is written once: unit tests in
//! `relay-server` and `relay-agent`, their binaries' tests, and the end-to-end tests in `tests/`.
//! It depends on no crate of the workspace, so any of them can use it as a dev-dependency.
//!
//! # Layout
//! - [`bot`]: [`TestBot`], a local bot that records what reaches it and answers as told.
//! - [`tls`]: which certificate a TLS server presents, seen by a client that accepts any.
//! - [`process`]: running the binaries: clean environment, deadlines, SIGTERM, output.
//! - [`tmpfs`]: [`Tmpfs`], a small tmpfs a test mounts to fill a disk for real.
//! - [`temp_dir`], [`TempDir`]: a fresh directory per fixture, kept or removed on drop.

pub mod bot;
pub mod process;
pub mod tls;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use bot::{Answer, IntoAnswer, Received, TestBot, respond, unused_addr};
pub use process::{DEADLINE, Lines, Program, Stderr, terminate};
pub use tmpfs::Tmpfs;

/// A fresh, empty directory under the system temp dir, unique per call and per process.
pub fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("relay-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A fresh directory from [`temp_dir`] that is removed when dropped, for a test that leaves
/// nothing behind.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory labelled `label`.
    pub fn new(label: &str) -> Self {
        Self(temp_dir(label))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
