//! The one thread that writes. It takes a queued change, drains whatever else is queued, applies
//! the lot in one write transaction, commits it with one fsync, and only then answers each caller:
//! group commit, so a thousand concurrent appends cost one fsync rather than a thousand.

use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, StorageError, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::record::{self, DEAD, Fields, META, NEXT_SEQ, PENDING};
use super::{Counters, StoreError, StoredUpdate};

/// The most changes one transaction carries. Large enough that a burst of webhooks shares a
/// handful of fsyncs; small enough that the first caller of a batch does not wait long for the
/// last one's work.
pub(super) const MAX_BATCH_OPS: usize = 1024;

/// The most new-record bytes one transaction carries. Every record of a batch sits in memory and
/// in the transaction's dirty pages until the commit; with large bodies this, not the op count,
/// bounds that (at ~1 KiB per update, 1024 ops are far below it).
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Where a change's result goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One change the writer applies, with the channel its result goes back on.
pub(super) enum Op {
    /// Adds `record` to `bot`'s pending updates under the next seq.
    Append {
        bot: String,
        record: Vec<u8>,
        reply: Reply<u64>,
    },
    /// Removes a delivered update; true if it was there.
    Remove {
        bot: String,
        seq: u64,
        reply: Reply<bool>,
    },
    /// Counts a failed attempt and keeps its error.
    Fail {
        bot: String,
        seq: u64,
        error: String,
        reply: Reply<Option<StoredUpdate>>,
    },
    /// Moves a pending update to the dead letters; true if it was there.
    Bury {
        bot: String,
        seq: u64,
        reason: String,
        reply: Reply<bool>,
    },
    /// Moves a dead letter back to pending under a new seq.
    Replay {
        bot: String,
        seq: u64,
        reply: Reply<Option<StoredUpdate>>,
    },
    /// Deletes a dead letter; true if it was there.
    DropDead {
        bot: String,
        seq: u64,
        reply: Reply<bool>,
    },
    /// Removes those of `keys` (pending or dead) received before `cutoff_ms`.
    Expire {
        keys: Vec<(String, u64)>,
        cutoff_ms: u64,
        reply: Reply<Vec<StoredUpdate>>,
    },
}

/// What the store holds, as the writer counts it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    /// Record bytes in both tables.
    pub bytes: u64,
    /// Records in the pending table.
    pub pending: usize,
    /// Records in the dead table.
    pub dead: usize,
}

/// The writer thread's state. Only this thread changes the tables, so its tally is the truth;
/// the shared counters are copies published after each commit.
pub(super) struct Writer {
    /// The file; read transactions use it beside the writer.
    pub db: Arc<Database>,
    /// The changes to apply; closed when the last `Store` handle goes.
    pub ops: mpsc::Receiver<Op>,
    /// Where each commit's tally is published.
    pub counters: Arc<Counters>,
    /// What is committed.
    pub tally: Tally,
    /// Never handed out twice, even by a batch that failed: a failed commit may still have
    /// reached the disk.
    pub next_seq: u64,
    /// The byte cap appends are checked against.
    pub max_bytes: u64,
}

impl Writer {
    /// Serves batches until every sender (every `Store` handle) is gone.
    pub(super) fn run(mut self) {
        while let Some(first) = self.ops.blocking_recv() {
            self.batch(first);
        }
        tracing::debug!("store writer stopped");
    }

    fn batch(&mut self, first: Op) {
        // Begin before draining, so whatever arrives while a transaction is being set up (or
        // while another holds the write lock) joins this batch.
        let txn = self.db.begin_write();
        let ops = self.drain(first);
        let count = ops.len();
        let mut answers = Vec::with_capacity(count);
        let failure = match txn {
            Ok(txn) => self.apply(txn, ops, &mut answers).err(),
            Err(error) => {
                let failure =
                    StoreError::Database(format!("cannot begin a write transaction: {error}"));
                answers.extend(ops.into_iter().map(|op| op.refused(&failure)));
                Some(failure)
            }
        };
        if let Some(error) = &failure {
            tracing::error!(%error, ops = count, "store batch failed");
        }
        for answer in answers {
            answer.send(failure.as_ref());
        }
    }

    /// `first` and whatever else is queued, up to the batch caps.
    fn drain(&mut self, first: Op) -> Vec<Op> {
        let mut bytes = first.weight();
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
            let Ok(op) = self.ops.try_recv() else { break };
            bytes += op.weight();
            ops.push(op);
        }
        ops
    }

    /// Applies `ops` in `txn` and commits. Each op's own result lands in `answers`; an `Err` here
    /// is the batch's failure, which every op gets instead.
    fn apply(
        &mut self,
        mut txn: WriteTransaction,
        ops: Vec<Op>,
        answers: &mut Vec<Answer>,
    ) -> Result<(), StoreError> {
        let mut ops = ops.into_iter();
        let staged = match txn.set_durability(Durability::Immediate) {
            Ok(()) => stage(&txn, self, &mut ops, answers),
            Err(error) => Err(StoreError::Database(format!(
                "cannot ask for fsync: {error}"
            ))),
        };
        if let Err(failure) = &staged {
            answers.extend(ops.map(|op| op.refused(failure)));
        }
        let staged = staged?;
        if !staged.changed {
            // Every op was refused or found nothing: no fsync for an empty transaction (a full
            // store under Telegram's retries would otherwise sync for nothing).
            if let Err(error) = txn.abort() {
                tracing::warn!(%error, "cannot abort an empty store transaction");
            }
            return Ok(());
        }
        // Before the commit: a failed commit may still have reached the disk.
        self.next_seq = staged.next_seq;
        txn.commit()
            .map_err(|error| StoreError::Database(format!("commit failed: {error}")))?;
        self.tally = staged.tally;
        self.counters.publish(staged.tally);
        Ok(())
    }
}

