//! The listener: accepts connections under the [`super::admission`] bounds, terminates TLS,
//! serves HTTP/1.1 under each connection's [`super::keep_alive`] clock, and routes each request
//! to the webhook intake, the agent endpoint or the health check.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::admission::{Counted, PerSource, Pool, Slot};
use super::headers::{self, Forwarding};
use super::keep_alive::{Clock, Lifetime};
use super::{Edge, webhook};
use crate::config::Limits;
use crate::response::{retry_later, text_response};
use crate::tls::certificates::ACME_TLS_ALPN;
use crate::tunnel::upgrade;

/// A client that has not finished its TLS handshake by now is a scanner or a slowloris.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Telegram's header block is at most 4 KiB; 16 KiB leaves room for a proxy's additions (nginx's
/// default for a whole header block is 8 KiB per line, 32 KiB in all) while a connection that
/// sends a partial header costs little.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's read buffer for a connection (its default is about 400 KiB): the header limit, so a
/// connection that sends a partial header cannot make hyper grow the buffer past it. Bodies are
/// read 16 KiB at a time, which Telegram's updates (a few KiB) do not notice.
const MAX_READ_BUFFER_BYTES: usize = MAX_HEADER_BYTES;
/// After EMFILE and friends, give other connections a moment to close before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// What a connection on an agent-reserve slot hears if its request is not the agent upgrade.
const RESERVE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the accept loop holds for one connection: its slot and its count under its source.
#[derive(Debug)]
struct Admitted {
    slot: Slot,
    _counted: Option<Counted>,
}

/// Accepts until shutdown fires; connection tasks go on the edge's tracker.
pub(crate) async fn accept_loop(listener: TcpListener, edge: Arc<Edge>, tls: Option<TlsAcceptor>) {
    let limits = edge.limits;
    let pool = Pool::new(limits.max_connections, limits.agent_reserve);
    let connections = PerSource::new(limits.max_connections_per_source);
    let handshakes = PerSource::new(limits.max_handshakes_per_source);
    loop {
        // The slot is taken before accepting, so a flood waits in the kernel's backlog, not in memory.
        let slot = tokio::select! {
            () = edge.shutdown.cancelled() => break,
            slot = pool.slot() => match slot {
                Some(slot) => slot,
                None => break,
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
        // Over its source's cap the connection is closed at once, and its slot goes back. A
        // trusted proxy in front (TLS off) is every caller's source, so it is not counted.
        let counted = if edge.forwarding(peer) == Forwarding::TrustedProxy {
            None
        } else {
            match connections.enter(peer.ip()) {
                Some(counted) => Some(counted),
                None => {
                    tracing::debug!(%peer, "too many connections from this source; closed");
                    continue;
                }
            }
        };
        let handshake = match tls {
            None => None,
            Some(_) => match handshakes.enter(peer.ip()) {
                Some(handshake) => Some(handshake),
                None => {
                    tracing::debug!(%peer, "too many TLS handshakes from this source; closed");
                    continue;
                }
            },
        };
        let admitted = Admitted {
            slot,
            _counted: counted,
        };
        edge.tasks.spawn(connection(
            edge.clone(),
            stream,
            peer,
            tls.clone().zip(handshake),
            admitted,
        ));
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
    tls: Option<(TlsAcceptor, Counted)>,
    admitted: Admitted,
) {
    let _ = stream.set_nodelay(true);
    let reserved = admitted.slot.reserved;
    match tls {
        None => serve_http(edge, stream, peer, reserved).await,
        Some((acceptor, handshake)) => {
            let accepted =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(handshake);
            match accepted {
                // A CA validating TLS-ALPN-01 only looks at the certificate (RFC 8737,
                // section 3): the connection is never served HTTP.
                Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                    tracing::debug!(%peer, "acme-tls/1 handshake done; closed");
                }
                Ok(Ok(stream)) => serve_http(edge, stream, peer, reserved).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        }
    }
    drop(admitted);
}

/// How long a connection on an agent-reserve slot has to send its whole request. An agent sends
/// its upgrade right after connecting; a short deadline makes a flood of silent connections pay
/// for every reserve slot it holds with a new connection every two seconds.
const RESERVE_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The bounds of a connection's life; a connection on an agent-reserve slot gets one request,
/// and [`RESERVE_REQUEST_TIMEOUT`] (or less) to send it.
fn lifetime(limits: &Limits, reserved: bool) -> Lifetime {
    let reserve_deadline = limits.header_read_timeout.min(RESERVE_REQUEST_TIMEOUT);
    Lifetime {
        idle: if reserved {
            reserve_deadline
        } else {
            limits.keep_alive_timeout
        },
        header: if reserved {
            reserve_deadline
        } else {
            limits.header_read_timeout
        },
        max_age: limits.max_connection_age,
        max_requests: if reserved {
            1
        } else {
            limits.max_requests_per_connection
        },
    }
}

async fn serve_http<Io>(edge: Arc<Edge>, io: Io, peer: SocketAddr, reserved: bool)
where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let lifetime = lifetime(&edge.limits, reserved);
    let clock = Clock::new(lifetime);
    let io = clock.watch(io);
    let service_state = edge.clone();
    let requests = clock.clone();
    let service = service_fn(move |request| {
        let edge = service_state.clone();
        let request_clock = requests.request();
        async move {
            let mut response = route(edge, request, peer, reserved).await;
            if request_clock.is_last() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(request_clock);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A backstop only: the clock closes idle connections and slow header blocks sooner.
        .header_read_timeout(lifetime.idle + lifetime.header)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_READ_BUFFER_BYTES)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = edge.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(edge.limits.shutdown_grace, connection.as_mut()).await {
                    Ok(result) => break result,
                    Err(_) => return,
                }
            }
            () = clock.changed() => {}
            () = tokio::time::sleep_until(clock.next_check()) => {
                if let Some(expiry) = clock.expired() {
                    tracing::debug!(%peer, ?expiry, "connection closed by its clock");
                    return;
                }
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
    reserved: bool,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if reserved && path != protocol::AGENT_PATH {
        tracing::debug!(%peer, "connection pool full; only agents may use the reserve");
        retry_later("relay full, retry later", RESERVE_RETRY_AFTER)
    } else if path.starts_with(webhook::HOOK_PREFIX) {
        webhook::handle(edge, request, peer).await
    } else if path == protocol::AGENT_PATH {
        let client = headers::client_address(request.headers(), peer, edge.forwarding(peer));
        upgrade::upgrade(&edge.tunnel, request, peer, client)
    } else if path == "/healthz" {
        edge.health()
    } else {
        text_response(StatusCode::NOT_FOUND, "not found")
    }
}
