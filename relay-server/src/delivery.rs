//! Delivery from the store: one queue per chat (as Telegram keeps them), one update in flight per
//! queue, several chats of a bot side by side up to a window, retries with backoff, and the
//! dead-letter list for updates that keep failing.
//!
//! Every pending update is kept in memory as well as on disk (the store's byte cap bounds both),
//! so dispatching never waits on the disk; the disk is written only when an update arrives, is
//! delivered, fails or is buried.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use protocol::{Delivery, FailureKind};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::{AgentHandle, CallError, Registry};
use crate::config;
use crate::store::{NewUpdate, Store, StoreError, StoredUpdate};

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Telegram's own retries settle at one a minute or two; so do ours.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An agent that said it is overloaded gets a short breather before the queue tries again.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(200);
/// How often expired updates are looked for. Retention is counted in hours; a minute is precise enough.
const RETENTION_SWEEP: Duration = Duration::from_secs(60);

/// What happened to stored updates, for logs, the admin API and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Updates written to the store (and answered 200).
    pub stored: AtomicU64,
    /// Stored updates the bot acknowledged.
    pub delivered: AtomicU64,
    /// Failed delivery attempts that will be retried.
    pub retried: AtomicU64,
    /// Updates moved to the dead-letter list.
    pub buried: AtomicU64,
    /// Updates dropped for age.
    pub expired: AtomicU64,
    /// Updates refused because the store was full (answered 503).
    pub refused_full: AtomicU64,
}

/// The stored-delivery engine of one relay; cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    registry: Arc<Registry>,
    settings: config::Delivery,
    /// How long the agent has to answer a stored delivery before it counts as failed.
    ack_timeout: Duration,
    state: Mutex<State>,
    wake: Notify,
    stats: Stats,
    deliveries: TaskTracker,
}

#[derive(Debug, Default)]
struct State {
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
}

/// How one delivery attempt ended.
enum Outcome {
    Delivered,
    /// Not the bot's fault (agent gone or busy): try again later without counting an attempt.
    Deferred(Duration),
    Failed(String),
}

