//! The in-memory side of stored delivery: per bot, one queue per chat (as Telegram keeps them),
//! at most one update in flight per queue and at most a window of chats in flight per bot.
//!
//! Every pending update is held here as well as on disk (the store's byte cap bounds both), so
//! choosing what to send never waits on the disk.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::store::StoredUpdate;

/// Every bot's queues.
#[derive(Debug, Default)]
pub(super) struct Queues {
    bots: HashMap<String, BotQueues>,
}

#[derive(Debug, Default)]
struct BotQueues {
    queues: HashMap<String, Queue>,
    in_flight: usize,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Arc<StoredUpdate>>,
    busy: bool,
    not_before: Option<Instant>,
    /// Retention dropped the head from the store while it was in flight: however the attempt
    /// ends, it must not be tried again.
    head_expired: bool,
}

impl Queues {
    /// Puts `update` at the back of its chat's queue.
    pub(super) fn push(&mut self, update: Arc<StoredUpdate>) {
        let bot = self.bots.entry(update.bot.clone()).or_default();
        bot.queues
            .entry(update.queue.clone())
            .or_default()
            .items
            .push_back(update);
    }

    /// Whether `bot`'s `queue` holds updates not yet delivered (in flight included).
    pub(super) fn has_waiting(&self, bot: &str, queue: &str) -> bool {
        self.bots
            .get(bot)
            .and_then(|bot| bot.queues.get(queue))
            .is_some_and(|queue| !queue.items.is_empty())
    }

    /// Updates waiting, in flight included.
    pub(super) fn waiting(&self) -> usize {
        self.bots
            .values()
            .flat_map(|bot| bot.queues.values())
            .map(|q| q.items.len())
            .sum()
    }

    /// Marks busy and returns every head that may go out now, with the agent `route` finds for
    /// its bot (bots without one wait), at most `window` chats of a bot in flight; and when the
    /// next queue held back by a pause is due.
    pub(super) fn take_ready<A: Clone>(
        &mut self,
        now: Instant,
        window: usize,
        route: impl Fn(&str) -> Option<A>,
    ) -> (Vec<(A, Arc<StoredUpdate>)>, Option<Instant>) {
        let mut next: Option<Instant> = None;
        let mut starts = Vec::new();
        for (bot, queues) in self.bots.iter_mut() {
            if queues.in_flight >= window {
                continue;
            }
            let Some(agent) = route(bot) else {
                continue;
            };
            // Oldest head first, so no chat waits behind newer ones.
            let mut ready: Vec<(u64, &String)> = Vec::new();
            for (key, queue) in &queues.queues {
                let Some(head) = queue.items.front() else {
                    continue;
                };
                if queue.busy {
                    continue;
                }
                match queue.not_before {
                    Some(at) if at > now => next = Some(next.map_or(at, |n| n.min(at))),
                    _ => ready.push((head.seq, key)),
                }
            }
            ready.sort_unstable();
            let room = window - queues.in_flight;
            let chosen: Vec<String> = ready
                .into_iter()
                .take(room)
                .map(|(_, k)| k.clone())
                .collect();
            for key in chosen {
                if let Some(queue) = queues.queues.get_mut(&key)
                    && let Some(head) = queue.items.front()
                {
                    queue.busy = true;
                    queues.in_flight += 1;
                    starts.push((agent.clone(), head.clone()));
                }
            }
        }
        (starts, next)
    }

    /// Ends an attempt on the head of `attempted`'s queue: pops it (no `replacement`) or puts
    /// the updated record back to be retried after `pause`.
    pub(super) fn finish(
        &mut self,
        attempted: &StoredUpdate,
        replacement: Option<Arc<StoredUpdate>>,
        pause: Option<Duration>,
    ) {
        let Some(queues) = self.bots.get_mut(&attempted.bot) else {
            return;
        };
        queues.in_flight = queues.in_flight.saturating_sub(1);
        let Some(queue) = queues.queues.get_mut(&attempted.queue) else {
            return;
        };
        queue.busy = false;
        let head_is_ours = queue.items.front().is_some_and(|h| h.seq == attempted.seq);
        let expired = std::mem::take(&mut queue.head_expired);
        match replacement.filter(|_| !expired) {
            Some(update) if head_is_ours => {
                queue.items[0] = update;
                queue.not_before = pause.filter(|p| !p.is_zero()).map(|p| Instant::now() + p);
            }
            None if head_is_ours => {
                queue.items.pop_front();
                queue.not_before = None;
            }
            _ => {}
        }
        if queue.items.is_empty() {
            queues.queues.remove(&attempted.queue);
        }
    }

    /// Forgets `update`, which retention dropped from the store, and returns the copy held here
    /// (its `last_error` may be newer than the store's). A head in flight stays until its
    /// attempt ends, and then goes whatever the outcome (a deferred one would otherwise be
    /// tried again).
    pub(super) fn drop_expired(&mut self, update: &StoredUpdate) -> Option<Arc<StoredUpdate>> {
        let queues = self.bots.get_mut(&update.bot)?;
        let queue = queues.queues.get_mut(&update.queue)?;
        let held = queue.items.iter().find(|u| u.seq == update.seq).cloned();
        let busy_head = queue
            .busy
            .then(|| queue.items.front().map(|h| h.seq))
            .flatten();
        queue.head_expired |= busy_head == Some(update.seq);
        queue
            .items
            .retain(|u| u.seq != update.seq || busy_head == Some(u.seq));
        if queue.items.is_empty() {
            queues.queues.remove(&update.queue);
        }
        held
    }
}
