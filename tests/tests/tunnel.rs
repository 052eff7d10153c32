//! The tunnel itself: many requests on one connection, several agents, and the failures a
//! long-running deployment meets (agents and relays dying and coming back, a wrong token).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::{Answer, FakeTelegram, TestAgent, TestBot, TestRelay, update_json};
use relay_agent::AgentError;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_requests_are_in_flight_at_once_over_one_agent() {
    const IN_FLIGHT: usize = 100;
    let relay = TestRelay::start();
    // The bot holds every request until all hundred have arrived, which can only happen if the
    // tunnel carries them at the same time.
    let arrived = Arc::new(AtomicUsize::new(0));
    let all_here = Arc::new(Notify::new());
    let bot = {
        let (arrived, all_here) = (arrived.clone(), all_here.clone());
        TestBot::start(move |request| {
            let (arrived, all_here) = (arrived.clone(), all_here.clone());
            async move {
                let notified = all_here.notified();
                if arrived.fetch_add(1, Ordering::SeqCst) + 1 == IN_FLIGHT {
                    all_here.notify_waiters();
                } else {
                    let _ = tokio::time::timeout(e2e::DEADLINE, notified).await;
                }
                Answer::with_body(200, "application/json", request.body)
            }
        })
        .await
    };
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);

    let started = Instant::now();
    let sends = (0..IN_FLIGHT as u64).map(|i| {
        let telegram = telegram.clone();
        tokio::spawn(async move {
            let update = update_json(1000 + i, 7_000_000_000 + i as i64, "concurrent");
            (update.clone(), telegram.send("/hook/echo", update).await)
        })
    });
    let results = futures_join_all(sends).await;
    for (update, reply) in &results {
        assert_eq!(reply.status, 200);
        assert_eq!(
            &reply.body[..],
            update.as_bytes(),
            "each caller gets its own answer"
        );
    }
    assert!(
        started.elapsed() < e2e::DEADLINE,
        "requests were serialised"
    );
    assert_eq!(arrived.load(Ordering::SeqCst), IN_FLIGHT);
}

