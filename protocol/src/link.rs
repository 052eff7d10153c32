//! The connection loop both sides run over one WebSocket.
//!
//! A single writer task owns the sink: it batches whatever is queued into one flush, sends a
//! [`Frame::Ping`] every third of the heartbeat timeout, and gives every write a deadline, so a peer
//! that stops reading cannot wedge it. The reader answers pings itself and fails when nothing at
//! all has arrived for the heartbeat timeout, which is how a peer that vanished without a FIN (a
//! power cut, a dropped NAT mapping) is noticed.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use tokio_util::sync::CancellationToken;

use crate::codec::{DecodeError, EncodeError, decode, encode};
use crate::frame::Frame;

/// The queue of messages waiting for the writer task. Bounded: senders wait when it is full.
pub type Outbox = mpsc::Sender<Message>;

/// How many messages may wait for the writer. In-flight requests are bounded separately, so this
/// only smooths bursts; a full queue makes senders wait, it never drops data frames.
pub const OUTBOX_CAPACITY: usize = 256;

/// The timing and size limits of one link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Nothing received for this long means the peer is gone. Pings go out every third of it, so
    /// two lost pings in a row are tolerated.
    pub heartbeat_timeout: Duration,
    /// The largest message accepted, the same value as the WebSocket message limit.
    pub frame_limit: usize,
    /// The connection's byte-level progress, when it is [`crate::progress::Tracked`]: a deadline that
    /// passes while a large message is still moving is extended instead of ending the link.
    pub progress: Option<crate::progress::Progress>,
}

impl LinkConfig {
    /// How often the writer sends a ping.
    pub fn ping_interval(&self) -> Duration {
        self.heartbeat_timeout / 3
    }

    /// Whether bytes moved in the direction `within` asks about during the last heartbeat
    /// timeout; false without progress tracking.
    fn moved(&self, within: fn(&crate::progress::Progress, Duration) -> bool) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|progress| within(progress, self.heartbeat_timeout))
    }

    /// How long one batch of writes may take before the peer is considered stuck. As long as the
    /// heartbeat timeout: a peer that cannot take a frame in that time would be declared dead anyway.
    pub fn write_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The peer sent a close frame.
    #[error("peer closed the connection (code {code}: {reason})")]
    Closed {
        /// The close code, 1005 when the peer sent none.
        code: u16,
        /// The peer's reason text.
        reason: String,
    },
    /// The connection ended without a close frame.
    #[error("connection ended")]
    Ended,
    /// Nothing arrived within the heartbeat timeout.
    #[error("no frame from the peer for {0:?}")]
    Dead(Duration),
    /// The WebSocket layer failed (I/O error, oversized message, protocol violation).
    #[error("websocket: {0}")]
    Transport(#[from] tungstenite::Error),
    /// A message did not decode as a frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The peer sent a text message; this protocol only uses binary ones.
    #[error("peer sent a text message")]
    Text,
}

impl LinkError {
    /// The close frame owed to a peer whose message ended the link this way: a frame that does
    /// not decode or a text message is a protocol error, a message over the limit gets
    /// [`crate::close::MESSAGE_TOO_BIG`], a broken WebSocket gets
    /// [`crate::close::WEBSOCKET_PROTOCOL_ERROR`]. `None` when the peer is gone or closed first.
    pub fn close_owed(&self) -> Option<(u16, String)> {
        use crate::close;
        match self {
            LinkError::Decode(error) => {
                Some((close::PROTOCOL_ERROR, format!("bad frame: {error}")))
            }
            LinkError::Text => Some((close::PROTOCOL_ERROR, "text message".into())),
            LinkError::Transport(tungstenite::Error::Capacity(error)) => {
                Some((close::MESSAGE_TOO_BIG, error.to_string()))
            }
            LinkError::Transport(tungstenite::Error::Protocol(error)) => {
                Some((close::WEBSOCKET_PROTOCOL_ERROR, error.to_string()))
            }
            LinkError::Closed { .. }
            | LinkError::Ended
            | LinkError::Dead(_)
            | LinkError::Transport(_) => None,
        }
    }
}

/// Turns a frame into the WebSocket message that carries it.
pub fn message(frame: &Frame) -> Result<Message, EncodeError> {
    Ok(Message::Binary(Bytes::from(encode(frame)?)))
}

/// A close message with a code and a reason (cut to the 123 bytes a close frame can hold).
pub fn close_message(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }))
}

