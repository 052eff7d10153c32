//! One write transaction: the ops of a batch applied to the open tables, each answered with its
//! own result, and the one failure that fails them all.

use redb::{ReadableTable, StorageError, Table};

use super::cost;
use super::error::StoreError;
use super::op::{Answer, Op, Tally};
use super::record::StoredUpdate;
use super::record::{self, Fields};

/// Why one op did not complete.
enum OpError {
    /// This op alone is refused (full, unreadable record); the batch goes on.
    Refused(StoreError),
    /// The transaction is in an unknown state; the whole batch fails.
    Storage(StorageError),
}

impl From<StorageError> for OpError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        Self::Refused(error)
    }
}

/// Which update table.
#[derive(Clone, Copy)]
enum Which {
    Pending,
    Dead,
}

pub(super) type UpdateTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// One transaction's open tables and the tally as it stands inside it.
pub(super) struct Batch<'t> {
    pub(super) pending: UpdateTable<'t>,
    pub(super) dead: UpdateTable<'t>,
    pub(super) tally: Tally,
    pub(super) next_seq: u64,
    pub(super) max_bytes: u64,
    /// Whether anything was written or removed, so the transaction needs a commit.
    pub(super) changed: bool,
    /// Pending keys that must not stay if this batch fails: the appends it made (their callers
    /// are refused, though a failed commit may still have reached the disk) and the removals
    /// it was asked for (delivered updates, to remove once the store works again).
    pub(super) undo: Vec<(String, u64)>,
}

impl<'t> Batch<'t> {
    /// Applies one op; the second value is set when the whole batch must fail.
    pub(super) fn apply(&mut self, op: Op) -> (Answer, Option<StoreError>) {
        match op {
            Op::Append { bot, record, reply } => {
                let (result, fatal) = settle(self.append(&bot, &record));
                if let Ok(seq) = result {
                    self.undo.push((bot, seq));
                }
                (Answer::Seq(reply, result), fatal)
            }
            Op::Remove { bot, seq, reply } => {
                let (result, fatal) = settle(self.take(Which::Pending, &bot, seq));
                self.undo.push((bot, seq));
                (Answer::Flag(reply, result), fatal)
            }
            Op::Fail {
                bot,
                seq,
                error,
                reply,
            } => {
                let (result, fatal) = settle(self.fail(bot, seq, &error));
                (Answer::Update(reply, result), fatal)
            }
            Op::Bury {
                bot,
                seq,
                reason,
                reply,
            } => {
                let (result, fatal) = settle(self.bury(&bot, seq, &reason));
                (Answer::Flag(reply, result), fatal)
            }
            Op::Replay { bot, seq, reply } => {
                let (result, fatal) = settle(self.replay(bot, seq));
                (Answer::Update(reply, result), fatal)
            }
            Op::DropDead { bot, seq, reply } => {
                let (result, fatal) = settle(self.take(Which::Dead, &bot, seq));
                (Answer::Flag(reply, result), fatal)
            }
            Op::Expire {
                keys,
                cutoff_ms,
                reply,
            } => {
                let (result, fatal) = settle(self.expire(keys, cutoff_ms));
                (Answer::Updates(reply, result), fatal)
            }
        }
    }

    fn append(&mut self, bot: &str, record: &[u8]) -> Result<u64, OpError> {
        let held = self.tally.bytes;
        let cost = cost::of_record(record);
        if held.saturating_add(cost) > self.max_bytes {
            return Err(StoreError::Full {
                held,
                record: cost,
                max: self.max_bytes,
            }
            .into());
        }
        let seq = self.take_seq()?;
        self.put(Which::Pending, bot, seq, record)?;
        Ok(seq)
    }

    fn fail(
        &mut self,
        bot: String,
        seq: u64,
        error: &str,
    ) -> Result<Option<StoredUpdate>, OpError> {
        let Some(mut fields) = self.read(Which::Pending, &bot, seq)? else {
            return Ok(None);
        };
        fields.attempts = fields.attempts.saturating_add(1);
        fields.last_error = Some(record::clip(error));
        self.put(Which::Pending, &bot, seq, &record::encode(&fields)?)?;
        Ok(Some(fields.into_update(bot, seq)))
    }

