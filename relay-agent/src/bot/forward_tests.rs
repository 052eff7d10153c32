//! Tests for [`super`], against a real HTTP bot on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{FailureKind, Frame, Request, Secret};
use tokio::sync::mpsc;

use super::*;
use crate::config::Config;
use test_support::{Answer, Received, TestBot, respond};

/// A bound on every wait in these tests, far above what any of them needs.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

fn forwarder(bot_url: &str, tweak: impl FnOnce(&mut Config)) -> Forwarder {
    let mut config = Config::new(
        "ws://127.0.0.1:1",
        Secret::new("token"),
        vec![("echo".into(), bot_url.into())],
    )
    .expect("valid config");
    tweak(&mut config);
    Forwarder::new(&config)
}

fn request(id: u64) -> Request {
    Request {
        id,
        bot: "echo".into(),
        method: "POST".into(),
        path: String::new(),
        query: None,
        headers: vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from_static(br#"{"update_id":1}"#),
        timeout_ms: 25_000,
        update_id: None,
        delivery: protocol::Delivery::Live,
    }
}

async fn forward(forwarder: &Forwarder, request: Request, max_body: usize) -> Frame {
    tokio::time::timeout(TEST_DEADLINE, forwarder.forward(request, max_body))
        .await
        .expect("forward finishes")
}

fn failure(frame: Frame) -> (FailureKind, String) {
    match frame {
        Frame::Failure(failure) => (failure.kind, failure.message),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn request_and_response_pass_through_unchanged() {
    let (seen, mut received) = mpsc::channel::<Received>(4);
    let bot = TestBot::start(move |request| {
        let seen = seen.clone();
        async move {
            seen.send(request).await.expect("test alive");
            let mut response = respond(403, Bytes::from_static(b"forbidden \xff\x00 bytes"));
            let headers = response.headers_mut();
            headers.append("content-type", HeaderValue::from_static("text/plain"));
            headers.append("x-reply", HeaderValue::from_static("a"));
            headers.append("x-reply", HeaderValue::from_static("b"));
            headers.append("keep-alive", HeaderValue::from_static("timeout=5"));
            response
        }
    })
    .await;
    let forwarder = forwarder(&bot.url("/webhook?k=v"), |_| {});
    let body: Bytes = (0..=255u8).cycle().take(5000).collect::<Vec<_>>().into();
    let request = Request {
        path: "/rest".into(),
        query: Some("a=1&b=%20".into()),
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("x-dup".into(), Bytes::from_static(b"one")),
            ("x-other".into(), Bytes::from_static(b"caf\xe9 \xff")),
            ("x-dup".into(), Bytes::from_static(b"two")),
            ("host".into(), Bytes::from_static(b"relay.example.com")),
            ("keep-alive".into(), Bytes::from_static(b"timeout=5")),
            ("te".into(), Bytes::from_static(b"trailers")),
            (
                "x-telegram-bot-api-secret-token".into(),
                Bytes::from_static(b"s3cret"),
            ),
        ],
        body: body.clone(),
        ..request(7)
    };

    let Frame::Response(response) = forward(&forwarder, request, 1 << 20).await else {
        panic!("expected a response");
    };
    let seen = received.recv().await.expect("bot saw the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/webhook/rest?k=v&a=1&b=%20");
    assert_eq!(seen.body, body);
    assert_eq!(seen.values("x-dup"), [b"one".as_slice(), b"two"]);
    assert_eq!(seen.values("x-other"), [b"caf\xe9 \xff".as_slice()]);
    assert_eq!(
        seen.values("content-type"),
        [b"application/json".as_slice()]
    );
    assert_eq!(
        seen.values("x-telegram-bot-api-secret-token"),
        [b"s3cret".as_slice()]
    );
    assert_eq!(seen.values("host"), [bot.addr.to_string().as_bytes()]);
    assert_eq!(
        seen.values("x-forwarded-host"),
        [b"relay.example.com".as_slice()]
    );
    assert_eq!(seen.values("content-length"), [b"5000".as_slice()]);
    assert!(seen.values("keep-alive").is_empty() && seen.values("te").is_empty());

    assert_eq!(response.id, 7);
    assert_eq!(response.status, 403);
    assert_eq!(&response.body[..], b"forbidden \xff\x00 bytes");
    let names: Vec<_> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.contains(&"content-length") && !names.contains(&"keep-alive"),
        "{names:?}"
    );
    let replies: Vec<_> = response
        .headers
        .iter()
        .filter(|(n, _)| n == "x-reply")
        .map(|(_, v)| &v[..])
        .collect();
    assert_eq!(replies, [b"a".as_slice(), b"b"]);
    assert!(
        response
            .headers
            .contains(&("content-type".into(), Bytes::from_static(b"text/plain")))
    );
}

#[tokio::test]
async fn connections_to_the_bot_are_kept_alive() {
    let bot = TestBot::start(|_| async { respond(200, "ok") }).await;
    let forwarder = forwarder(&bot.url("/"), |_| {});
    for id in 0..3 {
        let frame = forward(&forwarder, request(id), 1024).await;
        assert!(
            matches!(frame, Frame::Response(ref r) if r.status == 200),
            "{frame:?}"
        );
    }
    assert_eq!(bot.connections(), 1);
}

#[tokio::test]
async fn an_unreachable_bot_is_reported_with_its_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    drop(listener);
    let (kind, message) = failure(forward(&forwarder(&url, |_| {}), request(1), 1024).await);
    assert_eq!(kind, FailureKind::BotUnreachable);
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn a_slow_bot_times_out() {
    let bot = TestBot::start(|_| std::future::pending::<Answer>()).await;
    let forwarder = forwarder(&bot.url("/"), |c| {
        c.request_timeout = Duration::from_millis(300)
    });
    let (kind, message) = failure(forward(&forwarder, request(1), 1024).await);
    assert_eq!(kind, FailureKind::BotTimeout);
    assert_eq!(message, "bot did not answer within 0.3s");
}

#[tokio::test]
async fn a_response_body_over_the_limit_is_refused() {
    let bot = TestBot::start(|received: Received| async move {
        respond(200, vec![b'x'; received.body.len()])
    })
    .await;
    let forwarder = forwarder(&bot.url("/"), |_| {});
    let exactly = Request {
        body: vec![0; 1024].into(),
        ..request(1)
    };
    assert!(matches!(
        forward(&forwarder, exactly, 1024).await,
        Frame::Response(_)
    ));
    let over = Request {
        body: vec![0; 1025].into(),
        ..request(2)
    };
    let (kind, message) = failure(forward(&forwarder, over, 1024).await);
    assert_eq!(kind, FailureKind::BadBotResponse);
    assert_eq!(message, "bot response body over 1024 bytes");
}

#[tokio::test]
async fn requests_that_cannot_be_built_are_rejected() {
    let forwarder = forwarder("http://127.0.0.1:1/", |_| {});
    let cases = [
        Request {
            bot: "other".into(),
            ..request(1)
        },
        Request {
            method: "NOT A METHOD".into(),
            ..request(2)
        },
        Request {
            path: "no-slash".into(),
            ..request(3)
        },
        Request {
            headers: vec![("bad name".into(), Bytes::new())],
            ..request(4)
        },
        Request {
            headers: vec![("x".into(), Bytes::from_static(b"a\nb"))],
            ..request(5)
        },
    ];
    for case in cases {
        let (kind, message) = failure(forward(&forwarder, case, 1024).await);
        assert_eq!(kind, FailureKind::Rejected, "{message}");
    }
}

#[tokio::test]
async fn a_full_agent_answers_overloaded() {
    let (arrived, mut at_bot) = mpsc::channel::<()>(1);
    let bot = TestBot::start(move |_| {
        let arrived = arrived.clone();
        async move {
            arrived.send(()).await.expect("test alive");
            std::future::pending::<Answer>().await
        }
    })
    .await;
    let forwarder = Arc::new(forwarder(&bot.url("/"), |c| c.max_concurrency = 1));
    let holder = forwarder.clone();
    let hold = tokio::spawn(async move { holder.forward(request(1), 1024).await });
    // The only slot is taken once the first request is at the bot.
    tokio::time::timeout(TEST_DEADLINE, at_bot.recv())
        .await
        .expect("first request reaches the bot");
    let waiting = Request {
        timeout_ms: 700,
        update_id: None,
        delivery: protocol::Delivery::Live,
        ..request(2)
    };
    let (kind, message) = failure(forward(&forwarder, waiting, 1024).await);
    assert_eq!(kind, FailureKind::Overloaded, "{message}");
    assert!(!hold.is_finished());
    hold.abort();
}

#[test]
fn the_budget_leaves_the_relay_a_margin() {
    let forwarder = forwarder("http://127.0.0.1:1/", |c| {
        c.request_timeout = Duration::from_secs(30)
    });
    assert_eq!(forwarder.budget(60_000), Duration::from_secs(30));
    assert_eq!(forwarder.budget(10_000), Duration::from_millis(9_500));
    assert_eq!(forwarder.budget(300), MIN_FORWARD_TIMEOUT);
    assert_eq!(forwarder.budget(0), MIN_FORWARD_TIMEOUT);
}

/// A "bot" on a raw socket that reads each request head, writes `then` and closes the
/// connection; returns its URL.
async fn raw_bot(then: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(then).await;
        }
    });
    url
}

