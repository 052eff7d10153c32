//! The agent endpoint (`GET /agent/v1`): checks the WebSocket upgrade and the bearer token, then
//! hands the connection to [`super::session`] in a tracked task. Refusals are plain HTTP errors,
//! before any WebSocket exists.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::Tracked;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{
    handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig,
};

use super::Tunnel;
use super::logins::{self, Failure};
use super::quota::QuotaError;
use super::session;
use crate::response::{plain, text_response};

/// How long hyper may take to hand over the upgraded connection after the 101 went out.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers an upgrade request on the agent endpoint: checks the token, then hands the connection
/// to [`session::serve`] in a tracked task. Refusals are plain HTTP errors, before any WebSocket exists.
pub(crate) fn upgrade(
    tunnel: &Arc<Tunnel>,
    request: Request<Incoming>,
    peer: SocketAddr,
    client: IpAddr,
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
    if let Some(wait) = tunnel.logins.throttled(client) {
        let mut response = text_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong agent tokens from this address; wait",
        );
        if let Ok(seconds) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        return response;
    }
    let Some(grant) = tunnel.access.authenticate(presented) else {
        match tunnel.logins.failed(client) {
            Failure::First => tracing::warn!(%peer, %client, "agent refused: invalid token"),
            Failure::Throttled => tracing::warn!(
                %peer,
                %client,
                failures = logins::MAX_FAILURES,
                "agent refused: invalid token; this address gets 429 for {}s",
                logins::WINDOW.as_secs()
            ),
            Failure::Counted | Failure::Untracked => {
                tracing::debug!(%peer, %client, "agent refused: invalid token")
            }
        }
        return text_response(StatusCode::UNAUTHORIZED, "invalid agent token");
    };
    tunnel.logins.succeeded(client);
    // Counted from here to the session's end, refused before the 101 so the agent sees why.
    let slot = match tunnel.quota.admit(grant.token) {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::warn!(%peer, grant = %grant.name, reason = %refusal, "agent refused");
            return text_response(refusal.status(), quota_sentence(refusal));
        }
    };
    let worker = tunnel.clone();
    tunnel.tasks.spawn(async move {
        let _slot = slot;
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
        session::serve(ws, grant, peer, worker, Some(progress)).await;
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

/// The sentence an agent refused by the [`Quota`](super::quota::Quota) gets.
fn quota_sentence(refusal: QuotaError) -> &'static str {
    match refusal {
        QuotaError::TokenFull => "too many sessions for this agent token",
        QuotaError::RelayFull => "too many agent sessions on this relay",
    }
}

/// Bytes read from an agent's socket at a time. tungstenite's default (128 KiB) is allocated and
/// zero-filled per connection at the first read, which made each idle agent cost the relay
/// 128 KiB; 8 KiB still carries dozens of answers per read, and a larger message grows the
/// buffer as far as it needs.
const AGENT_READ_BUFFER: usize = 8 * 1024;

/// The WebSocket limits: the same value as the codec's frame limit, so neither layer can be made to
/// buffer more than the other allows.
fn websocket_config(tunnel: &Tunnel) -> WebSocketConfig {
    let limit = protocol::frame_limit(tunnel.limits.max_body_bytes);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(AGENT_READ_BUFFER)
}
