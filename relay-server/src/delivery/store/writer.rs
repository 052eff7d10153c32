//! The one thread that writes. It takes a queued change, drains whatever else is queued, applies
//! the lot in one write transaction, commits it with one fsync, and only then answers each caller:
//! group commit, so a thousand concurrent appends cost one fsync rather than a thousand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::mpsc;

use super::batch::Batch;
use super::error::StoreError;
use super::op::{Answer, Op, Tally};
use super::record::{DEAD, META, NEXT_SEQ, PENDING};

/// The most changes one transaction carries. Large enough that a burst of webhooks shares a
/// handful of fsyncs; small enough that the first caller of a batch does not wait long for the
/// last one's work.
pub(super) const MAX_BATCH_OPS: usize = 1024;

/// The most new-record bytes one transaction carries. Every record of a batch sits in memory and
/// in the transaction's dirty pages until the commit; with large bodies this, not the op count,
/// bounds that (at ~1 KiB per update, 1024 ops are far below it).
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

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

/// What the writer publishes after each commit, for [`super::Store::bytes`] and friends.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) bytes: AtomicU64,
    pub(super) pending: AtomicUsize,
    pub(super) dead: AtomicUsize,
    pub(super) commits: AtomicU64,
}

impl Counters {
    pub(super) fn publish(&self, tally: Tally) {
        self.bytes.store(tally.bytes, Ordering::Relaxed);
        self.pending.store(tally.pending, Ordering::Relaxed);
        self.dead.store(tally.dead, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }
}
