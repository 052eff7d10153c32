//! The durable store of updates the relay has answered 200 for: pending ones until delivered,
//! dead letters until replayed, dropped or expired. What it holds survives crashes and restarts.
//!
//! One redb file. Every change goes through a single writer thread that commits many changes in
//! one fsynced transaction (group commit), and answers a caller only once its change is on disk.
//! Reads (the listing, the retention scan) use read transactions beside it.
//!
//! # Layout
//! Each module imports only modules listed below it.
//! - `writer`: the writer thread, its group commit, and its recovery after a failed write.
//! - `open`: opening the file, moving a damaged one aside.
//! - `batch`: one write transaction applying a batch of changes.
//! - `read`: loading on open, listings and scans.
//! - `op`: the changes the writer takes, and the tally of what the store holds.
//! - `cost`: what a stored update costs in memory, and the limits on what the store holds.
//! - `record`: an update as stored, the tables, their keys, and the bytes of one record.
//! - `health`: whether writes work, for `/healthz` and `stats`.
//! - `error`: why an operation failed.

mod batch;
mod cost;
mod error;
mod health;
mod op;
mod open;
mod read;
mod record;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub(crate) use cost::StoreLimits;
pub(crate) use error::StoreError;
pub(crate) use health::StoreHealth;
pub(crate) use record::{MAX_RECORD_LEN, NewUpdate, StoredUpdate, clip};

use health::HealthCell;
use op::{Op, Reply};
use record::Fields;
use writer::{Counters, DbSlot, Writer};

/// Changes that may wait for the writer. Twice a batch, so that a full batch can queue while the
/// previous one commits. The memory behind it is bounded where updates come from (the webhook's
/// connection and body limits); when it is full, callers wait (within [`OP_TIMEOUT`]).
const CHANNEL_CAPACITY: usize = 2 * writer::MAX_BATCH_OPS;

/// How long a caller waits for its change (queueing, commit and fsync) or a read. A healthy
/// commit takes milliseconds and a scan of a full store about a second; past this the disk is
/// failing. A webhook then still answers 503 well inside Telegram's 60 s, and Telegram retries:
/// if the change did reach the disk after all, the agent's duplicate check absorbs the copy.
const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// The most dead letters one listing returns, whatever the caller asks: each carries its body.
const MAX_LISTING: usize = 10_000;

/// Expired keys per writer op, so a large sweep shares the writer with appends rather than
/// holding it for one long transaction.
const EXPIRE_CHUNK: usize = 1024;

/// The writer thread's name, as it shows in `top -H` and panic messages.
const WRITER_THREAD: &str = "relay-store-writer";

/// The store; cheap to clone. When the last handle goes, the writer finishes the batch in hand
/// and the file is closed before the drop returns.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DbSlot,
    health: Arc<HealthCell>,
    /// Where a damaged file found on open was moved.
    moved_aside: Option<PathBuf>,
    /// `None` only while dropping, to tell the writer to stop.
    ops: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    max_record_bytes: usize,
    corrupt: usize,
    path: PathBuf,
}