async fn futures_join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_behind_two_agents_share_one_relay() {
    let relay = TestRelay::start();
    let shop = TestBot::start(|_| async { Answer::with_body(200, "text/plain", "shop") }).await;
    let news = TestBot::start(|_| async { Answer::with_body(200, "text/plain", "news") }).await;
    let _shop_agent = TestAgent::connect(&relay, &[("shop", shop.url("/"))]).await;
    let _news_agent = TestAgent::connect(&relay, &[("news", news.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);

    for i in 0..3 {
        assert_eq!(
            &telegram
                .send("/hook/shop", update_json(10 + i, 2, "x"))
                .await
                .body[..],
            b"shop"
        );
        assert_eq!(
            &telegram
                .send("/hook/news", update_json(20 + i, 2, "x"))
                .await
                .body[..],
            b"news"
        );
    }
    assert_eq!((shop.count(), news.count()), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_and_restarted_serves_again_in_passthrough() {
    let mut config = TestRelay::config();
    config.delivery.default_mode = relay_server::config::DeliveryMode::Passthrough;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(1, 2, "before"))
            .await
            .status,
        200
    );

    let config = agent.config.clone();
    agent.kill();
    relay.wait_until_gone("echo").await;
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(2, 2, "during"))
            .await
            .status,
        503
    );

    let _agent = TestAgent::start(config);
    relay.wait_for_bot("echo").await;
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(3, 2, "after"))
            .await
            .status,
        200
    );
    let texts: HashSet<_> = bot.received().iter().map(|r| r.body.clone()).collect();
    assert_eq!(texts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relay_restart_the_agent_is_back_within_two_seconds() {
    let mut relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(1, 2, "before"))
            .await
            .status,
        200
    );

    relay.restart();
    let restarted = Instant::now();
    relay.wait_for_bot("echo").await;
    let back_after = restarted.elapsed();
    assert!(
        back_after < Duration::from_secs(2),
        "agent took {back_after:?} to come back"
    );
    let telegram = FakeTelegram::new(&relay);
    assert_eq!(
        telegram
            .send("/hook/echo", update_json(2, 2, "after"))
            .await
            .status,
        200
    );
    assert_eq!(bot.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_gracefully_lets_the_agent_reconnect_to_its_successor() {
    let mut relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    relay.stop().await;
    relay.restart();
    relay.wait_for_bot("echo").await;
    assert_eq!(
        FakeTelegram::new(&relay)
            .send("/hook/echo", update_json(1, 2, "x"))
            .await
            .status,
        200
    );
    agent.stop().await;
    relay.wait_until_gone("echo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_webhooks_in_flight_get_the_bots_answer() {
    let mut relay = TestRelay::start();
    let bot = TestBot::start(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Answer::with_body(200, "text/plain", "finished")
    })
    .await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    let in_flight =
        tokio::spawn(async move { telegram.send("/hook/echo", update_json(1, 2, "x")).await });
    e2e::eventually("the bot has the request", || bot.count() == 1).await;
    relay.stop().await;
    let reply = in_flight.await.expect("task");
    assert_eq!((reply.status, &reply.body[..]), (200, &b"finished"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_agent_token_is_refused_and_the_agent_exits_instead_of_retrying() {
    let relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let mut config = TestAgent::config(&relay, &[("echo", bot.url("/"))]);
    config.token = protocol::Secret::new("not-the-right-token-at-all");
    let mut agent = TestAgent::start(config);
    let exit = agent.exited().await;
    assert!(matches!(exit, Err(AgentError::TokenRejected)), "{exit:?}");
    assert!(!relay.serves("echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_restricted_to_other_bots_is_refused_with_a_reason() {
    let mut config = TestRelay::config();
    config.agents.push(relay_server::config::AgentGrant {
        name: "shop-only".into(),
        token: protocol::Secret::new("shop-only-token-0123456789"),
        bots: vec!["shop".into()],
    });
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let mut config = TestAgent::config(&relay, &[("news", bot.url("/"))]);
    config.token = protocol::Secret::new("shop-only-token-0123456789");
    let mut agent = TestAgent::start(config);
    let exit = agent.exited().await;
    match exit {
        Err(error @ AgentError::BotNotAllowed { .. }) => {
            assert!(error.to_string().contains("news"), "{error}")
        }
        other => panic!("expected BotNotAllowed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_guessing_agent_tokens_is_throttled() {
    let relay = TestRelay::start();
    let client = e2e::FakeTelegram::new(&relay);
    let login = |token: &str| {
        let headers = [
            ("upgrade", "websocket".to_owned()),
            ("connection", "upgrade".to_owned()),
            ("sec-websocket-version", "13".to_owned()),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
            ("authorization", format!("Bearer {token}")),
        ];
        let client = client.clone();
        async move {
            client
                .request(
                    hyper::Method::GET,
                    "/agent/v1",
                    &headers,
                    bytes::Bytes::new(),
                )
                .await
        }
    };
    for attempt in 1..=10 {
        let reply = login("a-guess-that-is-wrong-0123").await;
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    // The allowance is spent: even the right token waits, so guessing gains nothing.
    for token in ["a-guess-that-is-wrong-0123", e2e::relay::TOKEN] {
        let reply = login(token).await;
        assert_eq!(reply.status, 429, "{token}");
        let wait: u64 = reply.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bot_that_fills_its_share_does_not_hold_up_another_bot_on_the_same_agent() {
    let mut config = TestRelay::config();
    // Live only, so that a request the agent could not place comes back as 503, not stored.
    for bot in ["slow", "fast"] {
        let settings = relay_server::config::BotSettings {
            mode: Some(relay_server::config::DeliveryMode::Passthrough),
            ..Default::default()
        };
        config.bots.insert(bot.into(), settings);
    }
    // Without fairness the fast bot's request would wait this long for a slot, then fail.
    config.limits.bot_timeout = Duration::from_secs(10);
    let relay = TestRelay::start_with(config);
    // The slow bot holds every request until the test lets go.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let release = release.clone();
        TestBot::start(move |_| {
            let release = release.clone();
            async move {
                let _ = tokio::time::timeout(e2e::DEADLINE, release.acquire()).await;
                Answer::status(200)
            }
        })
        .await
    };
    let fast = TestBot::start(|_| async { Answer::with_body(200, "text/plain", "fast") }).await;
    let mut agent_config =
        TestAgent::config(&relay, &[("slow", slow.url("/")), ("fast", fast.url("/"))]);
    agent_config.max_concurrency = 4;
    agent_config.reserved_per_bot = 1;
    let _agent = TestAgent::start(agent_config);
    relay.wait_for_bot("slow").await;
    relay.wait_for_bot("fast").await;
    let telegram = FakeTelegram::new(&relay);

    // Four for the slow bot: three reach it (one slot is kept for the fast bot), one waits.
    let held: Vec<_> = (0..4u64)
        .map(|i| {
            let telegram = telegram.clone();
            tokio::spawn(async move {
                telegram
                    .send("/hook/slow", update_json(100 + i, 1 + i as i64, "slow"))
                    .await
            })
        })
        .collect();
    e2e::eventually("the slow bot holds three requests", || slow.count() >= 3).await;

    let reply = telegram
        .send("/hook/fast", update_json(200, 9, "fast"))
        .await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (200, &b"fast"[..]),
        "the fast bot's answer, while the slow one is held"
    );
    assert!(
        held.iter().all(|task| !task.is_finished()),
        "the slow ones are still held"
    );
    assert_eq!(slow.count(), 3);

    release.add_permits(4);
    for task in held {
        assert_eq!(task.await.expect("join").status, 200);
    }
    assert_eq!(slow.count(), 4);
}
