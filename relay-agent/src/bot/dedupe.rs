//! The duplicate windows: per bot, the update ids the bot has already answered with a 2xx, kept in
//! the state directory across restarts; and a bounded memory of recent live answers, so that a
//! Telegram retry gets the same answer again.
//!
//! # What survives what
//! An id is recorded right after the bot's 2xx answer and before the agent answers the relay.
//! Each record is handed to the OS at once ([`IdLog::append`]), so **killing the agent loses
//! nothing recorded**. The files are synced to disk every [`crate::bot::handler::SYNC_INTERVAL`] and
//! when the agent stops, so **a machine crash (power loss, kernel panic) may lose the ids recorded
//! in the last second or so**: those updates reach the bot again if the relay had not yet got the
//! agent's answer for them. One window cannot be closed at all: if the agent dies after the bot
//! answered and before the id is recorded, the relay delivers the update again and the bot sees
//! it twice. Delivery is at-least-once; this makes the "more than once" rare, not impossible.
//!
//! The live answers are kept in memory only: after a restart a Telegram retry of an update the
//! bot already answered gets an empty 200 (marked `x-relay-duplicate: 1`) instead.

mod idlog;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use protocol::Header;

use crate::error::AgentError;
use idlog::{IdLog, Prepared, Unsynced};

/// How many update ids each bot's window holds; older ids are forgotten first.
///
/// The relay redelivers a stored update until the bot acknowledges it, and Telegram keeps updates
/// for at most 24 hours, so a window must reach back as far as redeliveries can: 100,000 ids cover
/// a day of a bot busy at one update a second, and far longer for a typical bot. It costs about
/// 2.5 MiB of memory and at most 2.4 MB of disk per bot (the file is compacted at twice the
/// window).
pub const WINDOW_IDS_PER_BOT: usize = 100_000;

/// How many live answers are remembered, all bots together. Telegram retries a failed webhook
/// within seconds to a couple of minutes; 10,000 answers cover minutes of even a busy agent.
pub const LIVE_ANSWERS_MAX: usize = 10_000;

/// How many bytes of live answers are remembered (bodies and headers), so that bots answering
/// with large bodies cannot grow the agent's memory: 32 MiB. Most answers are empty or a small
/// JSON method call, so the count limit usually applies first.
pub const LIVE_ANSWER_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What one remembered answer costs besides its bytes: its key, the map and queue slots.
const ANSWER_OVERHEAD: usize = 96;

/// The file in the state directory that an agent holds locked while it runs.
const LOCK_FILE: &str = "lock";

/// What a window remembers of an update: its `update_id` folded with a fingerprint (FNV-1a,
/// 64 bits) of its body. Redeliveries and Telegram's retries carry the same bytes, so they match;
/// a request that merely claims an `update_id` the bot has seen (a forgery sent to a bot without a
/// secret, or Telegram's ids starting over after a long silence) does not, and reaches the bot.
pub fn key(update_id: i64, body: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in update_id.to_le_bytes().iter().chain(body) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_le_bytes(hash.to_le_bytes())
}

/// The bounds of a [`Dedupe`]; [`Limits::default`] holds the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ids per bot window.
    pub ids_per_bot: usize,
    /// Live answers remembered.
    pub live_answers: usize,
    /// Bytes of live answers remembered.
    pub live_answer_bytes: usize,
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

/// A bot's answer as the relay got it the first time: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The bytes this answer keeps alive, for the memory bound.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.body.len() + headers + ANSWER_OVERHEAD
    }
}

