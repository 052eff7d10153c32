//! Tests for [`super`] and the file format in [`super::idlog`]: bounds, reopening, damaged files,
//! per-bot separation, the directory lock and the live-answer memory.

use std::io::Write;

use bytes::Bytes;

use super::idlog::{self, Damage, IdLog, MAGIC, RECORD_LEN};
use super::*;
use test_support::TempDir;

fn limits(ids_per_bot: usize) -> Limits {
    Limits {
        ids_per_bot,
        ..Limits::default()
    }
}

fn open(dir: &TempDir, bots: &[&str], ids_per_bot: usize) -> Dedupe {
    Dedupe::open(Some(dir.path()), bots, limits(ids_per_bot)).expect("open state dir")
}

fn held(dedupe: &Dedupe, bot: &str, ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    ids.into_iter()
        .filter(|&id| dedupe.contains(bot, id))
        .collect()
}

fn file_len(dir: &TempDir, bot: &str) -> usize {
    let len = std::fs::metadata(log_path(dir.path(), bot))
        .expect("state file")
        .len();
    usize::try_from(len).expect("small file")
}

fn answer(body: &'static [u8]) -> Answer {
    Answer {
        status: 200,
        headers: vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from_static(body),
    }
}

#[test]
fn the_window_is_bounded_and_forgets_the_oldest_first() {
    let dedupe = Dedupe::open(None, &["echo"], limits(3)).expect("in memory");
    for id in 1..=4 {
        assert!(!dedupe.contains("echo", id));
        dedupe.record("echo", id, None);
        assert!(dedupe.contains("echo", id));
    }
    assert_eq!(held(&dedupe, "echo", 0..=5), [2, 3, 4]);
    // Recording an id again does not make it younger or push anything out.
    dedupe.record("echo", 2, None);
    assert_eq!(held(&dedupe, "echo", 0..=5), [2, 3, 4]);
}

#[test]
fn the_window_survives_reopening() {
    let dir = TempDir::new("reopen");
    let dedupe = open(&dir, &["echo"], 100);
    for id in [900_000_001, -5, 0, i64::MAX] {
        dedupe.record("echo", id, None);
    }
    drop(dedupe);
    assert_eq!(file_len(&dir, "echo"), MAGIC.len() + 4 * RECORD_LEN);

    let dedupe = open(&dir, &["echo"], 100);
    assert_eq!(
        held(&dedupe, "echo", [900_000_001, -5, 0, i64::MAX, 7]),
        [900_000_001, -5, 0, i64::MAX]
    );
    // Appending goes on after a reopen.
    dedupe.record("echo", 7, None);
    drop(dedupe);
    let dedupe = open(&dir, &["echo"], 100);
    assert!(dedupe.contains("echo", 7));
}

#[test]
fn the_file_is_compacted_and_a_reopen_keeps_the_newest_ids() {
    let dir = TempDir::new("compact");
    let dedupe = open(&dir, &["echo"], 3);
    for id in 1..=20 {
        dedupe.record("echo", id, None);
        // Recording only appends; compaction waits for the sync, off the async thread.
        assert_eq!(
            file_len(&dir, "echo"),
            MAGIC.len() + id as usize * RECORD_LEN
        );
    }
    dedupe.sync();
    assert_eq!(file_len(&dir, "echo"), MAGIC.len() + 3 * RECORD_LEN);
    // Below twice the window a sync leaves the file alone.
    dedupe.record("echo", 21, None);
    dedupe.sync();
    assert_eq!(file_len(&dir, "echo"), MAGIC.len() + 4 * RECORD_LEN);
    drop(dedupe);
    let dedupe = open(&dir, &["echo"], 3);
    assert_eq!(held(&dedupe, "echo", 1..=21), [19, 20, 21]);
    // A smaller window than the file was written with keeps the newest.
    drop(dedupe);
    let dedupe = open(&dir, &["echo"], 2);
    assert_eq!(held(&dedupe, "echo", 1..=21), [20, 21]);
}

