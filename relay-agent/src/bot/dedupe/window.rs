//! One bot's duplicate window: the update ids it has answered, oldest forgotten first, and the
//! [`idlog`](super::idlog) file that keeps them. Imports only [`super::idlog`] and
//! [`crate::error`].

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::idlog::{IdLog, Prepared, Unsynced};
use crate::error::AgentError;

/// One bot's window and its file.
#[derive(Debug)]
pub(super) struct BotWindow {
    bot: String,
    window: Window,
    log: Option<IdLog>,
    /// The last write or sync failed: the file may end in a partial record or have lost pages,
    /// so nothing more is appended until the next sync has replaced it.
    failing: bool,
}

/// What [`super::Dedupe::sync`] has to do for one window, decided under its lock and done without it.
#[derive(Debug)]
pub(super) enum Maintenance {
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
    pub(super) fn in_memory(bot: &str, capacity: usize) -> BotWindow {
        BotWindow {
            bot: bot.to_owned(),
            window: Window::new(capacity),
            log: None,
            failing: false,
        }
    }

    /// Loads `dir/<bot>.ids`. Bot names follow [`protocol::bot_name::RULE`], so they are safe
    /// file names.
    pub(super) fn load(dir: &Path, bot: &str, capacity: usize) -> Result<BotWindow, AgentError> {
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

    /// Whether the window holds `id`.
    pub(super) fn contains(&self, id: i64) -> bool {
        self.window.contains(id)
    }

    /// Adds `id` to the window and appends it to the file.
    pub(super) fn record(&mut self, id: i64) {
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
    pub(super) fn failed(&mut self, what: &str, error: &std::io::Error) {
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
    pub(super) fn maintenance(&mut self) -> Maintenance {
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
    pub(super) fn install(&mut self, prepared: Prepared, mark: u64) -> std::io::Result<()> {
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
