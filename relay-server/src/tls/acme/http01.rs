//! The port-80 listener of `http_listen`: serves `/.well-known/acme-challenge/<token>` with its
//! key authorization while an HTTP-01 challenge is open, and redirects every other request to
//! the same URL on HTTPS. Bounded like the public port: a connection cap, a header deadline, one
//! request per connection, bodies never read.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::challenge::Tokens;
use crate::response::text_response;

/// Where the CA asks for HTTP-01 answers (RFC 8555, section 8.3).
pub(crate) const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Connections served at once: the CA's validation makes a handful, browsers following the
/// redirect one each; past this a flood waits in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A request line and headers fit in this: the CA's are a few hundred bytes.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// A connection's whole life, header to answer: it serves one small answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// After EMFILE and friends, give other connections a moment to close before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the listener answers.
#[derive(Debug, Clone)]
pub(crate) struct Http01 {
    /// The open challenges' key authorizations.
    pub(crate) tokens: Arc<Tokens>,
    /// The relay's HTTPS port, for redirects (left out when it is 443).
    pub(crate) https_port: u16,
    /// How long a client has to send its request header.
    pub(crate) header_timeout: Duration,
}

/// Serves `listener` until `shutdown` fires.
pub(crate) async fn serve(listener: TcpListener, http01: Http01, shutdown: CancellationToken) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "acme http-01 listening");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let http01 = Arc::new(http01);
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "acme http-01 accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let http01 = http01.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let header_timeout = http01.header_timeout;
            let service = service_fn(move |request| {
                let response = answer(&http01.tokens, http01.https_port, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                served = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {
                    if let Ok(Err(error)) = served {
                        tracing::debug!(%peer, %error, "acme http-01 connection ended with an error");
                    }
                }
            }
            drop(slot);
        });
    }
}

/// The key authorization for an open challenge, 404 for another token, a redirect to HTTPS for
/// anything else.
pub(crate) fn answer<B>(
    tokens: &Tokens,
    https_port: u16,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match tokens.get(token) {
            // Exactly the key authorization: no trailing newline for the CA to compare.
            Some(key_authorization) => {
                let mut response = Response::new(Full::new(Bytes::from(key_authorization)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => text_response(StatusCode::NOT_FOUND, "no such challenge"),
        };
    }
    match redirect_target(request, https_port) {
        Some(location) => {
            let mut response = text_response(StatusCode::PERMANENT_REDIRECT, "use https");
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => text_response(StatusCode::BAD_REQUEST, "no valid Host header"),
    }
}

/// `https://<host>[:port]<path and query>` for the request's Host header, if it is a valid one.
fn redirect_target<B>(request: &Request<B>, https_port: u16) -> Option<HeaderValue> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match https_port {
        443 => format!("https://{}{path}", authority.host()),
        port => format!("https://{}:{port}{path}", authority.host()),
    };
    HeaderValue::try_from(location).ok()
}

#[cfg(test)]
#[path = "http01_tests.rs"]
mod tests;
