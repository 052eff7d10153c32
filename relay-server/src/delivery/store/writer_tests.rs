//! The writer's recovery, on a small tmpfs filled for real.

use std::time::Duration;

use bytes::Bytes;
use test_support::Tmpfs;

use super::super::tests::chat_update;
use super::super::{NewUpdate, Store, StoreError, StoreLimits, StoredUpdate};

fn update(n: i64) -> NewUpdate {
    chat_update(n, Bytes::from(vec![b'x'; 3000]))
}

fn ids(updates: &[StoredUpdate]) -> Vec<i64> {
    updates.iter().filter_map(|u| u.update_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_the_store_refuses_then_recovers_with_the_removals_it_missed() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("4m") else {
        return;
    };
    let path = tmpfs.path().join("store.redb");
    let (store, _) = Store::open(&path, StoreLimits::default()).expect("open");
    let delivered = store.append(update(1)).await.expect("append");
    let mut kept = vec![store.append(update(2)).await.expect("append")];
    let filler = tmpfs.path().join("filler");
    assert!(tmpfs.fill(&filler) > 0);

    let mut failed = None;
    for n in 3..2000 {
        match store.append(update(n)).await {
            Ok(stored) => kept.push(stored),
            Err(error) => {
                failed = Some((n, error));
                break;
            }
        }
    }
    let (refused, error) = failed.expect("a full disk fails an append");
    assert!(matches!(error, StoreError::Failing(_)), "{error}");
    // The delivered update's removal cannot be made now; it is made once the store works.
    let removal = store.remove("echo", delivered.seq).await;
    assert!(
        matches!(removal, Err(StoreError::Failing(_))) || removal.is_ok(),
        "{removal:?}"
    );
    assert!(
        !store.health().is_healthy() || removal.is_ok(),
        "the health says the store is failing"
    );

    std::fs::remove_file(&filler).expect("free the space");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let last = loop {
        if store.health().is_healthy()
            && let Ok(stored) = store.append(update(5000)).await
        {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store did not recover: {:?}",
            store.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    kept.push(last);
    assert_eq!(store.pending_count(), kept.len(), "the tally is recounted");
    drop(store);

    let (_store, pending) = Store::open(&path, StoreLimits::default()).expect("reopen");
    assert_eq!(
        ids(&pending),
        ids(&kept),
        "what was acknowledged, and nothing else"
    );
    assert!(!ids(&pending).contains(&refused));
    assert!(!ids(&pending).contains(&1), "the missed removal was made");
}
