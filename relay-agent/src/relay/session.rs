//! One connected session with the relay: the hello, then many requests in flight at once, each
//! forwarded to its bot and answered, until the connection ends or the agent shuts down.
//!
//! Generic over the WebSocket, so the tests can play the relay over an in-memory pipe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use protocol::close::{self, GOING_AWAY, PROTOCOL_ERROR};
use protocol::link::{self, OUTBOX_CAPACITY, close_message, message};
use protocol::{
    Failure, FailureKind, Frame, Hello, HelloAck, LinkConfig, LinkError, LinkReader, Outbox,
    PROTOCOL_VERSION, Progress, RequestId,
};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bot::handler::Handler;
use crate::error::AgentError;
use crate::text::{one_line, seconds};

/// How long the relay may take to answer the hello. It answers at once when healthy; one that
/// upgraded the connection but says nothing for 10 s is stuck, and a fresh dial is the cure.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the agent waits for its own close frame to go out when a session ends. Long enough
/// for a healthy link; short enough that a relay that stopped reading cannot delay shutdown.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a session ended when the agent should try again; [`run`] returns the reasons it should
/// not as an [`AgentError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The shutdown token fired.
    Shutdown,
    /// The relay accepted the hello and the connection was later lost; the reason is one line.
    Lost(String),
    /// The connection failed before the relay accepted the hello; the reason is one line.
    HelloFailed(String),
}

/// What the session needs to know besides the socket.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The hello to send.
    pub(crate) hello: Hello,
    /// Silence from the relay for this long ends the session.
    pub(crate) heartbeat_timeout: Duration,
}

/// Runs one session over `socket` until it ends; `Err` only for reasons never worth a retry.
/// `progress` comes from the [`protocol::Tracked`] connection under `socket`, if it is one.
pub(crate) async fn run<S>(
    socket: S,
    progress: Option<Progress>,
    settings: &Settings,
    handler: Arc<Handler>,
    shutdown: &CancellationToken,
) -> Result<Ended, AgentError>
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static,
{
    let span = tracing::info_span!("session", session = tracing::field::Empty);
    session(socket, progress, settings, handler, shutdown)
        .instrument(span)
        .await
}

async fn session<S>(
    socket: S,
    progress: Option<Progress>,
    settings: &Settings,
    handler: Arc<Handler>,
    shutdown: &CancellationToken,
) -> Result<Ended, AgentError>
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static,
{
    let (sink, mut stream) = socket.split();
    let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
    let stop = shutdown.child_token();
    // Until the relay states its body limit, only frames without a body are expected.
    let greeting = LinkConfig {
        heartbeat_timeout: settings.heartbeat_timeout,
        frame_limit: protocol::frame_limit(0),
        progress,
    };
    let mut writer = tokio::spawn(link::write_loop(
        sink,
        queue,
        greeting.clone(),
        stop.clone(),
    ));
    let link = Link {
        outbox,
        stop,
        shutdown: shutdown.clone(),
    };

    let reader = LinkReader::new(&mut stream, link.outbox.clone(), greeting.clone());
    let ended = match link.greet(reader, settings.hello.clone()).await {
        Err(fatal) => Err(fatal),
        Ok(Greeting::Ended(Ended::Lost(reason))) => Ok(Ended::HelloFailed(reason)),
        Ok(Greeting::Ended(ended)) => Ok(ended),
        Ok(Greeting::Accepted(ack)) => {
            let max_body = usize::try_from(ack.max_body_bytes)
                .unwrap_or(usize::MAX)
                .min(protocol::MAX_BODY_LIMIT);
            let config = LinkConfig {
                frame_limit: protocol::frame_limit(max_body),
                ..greeting
            };
            let reader = LinkReader::new(stream, link.outbox.clone(), config);
            link.serve(reader, handler, max_body).await
        }
    };

    // The writer says "going away" unless it has already closed or failed.
    link.stop.cancel();
    if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        tracing::debug!("relay did not take the close frame in time");
        writer.abort();
    }
    ended
}

