//! Delivery from the store: the loop that starts an attempt on each queue's head when its bot has
//! an agent, records how it ended (delivered, retried with backoff, or buried in the dead-letter
//! list) and drops updates past retention.
//!
//! The failure policy follows Telegram's own: an update that cannot reach its bot (agent gone,
//! silent or busy, bot not accepting connections) is retried, with backoff but without counting
//! an attempt, until retention drops it; only what the bot did with it (a non-2xx answer, or no
//! answer in time after it took the request) counts towards `max_attempts` and the dead-letter
//! list. The disk is written only when an update arrives, is
//! delivered, fails or is buried; what to send next comes from [`super::queues`], in memory.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use protocol::Delivery;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::notice::{LogBudget, Stats, store_trouble};
use super::queues::Queues;
use super::store::{NewUpdate, Store, StoreError, StoredUpdate, clip};
use crate::config::DeliverySettings;
use crate::tunnel::handle::Retry;
use crate::tunnel::{AgentHandle, CallError, Registry};

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`]. The
/// same steps serve failed attempts and attempts that could not reach the bot (each counted apart).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Telegram's own retries settle at one a minute or two; so do ours. For a bot that is down this
/// is also how soon after it comes back its updates move again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An agent that said it is overloaded gets a short breather before the queue tries again.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(200);
/// After an agent vanished mid-delivery: a short pause, since the session may still be
/// unregistering and the queue should not spin on it meanwhile.
const AGENT_GONE_PAUSE: Duration = Duration::from_millis(20);
/// A stored delivery waits this much longer than the deadline it gives the agent, so that the
/// agent's own report of a slow bot (which counts as an attempt) arrives even over a slow link;
/// only an agent silent past it is taken for one that cannot reach its bot (which does not).
pub(crate) const SLOW_BOT_REPORT_GRACE: Duration = Duration::from_secs(5);
/// How often expired updates are looked for. Retention is counted in hours; a minute is precise enough.
const RETENTION_SWEEP: Duration = Duration::from_secs(60);

/// The stored-delivery engine of one relay; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    registry: Arc<Registry>,
    settings: DeliverySettings,
    /// How long the agent has to answer a stored delivery before it counts as failed.
    ack_timeout: Duration,
    queues: Mutex<Queues>,
    wake: Notify,
    stats: Stats,
    deliveries: TaskTracker,
    /// Rate bounds on the warnings for dead letters, unreachable bots and expired updates.
    burial_log: LogBudget,
    unreachable_log: LogBudget,
    expiry_log: LogBudget,
}

/// How one delivery attempt ended.
enum Outcome {
    Delivered,
    /// Agent gone or busy: try again after this short pause, without counting an attempt.
    Deferred(Duration),
    /// The bot could not be reached: back off, without counting an attempt.
    Unreachable(CallError),
    /// The bot answered badly or too late: counts towards `max_attempts`.
    Failed(AttemptError),
}

/// Why an attempt failed; its text is kept with the update as `last_error`.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// The bot answered, but not with a 2xx.
    #[error("bot answered {0}")]
    Status(u16),
    /// No answer came back.
    #[error(transparent)]
    Call(CallError),
}

impl Scheduler {
    /// A scheduler over `store`, starting with the `pending` updates it held on open.
    pub(crate) fn new(
        store: Store,
        pending: Vec<StoredUpdate>,
        registry: Arc<Registry>,
        settings: DeliverySettings,
        ack_timeout: Duration,
    ) -> Self {
        let mut queues = Queues::default();
        for update in pending {
            queues.push(Arc::new(update));
        }
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                settings,
                ack_timeout,
                queues: Mutex::new(queues),
                wake: Notify::new(),
                stats: Stats::default(),
                deliveries: TaskTracker::new(),
                burial_log: LogBudget::new(),
                unreachable_log: LogBudget::new(),
                expiry_log: LogBudget::new(),
            }),
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The store underneath.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether `bot`'s `queue` has stored updates not yet delivered: a new update of that chat
    /// must then be stored too, so it cannot overtake them.
    pub(crate) fn has_waiting(&self, bot: &str, queue: &str) -> bool {
        self.lock().has_waiting(bot, queue)
    }

    /// Stores `update` durably and queues it for delivery. When this returns `Ok`, the update
    /// survives a crash, and the relay may answer 200.
    pub(crate) async fn accept(&self, update: NewUpdate) -> Result<(), StoreError> {
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
    pub(crate) fn enqueue(&self, update: StoredUpdate) {
        self.lock().push(Arc::new(update));
        self.inner.wake.notify_one();
    }

    /// Updates waiting (in flight included).
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting()
    }

    /// Runs deliveries until `shutdown` fires, then waits up to `grace` for those in flight.
    pub(crate) async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let mut sweep = tokio::time::interval(RETENTION_SWEEP);
        loop {
            let next = self.dispatch();
            let sleep =
                tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + RETENTION_SWEEP));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                // An agent connected, so its bots' queues may move.
                () = self.inner.registry.registered() => {}
                () = sleep => {}
                _ = sweep.tick() => self.expire().await,
            }
        }
        self.inner.deliveries.close();
        let _ = tokio::time::timeout(grace, self.inner.deliveries.wait()).await;
    }

    /// Starts every delivery that may start now; returns when the next held-back queue is due.
    fn dispatch(&self) -> Option<Instant> {
        let window = self.inner.settings.chats_in_parallel;
        let registry = &self.inner.registry;
        let (starts, next) = self
            .lock()
            .take_ready(Instant::now(), window, |bot| registry.route(bot));
        for (agent, update) in starts {
            let scheduler = self.clone();
            self.inner
                .deliveries
                .spawn(async move { scheduler.attempt_and_record(agent, update).await });
        }
        next
    }

    /// Makes one attempt and records its outcome.
    async fn attempt_and_record(&self, agent: Arc<AgentHandle>, update: Arc<StoredUpdate>) {
        let outcome = self.attempt(&agent, &update).await;
        let inner = &self.inner;
        let (bot, seq) = (update.bot.as_str(), update.seq);
        match outcome {
            Outcome::Delivered => {
                if let Err(error) = inner.store.remove(bot, seq).await {
                    // A failing store removes it once it works again; otherwise it stays on disk
                    // and comes back after a restart, and the agent's duplicate window keeps the
                    // bot from seeing it twice.
                    store_trouble(bot, seq, &error, "remove a delivered update");
                }
                if update.unreachable > 0 {
                    let unreachable = update.unreachable;
                    tracing::info!(
                        bot,
                        seq,
                        unreachable,
                        "bot reachable again; update delivered"
                    );
                }
                inner.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.finish(&update, None, None);
            }
            Outcome::Deferred(pause) => {
                self.finish(&update, Some(Arc::clone(&update)), Some(pause))
            }
            Outcome::Unreachable(error) => self.unreachable(&update, &error),
            Outcome::Failed(error) => self.failed(&update, &error).await,
        }
    }

    /// An attempt that did not reach the bot: backs off by the unreachable streak, keeps the
    /// error in memory for the record, and leaves `attempts` (and the disk) alone.
    fn unreachable(&self, update: &Arc<StoredUpdate>, error: &CallError) {
        let inner = &self.inner;
        inner.stats.unreachable.fetch_add(1, Ordering::Relaxed);
        let streak = update.unreachable.saturating_add(1);
        let pause = backoff(streak);
        let (bot, seq, update_id) = (update.bot.as_str(), update.seq, update.update_id);
        // One warning when an update first finds its bot unreachable; the retries at debug.
        if streak == 1 {
            if let Some(left_out) = inner.unreachable_log.allow() {
                tracing::warn!(bot, queue = %update.queue, seq, update_id, %error, left_out, "bot cannot be reached; retrying until it answers or the update expires, without counting attempts");
            }
        } else {
            tracing::debug!(bot, seq, streak, ?pause, %error, "bot still cannot be reached");
        }
        let mut retried = StoredUpdate::clone(update);
        retried.unreachable = streak;
        retried.last_error = Some(clip(&format!("bot unreachable: {error}")));
        self.finish(update, Some(Arc::new(retried)), Some(pause));
    }

    /// A counted failure: records it, then retries with backoff or, after the last attempt,
    /// buries the update, counting and logging the burial.
    async fn failed(&self, update: &Arc<StoredUpdate>, error: &AttemptError) {
        let inner = &self.inner;
        let (bot, seq) = (update.bot.as_str(), update.seq);
        let reason = error.to_string();
        let attempts = update.attempts.saturating_add(1);
        // The last attempt is recorded too, so the dead-letter list shows every attempt made.
        let updated = match inner.store.record_failure(bot, seq, &reason).await {
            Ok(Some(updated)) => Arc::new(updated),
            Ok(None) => {
                // Gone from the store (expired meanwhile): nothing left to retry or bury.
                self.finish(update, None, None);
                return;
            }
            Err(error) => {
                store_trouble(bot, seq, &error, "record a failed attempt");
                let mut copy = StoredUpdate::clone(update);
                copy.attempts = attempts;
                copy.unreachable = 0;
                copy.last_error = Some(clip(&reason));
                Arc::new(copy)
            }
        };
        if attempts >= inner.settings.max_attempts {
            if let Err(error) = inner.store.bury(bot, seq, &reason).await {
                // Still pending on disk: keep it queued, and the next failure buries it.
                store_trouble(bot, seq, &error, "move an update to the dead-letter list");
                self.finish(update, Some(updated), Some(backoff(attempts)));
                return;
            }
            inner.stats.buried.fetch_add(1, Ordering::Relaxed);
            if let Some(left_out) = inner.burial_log.allow() {
                tracing::warn!(bot, queue = %update.queue, seq, update_id = update.update_id, attempts, last_error = %reason, left_out, "update goes to the dead-letter list");
            }
            self.finish(update, None, None);
            return;
        }
        inner.stats.retried.fetch_add(1, Ordering::Relaxed);
        let pause = backoff(attempts);
        tracing::debug!(bot, seq, attempts, ?pause, %reason, "delivery failed; will retry");
        self.finish(update, Some(updated), Some(pause));
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
        match agent
            .call(request, self.inner.ack_timeout + SLOW_BOT_REPORT_GRACE)
            .await
        {
            Ok(response) if (200..300).contains(&response.status) => Outcome::Delivered,
            Ok(response) => Outcome::Failed(AttemptError::Status(response.status)),
            Err(error) => match error.retry() {
                Retry::WhenReconnected => Outcome::Deferred(AGENT_GONE_PAUSE),
                Retry::WhenLessBusy => Outcome::Deferred(OVERLOAD_PAUSE),
                Retry::WhenReachable => Outcome::Unreachable(error),
                Retry::Counted => Outcome::Failed(AttemptError::Call(error)),
            },
        }
    }

    /// Ends an attempt on the head of `attempted`'s queue (see [`Queues::finish`]) and wakes
    /// the loop.
    fn finish(
        &self,
        attempted: &StoredUpdate,
        replacement: Option<Arc<StoredUpdate>>,
        pause: Option<Duration>,
    ) {
        self.lock().finish(attempted, replacement, pause);
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
            Err(error @ StoreError::Failing(_)) => {
                return tracing::debug!(%error, "store failing; expiry waits");
            }
            Err(error) => return tracing::error!(%error, "cannot expire old updates"),
        };
        if expired.is_empty() {
            return;
        }
        let mut queues = self.lock();
        for update in &expired {
            self.inner.stats.expired.fetch_add(1, Ordering::Relaxed);
            let held = queues.drop_expired(update);
            if let Some(left_out) = self.inner.expiry_log.allow() {
                let last_error = held.as_deref().unwrap_or(update).last_error.as_deref();
                tracing::warn!(bot = %update.bot, queue = %update.queue, seq = update.seq, update_id = update.update_id, attempts = update.attempts, last_error, left_out, "stored update expired undelivered; dropped");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The pause before retry number `attempts` (1-based, counted or unreachable): 1 s, 2 s, 4 s …
/// up to a minute.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// Milliseconds since the Unix epoch, for `received_at_ms` and retention.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
