//! Tests for [`super`]: the test plays the relay over an in-memory WebSocket pipe; bots are real
//! HTTP servers on 127.0.0.1 where a test needs one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use protocol::{Frame, Request, Response, Secret};
use tokio::io::DuplexStream;
use tokio::sync::{Barrier, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;
use crate::bot::handler::Handler;
use crate::config::Config;
use crate::stats::Stats;
use crate::test_relay::{FakeRelay, TEST_DEADLINE};
use test_support::{Answer, Received, TestBot, respond};

const HEARTBEAT: Duration = crate::config::DEFAULT_HEARTBEAT_TIMEOUT;

/// An agent session on one end of a pipe and the fake relay on the other.
struct Setup {
    relay: FakeRelay<DuplexStream>,
    session: JoinHandle<Result<Ended, AgentError>>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
}

async fn start(bot_url: &str, tweak: impl FnOnce(&mut Config)) -> Setup {
    let mut config = Config::new(
        "ws://127.0.0.1:1",
        Secret::new("token"),
        vec![("echo".into(), bot_url.into())],
    )
    .expect("valid config");
    config.name = "test-agent".into();
    tweak(&mut config);
    let (agent_end, relay_end) = tokio::io::duplex(256 * 1024);
    let agent_ws = WebSocketStream::from_raw_socket(agent_end, Role::Client, None).await;
    let relay_ws = WebSocketStream::from_raw_socket(relay_end, Role::Server, None).await;
    let settings = Settings {
        hello: Hello {
            version: PROTOCOL_VERSION,
            agent: config.name.clone(),
            software: crate::SOFTWARE.into(),
            bots: config.bots.iter().map(|bot| bot.name.clone()).collect(),
            modes: Vec::new(),
        },
        heartbeat_timeout: config.heartbeat_timeout,
    };
    let stats = Arc::new(Stats::default());
    let handler = Arc::new(Handler::new(&config, stats.clone()).expect("handler"));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let session =
        tokio::spawn(async move { run(agent_ws, None, &settings, handler, &token).await });
    Setup {
        relay: FakeRelay { ws: relay_ws },
        session,
        shutdown,
        stats,
    }
}

async fn ended(session: JoinHandle<Result<Ended, AgentError>>) -> Result<Ended, AgentError> {
    tokio::time::timeout(TEST_DEADLINE + HEARTBEAT * 2, session)
        .await
        .expect("session ends in time")
        .expect("session task does not panic")
}

fn request(id: u64, path: &str, body: &'static [u8]) -> Frame {
    Frame::Request(Request {
        id,
        bot: "echo".into(),
        method: "POST".into(),
        path: path.into(),
        query: None,
        headers: vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from_static(body),
        timeout_ms: 60_000,
        update_id: None,
        delivery: protocol::Delivery::Live,
    })
}

fn response(frame: Frame) -> Response {
    match frame {
        Frame::Response(response) => response,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn hello_declares_the_bots_and_shutdown_says_going_away() {
    let Setup {
        mut relay,
        session,
        shutdown,
        ..
    } = start("http://127.0.0.1:1/", |_| {}).await;
    let hello = relay.accept().await;
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.agent, "test-agent");
    assert_eq!(hello.bots, ["echo"]);
    assert!(hello.software.starts_with("relay-agent "));
    shutdown.cancel();
    assert_eq!(u16::from(relay.recv_close().await.code), GOING_AWAY);
    assert_eq!(ended(session).await.expect("not fatal"), Ended::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_close_during_hello_stops_the_agent() {
    for (code, check) in [
        (close::BOT_NOT_ALLOWED, "check the --bot names"),
        (close::VERSION_MISMATCH, "protocol version"),
    ] {
        let Setup {
            mut relay, session, ..
        } = start("http://127.0.0.1:1/", |_| {}).await;
        let _ = relay.recv().await;
        let reason = if code == close::BOT_NOT_ALLOWED {
            "bot 'echo' is not allowed"
        } else {
            "upgrade relay-agent"
        };
        relay
            .ws
            .send(close_message(code, reason))
            .await
            .expect("send close");
        let error = ended(session).await.expect_err("fatal");
        let text = error.to_string();
        assert!(text.contains(reason) && text.contains(check), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_relay_with_another_protocol_version_is_fatal() {
    let Setup {
        mut relay, session, ..
    } = start("http://127.0.0.1:1/", |_| {}).await;
    let _ = relay.recv().await;
    relay
        .send(Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION + 1,
            software: "relay-server future".into(),
            session: 1,
            max_body_bytes: 1024,
        }))
        .await;
    assert_eq!(
        u16::from(relay.recv_close().await.code),
        close::VERSION_MISMATCH
    );
    let error = ended(session).await.expect_err("fatal");
    assert!(
        matches!(error, AgentError::VersionMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade relay-agent"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_retryable_close_during_hello_is_retried() {
    let Setup {
        mut relay, session, ..
    } = start("http://127.0.0.1:1/", |_| {}).await;
    let _ = relay.recv().await;
    relay
        .ws
        .send(close_message(close::HELLO_TIMEOUT, "hello too late"))
        .await
        .expect("send");
    let ended = ended(session).await.expect("not fatal");
    assert!(
        matches!(&ended, Ended::HelloFailed(reason) if reason.contains("hello too late")),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_relay_ends_the_session_within_the_heartbeat_timeout() {
    let Setup {
        mut relay, session, ..
    } = start("http://127.0.0.1:1/", |_| {}).await;
    relay.accept().await;
    let accepted = Instant::now();
    // The relay now neither reads nor writes, like one whose machine lost power.
    let ended = ended(session).await.expect("not fatal");
    assert!(
        matches!(&ended, Ended::Lost(reason) if reason.contains("stopped answering")),
        "{ended:?}"
    );
    let elapsed = accepted.elapsed();
    assert!(
        elapsed >= HEARTBEAT && elapsed <= HEARTBEAT + CLOSE_TIMEOUT,
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unexpected_frame_closes_with_a_protocol_error() {
    let Setup {
        mut relay, session, ..
    } = start("http://127.0.0.1:1/", |_| {}).await;
    relay.accept().await;
    relay
        .send(Frame::Response(Response {
            id: 1,
            status: 200,
            headers: vec![],
            body: Bytes::new(),
        }))
        .await;
    assert_eq!(u16::from(relay.recv_close().await.code), PROTOCOL_ERROR);
    assert!(matches!(ended(session).await, Ok(Ended::Lost(_))));
}

#[tokio::test]
async fn two_requests_in_flight_are_both_answered() {
    // The bot answers only once both requests are at it, so this passes only if they overlap.
    let both = Arc::new(Barrier::new(2));
    let bot = TestBot::start(move |received: Received| {
        let both = both.clone();
        async move {
            both.wait().await;
            respond(200, received.body)
        }
    })
    .await;
    let Setup {
        mut relay,
        shutdown,
        ..
    } = start(&bot.url("/"), |_| {}).await;
    relay.accept().await;
    relay.send(request(1, "", b"one")).await;
    relay.send(request(2, "", b"two")).await;
    let mut answers = HashSet::new();
    for _ in 0..2 {
        let answer = response(relay.recv().await);
        assert_eq!(answer.status, 200);
        answers.insert((answer.id, answer.body));
    }
    let want = HashSet::from([
        (1, Bytes::from_static(b"one")),
        (2, Bytes::from_static(b"two")),
    ]);
    assert_eq!(answers, want);
    shutdown.cancel();
}

#[tokio::test]
async fn cancel_aborts_a_slow_request_and_frees_its_slot() {
    let (arrived, mut at_bot) = mpsc::channel::<String>(4);
    let bot = TestBot::start(move |received: Received| {
        let arrived = arrived.clone();
        async move {
            arrived
                .send(received.uri.clone())
                .await
                .expect("test alive");
            if received.uri.ends_with("/slow") {
                std::future::pending::<()>().await;
            }
            respond(200, "fast")
        }
    })
    .await;
    // One slot only: the fast request can run only once the slow one is gone.
    let Setup {
        mut relay,
        shutdown,
        ..
    } = start(&bot.url(""), |c| c.max_concurrency = 1).await;
    relay.accept().await;
    relay.send(request(1, "/slow", b"")).await;
    let first = tokio::time::timeout(TEST_DEADLINE, at_bot.recv())
        .await
        .expect("in time");
    assert_eq!(first.as_deref(), Some("/slow"));
    relay.send(Frame::Cancel(1)).await;
    relay.send(request(2, "/fast", b"")).await;
    let answer = response(relay.recv().await);
    assert_eq!((answer.id, &answer.body[..]), (2, b"fast".as_slice()));
    shutdown.cancel();
}

#[tokio::test]
async fn a_request_id_already_in_flight_is_rejected() {
    let bot = TestBot::start(|_| std::future::pending::<Answer>()).await;
    let Setup {
        mut relay,
        shutdown,
        session,
        ..
    } = start(&bot.url("/"), |_| {}).await;
    relay.accept().await;
    relay.send(request(5, "", b"")).await;
    relay.send(request(5, "", b"")).await;
    let Frame::Failure(failure) = relay.recv().await else {
        panic!("expected a failure");
    };
    assert_eq!((failure.id, failure.kind), (5, FailureKind::Rejected));
    shutdown.cancel();
    assert_eq!(ended(session).await.expect("not fatal"), Ended::Shutdown);
}

// Durable delivery: duplicates, and replies inside the answer to stored updates.

const CALL: &str = r#"{"method":"sendMessage","chat_id":5000000001,"text":"hello"}"#;
const TOKEN: &str = "123456:TEST-token_abc";

/// A request carrying Telegram update `update_id`, live or from the relay's store.
fn update(id: u64, update_id: i64, delivery: protocol::Delivery) -> Frame {
    let Frame::Request(request) = request(id, "", br#"{"update_id":1}"#) else {
        unreachable!("request() builds a request");
    };
    Frame::Request(Request {
        update_id: Some(update_id),
        delivery,
        ..request
    })
}

fn stored(attempt: u32) -> protocol::Delivery {
    protocol::Delivery::Stored { attempt }
}

/// A bot whose answers are given by `answer(n)` for its n-th request (from 1), with a count of
/// the requests it got.
async fn counting_bot(
    answer: impl Fn(usize) -> http::Response<http_body_util::Full<Bytes>> + Send + Sync + 'static,
) -> (TestBot, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let answer = Arc::new(answer);
    let bot = TestBot::start(move |_| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        let response = answer(n);
        async move { response }
    })
    .await;
    (bot, count)
}

fn requests(count: &std::sync::atomic::AtomicUsize) -> usize {
    count.load(std::sync::atomic::Ordering::SeqCst)
}

/// The bot's answer with a `sendMessage` call in a JSON body, and a header of its own.
fn call_answer() -> http::Response<http_body_util::Full<Bytes>> {
    let mut response = respond(200, CALL);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert("x-bot", http::HeaderValue::from_static("first"));
    response
}

/// A fake Bot API on 127.0.0.1 that records every call and answers `ok`.
async fn fake_bot_api() -> (TestBot, mpsc::UnboundedReceiver<Received>) {
    let (seen, calls) = mpsc::unbounded_channel();
    let api = TestBot::start(move |received: Received| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(received);
            respond(200, r#"{"ok":true,"result":{"message_id":1}}"#)
        }
    })
    .await;
    (api, calls)
}

fn duplicate_ack(answer: &Response, id: u64) {
    assert_eq!(answer.id, id);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers,
        [("x-relay-duplicate".to_owned(), Bytes::from_static(b"1"))]
    );
    assert!(answer.body.is_empty());
}

#[tokio::test]
async fn a_stored_update_already_answered_is_acknowledged_without_the_bot() {
    let (bot, count) = counting_bot(|_| respond(200, "ok")).await;
    let Setup {
        mut relay,
        shutdown,
        stats,
        ..
    } = start(&bot.url("/"), |_| {}).await;
    relay.accept().await;
    relay.send(update(1, 77, stored(1))).await;
    let first = response(relay.recv().await);
    assert_eq!((first.status, &first.body[..]), (200, b"ok".as_slice()));
    assert!(
        first
            .headers
            .iter()
            .all(|(name, _)| name != "x-relay-duplicate")
    );

    // The acknowledgement was lost on the way: the relay delivers the update again.
    relay.send(update(2, 77, stored(2))).await;
    duplicate_ack(&response(relay.recv().await), 2);
    assert_eq!(requests(&count), 1, "the bot saw the update once");
    assert_eq!(stats.snapshot().duplicates_stored, 1);
    shutdown.cancel();
}

#[tokio::test]
async fn a_live_repeat_gets_the_bots_first_answer_without_the_bot() {
    let (bot, count) = counting_bot(|_| call_answer()).await;
    let (api, mut calls) = fake_bot_api().await;
    let Setup {
        mut relay,
        shutdown,
        stats,
        ..
    } = start(&bot.url("/"), |config| {
        config.api_url = crate::url::ApiUrl::parse(&api.url("")).expect("api url");
        config.bots[0].bot_token = Some(Secret::new(TOKEN));
    })
    .await;
    relay.accept().await;
    relay.send(update(1, 900, protocol::Delivery::Live)).await;
    let first = response(relay.recv().await);
    assert_eq!(&first.body[..], CALL.as_bytes());

    // Telegram did not get that answer and retries; the relay passes the retry on.
    relay.send(update(2, 900, protocol::Delivery::Live)).await;
    let again = response(relay.recv().await);
    assert_eq!(again.id, 2);
    assert_eq!(
        (again.status, &again.headers, &again.body),
        (first.status, &first.headers, &first.body)
    );
    assert_eq!(requests(&count), 1, "the bot saw the update once");
    assert_eq!(stats.snapshot().duplicates_live, 1);
    // For live updates Telegram makes the call from the answer; the agent never does.
    assert!(calls.try_recv().is_err());
    assert_eq!(stats.snapshot().replies_ok, 0);

    // Stored later anyway (say, the relay gave up on the live answer): acknowledged.
    relay.send(update(3, 900, stored(1))).await;
    duplicate_ack(&response(relay.recv().await), 3);
    assert_eq!(requests(&count), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn a_failed_answer_is_not_recorded_and_the_retry_reaches_the_bot() {
    let (bot, count) = counting_bot(|n| {
        if n == 1 {
            respond(500, "busy")
        } else {
            respond(200, "done")
        }
    })
    .await;
    let Setup {
        mut relay,
        shutdown,
        stats,
        ..
    } = start(&bot.url("/"), |_| {}).await;
    relay.accept().await;
    relay.send(update(1, 5, stored(1))).await;
    assert_eq!(response(relay.recv().await).status, 500);
    relay.send(update(2, 5, stored(2))).await;
    let retried = response(relay.recv().await);
    assert_eq!(
        (retried.status, &retried.body[..]),
        (200, b"done".as_slice())
    );
    assert_eq!(requests(&count), 2);
    relay.send(update(3, 5, stored(3))).await;
    duplicate_ack(&response(relay.recv().await), 3);
    assert_eq!(requests(&count), 2);

    // Requests without an update_id are never taken for duplicates.
    relay.send(request(4, "", b"no update id")).await;
    relay.send(request(5, "", b"no update id")).await;
    for _ in 0..2 {
        assert_eq!(response(relay.recv().await).status, 200);
    }
    assert_eq!(requests(&count), 4);
    assert_eq!(stats.snapshot().duplicates_stored, 1);
    shutdown.cancel();
}

#[tokio::test]
async fn the_call_in_a_stored_updates_answer_is_made_before_the_acknowledgement() {
    let (bot, _) = counting_bot(|_| call_answer()).await;
    let (api, mut calls) = fake_bot_api().await;
    let Setup {
        mut relay,
        shutdown,
        stats,
        ..
    } = start(&bot.url("/"), |config| {
        config.api_url = crate::url::ApiUrl::parse(&api.url("")).expect("api url");
        config.bots[0].bot_token = Some(Secret::new(TOKEN));
    })
    .await;
    relay.accept().await;
    relay.send(update(1, 31, stored(1))).await;
    let ack = response(relay.recv().await);
    assert_eq!((ack.status, &ack.body[..]), (200, CALL.as_bytes()));

    // The call was made before the acknowledgement left, so it is already there.
    let call = calls.try_recv().expect("the Bot API got the call");
    assert_eq!(call.method, "POST");
    assert_eq!(call.uri, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(
        call.values("content-type"),
        [b"application/json".as_slice()]
    );
    assert_eq!(call.body, CALL.as_bytes());
    assert!(calls.try_recv().is_err(), "exactly one call");
    assert_eq!(stats.snapshot().replies_ok, 1);

    // A redelivery is acknowledged without the bot, and the call is not made again.
    relay.send(update(2, 31, stored(2))).await;
    duplicate_ack(&response(relay.recv().await), 2);
    assert!(calls.try_recv().is_err());
    assert_eq!(stats.snapshot().replies_ok, 1);
    shutdown.cancel();
}

#[tokio::test]
async fn without_a_bot_token_the_call_is_dropped_and_counted() {
    let (bot, _) = counting_bot(|_| call_answer()).await;
    let (api, mut calls) = fake_bot_api().await;
    let Setup {
        mut relay,
        shutdown,
        stats,
        ..
    } = start(&bot.url("/"), |config| {
        config.api_url = crate::url::ApiUrl::parse(&api.url("")).expect("api url");
    })
    .await;
    relay.accept().await;
    relay.send(update(1, 32, stored(1))).await;
    let ack = response(relay.recv().await);
    assert_eq!(
        ack.status, 200,
        "still acknowledged: the bot has the update"
    );
    assert!(calls.try_recv().is_err(), "nothing was called");
    assert_eq!(api.connections(), 0);
    let now = stats.snapshot();
    assert_eq!((now.replies_dropped, now.replies_ok), (1, 0));
    shutdown.cancel();
}
