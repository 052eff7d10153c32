//! The decision table: each mode, with and without an agent, with and without stored updates
//! waiting in the chat, and which mode wins.

use std::time::Duration;

use protocol::link::OUTBOX_CAPACITY;
use test_support::TempDir;
use tokio::sync::mpsc;

use super::*;
use crate::config::DeliverySettings;
use crate::delivery::store::{Store, StoreLimits};
use crate::tunnel::registry::Registration;

const BOT: &str = "echo";
const CHAT: &str = "chat:1";

/// A policy over a real (empty) store, with no delivery loop: what is accepted stays waiting.
struct Setup {
    policy: Policy,
    bots: Arc<KnownBots>,
    registry: Arc<Registry>,
    scheduler: Scheduler,
    _dir: TempDir,
}

fn setup(operator: &[(&str, DeliveryMode)], default: DeliveryMode) -> Setup {
    let dir = TempDir::new("mode");
    let (store, pending) =
        Store::open(&dir.path().join("store.redb"), StoreLimits::default()).expect("store");
    let registry = Arc::new(Registry::default());
    let scheduler = Scheduler::new(
        store,
        pending,
        registry.clone(),
        DeliverySettings::default(),
        Duration::from_secs(30),
    );
    let bots = Arc::new(KnownBots::new([BOT]));
    let operator = operator
        .iter()
        .map(|(bot, mode)| (bot.to_string(), *mode))
        .collect();
    let policy = Policy::new(
        operator,
        default,
        bots.clone(),
        registry.clone(),
        scheduler.clone(),
    );
    Setup {
        policy,
        bots,
        registry,
        scheduler,
        _dir: dir,
    }
}

impl Setup {
    /// An agent for [`BOT`], registered until the guard drops.
    fn connect(
        &self,
    ) -> (
        Registration,
        mpsc::Receiver<tokio_tungstenite::tungstenite::Message>,
    ) {
        let (outbox, sent) = mpsc::channel(OUTBOX_CAPACITY);
        let handle = Arc::new(AgentHandle::new(
            1,
            "test".into(),
            vec![BOT.into()],
            outbox,
            service::share::FairLimit::new(8, 0, [BOT]),
        ));
        (self.registry.register(handle), sent)
    }

    /// Stores an update of [`CHAT`], which then waits (no loop delivers it).
    async fn backlog(&self) {
        let update = NewUpdate {
            bot: BOT.into(),
            queue: CHAT.into(),
            update_id: Some(1),
            received_at_ms: 0,
            method: "POST".into(),
            path: String::new(),
            query: None,
            headers: vec![],
            body: Bytes::from_static(b"{}"),
        };
        self.scheduler.accept(update).await.expect("stored");
    }

    /// Where a webhook of [`CHAT`] goes, in words; `Err` when refused before the body.
    fn route(&self) -> Result<String, Wait> {
        let admitted = self.policy.admit(BOT)?;
        Ok(match self.policy.route(admitted, BOT, CHAT) {
            Route::Live {
                store_on_failure, ..
            } => format!("live, store on failure: {store_on_failure}"),
            Route::Store => "store".into(),
            Route::Wait(wait) => format!("wait: {wait:?}"),
        })
    }
}

#[tokio::test]
async fn each_mode_routes_as_documented() {
    use DeliveryMode::*;
    // (mode, agent connected, stored updates waiting in the chat) -> route
    let table: [(DeliveryMode, bool, bool, Result<&str, Wait>); 12] = [
        (Auto, true, false, Ok("live, store on failure: true")),
        (Auto, true, true, Ok("store")),
        (Auto, false, false, Ok("store")),
        (Auto, false, true, Ok("store")),
        (Durable, true, false, Ok("store")),
        (Durable, true, true, Ok("store")),
        (Durable, false, false, Ok("store")),
        (Durable, false, true, Ok("store")),
        (
            Passthrough,
            true,
            false,
            Ok("live, store on failure: false"),
        ),
        (Passthrough, true, true, Ok("wait: Backlog")),
        (Passthrough, false, false, Err(Wait::NoAgent)),
        (Passthrough, false, true, Err(Wait::NoAgent)),
    ];
    for (mode, agent, backlog, want) in table {
        let setup = setup(&[], mode);
        let _agent = agent.then(|| setup.connect());
        if backlog {
            setup.backlog().await;
        }
        let got = setup.route();
        assert_eq!(
            got,
            want.map(str::to_owned),
            "{mode:?}, agent: {agent}, backlog: {backlog}"
        );
    }
}

#[tokio::test]
async fn the_operator_wins_over_the_agent_and_the_agent_over_the_default() {
    let setup = setup(&[], DeliveryMode::Auto);
    assert_eq!(setup.policy.mode_of(BOT), DeliveryMode::Auto);
    setup
        .bots
        .note_modes(&[BOT.into()], &[(BOT.into(), DeliveryMode::Durable)]);
    assert_eq!(setup.policy.mode_of(BOT), DeliveryMode::Durable);
    let setup_with_operator = self::setup(&[(BOT, DeliveryMode::Passthrough)], DeliveryMode::Auto);
    setup_with_operator
        .bots
        .note_modes(&[BOT.into()], &[(BOT.into(), DeliveryMode::Durable)]);
    assert_eq!(
        setup_with_operator.policy.mode_of(BOT),
        DeliveryMode::Passthrough
    );
}

#[test]
fn only_auto_mode_stores_after_a_failure_the_bot_cannot_have_seen() {
    assert!(Policy::store_after_failure(true, &CallError::AgentGone));
    assert!(Policy::store_after_failure(true, &CallError::Overloaded));
    assert!(!Policy::store_after_failure(false, &CallError::AgentGone));
    assert!(!Policy::store_after_failure(
        true,
        &CallError::Timeout(Duration::from_secs(1))
    ));
}