/// How the hello went, when nothing fatal happened.
enum Greeting {
    /// The relay accepted it.
    Accepted(HelloAck),
    /// The session ended before the relay answered.
    Ended(Ended),
}

/// The session's handles on the writer task.
struct Link {
    outbox: Outbox,
    /// Cancelled by the writer when it ends, or by shutdown.
    stop: CancellationToken,
    shutdown: CancellationToken,
}

impl Link {
    /// Says hello and waits for the relay's answer, or for the session to end first.
    async fn greet<St>(
        &self,
        mut reader: LinkReader<St>,
        hello: Hello,
    ) -> Result<Greeting, AgentError>
    where
        St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        let bots = hello.bots.clone();
        send_to_relay(&self.outbox, Frame::Hello(hello)).await;
        let answer = tokio::select! {
            () = self.stop.cancelled() => return Ok(Greeting::Ended(self.stopped())),
            answer = tokio::time::timeout(HELLO_TIMEOUT, reader.next()) => answer,
        };
        let ack = match answer {
            Err(_) => {
                let reason = format!(
                    "relay did not answer the hello within {}",
                    seconds(HELLO_TIMEOUT)
                );
                return Ok(Greeting::Ended(Ended::Lost(reason)));
            }
            Ok(Err(error)) => return self.ended_by(error).await.map(Greeting::Ended),
            Ok(Ok(Frame::HelloAck(ack))) => ack,
            Ok(Ok(frame)) => {
                let reason = format!("relay sent {} instead of a hello", kind(&frame));
                return Ok(Greeting::Ended(self.close(PROTOCOL_ERROR, reason).await));
            }
        };
        if ack.version != PROTOCOL_VERSION {
            let upgrade = if ack.version > PROTOCOL_VERSION {
                "relay-agent"
            } else {
                "relay-server"
            };
            let reason = format!(
                "the relay speaks protocol version {}, this agent {PROTOCOL_VERSION}: upgrade {upgrade}",
                ack.version
            );
            self.close(close::VERSION_MISMATCH, reason.clone()).await;
            return Err(AgentError::VersionMismatch { reason });
        }
        tracing::Span::current().record("session", ack.session);
        tracing::info!(
            ?bots,
            relay_software = %ack.software,
            max_body = ack.max_body_bytes,
            "connected to relay"
        );
        Ok(Greeting::Accepted(ack))
    }

    /// Serves requests until the connection ends. Every request runs as its own task, so a slow
    /// bot holds up only its own requests; all of them are aborted when the session ends (except
    /// what [`Handler`] does after the bot's answer, which finishes on its own).
    async fn serve<St>(
        &self,
        mut reader: LinkReader<St>,
        handler: Arc<Handler>,
        max_body: usize,
    ) -> Result<Ended, AgentError>
    where
        St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        let mut tasks = JoinSet::new();
        let mut in_flight: HashMap<RequestId, AbortHandle> = HashMap::new();
        let ended = loop {
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => break Ok(self.stopped()),
                next = reader.next() => next,
            };
            reap(&mut tasks, &mut in_flight);
            match next {
                Ok(Frame::Request(request)) => {
                    let id = request.id;
                    let outbox = self.outbox.clone();
                    if in_flight.contains_key(&id) {
                        // Answer the newcomer and leave the original alone.
                        let message = format!("request {id} is already in flight");
                        tracing::warn!(request = id, "relay reused a request id that is in flight");
                        let failure = Frame::Failure(Failure {
                            id,
                            kind: FailureKind::Rejected,
                            message,
                        });
                        tasks.spawn(async move {
                            send_to_relay(&outbox, failure).await;
                            id
                        });
                        continue;
                    }
                    let handler = handler.clone();
                    let task = async move {
                        send_to_relay(&outbox, handler.handle(request, max_body).await).await;
                        id
                    };
                    in_flight.insert(id, tasks.spawn(task.in_current_span()));
                }
                Ok(Frame::Cancel(id)) => {
                    if let Some(task) = in_flight.remove(&id) {
                        tracing::debug!(request = id, "relay cancelled the request");
                        task.abort();
                    }
                }
                Ok(frame) => {
                    let reason = format!("relay sent an unexpected {} frame", kind(&frame));
                    break Ok(self.close(PROTOCOL_ERROR, reason).await);
                }
                Err(error) => break self.ended_by(error).await,
            }
        };
        tasks.shutdown().await;
        ended
    }

    /// Why the session ends, for a read error.
    async fn ended_by(&self, error: LinkError) -> Result<Ended, AgentError> {
        Ok(match error {
            LinkError::Dead(after) => Ended::Lost(format!(
                "relay stopped answering (nothing for {})",
                seconds(after)
            )),
            LinkError::Closed {
                code: GOING_AWAY, ..
            } => Ended::Lost("relay is going away (restarting or shutting down)".into()),
            LinkError::Closed { code, reason } if close::is_fatal(code) => {
                return Err(AgentError::from_close(code, one_line(&reason)));
            }
            LinkError::Closed { code, reason } => Ended::Lost(format!(
                "relay closed the connection (code {code}: {})",
                one_line(&reason)
            )),
            LinkError::Ended => Ended::Lost("connection closed without a close frame".into()),
            error => match error.close_owed() {
                Some((code, reason)) => {
                    self.close(code, format!("relay sent a bad message: {reason}"))
                        .await
                }
                None => Ended::Lost(format!("websocket: {error}")),
            },
        })
    }

    /// Closes the connection with `code`, waiting briefly for the close frame to go out.
    async fn close(&self, code: u16, reason: String) -> Ended {
        tracing::warn!(code, reason, "closing the connection");
        let queued = tokio::select! {
            sent = self.outbox.send(close_message(code, &reason)) => sent.is_ok(),
            () = self.stop.cancelled() => false,
        };
        // The writer stops (and cancels `stop`) right after sending a close frame.
        if queued {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.stop.cancelled()).await;
        }
        Ended::Lost(reason)
    }

    /// How the session ended when `stop` fired: shutdown, or the writer gave up on the socket.
    fn stopped(&self) -> Ended {
        if self.shutdown.is_cancelled() {
            Ended::Shutdown
        } else {
            Ended::Lost(
                "cannot write to the relay (connection failed or relay stopped reading)".into(),
            )
        }
    }
}

