//! The one thread that writes. It takes a queued change, drains whatever else is queued, applies
//! the lot in one write transaction, commits it with one fsync, and only then answers each caller:
//! group commit, so a thousand concurrent appends cost one fsync rather than a thousand.
//!
//! After a failed write (a full disk, an I/O error) redb refuses every later transaction until
//! the file is closed, so the writer closes it, refuses every change at once, and reopens it
//! with backoff until a write succeeds again: the store recovers by itself when space returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::batch::Batch;
use super::error::StoreError;
use super::health::{HealthCell, StoreHealth};
use super::op::{Answer, Op, Tally};
use super::read;
use super::record::{DEAD, META, NEXT_SEQ, PENDING};

/// The most changes one transaction carries. Large enough that a burst of webhooks shares a
/// handful of fsyncs; small enough that the first caller of a batch does not wait long for the
/// last one's work.
pub(super) const MAX_BATCH_OPS: usize = 1024;

/// The most new-record bytes one transaction carries. Every record of a batch sits in memory and
/// in the transaction's dirty pages until the commit; with large bodies this, not the op count,
/// bounds that (at ~1 KiB per update, 1024 ops are far below it).
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The first reopen after a failed write comes this soon: a disk that was full for a moment
/// (a log rotated, a file deleted) works again within a second.
const FIRST_REOPEN_PAUSE: Duration = Duration::from_millis(500);

/// Reopens back off, doubling, up to this. A reopen checks the whole file (redb's integrity
/// check after an unclean close), which on a large store is seconds of reading; 16 s keeps that
/// a small share of the disk while Telegram, which retries every minute or two once it has
/// backed off, loses no time to it.
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(16);

/// A store that fails again within this long of recovering waits twice as long before the next
/// reopen: on a full disk a reopen can succeed (its write fits in room inside the file) and the
/// next append fail, and this keeps that cycle, and its two log lines, to one every 16 s.
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// While failing, how often the writer looks for changes to refuse between reopens: callers get
/// their 503 this soon rather than waiting for the next reopen.
const REFUSE_POLL: Duration = Duration::from_millis(20);