#[test]
fn ids_recorded_while_a_rewrite_is_written_land_in_the_new_file() {
    let dir = TempDir::new("rewrite-race");
    let path = log_path(dir.path(), "echo");
    let mut window = BotWindow::load(dir.path(), "echo", 3).expect("load");
    for id in 1..=6 {
        window.record(id);
    }
    let Maintenance::Rewrite {
        path: at,
        ids,
        mark,
    } = window.maintenance()
    else {
        panic!("a file at twice its window is rewritten");
    };
    assert_eq!(
        (at.as_path(), ids.as_slice()),
        (path.as_path(), &[4, 5, 6][..])
    );
    // What Dedupe::sync does without the lock: the slow write. Meanwhile 7 and 8 are recorded
    // (appended to the old file, which is about to be replaced).
    let prepared = Prepared::write(&path, ids.into_iter()).expect("prepare");
    window.record(7);
    window.record(8);
    window.install(prepared, mark).expect("install");
    window.record(9);
    drop(window);
    let (ids, damage) = IdLog::read(&path).expect("read");
    assert_eq!((ids, damage), (vec![4, 5, 6, 7, 8, 9], None));
}

#[test]
fn a_truncated_tail_is_cut_off_and_the_file_stays_usable() {
    let dir = TempDir::new("torn");
    let dedupe = open(&dir, &["echo"], 100);
    for id in 1..=3 {
        dedupe.record("echo", id, None);
    }
    drop(dedupe);
    let path = log_path(dir.path(), "echo");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("truncate");

    let dedupe = open(&dir, &["echo"], 100);
    assert_eq!(held(&dedupe, "echo", 1..=3), [1, 2]);
    // The torn record is gone from the file, so a new one does not land behind it.
    assert_eq!(file_len(&dir, "echo"), MAGIC.len() + 2 * RECORD_LEN);
    dedupe.record("echo", 4, None);
    drop(dedupe);
    let dedupe = open(&dir, &["echo"], 100);
    assert_eq!(held(&dedupe, "echo", 1..=4), [1, 2, 4]);
}

#[test]
fn a_corrupt_tail_or_header_keeps_what_decodes() {
    let dir = TempDir::new("corrupt");
    let dedupe = open(&dir, &["echo"], 100);
    dedupe.record("echo", 1, None);
    dedupe.record("echo", 2, None);
    drop(dedupe);
    let path = log_path(dir.path(), "echo");
    // What a machine crash can leave behind: a zeroed block, then more bytes.
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(&[0; RECORD_LEN]).expect("zeros");
    file.write_all(&idlog::encode(3))
        .expect("record after the damage");
    drop(file);
    let dedupe = open(&dir, &["echo"], 100);
    assert_eq!(held(&dedupe, "echo", 0..=3), [1, 2]);
    drop(dedupe);

    std::fs::write(&path, b"not a duplicate window at all").expect("overwrite");
    let dedupe = open(&dir, &["echo"], 100);
    assert_eq!(held(&dedupe, "echo", 0..=3), Vec::<i64>::new());
    dedupe.record("echo", 9, None);
    drop(dedupe);
    let dedupe = open(&dir, &["echo"], 100);
    assert!(dedupe.contains("echo", 9));
}

#[test]
fn decoding_keeps_every_whole_record_before_the_damage_and_never_panics() {
    let mut bytes = MAGIC.to_vec();
    for id in [10, 20, 30] {
        bytes.extend_from_slice(&idlog::encode(id));
    }
    assert_eq!(idlog::decode(&bytes), (vec![10, 20, 30], None));
    assert_eq!(idlog::decode(&[]), (vec![], None));
    for cut in 1..bytes.len() {
        let (ids, damage) = idlog::decode(&bytes[..cut]);
        let whole = cut.saturating_sub(MAGIC.len()) / RECORD_LEN;
        assert_eq!(ids, [10, 20, 30][..whole], "cut at {cut}");
        if cut < MAGIC.len() {
            assert_eq!(damage, Some(Damage::Header));
        } else if !(cut - MAGIC.len()).is_multiple_of(RECORD_LEN) {
            assert!(matches!(damage, Some(Damage::Torn(_))), "cut at {cut}");
        }
    }
    let mut flipped = bytes.clone();
    flipped[MAGIC.len() + RECORD_LEN + 3] ^= 1;
    assert_eq!(idlog::decode(&flipped), (vec![10], Some(Damage::Record(1))));

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..300 {
        let mut garbage = MAGIC.to_vec();
        garbage.extend((0..len).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        }));
        let _ = idlog::decode(&garbage);
    }
}

