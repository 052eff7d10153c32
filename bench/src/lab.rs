//! The lab: one temporary directory for everything a run writes (configs, logs, data dirs), and
//! where the programs under test are. Dropping it removes the directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// The shared token of every relay and agent the bench starts: 32 characters, allowed to serve
/// any bot.
pub const AGENT_TOKEN: &str = "bench-agent-token-0123456789abcd";

/// The temporary directory and the binaries.
#[derive(Debug)]
pub struct Lab {
    dir: tempfile::TempDir,
    relay_server: PathBuf,
    relay_agent: PathBuf,
    next: AtomicU32,
}

impl Lab {
    /// A fresh temporary directory, and the two binaries found in `bin_dir`.
    pub fn new(bin_dir: &Path) -> Result<Lab> {
        let find = |name: &str| {
            let path = bin_dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} not found; build it with `cargo build --release -p {name}` or pass --bin-dir",
                    path.display()
                );
            }
            Ok(path)
        };
        let relay_server = find("relay-server")?;
        let relay_agent = find("relay-agent")?;
        let dir = tempfile::Builder::new()
            .prefix("relay-bench-")
            .tempdir()
            .context("cannot make a temporary directory")?;
        Ok(Lab {
            dir,
            relay_server,
            relay_agent,
            next: AtomicU32::new(1),
        })
    }

    /// A new, empty directory named after `what`, unique within this run.
    pub fn subdir(&self, what: &str) -> Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("{n:02}-{what}"));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(path)
    }

    /// The root of the temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The relay-server binary.
    pub fn relay_server(&self) -> &Path {
        &self.relay_server
    }

    /// The relay-agent binary.
    pub fn relay_agent(&self) -> &Path {
        &self.relay_agent
    }
}

/// Whether `program` is an executable file in a directory of PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
