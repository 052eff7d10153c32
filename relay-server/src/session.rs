//! One agent's WebSocket session on the relay: the upgrade on the agent endpoint, the hello
//! handshake, and the loop that hands the agent's answers back to waiting webhooks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::link::{self, LinkReader, OUTBOX_CAPACITY};
use protocol::{
    Frame, HelloAck, LinkConfig, LinkError, PROTOCOL_VERSION, Progress, Tracked, close,
};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{
    self, Message, handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig,
};
use tracing::Instrument;

use crate::access::Grant;
use crate::agents::{AgentHandle, Reply};
use crate::config::is_valid_bot_name;
use crate::http::{plain, text_response};
use crate::state::Shared;

/// An agent that connected must say hello promptly; one that does not holds a connection slot.
/// The agent sends it right after the upgrade, so 5 s is generous; it also stays below the
/// default heartbeat timeout, so that a silent client is told what it missed (close 4008).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long hyper may take to hand over the upgraded connection after the 101 went out.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer gets to flush a close frame when the session ends.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// One agent may serve many bots, but not an unbounded number.
const MAX_BOTS_PER_AGENT: usize = 1000;

/// Answers an upgrade request on the agent endpoint: checks the token, then hands the connection
/// to [`serve`] in a tracked task. Refusals are plain HTTP errors, before any WebSocket exists.
pub fn upgrade(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let headers = request.headers();
    let has_token = |name, want: &str| {
        headers.get_all(name).iter().any(|value: &HeaderValue| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let is_websocket = request.method() == hyper::Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| is_websocket) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "this is the relay-agent endpoint: expected a WebSocket upgrade",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    let Some(grant) = shared.access.authenticate(presented) else {
        tracing::warn!(%peer, "agent refused: invalid token");
        return text_response(StatusCode::UNAUTHORIZED, "invalid agent token");
    };
    let worker = shared.clone();
    shared.session_tasks.spawn(async move {
        let upgraded =
            match tokio::time::timeout(UPGRADE_TIMEOUT, hyper::upgrade::on(request)).await {
                Ok(Ok(upgraded)) => upgraded,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "agent upgrade failed"),
                Err(_) => return tracing::debug!(%peer, "agent upgrade timed out"),
            };
        let io = Tracked::new(TokioIo::new(upgraded));
        let progress = io.progress();
        let ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(websocket_config(&worker)))
                .await;
        serve(ws, grant, peer, worker, Some(progress)).await;
    });
    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Bytes read from an agent's socket at a time. tungstenite's default (128 KiB) is allocated and
/// zero-filled per connection at the first read, which made each idle agent cost the relay
/// 128 KiB; 8 KiB still carries dozens of answers per read, and a larger message grows the
/// buffer as far as it needs.
const AGENT_READ_BUFFER: usize = 8 * 1024;

/// The WebSocket limits: the same value as the codec's frame limit, so neither layer can be made to
/// buffer more than the other allows.
fn websocket_config(shared: &Shared) -> WebSocketConfig {
    let limit = protocol::frame_limit(shared.config.limits.max_body_bytes);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(AGENT_READ_BUFFER)
}

/// Runs one agent session to its end: handshake, registration, and the read loop. `progress`
/// comes from the [`Tracked`] connection under `ws`, if it is one.
pub async fn serve<S>(
    ws: S,
    grant: Grant,
    peer: SocketAddr,
    shared: Arc<Shared>,
    progress: Option<Progress>,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static,
{
    let session = shared.next_session();
    let span = tracing::info_span!("agent", session, %peer, grant = %grant.name);
    async move {
        let limits = shared.config.limits;
        let config = LinkConfig {
            heartbeat_timeout: limits.heartbeat_timeout,
            frame_limit: protocol::frame_limit(limits.max_body_bytes),
            progress,
        };
        let (sink, stream) = ws.split();
        let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
        let stop = shared.sessions_stop.child_token();
        let writer = tokio::spawn(link::write_loop(sink, queue, config.clone(), stop.clone()));
        let mut reader = LinkReader::new(stream, outbox.clone(), config);

        let farewell = match handshake(&mut reader, &grant, session, &shared).await {
            Err(refusal) => {
                tracing::warn!(reason = %refusal.1, "agent refused");
                Some(link::close_message(refusal.0, &refusal.1))
            }
            Ok(hello) => {
                let ack = Frame::HelloAck(HelloAck {
                    version: PROTOCOL_VERSION,
                    software: concat!("relay-server ", env!("CARGO_PKG_VERSION")).into(),
                    session,
                    max_body_bytes: u32::try_from(limits.max_body_bytes).unwrap_or(u32::MAX),
                });
                let sent = match link::message(&ack) {
                    Ok(ack) => outbox.send(ack).await.is_ok(),
                    Err(_) => false,
                };
                if sent {
                    let handle = Arc::new(AgentHandle::new(session, hello.agent, hello.bots, outbox.clone(), limits.max_in_flight_per_agent));
                    for bot in &handle.bots {
                        shared.access.note_declared(bot);
                    }
                    shared.access.note_modes(&handle.bots, &hello.modes);
                    tracing::info!(agent = %handle.name, bots = ?handle.bots, software = %hello.software, "agent connected");
                    let _registration = shared.registry.register(handle.clone());
                    shared.scheduler.agents_changed();
                    read_answers(&mut reader, &handle, &stop).await
                } else {
                    None
                }
            }
        };
        match farewell {
            Some(close) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, outbox.send(close)).await;
            }
            None => stop.cancel(),
        }
        drop(outbox);
        drop(reader);
        let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    }
    .instrument(span)
    .await;
}

