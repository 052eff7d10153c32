//! The bots the relay knows: those the configuration names and those agents have declared, with
//! the delivery modes agents asked for. What agents declared is kept in the data dir, so that
//! after a restart, and while a bot's agent is away, its webhooks are still expected (503, not
//! 404) and handled the way its agent asked.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use protocol::DeliveryMode;

/// How many bot names the relay remembers having seen declared under the any-bot token, and how
/// many declared modes; it bounds what authenticated agents can make the relay keep.
const MAX_SEEN_BOTS: usize = 10_000;

/// Configured and declared bots, and the modes agents asked for.
#[derive(Debug, Default)]
pub(crate) struct KnownBots {
    configured: HashSet<String>,
    seen: Mutex<HashSet<String>>,
    seen_file: Option<PathBuf>,
    declared_modes: Mutex<HashMap<String, DeliveryMode>>,
    modes_file: Option<PathBuf>,
    /// Held while a file is written, so writes never interleave.
    writing: Mutex<()>,
}

impl KnownBots {
    /// The bots the configuration names; none declared yet.
    pub(crate) fn new<'a>(configured: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            configured: configured.into_iter().map(str::to_owned).collect(),
            ..Self::default()
        }
    }

    /// Keeps the modes agents ask for in `file` too, and starts from what it lists, so that
    /// while a bot's agent is away its updates are still handled the way the agent asked.
    pub(crate) fn remember_modes_in(mut self, file: PathBuf) -> Self {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let modes = self
                .declared_modes
                .get_mut()
                .unwrap_or_else(|p| p.into_inner());
            for line in text.lines().take(MAX_SEEN_BOTS) {
                let mut words = line.split_whitespace();
                if let (Some(bot), Some(mode)) =
                    (words.next(), words.next().and_then(DeliveryMode::parse))
                    && protocol::bot_name::is_valid(bot)
                {
                    modes.insert(bot.to_owned(), mode);
                }
            }
        }
        self.modes_file = Some(file);
        self
    }

    /// Records what an agent declared in its hello: its bots are known from now on and the modes
    /// it asked for apply. Memory changes at once; the files are written off the runtime thread,
    /// and only when something changed.
    pub(crate) async fn note_hello(
        self: &Arc<Self>,
        bots: &[String],
        asked: &[(String, DeliveryMode)],
    ) {
        let new: Vec<String> = bots
            .iter()
            .filter(|bot| self.note_declared(bot))
            .cloned()
            .collect();
        let write_modes = self.note_modes(bots, asked) && self.modes_file.is_some();
        let write_seen = !new.is_empty() && self.seen_file.is_some();
        if !write_seen && !write_modes {
            return;
        }
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            this.append_seen(&new);
            if write_modes {
                this.write_modes();
            }
        });
        let _ = written.await;
    }

    /// Records the modes an agent asked for its `bots` (a bot it names no mode for goes back to
    /// the default), in memory; says whether anything changed. Past [`MAX_SEEN_BOTS`] modes, a
    /// new bot's mode is not kept: it gets the default, with a warning.
    pub(crate) fn note_modes(&self, bots: &[String], asked: &[(String, DeliveryMode)]) -> bool {
        let Ok(mut modes) = self.declared_modes.lock() else {
            return false;
        };
        let mut changed = false;
        for bot in bots {
            let wanted = asked
                .iter()
                .find(|(name, _)| name == bot)
                .map(|(_, mode)| *mode);
            let before = match wanted {
                Some(_) if modes.len() >= MAX_SEEN_BOTS && !modes.contains_key(bot) => {
                    tracing::warn!(
                        bot,
                        limit = MAX_SEEN_BOTS,
                        "too many bots with declared modes; this one gets the default mode"
                    );
                    continue;
                }
                Some(mode) => modes.insert(bot.clone(), mode),
                None => modes.remove(bot),
            };
            changed |= before != wanted;
        }
        changed
    }

    /// Writes the declared modes to their file, whole: a new file renamed over the old, so a
    /// crash leaves one or the other. Blocking; writers take turns.
    fn write_modes(&self) {
        let Some(file) = &self.modes_file else {
            return;
        };
        let _turn = self.writing.lock();
        let mut lines: Vec<String> = match self.declared_modes.lock() {
            Ok(modes) => modes
                .iter()
                .map(|(bot, mode)| format!("{bot} {mode}\n"))
                .collect(),
            Err(_) => return,
        };
        lines.sort();
        let fresh = file.with_extension("new");
        let written = crate::data_dir::open_private(&fresh, false)
            .and_then(|mut f| f.write_all(lines.concat().as_bytes()))
            .and_then(|()| std::fs::rename(&fresh, file));
        if let Err(error) = written {
            tracing::warn!(file = %file.display(), %error, "cannot remember the modes agents asked for");
        }
    }

    /// The mode an agent asked for `bot`, if any.
    pub(crate) fn declared_mode(&self, bot: &str) -> Option<DeliveryMode> {
        self.declared_modes.lock().ok()?.get(bot).copied()
    }

    /// Keeps the declared bots in `file` too, and starts from what it already lists, so that
    /// after a restart a bot whose agent has not reconnected yet gets 503 (retry soon), not 404.
    pub(crate) fn remember_in(mut self, file: PathBuf) -> Self {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let names = text
                .lines()
                .map(str::trim)
                .filter(|n| protocol::bot_name::is_valid(n));
            let seen = self.seen.get_mut().unwrap_or_else(|p| p.into_inner());
            seen.extend(names.take(MAX_SEEN_BOTS).map(str::to_owned));
        }
        self.seen_file = Some(file);
        self
    }

    /// Notes that an agent declared `bot`, so webhooks for it get 503 rather than 404 while no
    /// agent is connected; says whether it is new (and should be added to the file).
    pub(crate) fn note_declared(&self, bot: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        seen.len() < MAX_SEEN_BOTS && seen.insert(bot.to_owned())
    }

    /// Adds `bots` to the file of declared bots, in one write. Blocking.
    fn append_seen(&self, bots: &[String]) {
        let (Some(file), false) = (&self.seen_file, bots.is_empty()) else {
            return;
        };
        let _turn = self.writing.lock();
        let lines: String = bots.iter().map(|bot| format!("{bot}\n")).collect();
        let appended = crate::data_dir::open_private(file, true)
            .and_then(|mut f| f.write_all(lines.as_bytes()));
        if let Err(error) = appended {
            tracing::warn!(file = %file.display(), %error, "cannot remember the declared bots");
        }
    }

    /// Whether webhooks for `bot` are expected: it is configured, or an agent has declared it.
    pub(crate) fn knows(&self, bot: &str) -> bool {
        self.configured.contains(bot) || self.seen.lock().is_ok_and(|seen| seen.contains(bot))
    }
}

#[cfg(test)]
#[path = "bots_tests.rs"]
mod tests;
