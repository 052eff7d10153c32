//! The relay's budgets under load it did not ask for: many connections from one address, a full
//! pool, idle and slow connections, more agent sessions than a token may open, bodies past the
//! memory budget, and forwarding headers from a peer that is not a proxy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use e2e::{FakeTelegram, TestAgent, TestBot, TestRelay, update_json};
use hyper::Method;
use relay_server::config::DeliveryMode;
use relay_server::{Config, TlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a connection that should be answered may take.
const ANSWER: Duration = Duration::from_secs(3);

/// Plain HTTP with no trusted proxy, so that every loopback address counts as a host of its own.
fn plain_config() -> Config {
    let mut config = TestRelay::config();
    config.tls = TlsMode::Off;
    config.trusted_proxies = Vec::new();
    config
}

/// A connection to `relay` from `from` (a loopback address other than 127.0.0.1 stands for
/// another host).
async fn connect_from(from: [u8; 4], relay: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    socket.connect(relay).await
}

/// Sends `GET /healthz` on `stream` (keep-alive) and reads the answer's head and body; `None` if
/// the relay closed the connection or did not answer within [`ANSWER`].
async fn healthz(stream: &mut TcpStream) -> Option<String> {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n")
        .await
        .ok()?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + ANSWER;
    while !seen.ends_with(b"\r\n\r\nok\n") {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// Whether the relay closes `stream` (end of file or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut chunk)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Opens `count` keep-alive connections from `from`, each making one request; returns those the
/// relay answered (still open, each holding a slot) and how many it refused.
async fn flood(from: [u8; 4], relay: SocketAddr, count: usize) -> (Vec<TcpStream>, usize) {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = connect_from(from, relay).await.ok()?;
                healthz(&mut stream).await.map(|_| stream)
            })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        if let Ok(Some(stream)) = task.await {
            answered.push(stream);
        }
    }
    let refused = count - answered.len();
    (answered, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot_so_webhooks_and_a_new_agent_still_get_in() {
    let mut config = plain_config();
    config.limits.max_connections = 64;
    config.limits.max_connections_per_source = 16;
    let relay = TestRelay::start_with(config);

    let (held, refused) = flood([127, 0, 0, 2], relay.addr, 80).await;
    assert_eq!(
        held.len(),
        16,
        "the attacker holds only its per-source share"
    );
    assert_eq!(refused, 64, "the rest were closed at once");

    let bot = TestBot::ok().await;
    let agent = TestAgent::start(TestAgent::config(&relay, &[("echo", bot.url("/"))]));
    relay.wait_for_bot("echo").await;
    let telegram = FakeTelegram::new(&relay);
    for n in 0..20 {
        let update = update_json(100 + n, 42, "still here");
        let reply = tokio::time::timeout(ANSWER, telegram.send("/hook/echo", update))
            .await
            .expect("a webhook from another address is answered at once");
        assert_eq!(reply.status, 200);
    }
    drop((held, agent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_many_addresses_fill_the_pool_an_agent_still_connects_through_the_reserve() {
    let mut config = plain_config();
    config.limits.max_connections = 32;
    config.limits.max_connections_per_source = 8;
    config.limits.agent_reserve = 4;
    let relay = TestRelay::start_with(config);
    let mut held = Vec::new();
    for host in 2..=5 {
        let (answered, _) = flood([127, 0, 0, host], relay.addr, 8).await;
        held.extend(answered);
    }
    assert_eq!(held.len(), 32, "the general pool is full");

    let bot = TestBot::ok().await;
    let _agent = TestAgent::start(TestAgent::config(&relay, &[("echo", bot.url("/"))]));
    relay.wait_for_bot("echo").await;

    // Anything but the agent upgrade on a reserve slot is turned away, with a time to retry.
    let reply = tokio::time::timeout(
        ANSWER,
        FakeTelegram::new(&relay).send("/hook/echo", update_json(1, 1, "x")),
    )
    .await
    .expect("answered at once");
    assert_eq!(reply.status, 503);
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(
        reply.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    // A silent connection on a reserve slot gives it back within 2 s, well before the 10 s a
    // header block may take on an ordinary connection.
    let mut silent = connect_from([127, 0, 0, 6], relay.addr)
        .await
        .expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(4)).await,
        "a reserve slot is held only briefly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_closes_after_the_idle_timeout_and_a_busy_one_after_its_requests() {
    let mut config = plain_config();
    config.limits.keep_alive_timeout = Duration::from_millis(500);
    config.limits.max_requests_per_connection = 3;
    let relay = TestRelay::start_with(config);

    let mut idle = connect_from([127, 0, 0, 1], relay.addr)
        .await
        .expect("connect");
    assert!(healthz(&mut idle).await.is_some());
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "an idle keep-alive connection is closed"
    );

    let mut busy = connect_from([127, 0, 0, 1], relay.addr)
        .await
        .expect("connect");
    for request in 1..=3 {
        let answer = healthz(&mut busy).await.expect("answered");
        let closes = answer.to_ascii_lowercase().contains("connection: close");
        assert_eq!(closes, request == 3, "request {request}: {answer}");
    }
    assert!(closed_within(&mut busy, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_header_block_gets_the_header_timeout_not_the_idle_one() {
    let mut config = plain_config();
    config.limits.keep_alive_timeout = Duration::from_secs(30);
    config.limits.header_read_timeout = Duration::from_millis(300);
    let relay = TestRelay::start_with(config);
    let mut slow = connect_from([127, 0, 0, 1], relay.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: re")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "a trickled header block is cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sessions_outlive_the_http_idle_and_age_limits() {
    let mut config = plain_config();
    config.limits.keep_alive_timeout = Duration::from_millis(200);
    config.limits.max_connection_age = Duration::from_millis(200);
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let session = relay.admin(Method::GET, "/stats").await["agents"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(relay.admin(Method::GET, "/stats").await["agents"], session);
    let reply = FakeTelegram::new(&relay)
        .send("/hook/echo", update_json(7, 7, "x"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(relay.stat("agents").await, 1);
}

/// The agent's upgrade request, made by hand so the test sees the relay's status.
async fn upgrade_status(relay: &TestRelay, token: &str) -> u16 {
    let headers = [
        ("connection", "upgrade".to_string()),
        ("upgrade", "websocket".to_string()),
        ("sec-websocket-version", "13".to_string()),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        ("authorization", format!("Bearer {token}")),
    ];
    let reply = tokio::time::timeout(
        ANSWER,
        FakeTelegram::new(relay).request(Method::GET, protocol::AGENT_PATH, &headers, Bytes::new()),
    )
    .await
    .expect("the relay answers the upgrade");
    reply.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_at_most_its_share_of_sessions() {
    let mut config = plain_config();
    config.limits.max_sessions_per_token = 2;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _first = TestAgent::connect(&relay, &[("one", bot.url("/"))]).await;
    let _second = TestAgent::connect(&relay, &[("two", bot.url("/"))]).await;
    assert_eq!(relay.stat("agents").await, 2);
    assert_eq!(upgrade_status(&relay, e2e::relay::TOKEN).await, 429);
    assert_eq!(relay.stat("agents").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_budget_get_503_with_retry_after_and_the_rest_go_through() {
    let mut config = plain_config();
    config.limits.max_body_bytes = 64 * 1024;
    config.limits.body_budget_bytes = 256 * 1024;
    config.delivery.default_mode = DeliveryMode::Passthrough;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::slow(Duration::from_millis(1500)).await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    let big = |n: u64| update_json(n, n as i64, &"x".repeat(60 * 1024));
    let sends: Vec<_> = (0..12)
        .map(|n| {
            let telegram = telegram.clone();
            tokio::spawn(async move { telegram.send("/hook/echo", big(n)).await })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for send in sends {
        let reply = send.await.expect("sender");
        match reply.status {
            200 => ok += 1,
            503 => {
                assert_eq!(reply.headers["retry-after"], "1");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (1..=4).contains(&ok),
        "at most four 60 KiB bodies fit 256 KiB: {ok}"
    );
    assert_eq!(ok + busy, 12);
    let reply = telegram.send("/hook/echo", big(99)).await;
    assert_eq!(reply.status, 200, "the budget is given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_only_a_trusted_proxy_may_set_the_forwarding_headers() {
    let forged = [
        ("content-type", "application/json".to_string()),
        ("x-forwarded-for", "149.154.167.220".to_string()),
        ("x-forwarded-proto", "https".to_string()),
    ];
    let mut config = plain_config();
    config.trusted_proxies = vec!["10.0.0.0/8".parse().expect("range")];
    let stranger = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&stranger, &[("echo", bot.url("/"))]).await;
    let update = Bytes::from(update_json(5, 5, "x"));
    let reply = FakeTelegram::new(&stranger)
        .request(Method::POST, "/hook/echo", &forged, update.clone())
        .await;
    assert_eq!(reply.status, 200);
    let got = bot.received().pop().expect("the bot got it");
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));

    // Loopback is trusted by default: a proxy on the relay's own machine.
    let mut config = plain_config();
    config.trusted_proxies = relay_server::config::IpRange::loopback().to_vec();
    let behind_proxy = TestRelay::start_with(config);
    let _agent = TestAgent::connect(&behind_proxy, &[("echo", bot.url("/"))]).await;
    let reply = FakeTelegram::new(&behind_proxy)
        .request(Method::POST, "/hook/echo", &forged, update)
        .await;
    assert_eq!(reply.status, 200);
    let got = bot.received().pop().expect("the bot got it");
    assert_eq!(
        got.header("x-forwarded-for").as_deref(),
        Some("149.154.167.220, 127.0.0.1")
    );
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_have_only_a_few_tls_handshakes_in_progress() {
    let mut config = TestRelay::config();
    config.limits.max_handshakes_per_source = 4;
    let relay = TestRelay::start_with(config);
    // Connections that never send their ClientHello.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(
            connect_from([127, 0, 0, 2], relay.addr)
                .await
                .expect("connect"),
        );
    }
    let mut closed = 0;
    for stream in &mut silent {
        if closed_within(stream, Duration::from_millis(500)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 16, "all but four were closed at once");
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let reply = tokio::time::timeout(
        ANSWER,
        FakeTelegram::new(&relay).send("/hook/echo", update_json(3, 3, "x")),
    )
    .await
    .expect("another address still gets through");
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_past_16_kib_is_refused_and_one_below_is_served() {
    let relay = TestRelay::start_with(plain_config());
    let telegram = FakeTelegram::new(&relay);
    let header = |size: usize| [("x-padding", "a".repeat(size))];
    let fits = telegram
        .request(Method::GET, "/healthz", &header(12 * 1024), Bytes::new())
        .await;
    assert_eq!(fits.status, 200);
    let mut big = connect_from([127, 0, 0, 1], relay.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: relay\r\nx-padding: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    big.write_all(request.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(ANSWER, big.read(&mut answer))
        .await
        .expect("answered in time")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_held_to_the_per_source_cap() {
    let mut config = plain_config();
    config.limits.max_connections_per_source = 4;
    config.trusted_proxies = vec!["127.0.0.2".parse().expect("range")];
    let relay = TestRelay::start_with(config);
    let (through_proxy, refused) = flood([127, 0, 0, 2], relay.addr, 12).await;
    assert_eq!(
        (through_proxy.len(), refused),
        (12, 0),
        "the proxy carries everyone"
    );
    let (direct, refused) = flood([127, 0, 0, 3], relay.addr, 12).await;
    assert_eq!((direct.len(), refused), (4, 8), "anyone else has the cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_holds_budget_for_the_bytes_that_arrived_not_for_its_declared_length() {
    let mut config = plain_config();
    config.limits.max_body_bytes = 64 * 1024;
    config.limits.body_budget_bytes = 256 * 1024;
    config.delivery.default_mode = DeliveryMode::Passthrough;
    let relay = TestRelay::start_with(config);
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let telegram = FakeTelegram::new(&relay);
    let update = update_json(1, 1, &"x".repeat(50 * 1024));
    // A connection that declares 60 KiB and sends `sent` bytes of it, then waits.
    let holder = |sent: usize| async move {
        let mut stream = connect_from([127, 0, 0, 1], relay.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /hook/echo HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            60 * 1024
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&vec![b' '; sent]).await.expect("write");
        stream
    };

    // Eight such promises, 480 KiB declared, nothing sent: they hold none of the 256 KiB.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(holder(0).await);
    }
    let reply = telegram.send("/hook/echo", update.clone()).await;
    assert_eq!(reply.status, 200, "bodies that never came hold nothing");

    // Bytes that did arrive are held: four nearly complete 60 KiB bodies fill the budget.
    let mut sending = Vec::new();
    for _ in 0..4 {
        sending.push(holder(60 * 1024 - 1).await);
    }
    let deadline = tokio::time::Instant::now() + e2e::DEADLINE;
    let reply = loop {
        let reply = telegram.send("/hook/echo", update.clone()).await;
        if reply.status != 200 || tokio::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.headers["retry-after"], "1");
    drop((idle, sending));
    let deadline = tokio::time::Instant::now() + e2e::DEADLINE;
    loop {
        let reply = telegram.send("/hook/echo", update.clone()).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the budget is given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