/// The duplicate windows of all of an agent's bots. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct Dedupe {
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
    pub fn open(dir: Option<&Path>, bots: &[&str], limits: Limits) -> Result<Dedupe, AgentError> {
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
                answers: Mutex::new(AnswerCache::new(limits)),
                _lock: lock,
            }),
        })
    }

    /// Whether `bot` has already answered `update_id` with a 2xx. Unknown bots have no window.
    pub fn contains(&self, bot: &str, update_id: i64) -> bool {
        self.inner
            .bots
            .get(bot)
            .is_some_and(|window| lock(window).window.contains(update_id))
    }

    /// The live answer `bot` gave to `update_id`, if it is still remembered.
    pub fn live_answer(&self, bot: &str, update_id: i64) -> Option<Answer> {
        lock(&self.inner.answers).get(bot, update_id).cloned()
    }

    /// Takes the remembered live answer to `update_id` out of the cache, so that what is done
    /// with it is done once.
    pub fn take_live_answer(&self, bot: &str, update_id: i64) -> Option<Answer> {
        lock(&self.inner.answers).take(bot, update_id)
    }

    /// Records that `bot` answered `update_id` with a 2xx, appending it to the bot's file, and
    /// remembers `live` as the answer to repeat to a Telegram retry. Called on the async thread:
    /// the append is one short `write` to the page cache; everything slower (syncing, compacting,
    /// repairing after a failed write) is left to [`Dedupe::sync`]. A failed write is logged,
    /// never returned: the id stays in memory, and the next sync rewrites the file whole.
    pub fn record(&self, bot: &str, update_id: i64, live: Option<Answer>) {
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
    pub fn sync(&self) {
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

/// One bot's window and its file.
#[derive(Debug)]
struct BotWindow {
    bot: String,
    window: Window,
    log: Option<IdLog>,
    /// The last write or sync failed: the file may end in a partial record or have lost pages,
    /// so nothing more is appended until the next sync has replaced it.
    failing: bool,
}

/// What [`Dedupe::sync`] has to do for one window, decided under its lock and done without it.
#[derive(Debug)]
enum Maintenance {
    Nothing,
    /// Flush the appended records.
    Sync(Unsynced),
    /// Write the file anew with `ids`, the window at the time of `mark`.
    Rewrite {
        path: PathBuf,
        ids: Vec<i64>,
        mark: u64,
    },
}

impl BotWindow {
    fn in_memory(bot: &str, capacity: usize) -> BotWindow {
        BotWindow {
            bot: bot.to_owned(),
            window: Window::new(capacity),
            log: None,
            failing: false,
        }
    }

    /// Loads `dir/<bot>.ids`. Bot names follow [`protocol::bot_name::RULE`], so they are safe
    /// file names.
    fn load(dir: &Path, bot: &str, capacity: usize) -> Result<BotWindow, AgentError> {
        let path = dir.join(format!("{bot}.ids"));
        let error = |what: &str, e: std::io::Error| AgentError::StateDir {
            path: dir.to_owned(),
            reason: format!("cannot {what} {} ({e})", path.display()),
        };
        let (ids, damage) = IdLog::read(&path).map_err(|e| error("read", e))?;
        if let Some(damage) = &damage {
            tracing::warn!(
                bot,
                path = %path.display(),
                kept = ids.len(),
                "the duplicate window file is damaged ({damage}); keeping the ids before the damage"
            );
        }
        let mut window = Window::new(capacity);
        for &id in &ids {
            window.insert(id);
        }
        // Rewrite a new, damaged or overgrown file; append to a sound one.
        let log = if ids.is_empty() || damage.is_some() || ids.len() > capacity {
            IdLog::rewrite_at(&path, window.iter()).map_err(|e| error("write", e))?
        } else {
            IdLog::append_to(&path, ids.len()).map_err(|e| error("open", e))?
        };
        tracing::debug!(bot, ids = window.len(), path = %path.display(), "duplicate window loaded");
        Ok(BotWindow {
            bot: bot.to_owned(),
            window,
            log: Some(log),
            failing: false,
        })
    }

    fn record(&mut self, id: i64) {
        if !self.window.insert(id) || self.failing {
            return;
        }
        if let Some(log) = &mut self.log
            && let Err(error) = log.append(id)
        {
            self.failed("write", &error);
        }
    }

    /// Marks the file for a rewrite at the next sync, warning once per failing spell.
    fn failed(&mut self, what: &str, error: &std::io::Error) {
        if !self.failing {
            tracing::warn!(
                bot = self.bot,
                %error,
                "cannot {what} the duplicate window file; ids are kept in memory and the file is rewritten at the next sync"
            );
        }
        self.failing = true;
    }

    /// Compacting at twice the window keeps the file bounded and rewrites it rarely; a failed
    /// write or sync is repaired the same way.
    fn maintenance(&mut self) -> Maintenance {
        let Some(log) = &mut self.log else {
            return Maintenance::Nothing;
        };
        if self.failing || log.records() >= 2 * self.window.capacity {
            return Maintenance::Rewrite {
                path: log.path().to_owned(),
                ids: self.window.iter().collect(),
                mark: self.window.inserted,
            };
        }
        log.take_unsynced()
            .map_or(Maintenance::Nothing, Maintenance::Sync)
    }

    /// Swaps in a rewritten file, adding the ids recorded since `mark`.
    fn install(&mut self, prepared: Prepared, mark: u64) -> std::io::Result<()> {
        self.log = Some(IdLog::install(prepared, self.window.newer_than(mark))?);
        if std::mem::take(&mut self.failing) {
            tracing::info!(
                bot = self.bot,
                "the duplicate window file is writable again"
            );
        }
        Ok(())
    }
}

/// A bounded set of ids that forgets the oldest first.
#[derive(Debug)]
struct Window {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
    capacity: usize,
    /// Ids inserted so far, ever: a mark for "the ids added since".
    inserted: u64,
}

impl Window {
    fn new(capacity: usize) -> Window {
        Window {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            inserted: 0,
        }
    }

    fn contains(&self, id: i64) -> bool {
        self.ids.contains(&id)
    }

    /// Adds `id`, forgetting the oldest if full; false if it was already there.
    fn insert(&mut self, id: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        self.inserted += 1;
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.order.iter().copied()
    }

    /// The ids inserted after `mark` (a value of `inserted`) that are still held, oldest first.
    fn newer_than(&self, mark: u64) -> impl Iterator<Item = i64> + '_ {
        let newer = usize::try_from(self.inserted.saturating_sub(mark)).unwrap_or(usize::MAX);
        let skip = self.order.len().saturating_sub(newer);
        self.order.iter().skip(skip).copied()
    }
}

/// Recent live answers, forgotten oldest first past either bound.
#[derive(Debug)]
struct AnswerCache {
    answers: HashMap<(String, i64), Answer>,
    order: VecDeque<((String, i64), usize)>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl AnswerCache {
    fn new(limits: Limits) -> AnswerCache {
        AnswerCache {
            answers: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count: limits.live_answers,
            max_bytes: limits.live_answer_bytes,
        }
    }

    fn get(&self, bot: &str, id: i64) -> Option<&Answer> {
        self.answers.get(&(bot.to_owned(), id))
    }

    /// Removes and returns an answer; its bytes are released when its turn to be evicted comes.
    fn take(&mut self, bot: &str, id: i64) -> Option<Answer> {
        self.answers.remove(&(bot.to_owned(), id))
    }

    /// Remembers the first answer to each update; one larger than the whole bound is not kept.
    fn insert(&mut self, bot: &str, id: i64, answer: Answer) {
        let key = (bot.to_owned(), id);
        let size = answer.size() + bot.len();
        if self.max_count == 0 || size > self.max_bytes || self.answers.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.max_count || self.bytes + size > self.max_bytes {
            let Some((oldest, oldest_size)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&oldest);
            self.bytes -= oldest_size;
        }
        self.order.push_back((key.clone(), size));
        self.answers.insert(key, answer);
        self.bytes += size;
    }
}

/// The state file of `bot` in `dir`, for tests that damage it.
#[cfg(test)]
pub(crate) fn log_path(dir: &Path, bot: &str) -> std::path::PathBuf {
    dir.join(format!("{bot}.ids"))
}

#[cfg(test)]
#[path = "dedupe_tests.rs"]
mod tests;
