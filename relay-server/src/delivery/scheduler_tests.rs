//! Each test drives a real scheduler over a real store (a redb file in a fresh temporary
//! directory) and fake agents: [`AgentHandle`]s whose outbox the test reads and answers.
//!
//! Time is Tokio's paused clock, held still (see [`HeldClock`]): it moves only when a test
//! advances it, so backoff and timeouts are exact. What the store's writer thread does takes
//! real time; waits for it are on the wall clock, each with a deadline ([`PATIENCE`]).

use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use std::collections::HashMap;

use bytes::Bytes;
use protocol::{Failure, FailureKind, Frame, Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::delivery::update::UpdateInfo;
use crate::tunnel::handle::Reply;
use crate::tunnel::registry::Registration;

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
    fn new(settings: DeliverySettings) -> Self {
        let clock = HeldClock::hold();
        let dir = test_support::temp_dir("delivery");
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
            service::share::FairLimit::new(100, 0, [BOT]),
        ));
        let registration = self.registry.register(handle.clone());
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
    let relay = Relay::new(DeliverySettings::default());
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
    let relay = Relay::new(DeliverySettings {
        chats_in_parallel: 3,
        ..DeliverySettings::default()
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

/// What was logged at warn and above on this thread, as plain text; captures from
/// [`Captured::start`] until the guard drops. Tests run on one thread, tasks included.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn failing_updates_are_retried_with_backoff_then_buried_and_the_chat_moves_on() {
    let (log, _capture) = Captured::start();
    let relay = Relay::new(DeliverySettings {
        max_attempts: 3,
        ..DeliverySettings::default()
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

    // One warning for the burial, naming the update and why, never its body.
    let log = log.text();
    let burials: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("dead-letter list"))
        .collect();
    assert_eq!(burials.len(), 1, "{log}");
    for field in [
        "WARN",
        "bot=\"echo\"",
        "queue=chat:1",
        "update_id=1",
        "attempts=3",
        "last_error=bot answered 500",
    ] {
        assert!(
            burials[0].contains(field),
            "{field} missing: {}",
            burials[0]
        );
    }
    assert!(!log.contains("\"text\""), "a body in the log: {log}");
}

#[tokio::test(start_paused = true)]
async fn bot_timeouts_and_bad_answers_count_as_attempts_but_overload_does_not() {
    let relay = Relay::new(DeliverySettings::default());
    relay.run();
    relay.accept(1, 1).await;
    let mut agent = relay.connect();

    let first = agent.next_request().await;
    assert_eq!(seen(&first).attempt, 1);
    agent.fail(&first, FailureKind::BotTimeout);

    let second = relay
        .request_after(&mut agent, Duration::from_secs(1))
        .await;
    assert_eq!(seen(&second).attempt, 2);
    agent.fail(&second, FailureKind::BadBotResponse);

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
    assert_eq!(relay.stats().unreachable.load(Ordering::Relaxed), 0);
    assert_eq!(relay.stats().delivered.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_bot_reported_a_little_after_the_deadline_still_counts() {
    let relay = Relay::new(DeliverySettings::default());
    relay.run();
    relay.accept(1, 1).await;
    let mut agent = relay.connect();
    let first = agent.next_request().await;
    // The agent's report of a slow bot crossed a slow link and arrives after the deadline it
    // was given: it is the bot's fault still, not a silent agent's.
    for pause in [ACK_TIMEOUT, SLOW_BOT_REPORT_GRACE / 2] {
        relay.settle().await;
        tokio::time::advance(pause).await;
    }
    relay.settle().await;
    agent.fail(&first, FailureKind::BotTimeout);
    let second = relay
        .request_after(&mut agent, Duration::from_secs(1))
        .await;
    assert_eq!(seen(&second).attempt, 2, "the slow bot cost an attempt");
    assert_eq!(relay.stats().unreachable.load(Ordering::Relaxed), 0);
    agent.answer(&second, 200);
    relay.settle().await;
}

#[tokio::test(start_paused = true)]
async fn a_bot_down_for_longer_than_max_attempts_gets_its_updates_in_order_once_it_is_back() {
    let relay = Relay::new(DeliverySettings {
        max_attempts: 2,
        ..DeliverySettings::default()
    });
    relay.run();
    relay.accept(1, 1).await;
    relay.accept(1, 2).await;
    let mut agent = relay.connect();

    // The agent is up, the bot is not: eight attempts, four times max_attempts, and a silent
    // agent (the relay's own deadline) among them, none of them counted.
    let mut request = agent.next_request().await;
    let mut pause = Duration::from_secs(1);
    for round in 0..8 {
        assert_eq!(
            (seen(&request).update_id, seen(&request).attempt),
            (1, 1),
            "round {round}: an unreachable bot costs no attempt"
        );
        if round == 3 {
            let cancel = relay
                .frame_after(&mut agent, ACK_TIMEOUT + SLOW_BOT_REPORT_GRACE)
                .await;
            assert_eq!(cancel, Frame::Cancel(request.id));
        } else {
            agent.fail(&request, FailureKind::BotUnreachable);
        }
        request = relay.request_after(&mut agent, pause).await;
        pause = (pause * 2).min(MAX_BACKOFF);
    }
    assert_eq!(relay.store().dead_count(), 0);
    assert_eq!(relay.stats().buried.load(Ordering::Relaxed), 0);
    assert_eq!(relay.stats().retried.load(Ordering::Relaxed), 0);
    assert_eq!(relay.stats().unreachable.load(Ordering::Relaxed), 8);
    assert!(relay.has_waiting(1));

    // The bot is back: both updates, in order.
    assert_eq!(seen(&request).update_id, 1);
    agent.answer(&request, 200);
    let next = agent.next_request().await;
    assert_eq!((seen(&next).update_id, seen(&next).attempt), (2, 1));
    agent.answer(&next, 200);
    relay.settle().await;
    assert_eq!(relay.store().pending_count(), 0);
    assert_eq!(relay.store().dead_count(), 0);
    assert_eq!(relay.stats().delivered.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_spell_neither_counts_nor_resets_the_attempts_a_bad_answer_made() {
    let relay = Relay::new(DeliverySettings {
        max_attempts: 2,
        ..DeliverySettings::default()
    });
    relay.run();
    relay.accept(1, 1).await;
    let mut agent = relay.connect();

    let first = agent.next_request().await;
    agent.answer(&first, 500);
    let mut request = relay
        .request_after(&mut agent, Duration::from_secs(1))
        .await;
    // Three unreachable rounds: the backoff starts over for them, the attempt stays at 2.
    for pause in [1, 2, 4] {
        assert_eq!(seen(&request).attempt, 2);
        agent.fail(&request, FailureKind::BotUnreachable);
        request = relay
            .request_after(&mut agent, Duration::from_secs(pause))
            .await;
    }
    assert_eq!(seen(&request).attempt, 2);
    agent.answer(&request, 500);
    relay.settle().await;
    let dead = within(
        "the dead letters",
        relay.store().dead_letters(Some(BOT), 10),
    )
    .await
    .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(relay.stats().buried.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_agent_gone_mid_delivery_costs_no_attempt_and_the_next_agent_gets_the_update() {
    let relay = Relay::new(DeliverySettings::default());
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
    let relay = Relay::new(DeliverySettings {
        retention,
        ..DeliverySettings::default()
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
    let relay = Relay::new(DeliverySettings {
        retention,
        ..DeliverySettings::default()
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
    let relay = Relay::new(DeliverySettings::default());
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
