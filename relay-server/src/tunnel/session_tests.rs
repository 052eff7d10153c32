use bytes::Bytes;

use super::*;
use crate::config::Limits;
use crate::tunnel::access::Access;
use crate::tunnel::bots::KnownBots;
use crate::tunnel::registry::Registry;
use futures_util::SinkExt;
use protocol::{Hello, Secret};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

type Client = WebSocketStream<DuplexStream>;

fn tunnel() -> Arc<Tunnel> {
    let access = Access::new(&[], Some(Secret::new("any-token-0123456789")));
    Arc::new(Tunnel::new(
        access,
        Arc::new(KnownBots::default()),
        Arc::new(Registry::default()),
        Limits::default(),
    ))
}

/// Starts a session on one end of a pipe and returns the agent's end.
async fn connect(tunnel: &Arc<Tunnel>, grant: Grant) -> Client {
    let (agent_end, relay_end) = tokio::io::duplex(64 * 1024);
    let relay_ws = WebSocketStream::from_raw_socket(relay_end, Role::Server, None).await;
    let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
    tokio::spawn(serve(relay_ws, grant, peer, tunnel.clone(), None));
    WebSocketStream::from_raw_socket(agent_end, Role::Client, None).await
}

fn any_bot() -> Grant {
    Grant {
        name: "any".into(),
        bots: None,
        token: 0,
    }
}

fn hello(version: u16, bots: &[&str]) -> Message {
    let hello = Frame::Hello(Hello {
        version,
        agent: "test".into(),
        software: "test".into(),
        bots: bots.iter().map(|b| b.to_string()).collect(),
        modes: Vec::new(),
    });
    link::message(&hello).expect("encode")
}

/// The close code and reason the relay ends the session with, skipping other frames.
async fn close_of(client: &mut Client) -> (u16, String) {
    loop {
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_never_says_hello_is_closed_after_the_hello_timeout() {
    let tunnel = tunnel();
    let mut client = connect(&tunnel, any_bot()).await;
    let started = tokio::time::Instant::now();
    let (code, _) = close_of(&mut client).await;
    assert_eq!(code, close::HELLO_TIMEOUT);
    assert_eq!(started.elapsed(), HELLO_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_newer_agent_is_told_to_upgrade_the_relay_and_an_older_one_itself() {
    let tunnel = tunnel();
    let mut client = connect(&tunnel, any_bot()).await;
    client
        .send(hello(PROTOCOL_VERSION + 1, &["echo"]))
        .await
        .expect("send");
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(code, close::VERSION_MISMATCH);
    assert!(reason.ends_with("upgrade relay-server"), "{reason}");

    let mut client = connect(&tunnel, any_bot()).await;
    client
        .send(hello(PROTOCOL_VERSION - 1, &["echo"]))
        .await
        .expect("send");
    let (_, reason) = close_of(&mut client).await;
    assert!(reason.ends_with("upgrade relay-agent"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn bots_outside_the_grant_or_badly_named_are_refused() {
    let tunnel = tunnel();
    let shop_only = Grant {
        name: "shop".into(),
        bots: Some(["shop".to_string()].into()),
        token: 1,
    };
    let mut client = connect(&tunnel, shop_only).await;
    client
        .send(hello(PROTOCOL_VERSION, &["shop", "news"]))
        .await
        .expect("send");
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(code, close::BOT_NOT_ALLOWED);
    assert!(reason.contains("news"), "{reason}");

    let mut client = connect(&tunnel, any_bot()).await;
    client
        .send(hello(PROTOCOL_VERSION, &["bad/name"]))
        .await
        .expect("send");
    assert_eq!(close_of(&mut client).await.0, close::BOT_NOT_ALLOWED);
    assert!(tunnel.registry.route("shop").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_goes_silent_is_dropped_after_the_heartbeat_timeout() {
    let tunnel = tunnel();
    let mut client = connect(&tunnel, any_bot()).await;
    client
        .send(hello(PROTOCOL_VERSION, &["echo"]))
        .await
        .expect("send");
    let Some(Ok(Message::Binary(ack))) = client.next().await else {
        panic!("no ack")
    };
    let Ok(Frame::HelloAck(ack)) = protocol::decode(&ack, protocol::MAX_FRAME_LEN) else {
        panic!("not an ack")
    };
    assert_eq!(ack.max_body_bytes as usize, tunnel.limits.max_body_bytes);
    tokio::task::yield_now().await;
    assert!(tunnel.registry.route("echo").is_some());
    // The agent stops answering: no pongs, no frames. Its socket stays open, as after a
    // power cut or a lost NAT mapping, so only the heartbeat can tell.
    let connected = tokio::time::Instant::now();
    while tunnel.registry.route("echo").is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            connected.elapsed() < tunnel.limits.heartbeat_timeout * 2,
            "never dropped"
        );
    }
    let detected = connected.elapsed();
    assert!(
        detected >= tunnel.limits.heartbeat_timeout,
        "dropped after {detected:?}"
    );
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn answers_reach_the_waiting_webhook_and_a_protocol_violation_closes_the_session() {
    let tunnel = tunnel();
    let mut client = connect(&tunnel, any_bot()).await;
    client
        .send(hello(PROTOCOL_VERSION, &["echo"]))
        .await
        .expect("send");
    let _ack = client.next().await;
    tokio::task::yield_now().await;
    let agent = tunnel.registry.route("echo").expect("registered");
    let request = protocol::Request {
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
    };
    let call = tokio::spawn(async move { agent.call(request, Duration::from_secs(5)).await });
    let id = loop {
        let Some(Ok(Message::Binary(bytes))) = client.next().await else {
            panic!("closed")
        };
        if let Ok(Frame::Request(request)) = protocol::decode(&bytes, protocol::MAX_FRAME_LEN) {
            break request.id;
        }
    };
    let response = Frame::Response(protocol::Response {
        id,
        status: 418,
        headers: vec![],
        body: Bytes::new(),
    });
    client
        .send(link::message(&response).expect("encode"))
        .await
        .expect("send");
    assert_eq!(call.await.expect("join").expect("answer").status, 418);

    client
        .send(link::message(&Frame::Cancel(1)).expect("encode"))
        .await
        .expect("send");
    assert_eq!(close_of(&mut client).await.0, close::PROTOCOL_ERROR);
    tokio::task::yield_now().await;
    assert!(tunnel.registry.route("echo").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_limit_is_refused_as_too_big_not_as_going_away() {
    let tunnel = tunnel();
    let (agent_end, relay_end) = tokio::io::duplex(64 * 1024);
    // The limits the upgrade gives a real session, at a size a test can exceed cheaply.
    let limits = WebSocketConfig::default()
        .max_message_size(Some(1024))
        .max_frame_size(Some(1024));
    let relay_ws = WebSocketStream::from_raw_socket(relay_end, Role::Server, Some(limits)).await;
    let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
    tokio::spawn(serve(relay_ws, any_bot(), peer, tunnel.clone(), None));
    let mut client = WebSocketStream::from_raw_socket(agent_end, Role::Client, None).await;
    client
        .send(hello(PROTOCOL_VERSION, &["echo"]))
        .await
        .expect("send");
    let _ack = client.next().await;
    client
        .send(Message::Binary(Bytes::from(vec![0; 4096])))
        .await
        .expect("send");
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(code, close::MESSAGE_TOO_BIG, "{reason}");
}
