//! Store tests, each on a real redb file in a fresh temporary directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use test_support::TempDir;

use super::record::{DEAD, MAX_ERROR_LEN, PENDING};
use super::writer::MAX_BATCH_OPS;
use super::*;

/// The store file in a test's own directory.
trait StoreDir {
    fn db(&self) -> PathBuf;
}

impl StoreDir for TempDir {
    fn db(&self) -> PathBuf {
        self.path().join("store.redb")
    }
}

fn open(path: &Path) -> (Store, Vec<StoredUpdate>) {
    open_with(path, StoreLimits::default())
}

fn open_with(path: &Path, limits: StoreLimits) -> (Store, Vec<StoredUpdate>) {
    Store::open(path, limits).expect("open store")
}

/// An update with everything that must survive byte for byte: duplicate headers, header bytes
/// that are not UTF-8, and a binary body.
/// A JSON update `n` of bot `echo` in chat 1, with `body`: the fixture of the tests of the
/// store's open and writer modules.
pub(super) fn chat_update(n: i64, body: Bytes) -> NewUpdate {
    NewUpdate {
        bot: "echo".into(),
        queue: "chat:1".into(),
        update_id: Some(n),
        received_at_ms: 1,
        method: "POST".into(),
        path: String::new(),
        query: None,
        headers: vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
        body,
    }
}

fn update(bot: &str, queue: &str, n: u8, received_at_ms: u64) -> NewUpdate {
    NewUpdate {
        bot: bot.into(),
        queue: queue.into(),
        update_id: Some(1_000 + i64::from(n)),
        received_at_ms,
        method: "POST".into(),
        path: format!("/p{n}"),
        query: n.is_multiple_of(2).then(|| "a=1&b=%20".to_owned()),
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("x-dup".into(), Bytes::from_static(b"one")),
            ("x-raw".into(), Bytes::from_static(b"\xff\x00 not utf-8")),
            ("x-dup".into(), Bytes::from_static(b"two")),
        ],
        body: (0..=255u8)
            .cycle()
            .skip(n.into())
            .take(300)
            .collect::<Vec<_>>()
            .into(),
    }
}

fn seqs(updates: &[StoredUpdate]) -> Vec<u64> {
    updates.iter().map(|u| u.seq).collect()
}