impl Scheduler {
    /// A scheduler over `store`, starting with the `pending` updates it held on open.
    pub fn new(
        store: Store,
        pending: Vec<StoredUpdate>,
        registry: Arc<Registry>,
        settings: config::Delivery,
        ack_timeout: Duration,
    ) -> Self {
        let mut state = State::default();
        for update in pending {
            state.push(Arc::new(update));
        }
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                settings,
                ack_timeout,
                state: Mutex::new(state),
                wake: Notify::new(),
                stats: Stats::default(),
                deliveries: TaskTracker::new(),
            }),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether `bot`'s `queue` has stored updates not yet delivered: a new update of that chat
    /// must then be stored too, so it cannot overtake them.
    pub fn has_waiting(&self, bot: &str, queue: &str) -> bool {
        self.lock()
            .bots
            .get(bot)
            .and_then(|bot| bot.queues.get(queue))
            .is_some_and(|queue| !queue.items.is_empty())
    }

    /// Stores `update` durably and queues it for delivery. When this returns `Ok`, the update
    /// survives a crash, and the relay may answer 200.
    pub async fn accept(&self, update: NewUpdate) -> Result<(), StoreError> {
        let stored = match self.inner.store.append(update).await {
            Ok(stored) => stored,
            Err(error) => {
                if matches!(error, StoreError::Full { .. }) {
                    self.inner
                        .stats
                        .refused_full
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Err(error);
            }
        };
        self.inner.stats.stored.fetch_add(1, Ordering::Relaxed);
        self.enqueue(stored);
        Ok(())
    }

    /// Queues an update that is already in the store (a replayed dead letter).
    pub fn enqueue(&self, update: StoredUpdate) {
        self.lock().push(Arc::new(update));
        self.inner.wake.notify_one();
    }

    /// Nudges the loop: an agent connected, so its bots' queues may move.
    pub fn agents_changed(&self) {
        self.inner.wake.notify_one();
    }

    /// Updates waiting (in flight included).
    pub fn waiting(&self) -> usize {
        let state = self.lock();
        state
            .bots
            .values()
            .flat_map(|bot| bot.queues.values())
            .map(|q| q.items.len())
            .sum()
    }

    /// Runs deliveries until `shutdown` fires, then waits up to `grace` for those in flight.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let mut sweep = tokio::time::interval(RETENTION_SWEEP);
        loop {
            let next = self.dispatch();
            let sleep =
                tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + RETENTION_SWEEP));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = sleep => {}
                _ = sweep.tick() => self.expire().await,
            }
        }
        self.inner.deliveries.close();
        let _ = tokio::time::timeout(grace, self.inner.deliveries.wait()).await;
    }

    /// Starts every delivery that may start now; returns when the next held-back queue is due.
    fn dispatch(&self) -> Option<Instant> {
        let now = Instant::now();
        let window = self.inner.settings.chats_in_parallel;
        let mut next: Option<Instant> = None;
        let mut starts = Vec::new();
        {
            let mut state = self.lock();
            for (bot, queues) in state.bots.iter_mut() {
                if queues.in_flight >= window {
                    continue;
                }
                let Some(agent) = self.inner.registry.route(bot) else {
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
        }
        for (agent, update) in starts {
            let scheduler = self.clone();
            self.inner
                .deliveries
                .spawn(async move { scheduler.deliver(agent, update).await });
        }
        next
    }

    /// Makes one attempt and records its outcome.
    async fn deliver(&self, agent: Arc<AgentHandle>, update: Arc<StoredUpdate>) {
        let outcome = self.attempt(&agent, &update).await;
        let inner = &self.inner;
        let (bot, seq) = (update.bot.as_str(), update.seq);
        match outcome {
            Outcome::Delivered => {
                if let Err(error) = inner.store.remove(bot, seq).await {
                    // The update stays on disk and comes back after a restart; the agent's
                    // duplicate window keeps the bot from seeing it twice.
                    tracing::error!(bot, seq, %error, "cannot remove a delivered update from the store");
                }
                inner.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.finish(&update, None, None);
            }
            Outcome::Deferred(pause) => {
                self.finish(&update, Some(Arc::clone(&update)), Some(pause))
            }
            Outcome::Failed(reason) => {
                let attempts = update.attempts.saturating_add(1);
                if attempts >= inner.settings.max_attempts {
                    tracing::warn!(bot, seq, update_id = update.update_id, attempts, %reason, "update goes to the dead-letter list");
                    // The last attempt is counted too, so the list shows every attempt made.
                    if let Err(error) = inner.store.record_failure(bot, seq, &reason).await {
                        tracing::error!(bot, seq, %error, "cannot record a failed attempt");
                    }
                    if let Err(error) = inner.store.bury(bot, seq, &reason).await {
                        tracing::error!(bot, seq, %error, "cannot move an update to the dead-letter list");
                    }
                    inner.stats.buried.fetch_add(1, Ordering::Relaxed);
                    self.finish(&update, None, None);
                    return;
                }
                inner.stats.retried.fetch_add(1, Ordering::Relaxed);
                let updated = match inner.store.record_failure(bot, seq, &reason).await {
                    Ok(Some(updated)) => Arc::new(updated),
                    Ok(None) => {
                        // Gone from the store (expired meanwhile): nothing left to retry.
                        self.finish(&update, None, None);
                        return;
                    }
                    Err(error) => {
                        tracing::error!(bot, seq, %error, "cannot record a failed attempt");
                        let mut copy = (*update).clone();
                        copy.attempts = attempts;
                        Arc::new(copy)
                    }
                };
                let pause = backoff(attempts);
                tracing::debug!(bot, seq, attempts, ?pause, %reason, "delivery failed; will retry");
                self.finish(&update, Some(updated), Some(pause));
            }
        }
    }

    async fn attempt(&self, agent: &AgentHandle, update: &StoredUpdate) -> Outcome {
        let request = protocol::Request {
            id: 0,
            bot: update.bot.clone(),
            method: update.method.clone(),
            path: update.path.clone(),
            query: update.query.clone(),
            headers: update.headers.clone(),
            body: update.body.clone(),
            timeout_ms: u32::try_from(self.inner.ack_timeout.as_millis()).unwrap_or(u32::MAX),
            update_id: update.update_id,
            delivery: Delivery::Stored {
                attempt: update.attempts.saturating_add(1),
            },
        };
        match agent.call(request, self.inner.ack_timeout).await {
            Ok(response) if (200..300).contains(&response.status) => Outcome::Delivered,
            Ok(response) => Outcome::Failed(format!("bot answered {}", response.status)),
            Err(CallError::AgentGone) => Outcome::Deferred(Duration::ZERO),
            Err(CallError::Overloaded) => Outcome::Deferred(OVERLOAD_PAUSE),
            Err(CallError::Failed(failure)) if failure.kind == FailureKind::Overloaded => {
                Outcome::Deferred(OVERLOAD_PAUSE)
            }
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    /// Ends an attempt on the head of `attempted`'s queue: pops it (no `replacement`) or puts
    /// the updated record back to be retried after `pause`, and wakes the loop.
    fn finish(
        &self,
        attempted: &StoredUpdate,
        replacement: Option<Arc<StoredUpdate>>,
        pause: Option<Duration>,
    ) {
        {
            let mut state = self.lock();
            if let Some(queues) = state.bots.get_mut(&attempted.bot) {
                queues.in_flight = queues.in_flight.saturating_sub(1);
                if let Some(queue) = queues.queues.get_mut(&attempted.queue) {
                    queue.busy = false;
                    let head_is_ours = queue.items.front().is_some_and(|h| h.seq == attempted.seq);
                    match replacement {
                        Some(update) if head_is_ours => {
                            queue.items[0] = update;
                            queue.not_before =
                                pause.filter(|p| !p.is_zero()).map(|p| Instant::now() + p);
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
            }
        }
        self.inner.wake.notify_one();
    }

    /// Drops stored updates past the retention age, logging and counting each.
    async fn expire(&self) {
        let now_ms = unix_millis();
        let retention_ms =
            u64::try_from(self.inner.settings.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(retention_ms);
        let expired = match self.inner.store.expire(cutoff).await {
            Ok(expired) => expired,
            Err(error) => return tracing::error!(%error, "cannot expire old updates"),
        };
        if expired.is_empty() {
            return;
        }
        let mut state = self.lock();
        for update in &expired {
            tracing::warn!(bot = %update.bot, seq = update.seq, update_id = update.update_id, "stored update expired undelivered; dropped");
            self.inner.stats.expired.fetch_add(1, Ordering::Relaxed);
            if let Some(queues) = state.bots.get_mut(&update.bot)
                && let Some(queue) = queues.queues.get_mut(&update.queue)
            {
                // The head may be in flight; its delivery will find it gone from the store.
                let busy_head = queue
                    .busy
                    .then(|| queue.items.front().map(|h| h.seq))
                    .flatten();
                queue
                    .items
                    .retain(|u| u.seq != update.seq || busy_head == Some(u.seq));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn push(&mut self, update: Arc<StoredUpdate>) {
        let bot = self.bots.entry(update.bot.clone()).or_default();
        bot.queues
            .entry(update.queue.clone())
            .or_default()
            .items
            .push_back(update);
    }
}

/// The pause before retry number `attempts` (1-based): 1 s, 2 s, 4 s … up to a minute.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// Milliseconds since the Unix epoch, for `received_at_ms` and retention.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
