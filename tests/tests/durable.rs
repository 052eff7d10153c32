//! Durable and hybrid delivery: what the relay answered 200 for reaches the bot, in per-chat
//! order, whether the agent was away, the relay was killed, or the bot kept failing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use e2e::{
    Answer, FakeTelegram, Received, TestAgent, TestBot, TestRelay, eventually, unused_addr,
    update_json,
};
use hyper::Method;
use relay_server::config::{BotSettings, DeliveryMode};

/// The update_ids each chat's updates reached the bot in, first arrivals only.
fn arrivals_by_chat(received: &[Received]) -> HashMap<i64, Vec<i64>> {
    let mut seen = std::collections::HashSet::new();
    let mut chats: HashMap<i64, Vec<i64>> = HashMap::new();
    for request in received {
        let update: serde_json::Value = serde_json::from_slice(&request.body).expect("json update");
        let id = update["update_id"].as_i64().expect("update_id");
        let chat = update["message"]["chat"]["id"].as_i64().expect("chat id");
        if seen.insert(id) {
            chats.entry(chat).or_default().push(id);
        }
    }
    chats
}

/// Sets `bot` to durable mode in `config`.
fn make_durable(config: &mut relay_server::Config, bot: &str) {
    let settings = BotSettings {
        mode: Some(DeliveryMode::Durable),
        ..BotSettings::default()
    };
    config.bots.insert(bot.into(), settings);
}

/// A bot that answers 500 until the returned flag is cleared, then 200.
async fn failing_bot() -> (TestBot, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let bot = TestBot::start(move |_| {
        let status = if flag.load(Ordering::SeqCst) {
            500
        } else {
            200
        };
        async move { Answer::status(status) }
    })
    .await;
    (bot, broken)
}