/// Waits, with a deadline, until `queued` changes sit in the writer's channel.
async fn until_queued(store: &Store, queued: usize) {
    let ops = store.inner.ops.as_ref().expect("open store");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while ops.max_capacity() - ops.capacity() < queued {
        assert!(Instant::now() < deadline, "appends never queued up");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn appended_updates_come_back_byte_exact_in_seq_order() {
    let dir = TempDir::new("reopen");
    let (store, pending) = open(&dir.db());
    assert!(pending.is_empty());
    let mut appended = Vec::new();
    for (n, bot) in ["b", "a", "b", "a", "c"].into_iter().enumerate() {
        let n = u8::try_from(n).expect("small");
        appended.push(
            store
                .append(update(bot, "chat:1", n, 10))
                .await
                .expect("append"),
        );
    }
    assert!(seqs(&appended).windows(2).all(|w| w[0] < w[1]));
    let first = &appended[0];
    assert_eq!((first.attempts, first.last_error.as_deref()), (0, None));
    assert_eq!(first.body, update("b", "chat:1", 0, 10).body);
    let bytes = store.bytes();
    assert!(bytes > 0);
    assert_eq!(store.pending_count(), 5);
    drop(store);

    let (store, pending) = open(&dir.db());
    assert_eq!(pending, appended);
    assert_eq!(store.bytes(), bytes);
    assert_eq!(store.pending_count(), 5);
    assert_eq!(store.corrupt_count(), 0);
}

#[tokio::test]
async fn seq_keeps_increasing_across_reopen_even_when_empty() {
    let dir = TempDir::new("seq");
    let (store, _) = open(&dir.db());
    let first = store.append(update("a", "q", 1, 1)).await.expect("append");
    let second = store.append(update("b", "q", 2, 1)).await.expect("append");
    store.remove("a", first.seq).await.expect("remove");
    store.remove("b", second.seq).await.expect("remove");
    drop(store);

    let (store, pending) = open(&dir.db());
    assert!(pending.is_empty());
    let third = store.append(update("a", "q", 3, 1)).await.expect("append");
    assert!(third.seq > second.seq, "{} after {}", third.seq, second.seq);
}

#[tokio::test]
async fn remove_is_durable_and_forgiving() {
    let dir = TempDir::new("remove");
    let (store, _) = open(&dir.db());
    let kept = store.append(update("a", "q", 1, 1)).await.expect("append");
    let gone = store.append(update("a", "q", 2, 1)).await.expect("append");
    let before = store.bytes();
    store.remove("a", gone.seq).await.expect("remove");
    assert!(store.bytes() < before);
    // Already gone, wrong bot: no error.
    store.remove("a", gone.seq).await.expect("remove again");
    store
        .remove("b", kept.seq)
        .await
        .expect("remove under another bot");
    assert_eq!(store.pending_count(), 1);
    drop(store);

    let (store, pending) = open(&dir.db());
    assert_eq!(pending, vec![kept]);
    assert_eq!(store.pending_count(), 1);
}

#[tokio::test]
async fn failures_are_counted_and_kept() {
    let dir = TempDir::new("failure");
    let (store, _) = open(&dir.db());
    let stored = store.append(update("a", "q", 1, 1)).await.expect("append");
    let once = store
        .record_failure("a", stored.seq, "bot answered 500")
        .await
        .expect("record")
        .expect("pending");
    assert_eq!(once.attempts, 1);
    assert_eq!(once.last_error.as_deref(), Some("bot answered 500"));
    let long = "x".repeat(10 * MAX_ERROR_LEN);
    let twice = store
        .record_failure("a", stored.seq, &long)
        .await
        .expect("record")
        .expect("pending");
    assert_eq!(twice.attempts, 2);
    assert_eq!(
        twice.last_error.as_ref().map(String::len),
        Some(MAX_ERROR_LEN)
    );
    assert_eq!(
        StoredUpdate {
            attempts: 0,
            last_error: None,
            ..twice.clone()
        },
        stored
    );
    assert_eq!(
        store
            .record_failure("a", stored.seq + 100, "x")
            .await
            .expect("record"),
        None
    );
    drop(store);

    let (_store, pending) = open(&dir.db());
    assert_eq!(pending, vec![twice]);
}

#[tokio::test]
async fn dead_letters_can_be_listed_replayed_and_dropped() {
    let dir = TempDir::new("dead");
    let (store, _) = open(&dir.db());
    let a1 = store.append(update("a", "q", 1, 1)).await.expect("append");
    let b1 = store.append(update("b", "q", 2, 1)).await.expect("append");
    let a2 = store.append(update("a", "q", 3, 1)).await.expect("append");
    let bytes = store.bytes();
    store
        .record_failure("a", a2.seq, "timeout")
        .await
        .expect("record");
    for (bot, seq) in [("a", a2.seq), ("b", b1.seq), ("a", a1.seq)] {
        store
            .bury(bot, seq, "too many attempts")
            .await
            .expect("bury");
    }
    // Burying what is not pending is not an error.
    store.bury("a", a1.seq, "again").await.expect("bury again");
    assert_eq!((store.pending_count(), store.dead_count()), (0, 3));
    assert!(store.bytes() > bytes, "reasons take room too");

    let all = store.dead_letters(None, 10).await.expect("list");
    assert_eq!(seqs(&all), [a1.seq, b1.seq, a2.seq]);
    assert_eq!(all[2].attempts, 1);
    assert_eq!(all[2].last_error.as_deref(), Some("too many attempts"));
    assert_eq!(all[0].body, a1.body);
    let oldest = store.dead_letters(None, 2).await.expect("list");
    assert_eq!(seqs(&oldest), [a1.seq, b1.seq]);
    let of_a = store.dead_letters(Some("a"), 10).await.expect("list");
    assert_eq!(seqs(&of_a), [a1.seq, a2.seq]);
    assert_eq!(
        seqs(&store.dead_letters(Some("a"), 1).await.expect("list")),
        [a1.seq]
    );
    assert!(
        store
            .dead_letters(Some("zz"), 10)
            .await
            .expect("list")
            .is_empty()
    );
    drop(store);

    let (store, pending) = open(&dir.db());
    assert!(pending.is_empty());
    assert_eq!(store.dead_count(), 3);
    assert_eq!(store.dead_letters(None, 10).await.expect("list"), all);

    let replayed = store
        .replay("a", a2.seq)
        .await
        .expect("replay")
        .expect("dead");
    assert!(
        replayed.seq > a2.seq,
        "a replay goes to the end of its queue"
    );
    assert_eq!(
        (replayed.attempts, replayed.last_error.as_deref()),
        (0, None)
    );
    assert_eq!(replayed.body, a2.body);
    assert_eq!(replayed.received_at_ms, a2.received_at_ms);
    assert_eq!(store.replay("a", a2.seq).await.expect("replay"), None);
    assert!(store.drop_dead("b", b1.seq).await.expect("drop"));
    assert!(!store.drop_dead("b", b1.seq).await.expect("drop again"));
    assert_eq!((store.pending_count(), store.dead_count()), (1, 1));
    drop(store);

    let (store, pending) = open(&dir.db());
    assert_eq!(pending, vec![replayed]);
    assert_eq!(
        seqs(&store.dead_letters(None, 10).await.expect("list")),
        [a1.seq]
    );
}

#[tokio::test]
async fn expire_removes_only_older_updates_from_both_tables() {
    let dir = TempDir::new("expire");
    let (store, _) = open(&dir.db());
    let old_pending = store
        .append(update("a", "q", 1, 100))
        .await
        .expect("append");
    let old_dead = store
        .append(update("b", "q", 2, 200))
        .await
        .expect("append");
    let young_pending = store
        .append(update("a", "q", 3, 300))
        .await
        .expect("append");
    let young_dead = store
        .append(update("b", "q", 4, 400))
        .await
        .expect("append");
    store.bury("b", old_dead.seq, "dead").await.expect("bury");
    store.bury("b", young_dead.seq, "dead").await.expect("bury");

    let mut expired = store.expire(300).await.expect("expire");
    expired.sort_by_key(|u| u.seq);
    assert_eq!(seqs(&expired), [old_pending.seq, old_dead.seq]);
    assert_eq!(expired[1].last_error.as_deref(), Some("dead"));
    assert_eq!((store.pending_count(), store.dead_count()), (1, 1));
    assert!(store.expire(300).await.expect("expire").is_empty());
    drop(store);

    let (store, pending) = open(&dir.db());
    assert_eq!(pending, vec![young_pending]);
    assert_eq!(
        seqs(&store.dead_letters(None, 10).await.expect("list")),
        [young_dead.seq]
    );
}

#[tokio::test]
async fn a_full_store_refuses_until_room_is_freed() {
    let dir = TempDir::new("full");
    let (store, _) = open(&dir.db());
    let probe = store.append(update("a", "q", 1, 1)).await.expect("append");
    let record = store.bytes();
    drop(store);
    let limits = StoreLimits {
        max_bytes: 2 * record + record / 2,
        ..StoreLimits::default()
    };
    let (store, _) = open_with(&dir.db(), limits);
    store
        .append(update("a", "q", 1, 1))
        .await
        .expect("second fits");
    let commits = store.commits();
    let error = store
        .append(update("a", "q", 1, 1))
        .await
        .expect_err("third is over");
    assert_eq!(store.commits(), commits, "a refusal costs no fsync");
    assert!(
        matches!(error, StoreError::Full { held, max, .. } if held == 2 * record && max == limits.max_bytes),
        "{error}"
    );
    assert_eq!(store.pending_count(), 2);
    store.remove("a", probe.seq).await.expect("remove");
    store
        .append(update("a", "q", 1, 1))
        .await
        .expect("fits again");
    assert_eq!(store.bytes(), 2 * record);
}

#[tokio::test]
async fn an_oversized_update_is_refused_before_the_writer() {
    let dir = TempDir::new("large");
    let limits = StoreLimits {
        max_record_bytes: 1024,
        ..StoreLimits::default()
    };
    let (store, _) = open_with(&dir.db(), limits);
    let mut big = update("a", "q", 1, 1);
    big.body = vec![7; 2048].into();
    let error = store.append(big).await.expect_err("too large");
    assert!(
        matches!(error, StoreError::TooLarge { max: 1024, .. }),
        "{error}"
    );
    assert_eq!((store.bytes(), store.commits()), (0, 0));
}

/// The proof of group commit: with the writer held at its transaction, 2,000 concurrent appends
/// queue up and then go to disk in as few commits as the batch cap allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    const APPENDS: usize = 2_000;
    const { assert!(APPENDS <= CHANNEL_CAPACITY + 1, "all must fit in the queue") };
    let dir = TempDir::new("group");
    let (store, _) = open(&dir.db());
    // While this transaction is open, the writer waits in `begin_write` with its first op.
    let hold = writer::current(&store.inner.db)
        .expect("open")
        .begin_write()
        .expect("hold the write lock");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..APPENDS {
        let store = store.clone();
        let bot = if n.is_multiple_of(2) { "even" } else { "odd" };
        let queue = format!("chat:{}", n % 7);
        tasks.spawn(async move { store.append(update(bot, &queue, 0, n as u64)).await });
    }
    until_queued(&store, APPENDS - 1).await;
    drop(hold);
    let mut stored = Vec::new();
    while let Some(result) = tasks.join_next().await {
        stored.push(result.expect("task").expect("append"));
    }
    assert_eq!(store.commits(), APPENDS.div_ceil(MAX_BATCH_OPS) as u64);
    let unique: BTreeSet<u64> = stored.iter().map(|u| u.seq).collect();
    assert_eq!(unique.len(), APPENDS);
    drop(store);

    let (_store, pending) = open(&dir.db());
    assert_eq!(pending.len(), APPENDS);
    assert_eq!(
        pending.iter().map(|u| u.seq).collect::<BTreeSet<_>>(),
        unique
    );
}

/// Appends racing freely with no help: all land, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land() {
    const APPENDS: u64 = 2_000;
    let dir = TempDir::new("race");
    let (store, _) = open(&dir.db());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..APPENDS {
        let store = store.clone();
        tasks.spawn(async move { store.append(update("a", "q", 0, n)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("append");
    }
    assert!(store.commits() <= APPENDS);
    drop(store);
    let (_store, pending) = open(&dir.db());
    let received: BTreeSet<u64> = pending.iter().map(|u| u.received_at_ms).collect();
    assert_eq!(received, (0..APPENDS).collect());
}

/// One refused op in a batch fails alone: the others in the same commit succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_op_does_not_fail_its_batch() {
    let dir = TempDir::new("alone");
    let (store, _) = open(&dir.db());
    let probe = store.append(update("a", "q", 0, 1)).await.expect("append");
    let record = store.bytes();
    store.remove("a", probe.seq).await.expect("remove");
    drop(store);
    let limits = StoreLimits {
        max_bytes: 3 * record,
        ..StoreLimits::default()
    };
    let (store, _) = open_with(&dir.db(), limits);
    let hold = writer::current(&store.inner.db)
        .expect("open")
        .begin_write()
        .expect("hold the write lock");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.spawn(async move { store.append(update("a", "q", 0, 1)).await });
    }
    until_queued(&store, 3).await;
    drop(hold);
    let (mut stored, mut full) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.expect("task") {
            Ok(_) => stored += 1,
            Err(StoreError::Full { .. }) => full += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((stored, full, store.commits()), (3, 1, 1));
}

#[tokio::test]
async fn records_that_do_not_decode_are_skipped_and_counted() {
    let dir = TempDir::new("corrupt");
    let (store, _) = open(&dir.db());
    let good = store.append(update("a", "q", 1, 1)).await.expect("append");
    drop(store);
    {
        let db = redb::Database::create(dir.db()).expect("raw open");
        let txn = db.begin_write().expect("write");
        {
            let mut pending = txn.open_table(PENDING).expect("table");
            pending
                .insert(("a", 999), &b"\xff\xff garbage"[..])
                .expect("insert");
            let mut dead = txn.open_table(DEAD).expect("table");
            dead.insert(("b", 5), &b""[..]).expect("insert");
        }
        txn.commit().expect("commit");
    }

    let (store, pending) = open(&dir.db());
    assert_eq!(pending, vec![good.clone()]);
    assert_eq!(store.corrupt_count(), 2);
    assert_eq!((store.pending_count(), store.dead_count()), (2, 1));
    let error = store
        .record_failure("a", 999, "x")
        .await
        .expect_err("corrupt");
    assert!(
        matches!(error, StoreError::Corrupt { seq: 999, .. }),
        "{error}"
    );
    assert!(store.dead_letters(None, 10).await.expect("list").is_empty());
    let expired = store.expire(u64::MAX).await.expect("expire");
    assert_eq!(expired, vec![good]);
    let next = store.append(update("a", "q", 2, 1)).await.expect("append");
    assert!(next.seq > 999, "never reuses a seq on disk");
    store
        .remove("a", 999)
        .await
        .expect("an unreadable record can still be removed");
    assert!(store.drop_dead("b", 5).await.expect("drop"));
    assert_eq!((store.pending_count(), store.dead_count()), (1, 0));
}

#[tokio::test]
async fn a_dropped_store_closes_its_file() {
    let dir = TempDir::new("close");
    let (store, _) = open(&dir.db());
    let clone = store.clone();
    store.append(update("a", "q", 1, 1)).await.expect("append");
    drop(store);
    // Another handle keeps it open: the file is still locked.
    assert!(Store::open(&dir.db(), StoreLimits::default()).is_err());
    drop(clone);
    let (_store, pending) = open(&dir.db());
    assert_eq!(pending.len(), 1);
}

/// The environment variable that turns [`child_appends_until_killed`] on, naming its store.
const CHILD_STORE: &str = "RELAY_STORE_CRASH_TEST_PATH";
/// The line prefix the child prints for each append it was told is durable.
const ACKED: &str = "acked ";

/// What was acknowledged survives `kill -9`: a child process appends from several tasks and
/// prints each acknowledged seq; it is killed mid-stream, and every printed seq must be there.
#[test]
fn acknowledged_appends_survive_kill_9() {
    use std::io::BufRead;
    const WANTED: usize = 300;
    let dir = TempDir::new("crash");
    // The child's name as the test harness knows it: this module's path without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    let child_test = format!("{module}::child_appends_until_killed");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", &child_test])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE, dir.db())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines, acked_lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let mut acked = BTreeSet::new();
    while acked.len() < WANTED {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = acked_lines
            .recv_timeout(left)
            .expect("child acknowledged too few");
        if let Some(seq) = line.strip_prefix(ACKED) {
            acked.insert(seq.trim().parse::<u64>().expect("seq"));
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // Lines already in the pipe were acknowledged before the kill too.
    while let Ok(line) = acked_lines.recv_timeout(std::time::Duration::from_secs(5)) {
        if let Some(seq) = line.strip_prefix(ACKED) {
            acked.insert(seq.trim().parse::<u64>().expect("seq"));
        }
    }

    let (_store, pending) = open(&dir.db());
    let on_disk: BTreeSet<u64> = pending.iter().map(|u| u.seq).collect();
    let lost: Vec<_> = acked.difference(&on_disk).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

/// The child half of [`acknowledged_appends_survive_kill_9`]; does nothing unless started by it.
#[test]
#[ignore = "run by acknowledged_appends_survive_kill_9 in a child process"]
fn child_appends_until_killed() {
    const TASKS: u64 = 8;
    /// Stops a child whose parent died without killing it.
    const MAX_APPENDS_PER_TASK: u64 = 50_000;
    let Some(path) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (store, _) = open(Path::new(&path));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                for n in 0..MAX_APPENDS_PER_TASK {
                    let stored = store
                        .append(update("crash", &format!("chat:{task}"), 0, n))
                        .await
                        .expect("append");
                    println!("{ACKED}{}", stored.seq);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[tokio::test]
async fn tiny_updates_are_charged_what_they_cost_in_memory_not_only_their_bytes() {
    let tiny = || NewUpdate {
        bot: "b".into(),
        queue: "bot".into(),
        update_id: None,
        received_at_ms: 1,
        method: "POST".into(),
        path: String::new(),
        query: None,
        headers: Vec::new(),
        body: Bytes::from_static(b"{}"),
    };
    let record_len = record::encode(&record::Fields {
        queue: "bot".into(),
        update_id: None,
        received_at_ms: 1,
        attempts: 0,
        last_error: None,
        method: "POST".into(),
        path: String::new(),
        query: None,
        headers: Vec::new(),
        body: Bytes::from_static(b"{}"),
    })
    .expect("encode")
    .len() as u64;
    let room_for_records = 50;
    let dir = TempDir::new("tiny");
    let limits = StoreLimits {
        max_bytes: room_for_records * record_len,
        ..StoreLimits::default()
    };
    let (store, _) = open_with(&dir.db(), limits);
    let mut accepted = 0;
    for _ in 0..room_for_records {
        match store.append(tiny()).await {
            Ok(_) => accepted += 1,
            Err(StoreError::Full { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }
    // Each held update costs its struct, Arc, queue slot and allocations too: far fewer fit than
    // their bytes alone would let in.
    let cost = record_len + cost::UPDATE_OVERHEAD;
    assert_eq!(
        accepted,
        limits.max_bytes / cost,
        "{record_len}-byte records"
    );
    assert_eq!(store.bytes(), accepted * cost);
    assert!(accepted < room_for_records / 4, "{accepted}");
}