#[test]
fn each_bot_has_its_own_window_and_file() {
    let dir = TempDir::new("per-bot");
    let dedupe = open(&dir, &["shop", "news"], 100);
    dedupe.record("shop", 5, None);
    dedupe.record("news", 6, None);
    assert!(dedupe.contains("shop", 5) && !dedupe.contains("news", 5));
    assert!(dedupe.contains("news", 6) && !dedupe.contains("shop", 6));
    // A bot this agent does not serve has no window at all.
    dedupe.record("other", 5, None);
    assert!(!dedupe.contains("other", 5));
    drop(dedupe);
    assert!(!log_path(dir.path(), "other").exists());

    let dedupe = open(&dir, &["shop", "news"], 100);
    assert!(dedupe.contains("shop", 5) && !dedupe.contains("news", 5));
    assert!(dedupe.contains("news", 6) && !dedupe.contains("shop", 6));
}

#[test]
fn two_agents_cannot_share_a_state_directory() {
    let dir = TempDir::new("locked");
    let first = open(&dir, &["echo"], 100);
    let error = Dedupe::open(Some(dir.path()), &["echo"], limits(100)).expect_err("locked");
    let text = error.to_string();
    assert!(
        text.contains("another relay-agent") && text.contains("--state-dir"),
        "{text}"
    );
    drop(first);
    open(&dir, &["echo"], 100);
}

#[test]
fn a_state_directory_that_cannot_be_created_is_named_in_the_error() {
    let dir = TempDir::new("not-a-dir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"").expect("write");
    let error = Dedupe::open(Some(&file.join("state")), &["echo"], Limits::default())
        .expect_err("a file is in the way");
    assert!(
        matches!(&error, AgentError::StateDir { path, .. } if path == &file.join("state")),
        "{error}"
    );
}

#[test]
fn live_answers_are_bounded_by_count_and_bytes_and_the_first_one_stays() {
    let dedupe = Dedupe::open(
        None,
        &["echo"],
        Limits {
            ids_per_bot: 100,
            live_answers: 2,
            live_answer_bytes: 1024,
        },
    )
    .expect("in memory");
    dedupe.record("echo", 1, Some(answer(b"one")));
    dedupe.record("echo", 1, Some(answer(b"one again")));
    assert_eq!(dedupe.live_answer("echo", 1), Some(answer(b"one")));
    dedupe.record("echo", 2, Some(answer(b"two")));
    dedupe.record("echo", 3, Some(answer(b"three")));
    assert_eq!(dedupe.live_answer("echo", 1), None, "over the count");
    assert_eq!(dedupe.live_answer("echo", 3), Some(answer(b"three")));
    assert_eq!(dedupe.live_answer("other", 3), None);

    // A large answer pushes out older ones to stay under the bytes bound...
    static LARGE: [u8; 850] = [b'x'; 850];
    dedupe.record("echo", 4, Some(answer(&LARGE)));
    assert_eq!(dedupe.live_answer("echo", 4), Some(answer(&LARGE)));
    assert_eq!(dedupe.live_answer("echo", 2), None);
    assert_eq!(dedupe.live_answer("echo", 3), None, "over the bytes");
    // ...and one larger than the whole bound is not kept, while its id still is.
    static HUGE: [u8; 2048] = [b'y'; 2048];
    dedupe.record("echo", 5, Some(answer(&HUGE)));
    assert_eq!(dedupe.live_answer("echo", 5), None);
    assert!(dedupe.contains("echo", 5));
    assert_eq!(dedupe.live_answer("echo", 4), Some(answer(&LARGE)));
}