/// A refusal: the close code and the sentence the agent will show its user.
type Refusal = (u16, String);

/// Reads and checks the agent's hello.
async fn handshake<St>(
    reader: &mut LinkReader<St>,
    grant: &Grant,
    session: u64,
    shared: &Shared,
) -> Result<protocol::Hello, Refusal>
where
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let bytes = match tokio::time::timeout(HELLO_TIMEOUT, reader.next_bytes()).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => return Err((close::PROTOCOL_ERROR, format!("no hello: {error}"))),
        Err(_) => {
            return Err((
                close::HELLO_TIMEOUT,
                format!("no hello within {HELLO_TIMEOUT:?}"),
            ));
        }
    };
    match protocol::peek_hello_version(&bytes) {
        None => return Err((close::PROTOCOL_ERROR, "expected a hello frame first".into())),
        Some(version) if version != PROTOCOL_VERSION => {
            let upgrade = if version > PROTOCOL_VERSION {
                "relay-server"
            } else {
                "relay-agent"
            };
            return Err((
                close::VERSION_MISMATCH,
                format!(
                    "relay speaks protocol {PROTOCOL_VERSION}, agent speaks {version}: upgrade {upgrade}"
                ),
            ));
        }
        Some(_) => {}
    }
    let frame_limit = protocol::frame_limit(shared.config.limits.max_body_bytes);
    let Ok(Frame::Hello(mut hello)) = protocol::decode(&bytes, frame_limit) else {
        return Err((close::PROTOCOL_ERROR, "malformed hello".into()));
    };
    hello.bots.sort();
    hello.bots.dedup();
    if hello.bots.is_empty() || hello.bots.len() > MAX_BOTS_PER_AGENT {
        return Err((
            close::BOT_NOT_ALLOWED,
            format!("declare between 1 and {MAX_BOTS_PER_AGENT} bots"),
        ));
    }
    if let Some(bot) = hello.bots.iter().find(|bot| !is_valid_bot_name(bot)) {
        return Err((
            close::BOT_NOT_ALLOWED,
            format!("bot name {bot:?} must be 1-64 letters, digits, '_' or '-'"),
        ));
    }
    if let Some(bot) = hello.bots.iter().find(|bot| !grant.allows(bot)) {
        return Err((
            close::BOT_NOT_ALLOWED,
            format!("this agent token may not serve bot {bot:?}"),
        ));
    }
    if hello.agent.len() > 64 {
        let mut end = 64;
        while !hello.agent.is_char_boundary(end) {
            end -= 1;
        }
        hello.agent.truncate(end);
    }
    tracing::debug!(session, "hello accepted");
    Ok(hello)
}

