//! A webhook's trip through relay and agent, over TLS, and every way it can fail.

use std::time::Duration;

use bytes::Bytes;
use e2e::{Answer, FakeTelegram, TestAgent, TestBot, TestRelay, update_json};
use relay_server::config::{BotSettings, DeliveryMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realistic_update_reaches_the_bot_unchanged_and_its_answer_comes_back() {
    let relay = TestRelay::start();
    let bot = TestBot::start(|_| async {
        Answer {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-bot".into(), "one".into()),
                ("x-bot".into(), "two".into()),
            ],
            body: Bytes::from_static(
                br#"{"method":"sendMessage","chat_id":5000000001,"text":"hi"}"#,
            ),
        }
    })
    .await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/webhook"))]).await;
    let telegram = FakeTelegram::new(&relay).with_secret("Secret_token-123");

    let update = update_json(900_000_001, 5_000_000_001, "hello \u{1F30D}");
    let reply = telegram
        .send("/hook/echo/sub/path?a=1&b=two", update.clone())
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        &reply.body[..],
        br#"{"method":"sendMessage","chat_id":5000000001,"text":"hi"}"#
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    let bot_headers: Vec<_> = reply.headers.get_all("x-bot").iter().collect();
    assert_eq!(bot_headers, ["one", "two"]);

    let received = bot.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "/webhook/sub/path?a=1&b=two");
    assert_eq!(got.body, Bytes::from(update.clone()));
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(got.header("content-length"), Some(update.len().to_string()));
    assert_eq!(
        got.header("x-telegram-bot-api-secret-token").as_deref(),
        Some("Secret_token-123")
    );
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        got.header("x-forwarded-host"),
        Some(format!("localhost:{}", relay.addr.port()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_a_method_call_in_a_multipart_body_comes_back_byte_for_byte() {
    // What aiogram answers with handle_in_background=False.
    let boundary = "a7f1b2c3d4e5";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nsendMessage\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n5000000001\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nПривет \u{1F44B}\r\n--{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let relay = TestRelay::start();
    let answer = Answer::with_body(200, &content_type, body.clone());
    let bot = TestBot::start(move |_| {
        let answer = answer.clone();
        async move { answer }
    })
    .await;
    let _agent = TestAgent::connect(&relay, &[("shop", bot.url("/"))]).await;

    let reply = FakeTelegram::new(&relay)
        .send("/hook/shop", update_json(1, 2, "buy"))
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], content_type.as_str());
    assert_eq!(reply.body, Bytes::from(body));
    assert_eq!(bot.received()[0].uri, "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_own_errors_are_passed_back_not_swallowed() {
    let relay = TestRelay::start();
    let bot =
        TestBot::start(|_| async { Answer::with_body(403, "text/plain", "wrong secret") }).await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(1, 2, "x"))
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(&reply.body[..], b"wrong secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_bot_is_404_and_a_known_bot_without_agent_is_503_in_passthrough() {
    let mut config = TestRelay::config();
    config.delivery.default_mode = DeliveryMode::Passthrough;
    config.bots.insert("known".into(), BotSettings::default());
    let relay = TestRelay::start_with(config);
    let telegram = FakeTelegram::new(&relay);

    assert_eq!(
        telegram
            .send("/hook/nobody", update_json(1, 2, "x"))
            .await
            .status,
        404
    );
    assert_eq!(
        telegram
            .send("/elsewhere", update_json(1, 2, "x"))
            .await
            .status,
        404
    );
    let started = std::time::Instant::now();
    let reply = telegram.send("/hook/known", update_json(1, 2, "x")).await;
    assert_eq!(reply.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 comes at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_declared_by_an_agent_that_left_gets_503_not_404_in_passthrough() {
    let mut config = TestRelay::config();
    config.delivery.default_mode = DeliveryMode::Passthrough;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    agent.kill();
    relay.wait_until_gone("echo").await;
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(1, 2, "x"))
        .await;
    assert_eq!(reply.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_and_the_bot_never_sees_it() {
    let mut config = TestRelay::config();
    config.limits.max_body_bytes = 64 * 1024;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);

    let at_limit = vec![b'x'; 64 * 1024];
    assert_eq!(telegram.send("/hook/echo", at_limit).await.status, 200);
    let over = vec![b'x'; 64 * 1024 + 1];
    assert_eq!(telegram.send("/hook/echo", over).await.status, 413);
    assert_eq!(bot.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bot_is_504_within_the_configured_deadline() {
    let mut config = TestRelay::config();
    config.limits.bot_timeout = Duration::from_secs(1);
    let relay = TestRelay::start_with(config);
    let bot = TestBot::slow(Duration::from_secs(10)).await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;

    let started = std::time::Instant::now();
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(1, 2, "x"))
        .await;
    assert_eq!(reply.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bot_is_502_in_passthrough_and_stored_in_auto() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);

    let mut config = TestRelay::config();
    config.delivery.default_mode = DeliveryMode::Passthrough;
    let relay = TestRelay::start_with(config);
    let _agent = TestAgent::connect(&relay, &[("echo", dead_url.clone())]).await;
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(1, 2, "x"))
        .await;
    assert_eq!(reply.status, 502);

    let relay = TestRelay::start();
    let _agent = TestAgent::connect(&relay, &[("echo", dead_url)]).await;
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(1, 2, "x"))
        .await;
    assert_eq!(
        reply.status, 200,
        "auto mode keeps the update for when the bot is back"
    );
    assert_eq!(relay.stat("stored").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_secret_is_refused_at_the_relay() {
    let mut config = TestRelay::config();
    let settings = BotSettings {
        secret_token: Some(protocol::Secret::new("right_secret")),
        ..BotSettings::default()
    };
    config.bots.insert("echo".into(), settings);
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);

    assert_eq!(
        telegram
            .send("/hook/echo", update_json(1, 2, "x"))
            .await
            .status,
        401
    );
    let wrong = telegram.clone().with_secret("wrong_secret");
    assert_eq!(
        wrong
            .send("/hook/echo", update_json(1, 2, "x"))
            .await
            .status,
        401
    );
    let right = telegram.with_secret("right_secret");
    assert_eq!(
        right
            .send("/hook/echo", update_json(1, 2, "x"))
            .await
            .status,
        200
    );
    assert_eq!(bot.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encoded_slashes_after_the_bot_name_never_reach_the_bot() {
    let relay = TestRelay::start();
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/webhook"))]).await;
    let telegram = FakeTelegram::new(&relay);

    for path in [
        "/hook/echo/../admin",
        "/hook/echo/%2e%2e/admin",
        "/hook/echo/.%2E/admin",
        "/hook/echo/./x",
        "/hook/echo/a%2Fb",
        "/hook/echo/a%5cb",
    ] {
        let reply = telegram.send(path, update_json(1, 2, "x")).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(
            &reply.body[..],
            b"path not allowed after the bot name\n",
            "{path}"
        );
    }
    assert_eq!(bot.count(), 0, "a refused path reached the bot");

    let reply = telegram
        .send("/hook/echo/sub/path?q=1", update_json(2, 2, "x"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(bot.received()[0].uri, "/webhook/sub/path?q=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_can_have_the_path_after_its_name_dropped() {
    let mut config = TestRelay::config();
    let settings = BotSettings {
        drop_path_suffix: true,
        ..BotSettings::default()
    };
    config.bots.insert("echo".into(), settings);
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/webhook"))]).await;
    let telegram = FakeTelegram::new(&relay);

    let reply = telegram
        .send("/hook/echo/anything/else?q=1", update_json(1, 2, "x"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(bot.received()[0].uri, "/webhook?q=1");
}
