//! [`Tmpfs`]: a small tmpfs a test mounts itself, to fill a disk for real; unmounted and removed
//! when dropped, whatever the test did. Mounting needs root (CI runs as root); where it cannot
//! mount, a test is skipped loudly, or fails when [`REQUIRE_MOUNT`] is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set (to anything) to make a test that cannot mount its tmpfs fail instead of skipping.
pub const REQUIRE_MOUNT: &str = "E2E_REQUIRE_MOUNT";

/// A mounted tmpfs.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (such as `6m`) on a fresh directory.
    pub fn mount(size: &str) -> Result<Self, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("relay-tmpfs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    /// Mounts one, or says loudly on stderr why the test is skipped (it panics instead when
    /// [`REQUIRE_MOUNT`] is set). `None` means: return from the test.
    pub fn mount_or_skip(size: &str) -> Option<Self> {
        match Self::mount(size) {
            Ok(tmpfs) => Some(tmpfs),
            Err(reason) if std::env::var_os(REQUIRE_MOUNT).is_some() => {
                panic!("cannot mount tmpfs ({REQUIRE_MOUNT} is set): {reason}")
            }
            Err(reason) => {
                eprintln!(
                    "\n\n*** SKIPPED: cannot mount tmpfs: {reason} (run as root, or set \
                     {REQUIRE_MOUNT}=1 to make this a failure) ***\n\n"
                );
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a file at `path` (on this tmpfs) until the disk is full; returns the bytes written.
    pub fn fill(&self, path: &Path) -> u64 {
        let Ok(mut file) = std::fs::File::create(path) else {
            return 0;
        };
        let chunk = vec![0u8; 16 * 1024];
        let mut written = 0;
        // Bounded: a tmpfs of a few MiB is full long before this.
        for _ in 0..100_000 {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Something still holds a file there: detach it now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
