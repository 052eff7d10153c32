//! The listener: accepts connections under a bound, terminates TLS, serves HTTP/1.1 and routes
//! each request to the webhook intake, the agent endpoint or the health check.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::{Edge, webhook};
use crate::response::text_response;
use crate::tunnel::upgrade;

/// A client that has not finished its TLS handshake by now is a scanner or a slowloris.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request's header block, counted from when the relay
/// starts waiting for it, so it is also how long an idle keep-alive connection stays open.
/// Telegram sends its ≤ 4 KiB header block at once and reconnects freely; 30 s (hyper's default)
/// keeps busy bots on warm connections while a slowloris gives its slot back soon.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Telegram's header block is at most 4 KiB; 64 KiB leaves room for proxies and stays far under
/// the protocol's head room.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// After EMFILE and friends, give other connections a moment to close before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts until shutdown fires; connection tasks go on the edge's tracker.
pub(crate) async fn accept_loop(listener: TcpListener, edge: Arc<Edge>, tls: Option<TlsAcceptor>) {
    let slots = Arc::new(Semaphore::new(edge.limits.max_connections));
    loop {
        // The slot is taken before accepting, so a flood waits in the kernel's backlog, not in memory.
        let slot = tokio::select! {
            () = edge.shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = edge.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    handle_accept_error(error).await;
                    continue;
                }
            },
        };
        edge.tasks
            .spawn(connection(edge.clone(), stream, peer, tls.clone(), slot));
    }
}

/// Per-connection errors (the peer reset before we accepted) are skipped; resource exhaustion
/// pauses briefly instead of spinning.
async fn handle_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; pausing");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

async fn connection(
    edge: Arc<Edge>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_http(edge, stream, peer).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(edge, stream, peer).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        }
    }
}

async fn serve_http<Io>(edge: Arc<Edge>, io: Io, peer: SocketAddr)
where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service_state = edge.clone();
    let service = service_fn(move |request| {
        let edge = service_state.clone();
        async move { Ok::<_, Infallible>(route(edge, request, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = edge.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(edge.limits.shutdown_grace, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn route(
    edge: Arc<Edge>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path.starts_with(webhook::HOOK_PREFIX) {
        webhook::handle(edge, request, peer).await
    } else if path == protocol::AGENT_PATH {
        upgrade::upgrade(&edge.tunnel, request, peer)
    } else if path == "/healthz" {
        edge.health()
    } else {
        text_response(StatusCode::NOT_FOUND, "not found")
    }
}