    fn bury(&mut self, bot: &str, seq: u64, reason: &str) -> Result<bool, OpError> {
        let Some(mut fields) = self.read(Which::Pending, bot, seq)? else {
            return Ok(false);
        };
        fields.last_error = Some(record::clip(reason));
        let record = record::encode(&fields)?;
        self.take(Which::Pending, bot, seq)?;
        self.put(Which::Dead, bot, seq, &record)?;
        Ok(true)
    }

    fn replay(&mut self, bot: String, seq: u64) -> Result<Option<StoredUpdate>, OpError> {
        let Some(mut fields) = self.read(Which::Dead, &bot, seq)? else {
            return Ok(None);
        };
        fields.attempts = 0;
        fields.last_error = None;
        let record = record::encode(&fields)?;
        let new_seq = self.take_seq()?;
        self.take(Which::Dead, &bot, seq)?;
        self.put(Which::Pending, &bot, new_seq, &record)?;
        Ok(Some(fields.into_update(bot, new_seq)))
    }

    fn expire(
        &mut self,
        keys: Vec<(String, u64)>,
        cutoff_ms: u64,
    ) -> Result<Vec<StoredUpdate>, OpError> {
        let mut expired = Vec::new();
        for (bot, seq) in keys {
            // The scan that found the key ran before this batch: the update may have been
            // delivered, buried (same key, other table) or replayed (new key) since.
            for which in [Which::Pending, Which::Dead] {
                match self.read(which, &bot, seq) {
                    Ok(None) => continue,
                    Ok(Some(fields)) => {
                        if fields.received_at_ms < cutoff_ms {
                            self.take(which, &bot, seq)?;
                            expired.push(fields.into_update(bot, seq));
                        }
                    }
                    // Logged where found; an unreadable record is left for someone to look at.
                    Err(OpError::Refused(_)) => {}
                    Err(storage) => return Err(storage),
                }
                break;
            }
        }
        Ok(expired)
    }

    fn take_seq(&mut self) -> Result<u64, OpError> {
        let seq = self.next_seq;
        self.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Database("no seq numbers left".into()))?;
        Ok(seq)
    }

    fn table(&mut self, which: Which) -> (&mut UpdateTable<'t>, &mut usize) {
        match which {
            Which::Pending => (&mut self.pending, &mut self.tally.pending),
            Which::Dead => (&mut self.dead, &mut self.tally.dead),
        }
    }

    /// The decoded record at `(bot, seq)`; one that does not decode refuses the op.
    fn read(&self, which: Which, bot: &str, seq: u64) -> Result<Option<Fields>, OpError> {
        let table = match which {
            Which::Pending => &self.pending,
            Which::Dead => &self.dead,
        };
        let Some(guard) = table.get((bot, seq))? else {
            return Ok(None);
        };
        record::decode(guard.value())
            .map(Some)
            .map_err(|error| OpError::Refused(super::error::corrupt(bot, seq, &error)))
    }

    /// Writes `record` at `(bot, seq)`, keeping the tally in step.
    fn put(&mut self, which: Which, bot: &str, seq: u64, record: &[u8]) -> Result<(), OpError> {
        let (table, count) = self.table(which);
        let replaced = table
            .insert((bot, seq), record)?
            .map(|old| cost::of_record(old.value()));
        if replaced.is_none() {
            *count += 1;
        }
        let freed = replaced.unwrap_or(0);
        self.changed = true;
        self.tally.bytes = self.tally.bytes.saturating_sub(freed) + cost::of_record(record);
        Ok(())
    }

    /// Removes `(bot, seq)`, keeping the tally in step; true if it was there.
    fn take(&mut self, which: Which, bot: &str, seq: u64) -> Result<bool, OpError> {
        let (table, count) = self.table(which);
        let Some(freed) = table
            .remove((bot, seq))?
            .map(|old| cost::of_record(old.value()))
        else {
            return Ok(false);
        };
        *count = count.saturating_sub(1);
        self.changed = true;
        self.tally.bytes = self.tally.bytes.saturating_sub(freed);
        Ok(true)
    }
}

/// An op's own result, and the batch's failure if the op hit a storage error.
fn settle<T>(outcome: Result<T, OpError>) -> (Result<T, StoreError>, Option<StoreError>) {
    match outcome {
        Ok(value) => (Ok(value), None),
        Err(OpError::Refused(error)) => (Err(error), None),
        Err(OpError::Storage(error)) => {
            let failure = StoreError::Database(format!("write failed: {error}"));
            (Err(failure.clone()), Some(failure))
        }
    }
}
