//! Certificate files read again when they change (certbot renews them in place, often through
//! symlinks) and on SIGHUP. A new pair that cannot be served leaves the old certificate serving
//! and says why in one line. Imports [`super::certificates`] and [`super::pem`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::certificates::Certificates;
use super::pem::{self, CertInfo};

/// How often the files are looked at: two `stat`s, nothing to the relay, and a renewal is
/// served within seconds of certbot's run.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long a change is left to settle before the files are read: certbot and editors write the
/// certificate and the key one after the other, and reading between the two would find a key
/// that does not fit.
const SETTLE: Duration = Duration::from_millis(500);

/// What `stat` says about a file, to tell that it changed: a renewal by rename gives a new
/// inode, one in place a new time or length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: certbot's live/ names point at a new archive file each time.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// The certificate and key files being served, and what they looked like when last read.
#[derive(Debug)]
pub(crate) struct WatchedFiles {
    cert: PathBuf,
    key: PathBuf,
    seen: (Option<Stamp>, Option<Stamp>),
}

impl WatchedFiles {
    /// Watches `cert` and `key`, as they are now (already read and served).
    pub(crate) fn new(cert: PathBuf, key: PathBuf) -> Self {
        let seen = (stamp(&cert), stamp(&key));
        Self { cert, key, seen }
    }

    /// Whether either file looks different from when it was last read.
    fn changed(&self) -> bool {
        (stamp(&self.cert), stamp(&self.key)) != self.seen
    }

    /// Reads both files and serves them if they can be; returns whether the served certificate
    /// changed. `asked` (a SIGHUP) also reports an unchanged certificate.
    pub(crate) fn reload(&mut self, certificates: &Certificates, asked: bool) -> bool {
        // Stamped before reading: a file written after the stamp is seen changed next time.
        self.seen = (stamp(&self.cert), stamp(&self.key));
        let key = match pem::read_pair(&self.cert, &self.key) {
            Ok(key) => key,
            Err(error) => {
                tracing::warn!(%error, "kept the certificate already served");
                return false;
            }
        };
        let old = certificates.current();
        if old.cert == key.cert {
            if asked {
                tracing::info!(cert = %self.cert.display(), "certificate unchanged");
            }
            return false;
        }
        let info = key.cert.first().map(CertInfo::of);
        certificates.replace(key);
        match info {
            Some(Ok(info)) => tracing::info!(
                cert = %self.cert.display(),
                names = ?info.names,
                not_after = %humantime::format_rfc3339_seconds(info.not_after),
                fingerprint = %info.fingerprint,
                "serving a new certificate"
            ),
            _ => tracing::info!(cert = %self.cert.display(), "serving a new certificate"),
        }
        true
    }

    /// Reloads on change and on every `reloads` signal until `shutdown`.
    pub(crate) async fn run(
        mut self,
        certificates: Arc<Certificates>,
        mut reloads: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signals = true;
        loop {
            let asked = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => false,
                changed = reloads.changed(), if signals => {
                    // Every sender gone: no more reload requests can come, polling goes on.
                    signals = changed.is_ok();
                    signals
                }
            };
            if asked {
                self.reload(&certificates, true);
            } else if self.changed() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(SETTLE) => {}
                }
                self.reload(&certificates, false);
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
