//! The bots the relay knows: those the configuration names and those agents have declared, with
//! the delivery modes agents asked for. What agents declared is kept in the data dir, so that
//! after a restart, and while a bot's agent is away, its webhooks are still expected (503, not
//! 404) and handled the way its agent asked.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use protocol::DeliveryMode;

/// How many bot names the relay remembers having seen declared under the any-bot token; it bounds
/// what authenticated agents can make the relay keep.
const MAX_SEEN_BOTS: usize = 10_000;

/// Configured and declared bots, and the modes agents asked for.
#[derive(Debug, Default)]
pub(crate) struct KnownBots {
    configured: HashSet<String>,
    seen: Mutex<HashSet<String>>,
    seen_file: Option<PathBuf>,
    declared_modes: Mutex<HashMap<String, DeliveryMode>>,
    modes_file: Option<PathBuf>,
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

    /// Records the modes an agent asked for its `bots` (a bot it names no mode for goes back to
    /// the default), writing the file again when anything changed.
    pub(crate) fn note_modes(&self, bots: &[String], asked: &[(String, DeliveryMode)]) {
        let Ok(mut modes) = self.declared_modes.lock() else {
            return;
        };
        let mut changed = false;
        for bot in bots {
            let wanted = asked
                .iter()
                .find(|(name, _)| name == bot)
                .map(|(_, mode)| *mode);
            let before = match wanted {
                Some(mode) => modes.insert(bot.clone(), mode),
                None => modes.remove(bot),
            };
            changed |= before != wanted;
        }
        let (true, Some(file)) = (changed, &self.modes_file) else {
            return;
        };
        let mut lines: Vec<String> = modes
            .iter()
            .map(|(bot, mode)| format!("{bot} {mode}\n"))
            .collect();
        lines.sort();
        let written = crate::data_dir::open_private(file, false)
            .and_then(|mut f| f.write_all(lines.concat().as_bytes()));
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
    /// agent is connected.
    pub(crate) fn note_declared(&self, bot: &str) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= MAX_SEEN_BOTS || !seen.insert(bot.to_owned()) {
            return;
        }
        if let Some(file) = &self.seen_file {
            // Rare (once per new bot), so a blocking append under the lock is fine.
            let appended =
                crate::data_dir::open_private(file, true).and_then(|mut f| writeln!(f, "{bot}"));
            if let Err(error) = appended {
                tracing::warn!(file = %file.display(), %error, "cannot remember a declared bot");
            }
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
