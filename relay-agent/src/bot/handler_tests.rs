//! Tests for [`super`] that the session tests cannot reach: what happens when the relay cancels a
//! request mid-way, and stored requests without an `update_id`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use protocol::Secret;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::url::ApiUrl;
use test_support::{Received, TestBot, respond};

/// A bound on every wait in these tests, far above what any of them needs.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

const CALL: &str = r#"{"method":"sendMessage","chat_id":1,"text":"hi"}"#;

fn stored(id: u64, update_id: Option<i64>) -> Request {
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
        update_id,
        delivery: Delivery::Stored { attempt: 1 },
    }
}

/// A bot that answers every update with a `sendMessage` call, counting them.
async fn calling_bot() -> (TestBot, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let bot = TestBot::start(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        async {
            let mut response = respond(200, CALL);
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    })
    .await;
    (bot, count)
}

fn handler(bot: &TestBot, api: &TestBot) -> Handler {
    let mut config = Config::new(
        "ws://127.0.0.1:1",
        Secret::new("agent-token"),
        vec![("echo".into(), bot.url("/"))],
    )
    .expect("valid config");
    config.api_url = ApiUrl::parse(&api.url("")).expect("api url");
    config.bots[0].bot_token = Some(Secret::new("1:token"));
    Handler::new(&config, Arc::default()).expect("handler")
}

#[tokio::test]
async fn a_cancel_after_the_bots_answer_does_not_stop_the_reply() {
    let (bot, _) = calling_bot().await;
    // The Bot API holds the call until the test lets it go.
    let (arrived, mut at_api) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let api = TestBot::start(move |_: Received| {
        let arrived = arrived.clone();
        async move {
            let (release, released) = oneshot::channel();
            let _ = arrived.send(release);
            let _ = released.await;
            respond(200, r#"{"ok":true,"result":{}}"#)
        }
    })
    .await;
    let handler = Arc::new(handler(&bot, &api));
    let running = handler.clone();
    let task = tokio::spawn(async move { running.handle(stored(1, Some(41)), 1 << 20).await });
    let release = tokio::time::timeout(TEST_DEADLINE, at_api.recv())
        .await
        .expect("the call reaches the Bot API")
        .expect("test alive");
    // The relay's Cancel aborts the request's task, as the session does.
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    release.send(()).expect("call still waiting");
    tokio::time::timeout(TEST_DEADLINE, handler.close())
        .await
        .expect("close waits for the call");
    assert_eq!(handler.stats().snapshot().replies_ok, 1);
    let body = stored(1, Some(41)).body;
    assert!(
        handler
            .dedupe
            .contains("echo", crate::bot::dedupe::key(41, &body))
    );
}

#[tokio::test]
async fn a_stored_answer_without_an_update_id_gets_its_reply_but_no_record() {
    let (bot, count) = calling_bot().await;
    let (seen, mut calls) = mpsc::unbounded_channel::<Received>();
    let api = TestBot::start(move |received| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(received);
            respond(200, r#"{"ok":true,"result":{}}"#)
        }
    })
    .await;
    let handler = handler(&bot, &api);
    for id in 1..=2 {
        let frame = tokio::time::timeout(TEST_DEADLINE, handler.handle(stored(id, None), 1 << 20))
            .await
            .expect("handled");
        assert!(
            matches!(&frame, Frame::Response(r) if r.status == 200 && r.body == CALL.as_bytes()),
            "{frame:?}"
        );
    }
    // Never de-duplicated: both reached the bot, and both replies were made.
    assert_eq!(count.load(Ordering::SeqCst), 2);
    for _ in 0..2 {
        let call = calls.try_recv().expect("a call per answer");
        assert_eq!(call.uri, "/bot1:token/sendMessage");
    }
    assert_eq!(handler.stats().snapshot().replies_ok, 2);
}

#[tokio::test]
async fn a_live_answer_lost_on_the_way_back_has_its_call_made_when_the_update_comes_stored() {
    let (bot, bot_calls) = calling_bot().await;
    let api_calls = Arc::new(AtomicUsize::new(0));
    let api = {
        let api_calls = api_calls.clone();
        TestBot::start(move |_: Received| {
            api_calls.fetch_add(1, Ordering::SeqCst);
            async { respond(200, r#"{"ok":true,"result":{}}"#) }
        })
        .await
    };
    let handler = handler(&bot, &api);
    // Live: the bot answers with a call, which Telegram would make; the agent makes none.
    let mut live = stored(1, Some(42));
    live.delivery = Delivery::Live;
    let Frame::Response(answer) = handler.handle(live, 1 << 20).await else {
        panic!("live answer");
    };
    assert_eq!(&answer.body[..], CALL.as_bytes());
    assert_eq!(api_calls.load(Ordering::SeqCst), 0);
    // The answer never reached the relay, which stored the update and redelivers it: the bot is
    // not asked again, and the call Telegram never saw is made, once.
    for id in [2, 3] {
        let Frame::Response(ack) = handler.handle(stored(id, Some(42)), 1 << 20).await else {
            panic!("acknowledgement");
        };
        assert_eq!(ack.status, 200);
    }
    assert_eq!(bot_calls.load(Ordering::SeqCst), 1);
    assert_eq!(api_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forged_update_id_does_not_hide_the_real_update_from_the_bot() {
    let (bot, bot_calls) = calling_bot().await;
    let (api, _) = calling_bot().await;
    let handler = handler(&bot, &api);
    // Someone posts a body of their own with the update_id Telegram will use next.
    let mut forged = stored(1, Some(77));
    forged.delivery = Delivery::Live;
    forged.body = Bytes::from_static(br#"{"update_id":77,"message":{"text":"forged"}}"#);
    handler.handle(forged, 1 << 20).await;
    // The real update 77 still reaches the bot; its exact repeat does not.
    let mut real = stored(2, Some(77));
    real.body = Bytes::from_static(br#"{"update_id":77,"message":{"text":"real"}}"#);
    handler.handle(real.clone(), 1 << 20).await;
    real.id = 3;
    handler.handle(real, 1 << 20).await;
    assert_eq!(bot_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_remembered_live_answer_does_not_pin_the_bot_connections_buffer() {
    let (bot, _) = calling_bot().await;
    let (api, _) = calling_bot().await;
    let handler = handler(&bot, &api);
    let mut live = stored(1, Some(42));
    live.delivery = Delivery::Live;
    let key = crate::bot::dedupe::key(42, &live.body);
    let Frame::Response(answer) = handler.handle(live, 1 << 20).await else {
        panic!("live answer");
    };
    let remembered = handler
        .dedupe
        .live_answer("echo", key)
        .expect("the answer is remembered");
    assert_eq!(remembered.body, answer.body);
    // The answer that went back is a slice of the connection's read buffer; the remembered one
    // must be its own small allocation, or it keeps that whole buffer alive.
    assert_ne!(remembered.body.as_ptr(), answer.body.as_ptr());
}
