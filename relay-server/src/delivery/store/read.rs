//! Reads that need no writer: loading the store on open, listing dead letters, and finding the
//! updates that retention is about to drop. Each runs in one read transaction, off the writer's
//! thread, so a long scan never holds up a commit.

use std::collections::BinaryHeap;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::cost;
use super::error::StoreError;
use super::op::Tally;
use super::record::StoredUpdate;
use super::record::{self, DEAD, META, NEXT_SEQ, PENDING};

type Key = (&'static str, u64);

/// Everything `open` learns from the file.
pub(super) struct Loaded {
    /// The pending updates that decode, by seq.
    pub pending: Vec<StoredUpdate>,
    /// Every record, readable or not: they all take room (charged as [`cost::of_record`]).
    pub tally: Tally,
    /// The first seq no record and no earlier run has used.
    pub next_seq: u64,
    /// Records that do not decode.
    pub corrupt: usize,
}

/// Reads the whole store: pending updates to return, dead ones to count, the next seq.
pub(super) fn load(db: &Database) -> Result<Loaded, StoreError> {
    let txn = db.begin_read().map_err(read_error)?;
    let mut loaded = Loaded {
        pending: Vec::new(),
        tally: Tally::default(),
        next_seq: 1,
        corrupt: 0,
    };
    for (definition, dead) in [(PENDING, false), (DEAD, true)] {
        let table = open(&txn, definition)?;
        for entry in table.iter().map_err(read_error)? {
            let (key, value) = entry.map_err(read_error)?;
            let (bot, seq) = key.value();
            let bytes = value.value();
            loaded.tally.bytes += cost::of_record(bytes);
            loaded.next_seq = loaded.next_seq.max(seq.saturating_add(1));
            if dead {
                loaded.tally.dead += 1;
            } else {
                loaded.tally.pending += 1;
            }
            // Dead letters are decoded only to be counted if they cannot be: the listing would
            // skip them later anyway.
            match record::decode(bytes) {
                Ok(fields) if !dead => loaded.pending.push(fields.into_update(bot.to_owned(), seq)),
                Ok(_) => {}
                Err(error) => {
                    super::error::corrupt(bot, seq, &error);
                    loaded.corrupt += 1;
                }
            }
        }
    }
    let meta = txn.open_table(META).map_err(read_error)?;
    if let Some(stored) = meta.get(NEXT_SEQ).map_err(read_error)? {
        loaded.next_seq = loaded.next_seq.max(stored.value());
    }
    loaded.pending.sort_unstable_by_key(|update| update.seq);
    Ok(loaded)
}

/// What the file holds, counted without decoding a record: the tally and the next seq, for the
/// writer once it has reopened the file (a commit that failed may still have reached the disk).
pub(super) fn count(db: &Database) -> Result<(Tally, u64), StoreError> {
    let txn = db.begin_read().map_err(read_error)?;
    let mut tally = Tally::default();
    let mut next_seq = 1;
    for (definition, dead) in [(PENDING, false), (DEAD, true)] {
        let table = open(&txn, definition)?;
        for entry in table.iter().map_err(read_error)? {
            let (key, value) = entry.map_err(read_error)?;
            tally.bytes += cost::of_record(value.value());
            next_seq = key.value().1.saturating_add(1).max(next_seq);
            if dead {
                tally.dead += 1;
            } else {
                tally.pending += 1;
            }
        }
    }
    let meta = txn.open_table(META).map_err(read_error)?;
    if let Some(stored) = meta.get(NEXT_SEQ).map_err(read_error)? {
        next_seq = next_seq.max(stored.value());
    }
    Ok((tally, next_seq))
}

/// Up to `limit` dead letters, of `bot` or of every bot, oldest (lowest seq) first. Records that
/// do not decode are logged and left out.
pub(super) fn dead_letters(
    db: &Database,
    bot: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredUpdate>, StoreError> {
    let txn = db.begin_read().map_err(read_error)?;
    let table = open(&txn, DEAD)?;
    let mut letters = Vec::new();
    if let Some(bot) = bot {
        // One bot's keys are one range, already in seq order.
        for entry in table
            .range((bot, 0)..=(bot, u64::MAX))
            .map_err(read_error)?
        {
            if letters.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(read_error)?;
            push_decoded(&mut letters, bot, value.value(), key.value().1);
        }
        return Ok(letters);
    }
    // Keys sort by bot first; the oldest across bots come from keeping the `limit` lowest seqs
    // (a max-heap whose top is the one to evict), without decoding anything else.
    let mut lowest: BinaryHeap<(u64, String)> = BinaryHeap::new();
    for entry in table.iter().map_err(read_error)? {
        let (key, _) = entry.map_err(read_error)?;
        let (bot, seq) = key.value();
        if lowest.len() < limit {
            lowest.push((seq, bot.to_owned()));
        } else if lowest.peek().is_some_and(|(top, _)| seq < *top) {
            lowest.pop();
            lowest.push((seq, bot.to_owned()));
        }
    }
    for (seq, bot) in lowest.into_sorted_vec() {
        if let Some(value) = table.get((bot.as_str(), seq)).map_err(read_error)? {
            push_decoded(&mut letters, &bot, value.value(), seq);
        }
    }
    Ok(letters)
}

/// The keys, in both tables, of records received before `cutoff_ms`.
pub(super) fn older_than(db: &Database, cutoff_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
    let txn = db.begin_read().map_err(read_error)?;
    let mut keys = Vec::new();
    for definition in [PENDING, DEAD] {
        let table = open(&txn, definition)?;
        for entry in table.iter().map_err(read_error)? {
            let (key, value) = entry.map_err(read_error)?;
            let (bot, seq) = key.value();
            // An unreadable record has no age to go by; it stays (and was logged on open).
            if record::decode(value.value()).is_ok_and(|fields| fields.received_at_ms < cutoff_ms) {
                keys.push((bot.to_owned(), seq));
            }
        }
    }
    Ok(keys)
}

fn open(
    txn: &redb::ReadTransaction,
    definition: TableDefinition<Key, &'static [u8]>,
) -> Result<ReadOnlyTable<Key, &'static [u8]>, StoreError> {
    txn.open_table(definition).map_err(read_error)
}

fn push_decoded(letters: &mut Vec<StoredUpdate>, bot: &str, bytes: &[u8], seq: u64) {
    match record::decode(bytes) {
        Ok(fields) => letters.push(fields.into_update(bot.to_owned(), seq)),
        Err(error) => drop(super::error::corrupt(bot, seq, &error)),
    }
}

fn read_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("cannot read the store: {error}"))
}