fn assert_in_order(chats: &HashMap<i64, Vec<i64>>) {
    for (chat, ids) in chats {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "chat {chat} out of order: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_agent_away_updates_get_200_and_arrive_in_chat_order_when_it_returns() {
    let relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let config = agent.config.clone();
    agent.kill();
    relay.wait_until_gone("echo").await;

    let telegram = FakeTelegram::new(&relay);
    for i in 0..30u64 {
        let reply = telegram
            .send(
                "/hook/echo",
                update_json(100 + i, (i % 3) as i64 + 1, "while away"),
            )
            .await;
        assert_eq!(reply.status, 200, "stored updates are acknowledged");
        assert!(reply.body.is_empty());
    }
    assert_eq!(bot.count(), 0);
    assert_eq!(relay.stat("waiting").await, 30);

    let returned = Instant::now();
    let _agent = TestAgent::start(config);
    eventually("the backlog is delivered", || bot.count() >= 30).await;
    println!(
        "backlog of 30 delivered {:?} after the agent was started",
        returned.elapsed()
    );
    let chats = arrivals_by_chat(&bot.received());
    assert_eq!(chats.values().map(Vec::len).sum::<usize>(), 30);
    assert_in_order(&chats);
    relay.stat_reaches("delivered", 30).await;
    assert_eq!(relay.stat("waiting").await, 0);
    assert_eq!(bot.count(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_answers_200_at_once_and_delivers_the_same_request() {
    let mut config = TestRelay::config();
    make_durable(&mut config, "echo");
    let relay = TestRelay::start_with(config);
    let bot =
        TestBot::start(|_| async { Answer::with_body(200, "text/plain", "the bot's answer") })
            .await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/webhook"))]).await;

    let update = update_json(7, 42, "durable");
    let reply = FakeTelegram::new(&relay)
        .with_secret("s3cret")
        .send("/hook/echo/x?y=1", update.clone())
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.is_empty(),
        "the bot's answer does not come back in durable mode"
    );

    eventually("the bot has the update", || bot.count() == 1).await;
    let got = &bot.received()[0];
    assert_eq!(got.uri, "/webhook/x?y=1");
    assert_eq!(got.body, Bytes::from(update));
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        got.header("x-telegram-bot-api-secret-token").as_deref(),
        Some("s3cret")
    );
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_after_answering_200_loses_nothing() {
    let mut relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let config = agent.config.clone();
    agent.kill();
    relay.wait_until_gone("echo").await;
    let telegram = FakeTelegram::new(&relay);
    for i in 0..20u64 {
        assert_eq!(
            telegram
                .send("/hook/echo", update_json(500 + i, 9, "x"))
                .await
                .status,
            200
        );
    }
    relay.restart();
    assert_eq!(
        relay.stat("waiting").await,
        20,
        "all 20 are back after the crash"
    );
    let _agent = TestAgent::start(config);
    eventually("all 20 are delivered", || bot.count() == 20).await;
    assert_in_order(&arrivals_by_chat(&bot.received()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_keeps_failing_is_parked_listed_and_can_be_replayed() {
    let mut config = TestRelay::config();
    config.delivery.max_attempts = 2;
    make_durable(&mut config, "echo");
    let relay = TestRelay::start_with(config);
    let (bot, broken) = failing_bot().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    assert_eq!(
        FakeTelegram::new(&relay)
            .send("/hook/echo", update_json(1, 5, "poison"))
            .await
            .status,
        200
    );

    eventually("two attempts reached the bot", || bot.count() == 2).await;
    let mut dead = serde_json::Value::Null;
    for _ in 0..500 {
        dead = relay.admin(Method::GET, "/dead-letters?bot=echo").await;
        if dead.as_array().is_some_and(|d| d.len() == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let letter = &dead[0];
    assert_eq!(letter["update_id"], 1);
    assert_eq!(letter["attempts"], 2);
    assert!(
        letter["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{letter}"
    );
    assert_eq!(relay.stat("buried").await, 1);

    broken.store(false, Ordering::SeqCst);
    let seq = letter["seq"].as_u64().expect("seq");
    relay
        .admin(Method::POST, &format!("/dead-letters/echo/{seq}/replay"))
        .await;
    eventually("the replayed update is delivered", || bot.count() == 3).await;
    let empty = relay.admin(Method::GET, "/dead-letters").await;
    assert_eq!(empty.as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_down_for_longer_than_max_attempts_gets_every_update_in_order_once_it_is_back() {
    let mut config = TestRelay::config();
    config.delivery.max_attempts = 2;
    make_durable(&mut config, "echo");
    let relay = TestRelay::start_with(config);
    // The agent is up; its bot is not (nothing listens at its address yet).
    let addr = unused_addr();
    let _agent = TestAgent::connect(&relay, &[("echo", format!("http://{addr}/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    for i in 0..6u64 {
        let chat = (i % 2) as i64 + 1;
        let reply = telegram
            .send(
                "/hook/echo",
                update_json(100 + i, chat, "while the bot is down"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }

    // Three tries for each chat's head (at 0 s, 1 s, 3 s), more than max_attempts: none buried.
    let deadline = tokio::time::Instant::now() + e2e::DEADLINE;
    while relay.stat("unreachable").await < 6 {
        assert_eq!(
            relay.stat("buried").await,
            0,
            "an unreachable bot buried updates"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay stopped retrying"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let bot = TestBot::start_at(addr, |_| async { Answer::status(200) }).await;
    eventually("all 6 are delivered", || bot.count() >= 6).await;
    let chats = arrivals_by_chat(&bot.received());
    assert_eq!(chats.values().map(Vec::len).sum::<usize>(), 6);
    assert_in_order(&chats);
    relay.stat_reaches("delivered", 6).await;
    assert_eq!(relay.stat("buried").await, 0);
    assert_eq!(relay.stat("dead_letters").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_with_503_so_telegram_keeps_the_update() {
    let mut config = TestRelay::config();
    config.limits.max_body_bytes = 4096;
    config.delivery.max_store_bytes = 4096;
    make_durable(&mut config, "echo");
    let relay = TestRelay::start_with(config);
    let telegram = FakeTelegram::new(&relay);
    let mut statuses = Vec::new();
    for i in 0..10u64 {
        statuses.push(
            telegram
                .send("/hook/echo", update_json(i, 1, &"x".repeat(600)))
                .await
                .status,
        );
    }
    let accepted = statuses.iter().take_while(|s| **s == 200).count();
    assert!(accepted >= 1, "{statuses:?}");
    assert!(
        statuses[accepted..].iter().all(|s| *s == 503),
        "{statuses:?}"
    );
    assert!(accepted < 10);
    assert_eq!(relay.stat("refused_full").await as usize, 10 - accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_can_ask_for_a_mode_and_the_relays_configuration_wins() {
    let mut config = TestRelay::config();
    let pinned = BotSettings {
        mode: Some(DeliveryMode::Passthrough),
        ..BotSettings::default()
    };
    config.bots.insert("pinned".into(), pinned);
    let relay = TestRelay::start_with(config);
    let bot =
        TestBot::start(|_| async { Answer::with_body(200, "text/plain", "live answer") }).await;
    let mut agent_config =
        TestAgent::config(&relay, &[("asked", bot.url("/")), ("pinned", bot.url("/"))]);
    for bot in &mut agent_config.bots {
        bot.mode = Some(DeliveryMode::Durable);
    }
    let mut agent = TestAgent::start(agent_config);
    relay.wait_for_bot("asked").await;
    let telegram = FakeTelegram::new(&relay);

    let asked = telegram.send("/hook/asked", update_json(1, 1, "x")).await;
    assert_eq!(
        (asked.status, asked.body.is_empty()),
        (200, true),
        "durable, as the agent asked"
    );
    let pinned = telegram.send("/hook/pinned", update_json(2, 1, "x")).await;
    assert_eq!(
        &pinned.body[..],
        b"live answer",
        "passthrough, as the relay is configured"
    );
    eventually("both reach the bot", || bot.count() == 2).await;

    // The mode the agent asked for still holds while it is away.
    agent.kill();
    relay.wait_until_gone("asked").await;
    assert_eq!(
        telegram
            .send("/hook/asked", update_json(3, 1, "x"))
            .await
            .status,
        200
    );
    assert_eq!(
        telegram
            .send("/hook/pinned", update_json(4, 1, "x"))
            .await
            .status,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_chat_with_stored_updates_waits_for_them_instead_of_overtaking() {
    let relay = TestRelay::start();
    let (bot, broken) = failing_bot().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let mut config = agent.config.clone();
    agent.kill();
    relay.wait_until_gone("echo").await;
    let telegram = FakeTelegram::new(&relay);
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(1, 5, "stored"))
            .await
            .status,
        200
    );

    // The agent comes back asking for passthrough while update 1 is still failing.
    config.bots[0].mode = Some(DeliveryMode::Passthrough);
    let _agent = TestAgent::start(config);
    relay.wait_for_bot("echo").await;
    eventually("the stored update is tried", || bot.count() >= 1).await;
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(2, 5, "behind"))
            .await
            .status,
        503
    );
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(3, 6, "other chat"))
            .await
            .status,
        500
    );

    broken.store(false, Ordering::SeqCst);
    for _ in 0..1000 {
        if telegram
            .send("/hook/echo", update_json(2, 5, "behind"))
            .await
            .status
            == 200
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let order: Vec<i64> = bot
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["update_id"]
                .as_i64()
                .expect("id")
        })
        .filter(|id| *id != 3)
        .collect();
    let first_two = order
        .iter()
        .position(|id| *id == 2)
        .expect("update 2 arrived");
    assert!(
        order[..first_two].contains(&1),
        "update 2 overtook update 1: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_stored_delivery_under_way_finish() {
    let mut config = TestRelay::config();
    make_durable(&mut config, "echo");
    let mut relay = TestRelay::start_with(config);
    let bot = TestBot::slow(std::time::Duration::from_millis(500)).await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    assert_eq!(
        FakeTelegram::new(&relay)
            .send("/hook/echo", update_json(1, 1, "x"))
            .await
            .status,
        200
    );
    eventually("the bot is working on it", || bot.count() == 1).await;
    relay.stop().await;
    relay.restart();
    assert_eq!(
        relay.stat("waiting").await,
        0,
        "the delivery finished before the sessions closed"
    );
    assert_eq!(bot.count(), 1);
}
