//! Which sessions serve which bots: the newest session of a bot gets its requests, and a session
//! leaves the registry when its [`Registration`] drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::handle::AgentHandle;

/// Which sessions serve which bots.
#[derive(Debug, Default)]
pub struct Registry {
    by_bot: Mutex<HashMap<String, Vec<Arc<AgentHandle>>>>,
    registered: Notify,
}

impl Registry {
    /// Makes `handle` the newest session for each of its bots, until the returned guard drops.
    ///
    /// The newest session wins: after a reconnect, traffic moves to the new connection at once
    /// while the old one (perhaps half-dead) is left to its heartbeat.
    pub(crate) fn register(self: &Arc<Self>, handle: Arc<AgentHandle>) -> Registration {
        let mut by_bot = self.lock();
        // The sessions that lose bots to this one, with the bots each loses, for one log line each.
        let mut taken: Vec<(Arc<AgentHandle>, Vec<&str>)> = Vec::new();
        for bot in &handle.bots {
            let sessions = by_bot.entry(bot.clone()).or_default();
            if let Some(previous) = sessions.last() {
                match taken.iter_mut().find(|(p, _)| Arc::ptr_eq(p, previous)) {
                    Some((_, bots)) => bots.push(bot),
                    None => taken.push((previous.clone(), vec![bot])),
                }
            }
            sessions.push(handle.clone());
        }
        drop(by_bot);
        for (previous, bots) in &taken {
            note_takeover(bots, previous, &handle);
        }
        self.registered.notify_one();
        Registration {
            registry: self.clone(),
            handle,
        }
    }

    /// Completes once a session has registered since the last call completed (a permit is kept
    /// when nobody waits). For the one task that moves stored updates when an agent connects.
    pub(crate) async fn registered(&self) {
        self.registered.notified().await;
    }

    /// The session to send `bot`'s next request to.
    pub fn route(&self, bot: &str) -> Option<Arc<AgentHandle>> {
        self.lock()
            .get(bot)
            .and_then(|sessions| sessions.last().cloned())
    }

    /// How many distinct sessions are connected.
    pub(crate) fn session_count(&self) -> usize {
        let by_bot = self.lock();
        let mut sessions: Vec<u64> = by_bot.values().flatten().map(|h| h.session).collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<AgentHandle>>>> {
        self.by_bot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Says in the log, in one line, that `bots` move from `previous` to `newest`. The same agent
/// reconnecting is routine; another agent taking bots over (two agents given one token, or a
/// second copy started by mistake) is worth a warning, since the first one then gets nothing.
fn note_takeover(bots: &[&str], previous: &AgentHandle, newest: &AgentHandle) {
    /// Bots named in the line; the count says how many there are in all.
    const NAMED: usize = 5;
    let named = &bots[..bots.len().min(NAMED)];
    if previous.name == newest.name {
        tracing::info!(
            bots = ?named,
            count = bots.len(),
            from = previous.session,
            to = newest.session,
            "a newer session of the same agent serves the bots"
        );
    } else {
        tracing::warn!(
            bots = ?named,
            count = bots.len(),
            from = previous.session,
            from_agent = %previous.name,
            to = newest.session,
            to_agent = %newest.name,
            "another agent took the bots over: the newest session gets their requests"
        );
    }
}

/// Keeps a session routable; dropping it unregisters the session and fails its waiting requests.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    handle: Arc<AgentHandle>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_bot = self.registry.lock();
        for bot in &self.handle.bots {
            if let Some(sessions) = by_bot.get_mut(bot) {
                sessions.retain(|h| !Arc::ptr_eq(h, &self.handle));
                if sessions.is_empty() {
                    by_bot.remove(bot);
                }
            }
        }
        drop(by_bot);
        self.handle.disconnect();
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
