//! The duplicate windows: per bot, the update ids the bot has already answered with a 2xx, kept in
//! the state directory across restarts; and a bounded memory of recent live answers, so that a
//! Telegram retry gets the same answer again. [`Dedupe`] owns the state directory and its lock and
//! hands out the work; one bot's window is in [`window`], the live answers in [`answers`], the
//! file format in [`idlog`]. Imports only those and [`crate::error`].
//!
//! # What survives what
//! An id is recorded right after the bot's 2xx answer and before the agent answers the relay.
//! Each record is handed to the OS at once ([`IdLog::append`](idlog::IdLog::append)), so **killing the agent loses
//! nothing recorded**. The files are synced to disk every [`crate::bot::handler::SYNC_INTERVAL`] and
//! when the agent stops, so **a machine crash (power loss, kernel panic) may lose the ids recorded
//! in the last second or so**: those updates reach the bot again if the relay had not yet got the
//! agent's answer for them. One window cannot be closed at all: if the agent dies after the bot
//! answered and before the id is recorded, the relay delivers the update again and the bot sees
//! it twice. Delivery is at-least-once; this makes the "more than once" rare, not impossible.
//!
//! The live answers are kept in memory only: after a restart a Telegram retry of an update the
//! bot already answered gets an empty 200 (marked `x-relay-duplicate: 1`) instead.

pub(crate) mod answers;
pub(crate) mod idlog;
pub(crate) mod window;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub(crate) use answers::Answer;
use answers::AnswerCache;
use idlog::Prepared;
use window::{BotWindow, Maintenance};

use crate::error::AgentError;

/// How many update ids each bot's window holds; older ids are forgotten first.
///
/// The relay redelivers a stored update until the bot acknowledges it, and Telegram keeps updates
/// for at most 24 hours, so a window must reach back as far as redeliveries can: 100,000 ids cover
/// a day of a bot busy at one update a second, and far longer for a typical bot. It costs about
/// 2.5 MiB of memory and at most 2.4 MB of disk per bot (the file is compacted at twice the
/// window).
pub(crate) const WINDOW_IDS_PER_BOT: usize = 100_000;

/// How many live answers are remembered, all bots together. Telegram retries a failed webhook
/// within seconds to a couple of minutes; 10,000 answers cover minutes of even a busy agent.
pub(crate) const LIVE_ANSWERS_MAX: usize = 10_000;

/// How many bytes of live answers are remembered (bodies and headers), so that bots answering
/// with large bodies cannot grow the agent's memory: 32 MiB. Most answers are empty or a small
/// JSON method call, so the count limit usually applies first.
pub(crate) const LIVE_ANSWER_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The file in the state directory that an agent holds locked while it runs.
const LOCK_FILE: &str = "lock";

/// What a window remembers of an update: its `update_id` folded with a fingerprint (FNV-1a,
/// 64 bits) of its body. Redeliveries and Telegram's retries carry the same bytes, so they match;
/// a request that merely claims an `update_id` the bot has seen (a forgery sent to a bot without a
/// secret, or Telegram's ids starting over after a long silence) does not, and reaches the bot.
pub(crate) fn key(update_id: i64, body: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in update_id.to_le_bytes().iter().chain(body) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_le_bytes(hash.to_le_bytes())
}

/// The bounds of a [`Dedupe`]; [`Limits::default`] holds the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Ids per bot window.
    pub(crate) ids_per_bot: usize,
    /// Live answers remembered.
    pub(crate) live_answers: usize,
    /// Bytes of live answers remembered.
    pub(crate) live_answer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            ids_per_bot: WINDOW_IDS_PER_BOT,
            live_answers: LIVE_ANSWERS_MAX,
            live_answer_bytes: LIVE_ANSWER_BYTES_MAX,
        }
    }
}

/// The duplicate windows of all of an agent's bots. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub(crate) struct Dedupe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bots: HashMap<String, Mutex<BotWindow>>,
    answers: Mutex<AnswerCache>,
    /// Locked while this agent runs, so that two agents never write the same files: each would
    /// compact away the other's ids. The kernel drops the lock when the process dies.
    _lock: Option<File>,
}