impl Store {
    /// Opens the database at `path`, creating it (and its directory) if needed, and starts the
    /// writer. Returns the store and every pending update that decodes, oldest (lowest seq) first.
    ///
    /// Blocking: it reads the whole file. A record that does not decode is logged, counted in
    /// [`Store::corrupt_count`] and left in place; it never stops the relay from starting. A
    /// file that fails redb's integrity check (or is not a store at all) is moved aside, loudly,
    /// and the store starts empty ([`Store::moved_aside`]); a file that cannot be opened for
    /// any other reason (permissions, another relay has it open) is an error.
    pub(crate) fn open(
        path: &Path,
        limits: StoreLimits,
    ) -> Result<(Store, Vec<StoredUpdate>), StoreError> {
        let (db, moved_aside) = open::open_at_start(path)?;
        let loaded = read::load(&db)?;
        if loaded.corrupt > 0 {
            tracing::error!(
                corrupt = loaded.corrupt,
                path = %path.display(),
                "store holds records that do not decode; they are kept but never delivered"
            );
        }
        let counters = Arc::new(Counters::default());
        counters.show(loaded.tally);
        let db: DbSlot = Arc::new(RwLock::new(Some(Arc::new(db))));
        let health = Arc::new(HealthCell::default());
        let (ops, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let writer = Writer {
            db: db.clone(),
            path: path.to_owned(),
            ops: receiver,
            counters: counters.clone(),
            health: health.clone(),
            tally: loaded.tally,
            next_seq: loaded.next_seq,
            max_bytes: limits.max_bytes,
            undo: Vec::new(),
        };
        let writer = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer.run())
            .map_err(|e| {
                StoreError::Database(format!(
                    "cannot start the writer for {}: {e}",
                    path.display()
                ))
            })?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                health,
                moved_aside,
                ops: Some(ops),
                writer: Some(writer),
                counters,
                max_record_bytes: limits.max_record_bytes.min(MAX_RECORD_LEN),
                corrupt: loaded.corrupt,
                path: path.to_owned(),
            }),
        };
        Ok((store, loaded.pending))
    }

    /// Stores `update` and returns it numbered. Returns only once it is committed and fsynced,
    /// together with whatever else was queued at the time (group commit).
    ///
    /// [`StoreError::Full`] when it would take the store past `max_bytes` (checked by the writer,
    /// so concurrent appends cannot overshoot); [`StoreError::TooLarge`] when it is over
    /// `max_record_bytes`.
    pub(crate) async fn append(&self, update: NewUpdate) -> Result<StoredUpdate, StoreError> {
        let NewUpdate {
            bot,
            queue,
            update_id,
            received_at_ms,
            method,
            path,
            query,
            headers,
            body,
        } = update;
        let fields = Fields {
            queue,
            update_id,
            received_at_ms,
            attempts: 0,
            last_error: None,
            method,
            path,
            query,
            headers,
            body,
        };
        // Encoded here, on the caller's task, so the one writer thread only copies bytes in.
        let record = record::encode(&fields)?;
        let max = self.inner.max_record_bytes;
        if record.len() > max {
            return Err(StoreError::TooLarge {
                len: record.len(),
                max,
            });
        }
        let seq = self
            .call(|reply| Op::Append {
                bot: bot.clone(),
                record,
                reply,
            })
            .await?;
        Ok(fields.into_update(bot, seq))
    }

    /// Removes a delivered update, durably. Removing one that is not there (retention dropped it
    /// while it was in flight) is not an error.
    pub(crate) async fn remove(&self, bot: &str, seq: u64) -> Result<(), StoreError> {
        let bot = bot.to_owned();
        self.call(|reply| Op::Remove { bot, seq, reply }).await?;
        Ok(())
    }

    /// Records a failed attempt: `attempts` + 1 and the error text (clipped to
    /// [`record::MAX_ERROR_LEN`]). Returns the updated record, or `None` if it is no longer pending.
    pub(crate) async fn record_failure(
        &self,
        bot: &str,
        seq: u64,
        error: &str,
    ) -> Result<Option<StoredUpdate>, StoreError> {
        let (bot, error) = (bot.to_owned(), error.to_owned());
        self.call(|reply| Op::Fail {
            bot,
            seq,
            error,
            reply,
        })
        .await
    }

    /// Moves a pending update to the dead letters, with `reason` as its `last_error`; `attempts`
    /// stays as [`Store::record_failure`] left it. Burying one that is no longer pending is not
    /// an error.
    pub(crate) async fn bury(&self, bot: &str, seq: u64, reason: &str) -> Result<(), StoreError> {
        let (bot, reason) = (bot.to_owned(), reason.to_owned());
        let found = self
            .call(|reply| Op::Bury {
                bot: bot.clone(),
                seq,
                reason,
                reply,
            })
            .await?;
        if !found {
            tracing::debug!(bot, seq, "nothing to bury: the update is no longer pending");
        }
        Ok(())
    }

    /// Up to `limit` dead letters (never more than 10 000), of `bot` or of all bots, oldest first.
    pub(crate) async fn dead_letters(
        &self,
        bot: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let bot = bot.map(str::to_owned);
        let limit = limit.min(MAX_LISTING);
        self.read(move |db| read::dead_letters(db, bot.as_deref(), limit))
            .await
    }

    /// Moves a dead letter back to pending with no attempts, no error and a new seq, so that it
    /// queues behind what its chat already has. Returns it, or `None` if there is no such dead
    /// letter. Its `received_at_ms` stays, so retention still counts from its first arrival.
    pub(crate) async fn replay(
        &self,
        bot: &str,
        seq: u64,
    ) -> Result<Option<StoredUpdate>, StoreError> {
        let bot = bot.to_owned();
        self.call(|reply| Op::Replay { bot, seq, reply }).await
    }

    /// Deletes a dead letter for good; true if it existed.
    pub(crate) async fn drop_dead(&self, bot: &str, seq: u64) -> Result<bool, StoreError> {
        let bot = bot.to_owned();
        self.call(|reply| Op::DropDead { bot, seq, reply }).await
    }

    /// Retention: removes pending updates and dead letters received before `cutoff_ms` and
    /// returns them, for the caller to log and count.
    ///
    /// Finds them with a read scan that decodes every record (off the writer's thread), then has
    /// the writer remove them in chunks; cost grows with what is held, so call it every minute or
    /// so, not per update.
    pub(crate) async fn expire(&self, cutoff_ms: u64) -> Result<Vec<StoredUpdate>, StoreError> {
        let keys = self.read(move |db| read::older_than(db, cutoff_ms)).await?;
        let mut expired = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(EXPIRE_CHUNK) {
            let keys = chunk.to_vec();
            expired.extend(
                self.call(|reply| Op::Expire {
                    keys,
                    cutoff_ms,
                    reply,
                })
                .await?,
            );
        }
        Ok(expired)
    }

    /// What the records held cost, pending and dead together, as of the last commit: their
    /// bytes plus each one's memory overhead ([`cost::UPDATE_OVERHEAD`],
    /// [`cost::HEADER_OVERHEAD`] per header). This is what [`StoreLimits::max_bytes`] caps.
    pub(crate) fn bytes(&self) -> u64 {
        self.inner.counters.bytes.load(Ordering::Relaxed)
    }

    /// Records in the pending table, as of the last commit.
    pub(crate) fn pending_count(&self) -> usize {
        self.inner.counters.pending.load(Ordering::Relaxed)
    }

    /// Records in the dead-letter table, as of the last commit.
    pub(crate) fn dead_count(&self) -> usize {
        self.inner.counters.dead.load(Ordering::Relaxed)
    }

    /// Whether writes work, as the writer last found.
    pub(crate) fn health(&self) -> StoreHealth {
        self.inner.health.get()
    }

    /// Where a damaged store file found on open was moved, if one was.
    pub(crate) fn moved_aside(&self) -> Option<&Path> {
        self.inner.moved_aside.as_deref()
    }

    /// Records found on open that do not decode (kept, counted in the totals, never delivered).
    pub(crate) fn corrupt_count(&self) -> usize {
        self.inner.corrupt
    }

    /// Write transactions committed since open (a batch that changed nothing is not committed).
    /// Far fewer than the changes made is the sign that group commit is batching.
    pub(crate) fn commits(&self) -> u64 {
        self.inner.counters.commits.load(Ordering::Relaxed)
    }

    /// Sends one change to the writer and waits for its result, within [`OP_TIMEOUT`].
    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let ops = self.inner.ops.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            ops.send(op(reply)).await.map_err(|_| StoreError::Closed)?;
            // The writer answers every op it takes; a dropped reply means its thread is gone.
            answer.await.map_err(|_| StoreError::Closed)?
        };
        tokio::time::timeout(OP_TIMEOUT, exchange)
            .await
            .map_err(|_| StoreError::TimedOut { after: OP_TIMEOUT })?
    }

    /// Runs `read` on a blocking thread with a read transaction's worth of access, within
    /// [`OP_TIMEOUT`]. The task holds the file open until it ends (a reopen waits for it).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = writer::current(&self.inner.db)
            .ok_or_else(|| StoreError::Failing("the store file is being reopened".into()))?;
        let task = tokio::task::spawn_blocking(move || read(&db));
        match tokio::time::timeout(OP_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(StoreError::Database(format!("read task failed: {error}"))),
            Err(_) => Err(StoreError::TimedOut { after: OP_TIMEOUT }),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("bytes", &self.bytes())
            .field("pending", &self.pending_count())
            .field("dead", &self.dead_count())
            .field("corrupt", &self.corrupt_count())
            .field("commits", &self.commits())
            .finish()
    }
}

impl Drop for Inner {
    /// Closes the queue, then waits for the writer to finish what it holds, so that the file is
    /// closed when the last handle is gone and the same process can open it again.
    fn drop(&mut self) {
        self.ops = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer panicked");
        }
        writer::take(&self.db);
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
