//! Who may connect as an agent, and which bots each token may serve.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use protocol::Secret;

use crate::config::{Config, DeliveryMode};

/// How many bot names the relay remembers having seen declared under the any-bot token; it bounds
/// what authenticated agents can make the relay keep.
const MAX_SEEN_BOTS: usize = 10_000;

/// The tokens the relay accepts and the bots it knows.
#[derive(Debug)]
pub struct Access {
    any_bot: Option<Secret>,
    grants: Vec<(String, Secret, BTreeSet<String>)>,
    configured_bots: HashSet<String>,
    seen_bots: Mutex<HashSet<String>>,
    seen_file: Option<PathBuf>,
    declared_modes: Mutex<HashMap<String, DeliveryMode>>,
    modes_file: Option<PathBuf>,
}

/// What an authenticated agent may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The grant's name, for logs ("any-bot token" for the single token).
    pub name: String,
    /// The bots it may serve; `None` for any.
    pub bots: Option<BTreeSet<String>>,
}

impl Grant {
    /// Whether this grant covers `bot`.
    pub fn allows(&self, bot: &str) -> bool {
        self.bots.as_ref().is_none_or(|bots| bots.contains(bot))
    }
}

impl Access {
    /// Access as configured; `any_bot` is the resolved single token, if one is in use.
    pub fn new(config: &Config, any_bot: Option<Secret>) -> Self {
        Self {
            any_bot,
            grants: config
                .agents
                .iter()
                .map(|agent| {
                    let bots = agent.bots.iter().cloned().collect();
                    (agent.name.clone(), agent.token.clone(), bots)
                })
                .collect(),
            configured_bots: config.configured_bots().map(str::to_owned).collect(),
            seen_bots: Mutex::new(HashSet::new()),
            seen_file: None,
            declared_modes: Mutex::new(HashMap::new()),
            modes_file: None,
        }
    }

    /// Keeps the modes agents ask for in `file` too, and starts from what it lists, so that
    /// while a bot's agent is away its updates are still handled the way the agent asked.
    pub fn remember_modes_in(mut self, file: PathBuf) -> Self {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let modes = self
                .declared_modes
                .get_mut()
                .unwrap_or_else(|p| p.into_inner());
            for line in text.lines().take(MAX_SEEN_BOTS) {
                let mut words = line.split_whitespace();
                if let (Some(bot), Some(mode)) =
                    (words.next(), words.next().and_then(DeliveryMode::parse))
                    && crate::config::is_valid_bot_name(bot)
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
    pub fn note_modes(&self, bots: &[String], asked: &[(String, DeliveryMode)]) {
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
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(file, lines.concat()));
        if let Err(error) = written {
            tracing::warn!(file = %file.display(), %error, "cannot remember the modes agents asked for");
        }
    }

    /// The mode an agent asked for `bot`, if any.
    pub fn declared_mode(&self, bot: &str) -> Option<DeliveryMode> {
        self.declared_modes.lock().ok()?.get(bot).copied()
    }

    /// Keeps the declared bots in `file` too, and starts from what it already lists, so that
    /// after a restart a bot whose agent has not reconnected yet gets 503 (retry soon), not 404.
    pub fn remember_in(mut self, file: PathBuf) -> Self {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let names = text
                .lines()
                .map(str::trim)
                .filter(|n| crate::config::is_valid_bot_name(n));
            let seen = self.seen_bots.get_mut().unwrap_or_else(|p| p.into_inner());
            seen.extend(names.take(MAX_SEEN_BOTS).map(str::to_owned));
        }
        self.seen_file = Some(file);
        self
    }

    /// The grant that `presented` unlocks. Every token is compared, in constant time, so the
    /// answer's timing says nothing about which one came close.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Grant> {
        let mut found = None;
        if let Some(token) = &self.any_bot
            && token.matches(presented)
        {
            found = Some(Grant {
                name: "any-bot token".into(),
                bots: None,
            });
        }
        for (name, token, bots) in &self.grants {
            if token.matches(presented) && found.is_none() {
                found = Some(Grant {
                    name: name.clone(),
                    bots: Some(bots.clone()),
                });
            }
        }
        found
    }

    /// Notes that an agent declared `bot`, so webhooks for it get 503 rather than 404 while no
    /// agent is connected.
    pub fn note_declared(&self, bot: &str) {
        let Ok(mut seen) = self.seen_bots.lock() else {
            return;
        };
        if seen.len() >= MAX_SEEN_BOTS || !seen.insert(bot.to_owned()) {
            return;
        }
        if let Some(file) = &self.seen_file {
            // Rare (once per new bot), so a blocking append under the lock is fine.
            if let Some(dir) = file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| writeln!(f, "{bot}"));
            if let Err(error) = appended {
                tracing::warn!(file = %file.display(), %error, "cannot remember a declared bot");
            }
        }
    }

    /// Whether webhooks for `bot` are expected: it is configured, or an agent has declared it.
    pub fn knows(&self, bot: &str) -> bool {
        self.configured_bots.contains(bot)
            || self.seen_bots.lock().is_ok_and(|seen| seen.contains(bot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentGrant;

    fn access() -> Access {
        let mut config = Config::new("unused");
        config.agents.push(AgentGrant {
            name: "home".into(),
            token: Secret::new("home-token-0123456789"),
            bots: vec!["shop".into()],
        });
        Access::new(&config, Some(Secret::new("any-token-0123456789")))
    }

    #[test]
    fn tokens_unlock_their_grants_only() {
        let access = access();
        let any = access.authenticate(b"any-token-0123456789").expect("any");
        assert!(any.allows("whatever"));
        let home = access.authenticate(b"home-token-0123456789").expect("home");
        assert!(home.allows("shop") && !home.allows("echo"));
        assert!(access.authenticate(b"home-token-012345678").is_none());
        assert!(access.authenticate(b"").is_none());
    }

    #[test]
    fn declared_bots_are_remembered_across_restarts() {
        let dir = crate::files::tests::temp_dir("known-bots");
        let file = dir.join("known-bots");
        access().remember_in(file.clone()).note_declared("echo");
        let restarted = access().remember_in(file.clone());
        assert!(restarted.knows("echo"));
        assert!(!restarted.knows("other"));
        restarted.note_declared("echo");
        let lines = std::fs::read_to_string(&file).expect("file");
        assert_eq!(lines, "echo\n", "each bot is written once");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn modes_agents_ask_for_are_remembered_and_cleared() {
        let dir = crate::files::tests::temp_dir("bot-modes");
        let file = dir.join("bot-modes");
        let bots = vec!["echo".to_string(), "shop".to_string()];
        let first = access().remember_modes_in(file.clone());
        first.note_modes(&bots, &[("echo".into(), DeliveryMode::Durable)]);
        let restarted = access().remember_modes_in(file.clone());
        assert_eq!(restarted.declared_mode("echo"), Some(DeliveryMode::Durable));
        assert_eq!(restarted.declared_mode("shop"), None);
        restarted.note_modes(&bots, &[]);
        let again = access().remember_modes_in(file);
        assert_eq!(again.declared_mode("echo"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bots_are_known_when_configured_or_declared() {
        let access = access();
        assert!(access.knows("shop"));
        assert!(!access.knows("echo"));
        access.note_declared("echo");
        assert!(access.knows("echo"));
    }
}