/// Queues one frame for the relay. An answer that cannot be encoded (over the frame limit)
/// becomes a failure, so the relay is never left waiting.
async fn send_to_relay(outbox: &Outbox, frame: Frame) {
    let encoded = message(&frame).or_else(|error| match &frame {
        Frame::Response(response) => message(&Frame::Failure(Failure {
            id: response.id,
            kind: FailureKind::BadBotResponse,
            message: format!("bot response cannot be sent: {error}"),
        })),
        _ => Err(error),
    });
    let message = match encoded {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(%error, "cannot encode a frame");
            return;
        }
    };
    // An error means the writer is gone and the session is ending anyway.
    let _ = outbox.send(message).await;
}

/// Forgets finished forwards. A finished task's entry is removed only if it is still that task's:
/// a duplicate's failure shares the original's id.
fn reap(tasks: &mut JoinSet<RequestId>, in_flight: &mut HashMap<RequestId, AbortHandle>) {
    while let Some(done) = tasks.try_join_next_with_id() {
        match done {
            Ok((task, id)) => {
                if in_flight.get(&id).is_some_and(|handle| handle.id() == task) {
                    in_flight.remove(&id);
                }
            }
            Err(error) if error.is_cancelled() => {}
            Err(error) => {
                tracing::error!(%error, "a forward task panicked");
                in_flight.retain(|_, handle| handle.id() != error.id());
            }
        }
    }
}

/// A frame's name, for protocol-error reasons.
fn kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "Hello",
        Frame::HelloAck(_) => "HelloAck",
        Frame::Request(_) => "Request",
        Frame::Response(_) => "Response",
        Frame::Failure(_) => "Failure",
        Frame::Cancel(_) => "Cancel",
        Frame::Ping(_) => "Ping",
        Frame::Pong(_) => "Pong",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
