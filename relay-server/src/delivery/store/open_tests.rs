//! Opening damaged files, on real redb files in fresh temporary directories.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use test_support::TempDir;

use super::super::tests::chat_update;
use super::super::{NewUpdate, Store, StoreLimits};

/// A body no redb structure contains, to find the records in the file.
const MARKER: &[u8] = b"MARKER-of-a-stored-update-body-0123456789";

fn update(n: i64) -> NewUpdate {
    chat_update(n, Bytes::from([MARKER, &[b' '; 2000]].concat()))
}

/// A real store file holding a few updates, closed.
async fn real_store(path: &Path) -> Vec<u8> {
    let (store, _) = Store::open(path, StoreLimits::default()).expect("open");
    for n in 0..20 {
        store.append(update(n)).await.expect("append");
    }
    drop(store);
    std::fs::read(path).expect("read the file")
}

/// The files beside `path` whose names say they are a damaged store moved aside.
fn moved_aside(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().expect("dir");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect();
    found.sort();
    found
}

/// Writes `damaged` as the store file, opens it, and checks that it was moved aside (private,
/// unchanged) and that the new store is empty and takes updates.
async fn starts_empty_beside(damaged: &[u8], what: &str) {
    let dir = TempDir::new("damaged");
    let path = dir.path().join("store.redb");
    std::fs::write(&path, damaged).expect("write");
    let (store, pending) = Store::open(&path, StoreLimits::default())
        .unwrap_or_else(|e| panic!("{what}: the relay must start, got {e}"));
    assert!(pending.is_empty(), "{what}: the new store is empty");
    let aside = moved_aside(&path);
    assert_eq!(aside.len(), 1, "{what}: moved aside once: {aside:?}");
    assert_eq!(store.moved_aside(), Some(aside[0].as_path()), "{what}");
    assert_eq!(
        std::fs::read(&aside[0]).expect("read"),
        damaged,
        "{what}: kept as it was"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&aside[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{what}: private");
    }
    let stored = store.append(update(7)).await.expect("the new store works");
    assert_eq!(store.pending_count(), 1);
    drop(store);
    let (_store, pending) = Store::open(&path, StoreLimits::default()).expect("reopen");
    assert_eq!(
        pending,
        vec![stored],
        "{what}: the new store keeps what it took"
    );
    assert_eq!(moved_aside(&path).len(), 1, "{what}: a good file stays put");
}

#[tokio::test]
async fn random_bytes_are_moved_aside() {
    let bytes: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
    starts_empty_beside(&bytes, "random bytes").await;
}

#[tokio::test]
async fn a_truncated_store_is_moved_aside() {
    let dir = TempDir::new("truncated");
    let file = real_store(&dir.path().join("store.redb")).await;
    starts_empty_beside(&file[..file.len() / 2], "truncated").await;
}

#[tokio::test]
async fn a_store_with_flipped_bytes_in_its_records_is_moved_aside() {
    let dir = TempDir::new("flipped");
    let mut file = real_store(&dir.path().join("store.redb")).await;
    let at = file
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("a record in the file");
    for byte in &mut file[at..at + 8] {
        *byte ^= 0x5a;
    }
    starts_empty_beside(&file, "flipped bytes").await;
}

#[tokio::test]
async fn a_store_another_relay_has_open_is_an_error_and_stays_put() {
    let dir = TempDir::new("locked");
    let path = dir.path().join("store.redb");
    let (first, _) = Store::open(&path, StoreLimits::default()).expect("open");
    first.append(update(1)).await.expect("append");
    let error = Store::open(&path, StoreLimits::default()).expect_err("open twice");
    assert!(error.to_string().contains("already open"), "{error}");
    assert!(moved_aside(&path).is_empty(), "never moved aside");
    drop(first);
    let (_store, pending) = Store::open(&path, StoreLimits::default()).expect("reopen");
    assert_eq!(pending.len(), 1, "nothing lost");
}
