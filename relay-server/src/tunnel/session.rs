//! One agent's WebSocket session on the relay: the hello handshake, registration, and the loop
//! that hands the agent's answers back to waiting webhooks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use protocol::link::{self, LinkReader, OUTBOX_CAPACITY};
use protocol::{Frame, HelloAck, LinkConfig, LinkError, PROTOCOL_VERSION, Progress, close};
use service::share::FairLimit;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

use super::Tunnel;
use super::access::Grant;
use super::handle::{AgentHandle, Reply};

/// An agent that connected must say hello promptly; one that does not holds a connection slot.
/// The agent sends it right after the upgrade, so 5 s is generous; it also stays below the
/// default heartbeat timeout, so that a silent client is told what it missed (close 4008).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a hello waits for the declared bots to be written to the data dir before the
/// session is registered anyway (the write goes on in the background): a hung disk must not
/// leave an agent that believes it is connected without traffic.
const REMEMBER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the writer gets to flush a close frame when the session ends.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// One agent may serve many bots, but not an unbounded number.
const MAX_BOTS_PER_AGENT: usize = 1000;

/// Runs one agent session to its end: handshake, registration, and the read loop. `progress`
/// comes from the [`protocol::Tracked`] connection under `ws`, if it is one.
pub(crate) async fn serve<S>(
    ws: S,
    grant: Grant,
    peer: SocketAddr,
    tunnel: Arc<Tunnel>,
    progress: Option<Progress>,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static,
{
    let session = tunnel.next_session();
    let span = tracing::info_span!("agent", session, %peer, grant = %grant.name);
    async move {
        let limits = tunnel.limits;
        let config = LinkConfig {
            heartbeat_timeout: limits.heartbeat_timeout,
            frame_limit: protocol::frame_limit(limits.max_body_bytes),
            progress,
        };
        let (sink, stream) = ws.split();
        let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
        let stop = tunnel.stop.child_token();
        let writer = tokio::spawn(link::write_loop(sink, queue, config.clone(), stop.clone()));
        let mut reader = LinkReader::new(stream, outbox.clone(), config);

        let farewell = match handshake(&mut reader, &grant, session, &tunnel).await {
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
                    let in_flight = FairLimit::new(limits.max_in_flight_per_agent, limits.reserved_in_flight_per_bot, hello.bots.iter().map(String::as_str));
                    let handle = Arc::new(AgentHandle::new(session, hello.agent, hello.bots, outbox.clone(), in_flight));
                    if tokio::time::timeout(REMEMBER_TIMEOUT, tunnel.bots.note_hello(&handle.bots, &hello.modes)).await.is_err() {
                        tracing::warn!("the data dir is slow: the declared bots are written in the background");
                    }
                    tracing::info!(agent = %handle.name, bots = ?handle.bots, software = %hello.software, "agent connected");
                    let _registration = tunnel.registry.register(handle.clone());
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
    tunnel: &Tunnel,
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
    let frame_limit = protocol::frame_limit(tunnel.limits.max_body_bytes);
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
    if let Some(bot) = hello
        .bots
        .iter()
        .find(|bot| !protocol::bot_name::is_valid(bot))
    {
        return Err((
            close::BOT_NOT_ALLOWED,
            format!("bot name {bot:?} must be {}", protocol::bot_name::RULE),
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
            Err(error) => {
                if let Some((code, reason)) = error.close_owed() {
                    tracing::warn!(code, %reason, "agent broke the protocol; closing the session");
                    return Some(link::close_message(code, &reason));
                }
                tracing::info!(reason = %error, in_flight = handle.in_flight(), "agent disconnected");
                return None;
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