/// The open database, shared with readers; `None` while the writer is reopening it.
pub(super) type DbSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// The database in `slot`, if it is open.
pub(super) fn current(slot: &DbSlot) -> Option<Arc<Database>> {
    slot.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Takes the database out of `slot`, to close it.
pub(super) fn take(slot: &DbSlot) -> Option<Arc<Database>> {
    slot.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// The writer thread's state. Only this thread changes the tables, so its tally is the truth;
/// the shared counters are copies published after each commit.
pub(super) struct Writer {
    /// The file; read transactions use it beside the writer.
    pub db: DbSlot,
    /// Where the file is, to reopen it.
    pub path: PathBuf,
    /// The changes to apply; closed when the last `Store` handle goes.
    pub ops: mpsc::Receiver<Op>,
    /// Where each commit's tally is published.
    pub counters: Arc<Counters>,
    /// Whether writes work, for `/healthz` and `stats`.
    pub health: Arc<HealthCell>,
    /// What is committed.
    pub tally: Tally,
    /// Never handed out twice, even by a batch that failed: a failed commit may still have
    /// reached the disk.
    pub next_seq: u64,
    /// The byte cap appends are checked against.
    pub max_bytes: u64,
    /// Pending keys to remove once the store works again: appends of a failed batch (refused to
    /// their callers, so they must not be delivered if the commit reached the disk after all)
    /// and removals of delivered updates that could not be made.
    pub undo: Vec<(String, u64)>,
}

impl Writer {
    /// Serves batches until every sender (every `Store` handle) is gone.
    pub(super) fn run(mut self) {
        let mut pause = FIRST_REOPEN_PAUSE;
        let mut recovered_at: Option<Instant> = None;
        while let Some(first) = self.ops.blocking_recv() {
            let Err(failure) = self.batch(first) else {
                continue;
            };
            // Failing again soon after recovering (a disk with a little room inside the file,
            // none outside) is the same failure going on: the pause keeps growing.
            pause = match recovered_at {
                Some(at) if at.elapsed() < HEALTHY_RESET => {
                    pause.saturating_mul(2).min(MAX_REOPEN_PAUSE)
                }
                _ => FIRST_REOPEN_PAUSE,
            };
            self.close(&failure);
            if !self.recover(&failure, &mut pause) {
                break;
            }
            recovered_at = Some(Instant::now());
        }
        tracing::debug!("store writer stopped");
    }

    /// One batch; `Err` is the failure every op of it got.
    fn batch(&mut self, first: Op) -> Result<(), StoreError> {
        let Some(db) = current(&self.db) else {
            let failure = StoreError::Failing("the store file is not open".into());
            self.refuse(first, &failure).send(None);
            return Err(failure);
        };
        // Begin before draining, so whatever arrives while a transaction is being set up (or
        // while another holds the write lock) joins this batch.
        let txn = db.begin_write();
        let ops = self.drain(first);
        let count = ops.len();
        let mut answers = Vec::with_capacity(count);
        let mut undo = Vec::new();
        let failure = match txn {
            Ok(txn) => self.apply(txn, ops, &mut answers, &mut undo).err(),
            Err(error) => {
                let failure =
                    StoreError::Database(format!("cannot begin a write transaction: {error}"));
                answers.extend(ops.into_iter().map(|op| self.refuse(op, &failure)));
                Some(failure)
            }
        };
        if failure.is_some() {
            self.undo.append(&mut undo);
        }
        // Callers of a failed batch hear that the store is failing: it is logged once, here,
        // not once per webhook.
        let refusal = failure
            .as_ref()
            .map(|failure| StoreError::Failing(failure.to_string()));
        for answer in answers {
            answer.send(refusal.as_ref());
        }
        failure.map_or(Ok(()), |failure| {
            tracing::debug!(%failure, ops = count, "store batch failed");
            Err(failure)
        })
    }

    /// Answers `op` with `error` unapplied, keeping a removal it asked for in [`Writer::undo`].
    fn refuse(&mut self, op: Op, error: &StoreError) -> Answer {
        if let Some(key) = op.removal() {
            self.undo.push(key);
        }
        op.refused(error)
    }

    /// After a failed write: the file is closed (redb refuses every transaction once a write
    /// has failed) and the failure logged, once.
    fn close(&mut self, failure: &StoreError) {
        let old = take(&self.db);
        // A read still running holds the file; it closes when that read ends, and reopens wait.
        if let Some(Ok(db)) = old.map(Arc::try_unwrap)
            && let Err(error) = db.close()
        {
            tracing::debug!(%error, "closing the failed store file");
        }
        tracing::error!(
            %failure,
            path = %self.path.display(),
            "store write failed: refusing changes (webhooks get 503, Telegram retries) and \
             reopening the file until a write succeeds"
        );
        self.health.failing(failure.to_string());
    }

    /// Refuses every change and reopens the file with backoff until a write succeeds; false if
    /// every `Store` handle went meanwhile.
    fn recover(&mut self, failure: &StoreError, pause: &mut Duration) -> bool {
        let started = Instant::now();
        let mut refusal = StoreError::Failing(failure.to_string());
        let mut next = started + *pause;
        loop {
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                match self.ops.try_recv() {
                    Ok(op) => self.refuse(op, &refusal).send(None),
                    Err(TryRecvError::Empty) => std::thread::sleep((next - now).min(REFUSE_POLL)),
                    Err(TryRecvError::Disconnected) => return false,
                }
            }
            match self.reopen() {
                Ok(()) => {
                    let attempts = match self.health.healthy() {
                        StoreHealth::Failing {
                            reopen_attempts, ..
                        } => reopen_attempts + 1,
                        StoreHealth::Healthy => 1,
                    };
                    tracing::warn!(
                        failed_for = ?started.elapsed(),
                        attempts,
                        "store recovered: writes succeed again"
                    );
                    return true;
                }
                Err(error) => {
                    tracing::debug!(%error, "store reopen failed; will try again");
                    refusal = StoreError::Failing(error.clone());
                    self.health.reopen_failed(error);
                    *pause = pause.saturating_mul(2).min(MAX_REOPEN_PAUSE);
                    next = Instant::now() + *pause;
                }
            }
        }
    }

    /// Opens the file again and proves it with a write that must reach the disk: the removals
    /// failed batches left undone, and the next seq. Then counts what the file holds, since a
    /// commit that failed may have reached it after all.
    fn reopen(&mut self) -> Result<(), String> {
        let db = super::open::open_db(&self.path).map_err(|e| format!("cannot reopen: {e}"))?;
        let write = |db: &Database| -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut pending = txn.open_table(PENDING)?;
                for (bot, seq) in &self.undo {
                    pending.remove((bot.as_str(), *seq))?;
                }
                txn.open_table(META)?.insert(NEXT_SEQ, self.next_seq)?;
            }
            txn.commit()?;
            Ok(())
        };
        write(&db).map_err(|e| format!("write after reopening failed: {e}"))?;
        let (tally, next_seq) = read::count(&db).map_err(|e| e.to_string())?;
        self.undo.clear();
        self.tally = tally;
        self.next_seq = self.next_seq.max(next_seq);
        self.counters.publish(tally);
        *self
            .db
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(db));
        Ok(())
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
        undo: &mut Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        let mut ops = ops.into_iter();
        let staged = match txn.set_durability(Durability::Immediate) {
            Ok(()) => stage(&txn, self, &mut ops, answers, undo),
            Err(error) => Err(StoreError::Database(format!(
                "cannot ask for fsync: {error}"
            ))),
        };
        if let Err(failure) = &staged {
            for op in ops {
                undo.extend(op.removal());
                answers.push(op.refused(failure));
            }
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
    undo: &mut Vec<(String, u64)>,
) -> Result<Staged, StoreError> {
    let open_error = |error| StoreError::Database(format!("cannot open a table: {error}"));
    let mut batch = Batch {
        pending: txn.open_table(PENDING).map_err(open_error)?,
        dead: txn.open_table(DEAD).map_err(open_error)?,
        tally: writer.tally,
        next_seq: writer.next_seq,
        max_bytes: writer.max_bytes,
        changed: false,
        undo: Vec::new(),
    };
    for op in ops.by_ref() {
        let (answer, fatal) = batch.apply(op);
        answers.push(answer);
        if let Some(failure) = fatal {
            undo.append(&mut batch.undo);
            return Err(failure);
        }
    }
    undo.append(&mut batch.undo);
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
    /// Shows `tally` after a commit.
    pub(super) fn publish(&self, tally: Tally) {
        self.show(tally);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Shows `tally`.
    pub(super) fn show(&self, tally: Tally) {
        self.bytes.store(tally.bytes, Ordering::Relaxed);
        self.pending.store(tally.pending, Ordering::Relaxed);
        self.dead.store(tally.dead, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
