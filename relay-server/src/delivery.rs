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
/// After an agent vanished mid-delivery, long enough for its session to unregister.
const AGENT_GONE_PAUSE: Duration = Duration::from_millis(20);
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
    /// Retention dropped the head from the store while it was in flight: however the attempt
    /// ends, it must not be tried again.
    head_expired: bool,
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
                    // The last attempt is counted too, so the list shows every attempt made.
                    match inner.store.record_failure(bot, seq, &reason).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            // Expired meanwhile: there is nothing left to bury.
                            self.finish(&update, None, None);
                            return;
                        }
                        Err(error) => {
                            tracing::error!(bot, seq, %error, "cannot record a failed attempt");
                        }
                    }
                    if let Err(error) = inner.store.bury(bot, seq, &reason).await {
                        tracing::error!(bot, seq, %error, "cannot move an update to the dead-letter list");
                    }
                    tracing::warn!(bot, seq, update_id = update.update_id, attempts, %reason, "update goes to the dead-letter list");
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
            // A short pause: the session may still be unregistering, and the queue should not
            // spin on it meanwhile.
            Err(CallError::AgentGone) => Outcome::Deferred(AGENT_GONE_PAUSE),
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
                    let expired = std::mem::take(&mut queue.head_expired);
                    match replacement.filter(|_| !expired) {
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
                // The head may be in flight: it stays until its attempt ends, and then goes
                // whatever the outcome (a deferred one would otherwise be tried again).
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

#[cfg(test)]
mod tests {
    //! Each test drives a real scheduler over a real store (a redb file in a fresh temporary
    //! directory) and fake agents: [`AgentHandle`]s whose outbox the test reads and answers.
    //!
    //! Time is Tokio's paused clock, held still (see [`HeldClock`]): it moves only when a test
    //! advances it, so backoff and timeouts are exact. What the store's writer thread does takes
    //! real time; waits for it are on the wall clock, each with a deadline ([`PATIENCE`]).

    use std::cell::Cell;
    use std::future::Future;
    use std::path::PathBuf;

    use bytes::Bytes;
    use protocol::{Failure, Frame, Request, Response};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::agents::{Registration, Reply};
    use crate::update::UpdateInfo;

    /// The bot every test delivers for.
    const BOT: &str = "echo";
    /// How long the fake agent has to answer a delivery.
    const ACK_TIMEOUT: Duration = Duration::from_secs(30);
    /// Wall time a test waits for something (mostly the store's fsyncs) before it fails.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);
    /// The clock's resolution: "not a millisecond sooner" is as exact as a timer gets.
    const TICK: Duration = Duration::from_millis(1);

    /// Keeps the paused clock from moving by itself. The store's writer is an OS thread: while it
    /// fsyncs, the runtime has nothing to do, and a paused clock would auto-advance to the next
    /// timer (an ack timeout, the store's own op timeout) and fail what is merely waiting for the
    /// disk. A running `spawn_blocking` task inhibits auto-advance (documented under
    /// `tokio::time::pause`); this holds one until dropped.
    struct HeldClock {
        _release: std::sync::mpsc::Sender<()>,
    }

    impl HeldClock {
        fn hold() -> Self {
            let (release, held) = std::sync::mpsc::channel::<()>();
            // Returns when the sender drops.
            tokio::task::spawn_blocking(move || held.recv());
            Self { _release: release }
        }
    }

    /// A scheduler over a fresh store, with a registry for fake agents to join.
    struct Relay {
        scheduler: Scheduler,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        dir: PathBuf,
        sessions: Cell<u64>,
        _clock: HeldClock,
    }

    impl Relay {
        /// A relay with `settings`, not yet delivering, no agent connected.
        fn new(settings: config::Delivery) -> Self {
            let clock = HeldClock::hold();
            let dir = crate::files::tests::temp_dir("delivery");
            let (store, pending) =
                Store::open(&dir.join("store.redb"), Default::default()).expect("open store");
            let registry = Arc::new(Registry::default());
            let scheduler = Scheduler::new(store, pending, registry.clone(), settings, ACK_TIMEOUT);
            Self {
                scheduler,
                registry,
                shutdown: CancellationToken::new(),
                dir,
                sessions: Cell::new(0),
                _clock: clock,
            }
        }

        /// Starts the delivery loop.
        fn run(&self) {
            let run = self.scheduler.clone().run(self.shutdown.clone(), TICK);
            tokio::spawn(run);
        }

        /// Accepts update `update_id` of `chat`, received just now.
        async fn accept(&self, chat: i64, update_id: i64) {
            self.accept_aged(chat, update_id, Duration::ZERO).await;
        }

        /// Accepts update `update_id` of `chat`, received `age` ago, the way the webhook stores
        /// it (queue and update id read from the body).
        async fn accept_aged(&self, chat: i64, update_id: i64, age: Duration) {
            let body = format!(
                r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"chat":{{"id":{chat},"type":"private"}},"date":0,"text":"hi"}}}}"#
            );
            let info = UpdateInfo::read(body.as_bytes());
            let age_ms = u64::try_from(age.as_millis()).expect("age in range");
            let update = NewUpdate {
                bot: BOT.into(),
                queue: info.queue,
                update_id: info.update_id,
                received_at_ms: unix_millis() - age_ms,
                method: "POST".into(),
                path: String::new(),
                query: None,
                headers: vec![(
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                )],
                body: body.into(),
            };
            within("the store to take an update", self.scheduler.accept(update))
                .await
                .expect("accept");
        }

        /// Connects a fake agent for [`BOT`] and tells the scheduler, as a session does.
        fn connect(&self) -> FakeAgent {
            self.sessions.set(self.sessions.get() + 1);
            let (outbox, sent) = mpsc::channel(protocol::link::OUTBOX_CAPACITY);
            let handle = Arc::new(AgentHandle::new(
                self.sessions.get(),
                "fake".into(),
                vec![BOT.into()],
                outbox,
                100,
            ));
            let registration = self.registry.register(handle.clone());
            self.scheduler.agents_changed();
            FakeAgent {
                handle,
                sent,
                _registration: registration,
            }
        }

        /// Waits until every delivery under way is waiting for the agent's answer (any other has
        /// recorded its outcome, store writes included), then lets whatever is ready run:
        /// afterwards the relay has sent all it will send until the agent answers or the clock
        /// moves. Reads the scheduler's task tracker, as a sync point only.
        async fn settle(&self) {
            let deliveries = &self.scheduler.inner.deliveries;
            let awaiting_agent = || self.registry.route(BOT).map_or(0, |a| a.in_flight());
            until("deliveries to settle", || {
                deliveries.len() == awaiting_agent()
            })
            .await;
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        }

        /// Lets `pause` pass on the clock and returns the frame `agent` gets exactly then,
        /// checking that nothing came a tick sooner.
        async fn frame_after(&self, agent: &mut FakeAgent, pause: Duration) -> Frame {
            self.settle().await;
            tokio::time::advance(pause - TICK).await;
            self.settle().await;
            agent.assert_nothing_sent();
            tokio::time::advance(TICK).await;
            agent.next_frame().await
        }

        /// [`Relay::frame_after`], for a request.
        async fn request_after(&self, agent: &mut FakeAgent, pause: Duration) -> Request {
            match self.frame_after(agent, pause).await {
                Frame::Request(request) => request,
                other => panic!("expected a request, got {other:?}"),
            }
        }

        fn has_waiting(&self, chat_id: i64) -> bool {
            self.scheduler.has_waiting(BOT, &chat(chat_id))
        }

        fn stats(&self) -> &Stats {
            self.scheduler.stats()
        }

        fn store(&self) -> &Store {
            self.scheduler.store()
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.shutdown.cancel();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// One connected agent, as the relay sees it; dropping it disconnects.
    struct FakeAgent {
        handle: Arc<AgentHandle>,
        sent: mpsc::Receiver<Message>,
        _registration: Registration,
    }

    impl FakeAgent {
        async fn next_frame(&mut self) -> Frame {
            let message = within("a frame from the relay", self.sent.recv())
                .await
                .expect("the handle keeps the outbox open");
            decode(message)
        }

        async fn next_request(&mut self) -> Request {
            match self.next_frame().await {
                Frame::Request(request) => request,
                other => panic!("expected a request, got {other:?}"),
            }
        }

        /// Every request sent so far and not yet read.
        fn requests_sent(&mut self) -> Vec<Request> {
            std::iter::from_fn(|| self.sent.try_recv().ok())
                .map(|message| match decode(message) {
                    Frame::Request(request) => request,
                    other => panic!("expected a request, got {other:?}"),
                })
                .collect()
        }

        fn assert_nothing_sent(&mut self) {
            if let Ok(message) = self.sent.try_recv() {
                panic!("the relay sent {:?} when nothing was due", decode(message));
            }
        }

        fn answer(&self, request: &Request, status: u16) {
            let response = Response {
                id: request.id,
                status,
                headers: vec![],
                body: Bytes::new(),
            };
            assert!(self.handle.resolve(request.id, Reply::Response(response)));
        }

        fn fail(&self, request: &Request, kind: FailureKind) {
            let failure = Failure {
                id: request.id,
                kind,
                message: "test failure".into(),
            };
            assert!(self.handle.resolve(request.id, Reply::Failure(failure)));
        }
    }

    fn decode(message: Message) -> Frame {
        let Message::Binary(bytes) = message else {
            panic!("expected a binary message, got {message:?}");
        };
        protocol::decode(&bytes, protocol::MAX_FRAME_LEN).expect("frame")
    }

    /// What a test looks at in a delivery: the chat and update (read from the body, as the
    /// bot would) and which attempt it is.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        queue: String,
        update_id: i64,
        attempt: u32,
    }

    fn seen(request: &Request) -> Seen {
        assert_eq!(request.bot, BOT);
        let info = UpdateInfo::read(&request.body);
        assert_eq!(request.update_id, info.update_id);
        let Delivery::Stored { attempt } = request.delivery else {
            panic!("a stored update went out as {:?}", request.delivery);
        };
        Seen {
            queue: info.queue,
            update_id: info.update_id.expect("an update id"),
            attempt,
        }
    }

    fn chat(id: i64) -> String {
        format!("chat:{id}")
    }

    /// Runs `future` to completion, failing the test if that takes longer than [`PATIENCE`] of
    /// wall time. The clock is held, so no timer could say so.
    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        let deadline = std::time::Instant::now() + PATIENCE;
        let mut future = std::pin::pin!(future);
        loop {
            tokio::select! {
                biased;
                output = &mut future => return output,
                () = tokio::task::yield_now() => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}"
            );
        }
    }

    /// Waits until `condition` holds, within [`PATIENCE`].
    async fn until(what: &str, condition: impl Fn() -> bool) {
        within(what, async {
            while !condition() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_chat_gets_its_updates_in_the_order_they_were_accepted() {
        let relay = Relay::new(config::Delivery::default());
        relay.run();
        // Interleaved across chats, as Telegram might send them.
        let chats = [7, 8, 7, 9, 9, 8, 7, 7, 8, 9, 8, 9, 7, 8, 9];
        let mut accepted: HashMap<String, Vec<i64>> = HashMap::new();
        for (update_id, chat_id) in (100..).zip(chats) {
            relay.accept(chat_id, update_id).await;
            accepted.entry(chat(chat_id)).or_default().push(update_id);
        }
        assert_eq!(relay.store().pending_count(), 15);

        let mut agent = relay.connect();
        let mut delivered: HashMap<String, Vec<i64>> = HashMap::new();
        for _ in 0..chats.len() {
            let request = agent.next_request().await;
            let seen = seen(&request);
            assert_eq!(seen.attempt, 1);
            delivered
                .entry(seen.queue)
                .or_default()
                .push(seen.update_id);
            agent.answer(&request, 200);
        }
        relay.settle().await;
        agent.assert_nothing_sent();
        assert_eq!(delivered, accepted);
        assert_eq!(relay.store().pending_count(), 0);
        assert_eq!(relay.stats().delivered.load(Ordering::Relaxed), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn one_update_per_chat_in_flight_and_no_more_chats_than_the_window() {
        let relay = Relay::new(config::Delivery {
            chats_in_parallel: 3,
            ..config::Delivery::default()
        });
        relay.run();
        // Two rounds over chats 1..=5: update 10 + chat, then 20 + chat.
        for round in [10, 20] {
            for chat_id in 1..=5 {
                relay.accept(chat_id, round + chat_id).await;
            }
        }
        let mut agent = relay.connect();

        relay.settle().await;
        let mut in_flight = agent.requests_sent();
        let ids = |requests: &[Request]| -> Vec<i64> {
            let mut ids: Vec<i64> = requests.iter().map(|r| seen(r).update_id).collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(
            ids(&in_flight),
            [11, 12, 13],
            "the three oldest chats first"
        );

        // Chat 2 finishing frees a slot: chat 4's first update is older than chat 2's second.
        let done = in_flight.remove(1);
        assert_eq!(seen(&done).update_id, 12);
        agent.answer(&done, 200);
        relay.settle().await;
        in_flight.extend(agent.requests_sent());
        assert_eq!(ids(&in_flight), [11, 13, 14]);

        // From here on: answer the oldest request in flight, let the relay refill the window,
        // and check it stays full without ever sending two updates of one chat at once.
        let mut delivered = vec![12];
        for _ in 0..10 {
            if in_flight.is_empty() {
                break;
            }
            let done = in_flight.remove(0);
            delivered.push(seen(&done).update_id);
            agent.answer(&done, 200);
            relay.settle().await;
            in_flight.extend(agent.requests_sent());
            let mut chats: Vec<String> = in_flight.iter().map(|r| seen(r).queue).collect();
            chats.sort_unstable();
            chats.dedup();
            assert_eq!(chats.len(), in_flight.len(), "two of one chat: {chats:?}");
            // Chats whose second update is not through yet.
            let chats_left = (1..=5).filter(|c| !delivered.contains(&(20 + c))).count();
            assert_eq!(in_flight.len(), chats_left.min(3), "window not kept full");
        }
        assert!(in_flight.is_empty());
        let mut all = delivered.clone();
        all.sort_unstable();
        assert_eq!(all, [11, 12, 13, 14, 15, 21, 22, 23, 24, 25]);
        for chat_id in 1..=5 {
            let first = delivered.iter().position(|&id| id == 10 + chat_id);
            let second = delivered.iter().position(|&id| id == 20 + chat_id);
            assert!(first < second, "chat {chat_id} out of order: {delivered:?}");
        }
        assert_eq!(relay.store().pending_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_updates_are_retried_with_backoff_then_buried_and_the_chat_moves_on() {
        let relay = Relay::new(config::Delivery {
            max_attempts: 3,
            ..config::Delivery::default()
        });
        relay.run();
        relay.accept(1, 1).await;
        relay.accept(1, 2).await;
        let mut agent = relay.connect();

        let first = agent.next_request().await;
        assert_eq!((seen(&first).update_id, seen(&first).attempt), (1, 1));
        agent.answer(&first, 500);
        let second = relay
            .request_after(&mut agent, Duration::from_secs(1))
            .await;
        assert_eq!((seen(&second).update_id, seen(&second).attempt), (1, 2));
        agent.answer(&second, 500);
        let third = relay
            .request_after(&mut agent, Duration::from_secs(2))
            .await;
        assert_eq!((seen(&third).update_id, seen(&third).attempt), (1, 3));
        agent.answer(&third, 500);

        // The third failure buries update 1, and update 2 goes out at once.
        let next = agent.next_request().await;
        assert_eq!((seen(&next).update_id, seen(&next).attempt), (2, 1));
        let dead = within(
            "the dead letters",
            relay.store().dead_letters(Some(BOT), 10),
        )
        .await
        .expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].update_id, dead[0].attempts), (Some(1), 3));
        let reason = dead[0].last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("500"), "{reason}");

        agent.answer(&next, 200);
        relay.settle().await;
        assert_eq!(relay.store().pending_count(), 0);
        let stats = relay.stats();
        assert_eq!(stats.retried.load(Ordering::Relaxed), 2);
        assert_eq!(stats.buried.load(Ordering::Relaxed), 1);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_frames_and_ack_timeouts_count_as_attempts_but_overload_does_not() {
        let relay = Relay::new(config::Delivery::default());
        relay.run();
        relay.accept(1, 1).await;
        let mut agent = relay.connect();

        let first = agent.next_request().await;
        assert_eq!(seen(&first).attempt, 1);
        agent.fail(&first, FailureKind::BotUnreachable);

        let second = relay
            .request_after(&mut agent, Duration::from_secs(1))
            .await;
        assert_eq!(seen(&second).attempt, 2);
        // Never answered: at the ack timeout the relay gives up and tells the agent.
        let cancel = relay.frame_after(&mut agent, ACK_TIMEOUT).await;
        assert_eq!(cancel, Frame::Cancel(second.id));

        let third = relay
            .request_after(&mut agent, Duration::from_secs(2))
            .await;
        assert_eq!(seen(&third).attempt, 3);
        agent.fail(&third, FailureKind::Overloaded);
        let again = relay.request_after(&mut agent, OVERLOAD_PAUSE).await;
        assert_eq!(
            seen(&again).attempt,
            3,
            "an overloaded agent costs no attempt"
        );
        agent.answer(&again, 204);

        relay.settle().await;
        assert_eq!(relay.store().pending_count(), 0);
        assert_eq!(relay.store().dead_count(), 0);
        assert_eq!(relay.stats().retried.load(Ordering::Relaxed), 2);
        assert_eq!(relay.stats().delivered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_gone_mid_delivery_costs_no_attempt_and_the_next_agent_gets_the_update() {
        let relay = Relay::new(config::Delivery::default());
        relay.run();
        relay.accept(1, 1).await;
        let mut agent = relay.connect();
        let request = agent.next_request().await;
        assert_eq!(seen(&request).attempt, 1);

        drop(agent);
        relay.settle().await;
        assert!(relay.has_waiting(1));
        assert_eq!(relay.store().pending_count(), 1);
        assert_eq!(relay.stats().retried.load(Ordering::Relaxed), 0);

        // No backoff either: only the short pause that lets a session unregister.
        tokio::time::advance(AGENT_GONE_PAUSE).await;
        let mut agent = relay.connect();
        let request = agent.next_request().await;
        assert_eq!(
            seen(&request),
            Seen {
                queue: chat(1),
                update_id: 1,
                attempt: 1
            }
        );
        agent.answer(&request, 200);
        relay.settle().await;
        assert_eq!(relay.store().pending_count(), 0);
        assert!(!relay.has_waiting(1));
    }

    #[tokio::test(start_paused = true)]
    async fn updates_past_retention_are_dropped_undelivered() {
        let retention = Duration::from_secs(60);
        let relay = Relay::new(config::Delivery {
            retention,
            ..config::Delivery::default()
        });
        // Stale before the relay starts: the first sweep, at start, drops it.
        relay.accept_aged(1, 1, 2 * retention).await;
        relay.run();
        let expired = || relay.stats().expired.load(Ordering::Relaxed);
        until("the first sweep", || expired() == 1).await;
        assert_eq!(relay.store().pending_count(), 0);
        assert!(!relay.has_waiting(1));

        // Stale when it arrives between sweeps: the next sweep, a minute on, drops it.
        relay
            .accept_aged(2, 2, retention + Duration::from_secs(1))
            .await;
        assert!(relay.has_waiting(2));
        tokio::time::advance(RETENTION_SWEEP).await;
        until("the next sweep", || expired() == 2).await;
        assert_eq!(relay.store().pending_count(), 0);
        assert!(!relay.has_waiting(2));

        // An agent that connects later gets only what is fresh.
        relay.accept(2, 3).await;
        let mut agent = relay.connect();
        let request = agent.next_request().await;
        assert_eq!(seen(&request).update_id, 3);
        agent.answer(&request, 200);
        relay.settle().await;
        agent.assert_nothing_sent();
        assert_eq!(relay.stats().delivered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_update_that_expires_in_flight_is_not_delivered_again_after_its_agent_goes() {
        let retention = Duration::from_secs(60);
        let relay = Relay::new(config::Delivery {
            retention,
            ..config::Delivery::default()
        });
        relay.accept_aged(1, 1, 2 * retention).await;
        let mut agent = relay.connect();
        // The loop dispatches before its first sweep: the stale update is in flight when the
        // sweep drops it from the store.
        relay.run();
        let request = agent.next_request().await;
        assert_eq!(seen(&request).update_id, 1);
        let expired = || relay.stats().expired.load(Ordering::Relaxed);
        until("the first sweep", || expired() == 1).await;

        // The agent goes before answering (which defers the attempt): the update must not come
        // back, since retention already dropped, logged and counted it.
        drop(agent);
        relay.settle().await;
        let mut agent = relay.connect();
        relay.settle().await;
        agent.assert_nothing_sent();
        assert!(!relay.has_waiting(1));
        assert_eq!(relay.store().pending_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn has_waiting_holds_a_chat_until_its_stored_updates_are_delivered() {
        let relay = Relay::new(config::Delivery::default());
        relay.run();
        relay.accept(1, 1).await;
        assert!(relay.has_waiting(1));
        assert!(!relay.has_waiting(2));
        assert!(!relay.scheduler.has_waiting("other-bot", &chat(1)));

        let mut agent = relay.connect();
        let request = agent.next_request().await;
        assert!(relay.has_waiting(1), "in flight still holds the chat");
        agent.answer(&request, 503);
        relay.settle().await;
        assert!(
            relay.has_waiting(1),
            "waiting for a retry still holds the chat"
        );

        let retry = relay
            .request_after(&mut agent, Duration::from_secs(1))
            .await;
        agent.answer(&retry, 200);
        relay.settle().await;
        assert!(!relay.has_waiting(1));
        assert!(!relay.has_waiting(2));
    }
}
