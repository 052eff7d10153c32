//! The relay's end of an agent connection, for tests: reads the agent's frames and sends its own.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{Frame, Hello, HelloAck, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// A bound on every wait in the tests, far above what any of them needs.
pub const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// The relay's end of the WebSocket.
#[derive(Debug)]
pub struct FakeRelay<S> {
    pub ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FakeRelay<S> {
    /// The next frame from the agent, skipping heartbeats.
    pub async fn recv(&mut self) -> Frame {
        loop {
            match self.recv_message().await {
                Message::Binary(bytes) => match protocol::decode(&bytes, protocol::MAX_FRAME_LEN) {
                    Ok(Frame::Ping(_) | Frame::Pong(_)) => {}
                    Ok(frame) => return frame,
                    Err(error) => panic!("agent sent a bad frame: {error}"),
                },
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// The close frame the agent sends, skipping frames before it.
    pub async fn recv_close(&mut self) -> CloseFrame {
        loop {
            match self.recv_message().await {
                Message::Close(Some(frame)) => return frame,
                Message::Binary(_) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }

    async fn recv_message(&mut self) -> Message {
        tokio::time::timeout(TEST_DEADLINE, self.ws.next())
            .await
            .expect("agent sends in time")
            .expect("connection open")
            .expect("valid message")
    }

    pub async fn send(&mut self, frame: Frame) {
        let message = protocol::link::message(&frame).expect("encode");
        self.ws.send(message).await.expect("send to agent");
    }

    /// Reads the hello and accepts it.
    pub async fn accept(&mut self) -> Hello {
        let Frame::Hello(hello) = self.recv().await else {
            panic!("the first frame must be a hello");
        };
        self.send(Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            software: "relay-server test".into(),
            session: 42,
            max_body_bytes: 1 << 20,
        }))
        .await;
        hello
    }
}
