use std::sync::Arc;

use super::*;
use bytes::Bytes;
use protocol::FailureKind;
use service::share::FairLimit;
use tokio::sync::mpsc;

pub(crate) fn handle(
    session: u64,
    bots: &[&str],
    max_in_flight: usize,
) -> (
    Arc<AgentHandle>,
    mpsc::Receiver<tokio_tungstenite::tungstenite::Message>,
) {
    fair_handle(session, bots, max_in_flight, 0)
}

/// [`handle`] with each bot keeping `reserved` of the `max_in_flight` slots.
fn fair_handle(
    session: u64,
    bots: &[&str],
    max_in_flight: usize,
    reserved: usize,
) -> (
    Arc<AgentHandle>,
    mpsc::Receiver<tokio_tungstenite::tungstenite::Message>,
) {
    let (outbox, queue) = mpsc::channel(16);
    let in_flight = FairLimit::new(max_in_flight, reserved, bots.iter().copied());
    let bots = bots.iter().map(|b| b.to_string()).collect();
    (
        Arc::new(AgentHandle::new(
            session,
            "test".into(),
            bots,
            outbox,
            in_flight,
        )),
        queue,
    )
}

fn request() -> protocol::Request {
    protocol::Request {
        id: 0,
        bot: "echo".into(),
        method: "POST".into(),
        path: String::new(),
        query: None,
        headers: vec![],
        body: Bytes::from_static(b"{}"),
        timeout_ms: 1000,
        update_id: None,
        delivery: protocol::Delivery::Live,
    }
}

fn sent(message: tokio_tungstenite::tungstenite::Message) -> Frame {
    let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message else {
        panic!("not binary");
    };
    protocol::decode(&bytes, protocol::MAX_FRAME_LEN).expect("frame")
}

#[tokio::test(start_paused = true)]
async fn answers_reach_the_right_caller() {
    let (agent, mut queue) = handle(1, &["echo"], 8);
    let first = tokio::spawn({
        let agent = agent.clone();
        async move { agent.call(request(), Duration::from_secs(5)).await }
    });
    let second = tokio::spawn({
        let agent = agent.clone();
        async move { agent.call(request(), Duration::from_secs(5)).await }
    });
    let Frame::Request(a) = sent(queue.recv().await.expect("sent")) else {
        panic!()
    };
    let Frame::Request(b) = sent(queue.recv().await.expect("sent")) else {
        panic!()
    };
    assert_ne!(a.id, b.id);
    for (id, status) in [(b.id, 201), (a.id, 200)] {
        let response = Response {
            id,
            status,
            headers: vec![],
            body: Bytes::new(),
        };
        assert!(agent.resolve(id, Reply::Response(response)));
    }
    let statuses = [
        first.await.expect("join").expect("ok").status,
        second.await.expect("join").expect("ok").status,
    ];
    let ids = [a.id, b.id];
    let want = if ids[0] < ids[1] {
        [200, 201]
    } else {
        [201, 200]
    };
    assert_eq!(statuses, want);
    assert_eq!(agent.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_cancels_and_late_answers_are_dropped() {
    let (agent, mut queue) = handle(1, &["echo"], 8);
    let err = agent
        .call(request(), Duration::from_secs(2))
        .await
        .expect_err("timeout");
    assert!(matches!(err, CallError::Timeout(_)));
    let Frame::Request(sent_request) = sent(queue.recv().await.expect("request")) else {
        panic!()
    };
    assert_eq!(
        sent(queue.recv().await.expect("cancel")),
        Frame::Cancel(sent_request.id)
    );
    let late = Response {
        id: sent_request.id,
        status: 200,
        headers: vec![],
        body: Bytes::new(),
    };
    assert!(!agent.resolve(sent_request.id, Reply::Response(late)));
}

#[tokio::test(start_paused = true)]
async fn failures_overload_and_disconnects_are_reported() {
    let (agent, mut queue) = handle(1, &["echo"], 1);
    let call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.call(request(), Duration::from_secs(5)).await }
    });
    let Frame::Request(sent_request) = sent(queue.recv().await.expect("sent")) else {
        panic!()
    };
    let overloaded = agent.call(request(), Duration::from_secs(5)).await;
    assert!(matches!(overloaded, Err(CallError::Overloaded)));
    let failure = Failure {
        id: sent_request.id,
        kind: FailureKind::BotUnreachable,
        message: "refused".into(),
    };
    agent.resolve(sent_request.id, Reply::Failure(failure));
    assert!(matches!(
        call.await.expect("join"),
        Err(CallError::Failed(_))
    ));

    let call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.call(request(), Duration::from_secs(5)).await }
    });
    let _ = queue.recv().await.expect("sent");
    agent.disconnect();
    assert!(matches!(
        call.await.expect("join"),
        Err(CallError::AgentGone)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_call_on_a_handle_whose_session_ended_fails_at_once() {
    let (agent, _queue) = handle(1, &["echo"], 8);
    agent.disconnect();
    let started = tokio::time::Instant::now();
    let result = agent.call(request(), Duration::from_secs(5)).await;
    assert!(matches!(result, Err(CallError::AgentGone)), "{result:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[test]
fn failures_map_to_statuses_telegram_retries_and_never_410() {
    use protocol::Failure;
    let kinds = [
        FailureKind::BotTimeout,
        FailureKind::Overloaded,
        FailureKind::BotUnreachable,
        FailureKind::BadBotResponse,
        FailureKind::Rejected,
    ];
    let mut errors: Vec<CallError> = kinds
        .into_iter()
        .map(|kind| {
            CallError::Failed(Failure {
                id: 1,
                kind,
                message: String::new(),
            })
        })
        .collect();
    errors.extend([
        CallError::Overloaded,
        CallError::AgentGone,
        CallError::Timeout(Duration::from_secs(1)),
    ]);
    for error in &errors {
        let status = error.status();
        assert!(status.is_server_error(), "{error:?} -> {status}");
    }
    assert_eq!(
        CallError::Timeout(Duration::ZERO).status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(CallError::AgentGone.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test(start_paused = true)]
async fn a_bot_that_fills_its_share_leaves_the_other_bots_their_reserve() {
    let (agent, mut queue) = fair_handle(1, &["slow", "fast"], 4, 1);
    let call = |bot: &'static str| {
        let agent = agent.clone();
        tokio::spawn(async move {
            let request = protocol::Request {
                bot: bot.into(),
                ..request()
            };
            agent.call(request, Duration::from_secs(60)).await
        })
    };
    // The slow bot never answers: its requests stay in flight, up to its share.
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(call("slow"));
        let Frame::Request(sent) = sent(queue.recv().await.expect("sent")) else {
            panic!("a request")
        };
        assert_eq!(sent.bot, "slow");
    }
    let over = call("slow").await.expect("join");
    assert!(matches!(over, Err(CallError::Overloaded)), "{over:?}");

    let fast = call("fast");
    let Frame::Request(sent) = sent(queue.recv().await.expect("sent")) else {
        panic!("a request")
    };
    assert_eq!(sent.bot, "fast");
    let response = Response {
        id: sent.id,
        status: 200,
        headers: vec![],
        body: Bytes::new(),
    };
    assert!(agent.resolve(sent.id, Reply::Response(response)));
    let answered = fast.await.expect("join").expect("answered");
    assert_eq!(answered.status, 200);
    assert!(
        slow.iter().all(|task| !task.is_finished()),
        "the slow ones are still held"
    );
    for task in slow {
        task.abort();
    }
}