/// Routes the agent's answers to the waiting webhooks until the session ends. Returns the close
/// frame to send, if the agent broke the protocol.
async fn read_answers<St>(
    reader: &mut LinkReader<St>,
    handle: &AgentHandle,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<Message>
where
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => return None,
            frame = reader.next() => frame,
        };
        match frame {
            Ok(Frame::Response(response)) => {
                handle.resolve(response.id, Reply::Response(response));
            }
            Ok(Frame::Failure(failure)) => {
                handle.resolve(failure.id, Reply::Failure(failure));
            }
            Ok(other) => {
                tracing::warn!(frame = ?std::mem::discriminant(&other), "agent sent an unexpected frame");
                return Some(link::close_message(
                    close::PROTOCOL_ERROR,
                    "unexpected frame",
                ));
            }
            Err(LinkError::Dead(after)) => {
                tracing::warn!(
                    ?after,
                    in_flight = handle.in_flight(),
                    "agent stopped answering; dropping it"
                );
                return None;
            }
            Err(LinkError::Decode(error)) => {
                tracing::warn!(%error, "agent sent a bad frame");
                return Some(link::close_message(close::PROTOCOL_ERROR, "bad frame"));
            }
            Err(error) => {
                tracing::info!(reason = %error, in_flight = handle.in_flight(), "agent disconnected");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Access;
    use crate::agents::Registry;
    use crate::config::Config;
    use futures_util::SinkExt;
    use protocol::{Hello, Secret};
    use tokio::io::DuplexStream;
    use tokio_util::sync::CancellationToken;

    type Client = WebSocketStream<DuplexStream>;

    fn shared() -> Arc<Shared> {
        let config = Config::new("unused");
        let access = Access::new(&config, Some(Secret::new("any-token-0123456789")));
        let registry = Arc::new(Registry::default());
        let dir = crate::files::tests::temp_dir("session");
        let (store, _) =
            crate::store::Store::open(&dir.join("store.redb"), Default::default()).expect("store");
        let scheduler = crate::delivery::Scheduler::new(
            store,
            Vec::new(),
            registry.clone(),
            config.delivery,
            config.limits.bot_timeout,
        );
        Arc::new(Shared::new(
            config,
            access,
            registry,
            scheduler,
            false,
            CancellationToken::new(),
        ))
    }

    /// Starts a session on one end of a pipe and returns the agent's end.
    async fn connect(shared: &Arc<Shared>, grant: Grant) -> Client {
        let (agent_end, relay_end) = tokio::io::duplex(64 * 1024);
        let relay_ws = WebSocketStream::from_raw_socket(relay_end, Role::Server, None).await;
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        tokio::spawn(serve(relay_ws, grant, peer, shared.clone(), None));
        WebSocketStream::from_raw_socket(agent_end, Role::Client, None).await
    }

    fn any_bot() -> Grant {
        Grant {
            name: "any".into(),
            bots: None,
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
        let shared = shared();
        let mut client = connect(&shared, any_bot()).await;
        let started = tokio::time::Instant::now();
        let (code, _) = close_of(&mut client).await;
        assert_eq!(code, close::HELLO_TIMEOUT);
        assert_eq!(started.elapsed(), HELLO_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_agent_is_told_to_upgrade_the_relay_and_an_older_one_itself() {
        let shared = shared();
        let mut client = connect(&shared, any_bot()).await;
        client
            .send(hello(PROTOCOL_VERSION + 1, &["echo"]))
            .await
            .expect("send");
        let (code, reason) = close_of(&mut client).await;
        assert_eq!(code, close::VERSION_MISMATCH);
        assert!(reason.ends_with("upgrade relay-server"), "{reason}");

        let mut client = connect(&shared, any_bot()).await;
        client
            .send(hello(PROTOCOL_VERSION - 1, &["echo"]))
            .await
            .expect("send");
        let (_, reason) = close_of(&mut client).await;
        assert!(reason.ends_with("upgrade relay-agent"), "{reason}");
    }

    #[tokio::test(start_paused = true)]
    async fn bots_outside_the_grant_or_badly_named_are_refused() {
        let shared = shared();
        let shop_only = Grant {
            name: "shop".into(),
            bots: Some(["shop".to_string()].into()),
        };
        let mut client = connect(&shared, shop_only).await;
        client
            .send(hello(PROTOCOL_VERSION, &["shop", "news"]))
            .await
            .expect("send");
        let (code, reason) = close_of(&mut client).await;
        assert_eq!(code, close::BOT_NOT_ALLOWED);
        assert!(reason.contains("news"), "{reason}");

        let mut client = connect(&shared, any_bot()).await;
        client
            .send(hello(PROTOCOL_VERSION, &["bad/name"]))
            .await
            .expect("send");
        assert_eq!(close_of(&mut client).await.0, close::BOT_NOT_ALLOWED);
        assert!(shared.registry.route("shop").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_goes_silent_is_dropped_after_the_heartbeat_timeout() {
        let shared = shared();
        let mut client = connect(&shared, any_bot()).await;
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
        assert_eq!(
            ack.max_body_bytes as usize,
            shared.config.limits.max_body_bytes
        );
        tokio::task::yield_now().await;
        assert!(shared.registry.route("echo").is_some());
        // The agent stops answering: no pongs, no frames. Its socket stays open, as after a
        // power cut or a lost NAT mapping, so only the heartbeat can tell.
        let connected = tokio::time::Instant::now();
        while shared.registry.route("echo").is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                connected.elapsed() < shared.config.limits.heartbeat_timeout * 2,
                "never dropped"
            );
        }
        let detected = connected.elapsed();
        assert!(
            detected >= shared.config.limits.heartbeat_timeout,
            "dropped after {detected:?}"
        );
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_reach_the_waiting_webhook_and_a_protocol_violation_closes_the_session() {
        let shared = shared();
        let mut client = connect(&shared, any_bot()).await;
        client
            .send(hello(PROTOCOL_VERSION, &["echo"]))
            .await
            .expect("send");
        let _ack = client.next().await;
        tokio::task::yield_now().await;
        let agent = shared.registry.route("echo").expect("registered");
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
        assert!(shared.registry.route("echo").is_none());
    }
}
