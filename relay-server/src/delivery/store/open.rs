//! Opening the file: at start, where a damaged file is moved aside so that the relay starts with
//! an empty store rather than not at all, and again after a failed write, when the writer
//! reopens it.

use std::path::{Path, PathBuf};

use redb::Database;

use super::error::StoreError;
use super::record;

/// redb's page cache. The store is written once per update and read back mostly on open and for
/// listings; redb's default (1 GiB) would let the cache grow as large as the data on a small VPS.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What a damaged file is renamed to, beside it: `store.redb.damaged-<unix seconds>`.
const DAMAGED_SUFFIX: &str = ".damaged-";

/// Opens (or creates) the database at `path` and makes sure its tables exist.
///
/// The file's checksums are verified on every open (redb's integrity check), since an open that
/// trusts a damaged file may panic; a panic inside redb is caught and reported as damage too.
pub(super) fn open_db(path: &Path) -> Result<Database, redb::Error> {
    let opened = std::panic::catch_unwind(|| {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)?;
        record::create_tables(&db)?;
        Ok(db)
    });
    opened.unwrap_or_else(|_| Err(redb::Error::Corrupted("redb panicked opening it".into())))
}

/// Whether an open failed because the file's bytes are broken (so moving it aside helps), rather
/// than because of where it is (a file another process has open, a directory the relay may not
/// write, a failing disk) or which version wrote it. Only the first kind is moved aside; the
/// others still stop the start. An intact file in another format (`UpgradeRequired`, tables of
/// another layout) comes from another version of redb or the relay: its updates are safe and
/// readable by that version, so the relay refuses to start rather than strand them.
pub(super) fn is_damaged(error: &redb::Error) -> bool {
    use redb::Error::*;
    matches!(
        error,
        // Checksums or structure do not verify, or the header is not redb's.
        Corrupted(_)
    ) || matches!(
        // Not a redb file at all: redb says so with this kind (the OS never does).
        error,
        Io(io) if io.kind() == std::io::ErrorKind::InvalidData
    )
}

/// Opens the store file for the start of the relay. A damaged one is renamed to
/// `<file>.damaged-<unix seconds>` (private) with one loud error line, and an empty store is
/// created in its place; the path it went to is returned.
pub(super) fn open_at_start(path: &Path) -> Result<(Database, Option<PathBuf>), StoreError> {
    let context = |step: &str, error: &dyn std::fmt::Display| {
        StoreError::Database(format!("cannot {step} {}: {error}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| context("create the directory of", &e))?;
    }
    let error = match open_db(path) {
        Ok(db) => return Ok((db, None)),
        Err(error) if is_damaged(&error) => error,
        Err(error) => return Err(context("open", &error)),
    };
    let aside = aside_path(path);
    std::fs::rename(path, &aside).map_err(|e| context("move aside the damaged", &e))?;
    if let Err(chmod) = crate::data_dir::make_private(&aside) {
        tracing::warn!(path = %aside.display(), error = %chmod, "cannot make the damaged store file private");
    }
    tracing::error!(
        %error,
        moved_to = %aside.display(),
        "STORE FILE DAMAGED: moved it aside and started with an empty store; live delivery works, \
         updates it held are not delivered. Keep the moved file to inspect or recover it (see \
         docs/TROUBLESHOOTING.md, \"Damaged store file\"), delete it once done"
    );
    let db = open_db(path).map_err(|e| context("create a new", &e))?;
    Ok((db, Some(aside)))
}

/// `store.redb.damaged-<unix seconds>` beside `path`, with a counter if that name is taken.
fn aside_path(path: &Path) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| "store.redb".into(), |n| n.to_string_lossy().into_owned());
    let base = path.with_file_name(format!("{name}{DAMAGED_SUFFIX}{now}"));
    let mut candidate = base.clone();
    let mut n = 1u32;
    while candidate.exists() && n < 1000 {
        candidate = PathBuf::from(format!("{}.{n}", base.display()));
        n += 1;
    }
    candidate
}

#[cfg(test)]
#[path = "open_tests.rs"]
mod tests;