#[tokio::test]
async fn a_bot_that_closes_before_answering_is_unreachable() {
    let url = raw_bot(b"").await;
    let (kind, message) = failure(forward(&forwarder(&url, |_| {}), request(1), 1024).await);
    assert_eq!(kind, FailureKind::BotUnreachable, "{message}");
    assert!(message.contains("before answering"), "{message}");
}

#[tokio::test]
async fn an_answer_that_is_not_http_or_breaks_off_is_a_bad_response() {
    let garbage = raw_bot(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let (kind, message) = failure(forward(&forwarder(&garbage, |_| {}), request(1), 1024).await);
    assert_eq!(kind, FailureKind::BadBotResponse, "{message}");

    let cut = raw_bot(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a part").await;
    let (kind, message) = failure(forward(&forwarder(&cut, |_| {}), request(2), 1024).await);
    assert_eq!(kind, FailureKind::BadBotResponse, "{message}");
    assert!(message.contains("mid-body"), "{message}");
}

#[tokio::test]
async fn a_connection_that_cannot_be_made_in_time_is_unreachable_not_a_timeout() {
    // A listener that never accepts, with the smallest backlog: once its accept queue is full
    // the kernel drops further SYNs, so the next connect hangs, as to a host that drops packets.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    assert!(fillers.len() < 16, "the accept queue never filled");
    let url = format!("http://{addr}/");
    let forwarder = forwarder(&url, |c| c.request_timeout = Duration::from_millis(300));
    let (kind, message) = failure(forward(&forwarder, request(1), 1024).await);
    assert_eq!(kind, FailureKind::BotUnreachable, "{message}");
    assert!(message.contains("cannot connect"), "{message}");
    drop(listener);
}

#[tokio::test]
async fn a_bot_that_holds_every_slot_it_may_leaves_the_other_bots_theirs() {
    let (arrived, mut at_slow) = mpsc::channel::<()>(8);
    let slow = TestBot::start(move |_| {
        let arrived = arrived.clone();
        async move {
            arrived.send(()).await.expect("test alive");
            std::future::pending::<Answer>().await
        }
    })
    .await;
    let fast = TestBot::start(|_| async { respond(200, "fast") }).await;
    let mut config = Config::new(
        "ws://127.0.0.1:1",
        Secret::new("token"),
        vec![
            ("slow".into(), slow.url("/")),
            ("fast".into(), fast.url("/")),
        ],
    )
    .expect("valid config");
    config.max_concurrency = 4;
    config.reserved_per_bot = 1;
    let forwarder = Arc::new(Forwarder::new(&config));
    let for_bot = |bot: &str, id| Request {
        bot: bot.into(),
        ..request(id)
    };

    // The slow bot gets three of the four slots (one is kept for the fast bot); its fourth
    // request waits for a slot.
    let held: Vec<_> = (0..4)
        .map(|id| {
            let (forwarder, request) = (forwarder.clone(), for_bot("slow", id));
            tokio::spawn(async move { forwarder.forward(request, 1024).await })
        })
        .collect();
    for _ in 0..3 {
        tokio::time::timeout(TEST_DEADLINE, at_slow.recv())
            .await
            .expect("a slow request reaches the bot");
    }
    // Every slow task has had its turn at a slot (the test runs on one thread).
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        forwarder.permits.in_use(),
        3,
        "one slot stays free for the fast bot"
    );

    // Without its reserve the fast bot would wait for a slot until this deadline passed.
    let fast_request = Request {
        timeout_ms: 2_000,
        ..for_bot("fast", 9)
    };
    let frame = forward(&forwarder, fast_request, 1024).await;
    assert!(
        matches!(frame, Frame::Response(ref r) if r.status == 200),
        "the fast bot waited behind the slow one: {frame:?}"
    );
    assert!(
        held.iter().all(|task| !task.is_finished()),
        "the slow ones are still held"
    );
    assert_eq!(slow.count(), 3);
    for task in held {
        task.abort();
    }
}
