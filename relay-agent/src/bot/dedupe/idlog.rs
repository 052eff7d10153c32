//! The on-disk half of a duplicate window: one append-only file of update ids per bot, compacted
//! by rewriting it whole.
//!
//! # Format
//! [`MAGIC`] (8 bytes), then one 12-byte record per id, oldest first: the id as an `i64`
//! little-endian, then an FNV-1a-32 checksum of those 8 bytes, little-endian. Fixed-width records
//! make a torn tail obvious (a length that is not a multiple of 12), and the checksum catches
//! what a machine crash can leave instead of data, such as zeroed blocks. Reading keeps every
//! record up to the first damaged one; the caller then rewrites the file, so that new records
//! never land behind garbage.
//!
//! # Durability
//! [`IdLog::append`] hands the record to the OS with one `write`: once it returns, the id survives
//! the agent being killed. [`Unsynced::sync`] (`fdatasync`) makes it survive a machine crash too; the
//! caller batches it. A rewrite ([`IdLog::rewrite_at`], or [`Prepared`] then
//! [`IdLog::install`]) writes a temporary file, syncs it, renames it over the log and syncs the
//! directory, so a crash mid-rewrite leaves the old file or the new one, whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first bytes of every log file: what it is, and the format's version.
pub(super) const MAGIC: &[u8; 8] = b"RADEDUP1";

/// One id and its checksum.
pub(super) const RECORD_LEN: usize = 12;

/// How a file's contents stopped being readable, for the one log line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Damage {
    /// The file does not start with [`MAGIC`]: not ours, or cut before its header was whole.
    Header,
    /// The record at this index (0-based) fails its checksum.
    Record(usize),
    /// The file ends with this many bytes of a partial record.
    Torn(usize),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Header => f.write_str("it does not start with the expected header"),
            Damage::Record(index) => write!(f, "record {index} fails its checksum"),
            Damage::Torn(bytes) => write!(f, "it ends with {bytes} bytes of a partial record"),
        }
    }
}

/// The ids in a log file's bytes, oldest first, and the damage that ended reading early, if any.
/// An empty input is a new, undamaged log.
pub(super) fn decode(bytes: &[u8]) -> (Vec<i64>, Option<Damage>) {
    if bytes.is_empty() {
        return (Vec::new(), None);
    }
    let Some(records) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return (Vec::new(), Some(Damage::Header));
    };
    let mut ids = Vec::with_capacity(records.len() / RECORD_LEN);
    let mut chunks = records.chunks_exact(RECORD_LEN);
    for (index, record) in chunks.by_ref().enumerate() {
        let (id, check) = record.split_at(8);
        if checksum(id).to_le_bytes() != check {
            return (ids, Some(Damage::Record(index)));
        }
        ids.push(i64::from_le_bytes(id.try_into().expect("8 bytes")));
    }
    match chunks.remainder().len() {
        0 => (ids, None),
        torn => (ids, Some(Damage::Torn(torn))),
    }
}

/// One id as a record.
pub(super) fn encode(id: i64) -> [u8; RECORD_LEN] {
    let mut record = [0; RECORD_LEN];
    let bytes = id.to_le_bytes();
    record[..8].copy_from_slice(&bytes);
    record[8..].copy_from_slice(&checksum(&bytes).to_le_bytes());
    record
}

/// FNV-1a, 32 bits: a few lines, no dependency, and enough to tell a record from zeros or a
/// shifted tail. Not a defence against someone editing the file on purpose.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// An open log file, positioned for appending.
#[derive(Debug)]
pub(super) struct IdLog {
    path: PathBuf,
    /// Shared with [`Unsynced`], so that the slow `fdatasync` can run without the caller's lock.
    file: Arc<File>,
    /// Records in the file, so the caller knows when to compact.
    records: usize,
    /// Records written since the last sync.
    unsynced: bool,
}

