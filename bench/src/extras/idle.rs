//! Idle agents: what one connected agent that sends nothing costs the relay in memory. The bench
//! itself plays N agents, each a WebSocket speaking the real protocol for a bot of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use protocol::{Frame, Hello, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client;
use crate::lab::{AGENT_TOKEN, Lab};
use crate::relay::{Relay, RelayConfig};

/// Connections opened at once: enough to be quick, few enough to stay inside the relay's listen
/// backlog and not to measure a thundering herd.
const CONNECT_PARALLEL: usize = 64;
/// One connection's dial, upgrade and hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// All connections together.
const ALL_CONNECTED_TIMEOUT: Duration = Duration::from_secs(120);
/// The pause before the second reading, so that the relay's per-session tasks have run and
/// allocated what they keep; 2 s is far longer than that takes.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the connections may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// One pong write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<Either<TcpStream, TlsStream<TcpStream>>>;

/// The memory reading.
#[derive(Debug, Clone)]
pub struct Idle {
    /// `ws` or `tls`.
    pub transport: &'static str,
    /// Agents connected.
    pub agents: usize,
    /// Relay RSS before, KiB.
    pub before_kib: u64,
    /// Relay RSS with all agents connected, KiB.
    pub after_kib: u64,
}

impl Idle {
    /// KiB per agent.
    pub fn per_agent_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.agents.max(1) as f64
    }
}

/// Connects `agents` agents to a fresh relay and reads its memory before and after.
pub async fn measure(lab: &Lab, tls: bool, agents: usize) -> Result<Idle> {
    let transport = if tls { "tls" } else { "ws" };
    let config = RelayConfig {
        tls,
        admin: true,
        // Every bench agent shares one token, and agent sessions have a budget of their own.
        limits: vec![
            format!("max_connections = {}", agents + 256),
            format!("max_agent_sessions = {}", agents + 256),
            format!("max_sessions_per_token = {}", agents + 256),
        ],
        ..RelayConfig::default()
    };
    let mut relay = Relay::start(lab, &format!("idle-{transport}"), &config).await?;
    let before_kib = relay.child().rss_kib()?;
    let tls_config = relay.ca().map(|ca| client::tls_config(&ca)).transpose()?;
    let address = relay.endpoint()?.address();
    let dial = futures_util::stream::iter(0..agents)
        .map(|index| connect(address, tls_config.clone(), index))
        .buffer_unordered(CONNECT_PARALLEL)
        .try_collect::<Vec<Socket>>();
    let sockets = match tokio::time::timeout(ALL_CONNECTED_TIMEOUT, dial).await {
        Ok(Ok(sockets)) => sockets,
        Ok(Err(error)) => {
            relay.child_mut().check_alive()?;
            return Err(error.context(format!("idle agents ({transport})")));
        }
        Err(_) => bail!("{agents} idle agents did not connect within {ALL_CONNECTED_TIMEOUT:?}"),
    };
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    for socket in sockets {
        tracker.spawn(answer_pings(socket, stop.clone()));
    }
    tracker.close();
    tokio::time::sleep(SETTLE).await;
    relay.child_mut().check_alive()?;
    let after_kib = relay.child().rss_kib()?;
    let sessions = relay.stats().await?.agents;
    stop.cancel();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tracker.wait()).await;
    if sessions != agents as u64 {
        bail!("the relay counts {sessions} agent sessions, expected {agents}");
    }
    Ok(Idle {
        transport,
        agents,
        before_kib,
        after_kib,
    })
}

/// Dials, upgrades and says hello as `idle-<index>`, within [`HELLO_TIMEOUT`].
async fn connect(
    address: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    index: usize,
) -> Result<Socket> {
    tokio::time::timeout(HELLO_TIMEOUT, connect_untimed(address, tls, index))
        .await
        .map_err(|_| anyhow!("agent idle-{index}: no hello answer within {HELLO_TIMEOUT:?}"))?
}

async fn connect_untimed(
    address: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    index: usize,
) -> Result<Socket> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let stream = match tls {
        None => Either::Left(tcp),
        Some(config) => {
            let name = rustls_pki_types::ServerName::from(address.ip());
            Either::Right(
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?,
            )
        }
    };
    let mut request = format!("ws://{address}{}", protocol::AGENT_PATH).into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::try_from(format!("Bearer {AGENT_TOKEN}"))?,
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .with_context(|| format!("agent idle-{index}: upgrade failed"))?;
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        agent: format!("idle-{index}"),
        software: format!("bench {}", env!("CARGO_PKG_VERSION")),
        bots: vec![format!("idle-{index}")],
        modes: Vec::new(),
    });
    socket
        .send(Message::Binary(protocol::encode(&hello)?.into()))
        .await?;
    match socket.next().await {
        Some(Ok(Message::Binary(bytes))) => {
            match protocol::decode(&bytes, protocol::MAX_FRAME_LEN)? {
                Frame::HelloAck(_) => Ok(socket),
                other => bail!("agent idle-{index}: expected a hello ack, got {other:?}"),
            }
        }
        Some(Ok(Message::Close(frame))) => bail!("agent idle-{index}: relay closed: {frame:?}"),
        Some(Ok(other)) => bail!("agent idle-{index}: unexpected message {other:?}"),
        Some(Err(error)) => Err(error.into()),
        None => bail!("agent idle-{index}: connection ended before the hello ack"),
    }
}

/// Keeps one agent alive: answers the relay's pings until `stop`, then closes. The loop ends with
/// `stop` or the connection, whichever comes first.
async fn answer_pings(mut socket: Socket, stop: CancellationToken) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else { return };
        let Message::Binary(bytes) = message else {
            continue;
        };
        if let Ok(Frame::Ping(nonce)) = protocol::decode(&bytes, protocol::MAX_FRAME_LEN) {
            let Ok(pong) = protocol::encode(&Frame::Pong(nonce)) else {
                return;
            };
            let sent =
                tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Binary(pong.into())))
                    .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
}