impl Dedupe {
    /// Opens the windows of `bots`, loading each from `dir` (created if missing), or in memory
    /// only when `dir` is `None`. A damaged file tail is cut off with one warning.
    pub(crate) fn open(
        dir: Option<&Path>,
        bots: &[&str],
        limits: Limits,
    ) -> Result<Dedupe, AgentError> {
        let lock = dir.map(lock_dir).transpose()?;
        let mut windows = HashMap::with_capacity(bots.len());
        for &bot in bots {
            let window = match dir {
                None => BotWindow::in_memory(bot, limits.ids_per_bot),
                Some(dir) => BotWindow::load(dir, bot, limits.ids_per_bot)?,
            };
            windows.insert(bot.to_owned(), Mutex::new(window));
        }
        Ok(Dedupe {
            inner: Arc::new(Inner {
                bots: windows,
                answers: Mutex::new(AnswerCache::new(
                    limits.live_answers,
                    limits.live_answer_bytes,
                )),
                _lock: lock,
            }),
        })
    }

    /// Whether `bot` has already answered `update_id` with a 2xx. Unknown bots have no window.
    pub(crate) fn contains(&self, bot: &str, update_id: i64) -> bool {
        self.inner
            .bots
            .get(bot)
            .is_some_and(|window| lock(window).contains(update_id))
    }

    /// The live answer `bot` gave to `update_id`, if it is still remembered.
    pub(crate) fn live_answer(&self, bot: &str, update_id: i64) -> Option<Answer> {
        lock(&self.inner.answers).get(bot, update_id).cloned()
    }

    /// Takes the remembered live answer to `update_id` out of the cache, so that what is done
    /// with it is done once.
    pub(crate) fn take_live_answer(&self, bot: &str, update_id: i64) -> Option<Answer> {
        lock(&self.inner.answers).take(bot, update_id)
    }

    /// Records that `bot` answered `update_id` with a 2xx, appending it to the bot's file, and
    /// remembers `live` as the answer to repeat to a Telegram retry. Called on the async thread:
    /// the append is one short `write` to the page cache; everything slower (syncing, compacting,
    /// repairing after a failed write) is left to [`Dedupe::sync`]. A failed write is logged,
    /// never returned: the id stays in memory, and the next sync rewrites the file whole.
    pub(crate) fn record(&self, bot: &str, update_id: i64, live: Option<Answer>) {
        let Some(window) = self.inner.bots.get(bot) else {
            return;
        };
        lock(window).record(update_id);
        if let Some(answer) = live {
            lock(&self.inner.answers).insert(bot, update_id, answer);
        }
    }

    /// Syncs every file with records not yet on disk, and rewrites the files that grew to twice
    /// their window (compaction) or whose last write failed. Blocks on the disk, so async callers
    /// run it on the blocking pool. A window is locked only to look at it and, after a rewrite, to
    /// swap the new file in, never while the disk works, so recording goes on meanwhile.
    pub(crate) fn sync(&self) {
        for window in self.inner.bots.values() {
            let work = lock(window).maintenance();
            match work {
                Maintenance::Nothing => {}
                Maintenance::Sync(unsynced) => {
                    if let Err(error) = unsynced.sync() {
                        lock(window).failed("sync", &error);
                    }
                }
                Maintenance::Rewrite { path, ids, mark } => {
                    let installed = Prepared::write(&path, ids.into_iter())
                        .and_then(|prepared| lock(window).install(prepared, mark));
                    match installed.and_then(|()| idlog::sync_parent(&path)) {
                        Ok(()) => {}
                        Err(error) => lock(window).failed("rewrite", &error),
                    }
                }
            }
        }
    }
}

/// A poisoned lock only means a thread panicked while holding it; the window is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates `dir` and takes its lock.
fn lock_dir(dir: &Path) -> Result<File, AgentError> {
    let error = |reason: String| AgentError::StateDir {
        path: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| error(format!("cannot create it ({e})")))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| error(format!("cannot open {} ({e})", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(error(
                "another relay-agent is using it; give each agent its own".into(),
            ));
        }
        // Some file systems cannot lock; the directory still works, unguarded.
        Err(TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the state directory");
        }
    }
    Ok(file)
}

/// The state file of `bot` in `dir`, for tests that damage it.
#[cfg(test)]
pub(crate) fn log_path(dir: &Path, bot: &str) -> std::path::PathBuf {
    dir.join(format!("{bot}.ids"))
}

#[cfg(test)]
#[path = "dedupe_tests.rs"]
mod tests;