impl IdLog {
    /// Reads the log at `path` (a missing file reads as empty) and returns its ids with any
    /// damage found. The file is not opened for writing yet: call [`IdLog::rewrite_at`] or
    /// [`IdLog::append_to`] next.
    pub(super) fn read(path: &Path) -> io::Result<(Vec<i64>, Option<Damage>)> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(decode(&bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), None)),
            Err(error) => Err(error),
        }
    }

    /// Opens an existing, undamaged log that holds `records` records, for appending.
    pub(super) fn append_to(path: &Path, records: usize) -> io::Result<IdLog> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(IdLog {
            path: path.to_owned(),
            file: Arc::new(file),
            records,
            unsynced: false,
        })
    }

    /// Replaces whatever is at `path` with a log of `ids`, and opens it for appending.
    pub(super) fn rewrite_at(path: &Path, ids: impl Iterator<Item = i64>) -> io::Result<IdLog> {
        let prepared = Prepared::write(path, ids)?;
        let log = IdLog::install(prepared, std::iter::empty())?;
        sync_parent(path)?;
        Ok(log)
    }

    /// Completes a rewrite: appends `later` (ids recorded while the prepared file was written;
    /// they reach the disk with the next sync) and renames the file over the log. Quick, so it
    /// may run under the caller's lock; the directory sync that makes the rename durable is left
    /// to [`sync_parent`], outside it.
    pub(super) fn install(
        prepared: Prepared,
        later: impl Iterator<Item = i64>,
    ) -> io::Result<IdLog> {
        let Prepared {
            path,
            temporary,
            file,
            mut records,
        } = prepared;
        let mut bytes = Vec::new();
        for id in later {
            bytes.extend_from_slice(&encode(id));
            records += 1;
        }
        (&file).write_all(&bytes)?;
        std::fs::rename(&temporary, &path)?;
        Ok(IdLog {
            path,
            file: Arc::new(file),
            records,
            unsynced: !bytes.is_empty(),
        })
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// How many records the file holds.
    pub(super) fn records(&self) -> usize {
        self.records
    }

    /// Appends one id with a single `write`, so that it reaches the OS (and survives the agent
    /// being killed) before this returns.
    pub(super) fn append(&mut self, id: i64) -> io::Result<()> {
        (&*self.file).write_all(&encode(id))?;
        self.records += 1;
        self.unsynced = true;
        Ok(())
    }

    /// The records appended since the last sync, to be flushed with [`Unsynced::sync`] once the
    /// caller has let go of its lock; `None` when there are none. Records appended meanwhile
    /// are flushed too, or by the next sync.
    pub(super) fn take_unsynced(&mut self) -> Option<Unsynced> {
        std::mem::take(&mut self.unsynced).then(|| Unsynced(Arc::clone(&self.file)))
    }
}

/// Appended records waiting for `fdatasync`; see [`IdLog::take_unsynced`].
#[derive(Debug)]
pub(super) struct Unsynced(Arc<File>);

impl Unsynced {
    /// Flushes them to the disk. Blocks for as long as the disk takes.
    pub(super) fn sync(self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// The first, slow half of a rewrite: a log of some ids in a temporary file next to the log,
/// written and synced without touching the log itself. [`IdLog::install`] completes it.
#[derive(Debug)]
pub(super) struct Prepared {
    path: PathBuf,
    temporary: PathBuf,
    file: File,
    records: usize,
}

impl Prepared {
    /// Writes `ids` to `path` + `.tmp` and syncs it. Blocks on the disk.
    pub(super) fn write(path: &Path, ids: impl Iterator<Item = i64>) -> io::Result<Prepared> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut bytes = MAGIC.to_vec();
        let mut records = 0;
        for id in ids {
            bytes.extend_from_slice(&encode(id));
            records += 1;
        }
        let mut file = File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Ok(Prepared {
            path: path.to_owned(),
            temporary,
            file,
            records,
        })
    }
}

/// Makes a rename of `path` durable by syncing its directory. Only Unix can open a directory to
/// sync it; elsewhere the rename is as durable as the file system makes it.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?
    .sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