/// Owns the sink: sends queued messages in batches and pings on schedule, until the queue
/// closes, a close message has been sent, a write fails or times out, or `stop` fires (then it
/// says "going away" first). It cancels `stop` on the way out so the reader side ends too.
pub async fn write_loop<Si>(
    mut sink: Si,
    mut queue: mpsc::Receiver<Message>,
    config: LinkConfig,
    stop: CancellationToken,
) where
    Si: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let start = tokio::time::Instant::now() + config.ping_interval();
    let mut ping = tokio::time::interval_at(start, config.ping_interval());
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut nonce = 0u64;
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => {
                let bye = close_message(crate::close::GOING_AWAY, "going away");
                let _ = tokio::time::timeout(config.write_timeout(), sink.send(bye)).await;
                break;
            }
            queued = queue.recv() => match queued {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => {
                nonce = nonce.wrapping_add(1);
                match message(&Frame::Ping(nonce)) {
                    Ok(message) => message,
                    Err(_) => continue,
                }
            }
        };
        // Sends `first` and whatever else is queued; says whether a close went out.
        let batch = async {
            let mut closing = matches!(first, Message::Close(_));
            sink.feed(first).await?;
            while !closing {
                let Ok(next) = queue.try_recv() else { break };
                closing = matches!(next, Message::Close(_));
                sink.feed(next).await?;
            }
            sink.flush().await.map(|()| closing)
        };
        tokio::pin!(batch);
        let written = loop {
            match tokio::time::timeout(config.write_timeout(), &mut batch).await {
                Ok(written) => break Some(written),
                // Still sending, only slowly (a large message on a slow line): keep waiting.
                Err(_) if config.moved(crate::progress::Progress::written_within) => continue,
                Err(_) => break None,
            }
        };
        match written {
            Some(Ok(false)) => {}
            Some(Ok(true)) => break,
            Some(Err(error)) => {
                tracing::debug!(%error, "websocket write failed");
                break;
            }
            None => {
                tracing::warn!(timeout = ?config.write_timeout(), "peer stopped reading; dropping the connection");
                break;
            }
        }
    }
    stop.cancel();
}

/// Reads frames, answering pings on the way, with the heartbeat timeout as a receive deadline.
#[derive(Debug)]
pub struct LinkReader<St> {
    stream: St,
    outbox: Outbox,
    config: LinkConfig,
}

impl<St> LinkReader<St>
where
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    /// A reader that sends its pongs through `outbox`.
    pub fn new(stream: St, outbox: Outbox, config: LinkConfig) -> Self {
        Self {
            stream,
            outbox,
            config,
        }
    }

    /// The next binary message's bytes, undecoded (for the hello, whose version is read first).
    pub async fn next_bytes(&mut self) -> Result<Bytes, LinkError> {
        loop {
            let received =
                tokio::time::timeout(self.config.heartbeat_timeout, self.stream.next()).await;
            let message = match received {
                // Part of a large message is still arriving: the peer is alive.
                Err(_) if self.config.moved(crate::progress::Progress::read_within) => continue,
                Err(_) => return Err(LinkError::Dead(self.config.heartbeat_timeout)),
                Ok(None) => return Err(LinkError::Ended),
                Ok(Some(Err(tungstenite::Error::ConnectionClosed))) => {
                    return Err(LinkError::Ended);
                }
                Ok(Some(Err(error))) => return Err(error.into()),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Binary(bytes) => return Ok(bytes),
                Message::Close(frame) => {
                    return Err(match frame {
                        Some(frame) => LinkError::Closed {
                            code: frame.code.into(),
                            reason: frame.reason.to_string(),
                        },
                        None => LinkError::Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                    });
                }
                Message::Text(_) => return Err(LinkError::Text),
                // WebSocket-level pings are answered by tungstenite itself; they still count as
                // signs of life, which the loop has just noted by receiving them.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame that is not a heartbeat.
    pub async fn next(&mut self) -> Result<Frame, LinkError> {
        loop {
            let bytes = self.next_bytes().await?;
            match decode(&bytes, self.config.frame_limit)? {
                Frame::Ping(nonce) => {
                    // A full outbox means data is flowing to the peer, which tells it we are alive.
                    if let Ok(pong) = message(&Frame::Pong(nonce)) {
                        let _ = self.outbox.try_send(pong);
                    }
                }
                Frame::Pong(_) => {}
                frame => return Ok(frame),
            }
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