/// A batch applied but not yet committed.
struct Staged {
    /// The tally once committed.
    tally: Tally,
    /// The next seq once committed.
    next_seq: u64,
    /// Whether any op wrote or removed anything.
    changed: bool,
}

/// Applies ops in order until one hits a storage error, then records the next seq.
fn stage(
    txn: &WriteTransaction,
    writer: &Writer,
    ops: &mut std::vec::IntoIter<Op>,
    answers: &mut Vec<Answer>,
) -> Result<Staged, StoreError> {
    let open_error = |error| StoreError::Database(format!("cannot open a table: {error}"));
    let mut batch = Batch {
        pending: txn.open_table(PENDING).map_err(open_error)?,
        dead: txn.open_table(DEAD).map_err(open_error)?,
        tally: writer.tally,
        next_seq: writer.next_seq,
        max_bytes: writer.max_bytes,
        changed: false,
    };
    for op in ops.by_ref() {
        let (answer, fatal) = batch.apply(op);
        answers.push(answer);
        if let Some(failure) = fatal {
            return Err(failure);
        }
    }
    if batch.next_seq != writer.next_seq {
        let mut meta = txn.open_table(META).map_err(open_error)?;
        meta.insert(NEXT_SEQ, batch.next_seq)
            .map_err(|error| StoreError::Database(format!("cannot keep the next seq: {error}")))?;
    }
    Ok(Staged {
        tally: batch.tally,
        next_seq: batch.next_seq,
        changed: batch.changed,
    })
}

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

type UpdateTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// One transaction's open tables and the tally as it stands inside it.
struct Batch<'t> {
    pending: UpdateTable<'t>,
    dead: UpdateTable<'t>,
    tally: Tally,
    next_seq: u64,
    max_bytes: u64,
    /// Whether anything was written or removed, so the transaction needs a commit.
    changed: bool,
}

impl<'t> Batch<'t> {
    /// Applies one op; the second value is set when the whole batch must fail.
    fn apply(&mut self, op: Op) -> (Answer, Option<StoreError>) {
        match op {
            Op::Append { bot, record, reply } => {
                let (result, fatal) = settle(self.append(&bot, &record));
                (Answer::Seq(reply, result), fatal)
            }
            Op::Remove { bot, seq, reply } => {
                let (result, fatal) = settle(self.take(Which::Pending, &bot, seq));
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
        let len = record.len() as u64;
        if held.saturating_add(len) > self.max_bytes {
            return Err(StoreError::Full {
                held,
                record: len,
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
            .map_err(|error| OpError::Refused(super::corrupt(bot, seq, &error)))
    }

    /// Writes `record` at `(bot, seq)`, keeping the tally in step.
    fn put(&mut self, which: Which, bot: &str, seq: u64, record: &[u8]) -> Result<(), OpError> {
        let (table, count) = self.table(which);
        let replaced = table
            .insert((bot, seq), record)?
            .map(|old| old.value().len());
        if replaced.is_none() {
            *count += 1;
        }
        let freed = replaced.unwrap_or(0) as u64;
        self.changed = true;
        self.tally.bytes = self.tally.bytes.saturating_sub(freed) + record.len() as u64;
        Ok(())
    }

    /// Removes `(bot, seq)`, keeping the tally in step; true if it was there.
    fn take(&mut self, which: Which, bot: &str, seq: u64) -> Result<bool, OpError> {
        let (table, count) = self.table(which);
        let Some(freed) = table.remove((bot, seq))?.map(|old| old.value().len()) else {
            return Ok(false);
        };
        *count = count.saturating_sub(1);
        self.changed = true;
        self.tally.bytes = self.tally.bytes.saturating_sub(freed as u64);
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

/// An applied op's result, held until the commit decides whether it stands.
enum Answer {
    Seq(Reply<u64>, Result<u64, StoreError>),
    Flag(Reply<bool>, Result<bool, StoreError>),
    Update(
        Reply<Option<StoredUpdate>>,
        Result<Option<StoredUpdate>, StoreError>,
    ),
    Updates(
        Reply<Vec<StoredUpdate>>,
        Result<Vec<StoredUpdate>, StoreError>,
    ),
}

impl Answer {
    /// Sends the op's own result, or the batch's `failure` in its place. A caller that gave up
    /// has dropped its receiver; there is no one left to tell, so a failed send is fine.
    fn send(self, failure: Option<&StoreError>) {
        fn pick<T>(
            own: Result<T, StoreError>,
            failure: Option<&StoreError>,
        ) -> Result<T, StoreError> {
            match failure {
                Some(error) => Err(error.clone()),
                None => own,
            }
        }
        match self {
            Self::Seq(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Flag(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Update(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Updates(reply, own) => drop(reply.send(pick(own, failure))),
        }
    }
}

impl Op {
    /// New-record bytes, for [`MAX_BATCH_BYTES`].
    fn weight(&self) -> usize {
        match self {
            Self::Append { record, .. } => record.len(),
            _ => 0,
        }
    }

    /// An answer of `error` for an op that was never applied.
    fn refused(self, error: &StoreError) -> Answer {
        let error = error.clone();
        match self {
            Self::Append { reply, .. } => Answer::Seq(reply, Err(error)),
            Self::Remove { reply, .. }
            | Self::Bury { reply, .. }
            | Self::DropDead { reply, .. } => Answer::Flag(reply, Err(error)),
            Self::Fail { reply, .. } | Self::Replay { reply, .. } => {
                Answer::Update(reply, Err(error))
            }
            Self::Expire { reply, .. } => Answer::Updates(reply, Err(error)),
        }
    }
}
