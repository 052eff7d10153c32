//! The webhook intake: `/hook/<bot>[/<rest>]`. Checks the request, carries it to the bot's agent and
//! returns the bot's answer unchanged, or a status that tells Telegram to retry (never 410, which
//! would make Telegram drop the webhook).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use protocol::{FailureKind, Header, is_hop_by_hop};
use tracing::Instrument;

use crate::agents::CallError;
use crate::config::DeliveryMode;
use crate::http::{plain, text_response};
use crate::state::Shared;
use crate::store::{NewUpdate, StoreError};
use crate::update::UpdateInfo;

/// The path prefix of every webhook URL.
pub const HOOK_PREFIX: &str = "/hook/";
/// Telegram sends the whole body at once; a caller that trickles it is holding a connection slot.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The header Telegram puts the webhook's `secret_token` in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Splits `/hook/<bot>[/<rest>]` into the bot and the rest (empty, or starting with `/`).
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix(HOOK_PREFIX)?;
    let (bot, rest) = tail.find('/').map_or((tail, ""), |at| tail.split_at(at));
    crate::config::is_valid_bot_name(bot).then_some((bot, rest))
}

/// Serves one webhook request.
pub async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let Some((bot, rest)) = split_path(request.uri().path()) else {
        return text_response(StatusCode::NOT_FOUND, "not found");
    };
    let (bot, rest) = (bot.to_owned(), rest.to_owned());
    let span = tracing::debug_span!("webhook", %bot, %peer);
    deliver(shared, request, peer, bot, rest)
        .instrument(span)
        .await
}

async fn deliver(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
    bot: String,
    rest: String,
) -> Response<Full<Bytes>> {
    let limits = shared.config.limits;
    if !shared.access.knows(&bot) {
        tracing::debug!("unknown bot");
        return text_response(StatusCode::NOT_FOUND, "unknown bot");
    }
    if let Some(secret) = shared
        .config
        .bots
        .get(&bot)
        .and_then(|b| b.secret_token.as_ref())
    {
        let presented = request
            .headers()
            .get(SECRET_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !secret.matches(presented) {
            tracing::warn!("webhook refused: wrong or missing secret token");
            return text_response(StatusCode::UNAUTHORIZED, "wrong secret token");
        }
    }
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > limits.max_body_bytes as u64) {
        tracing::warn!(
            length = declared_length,
            limit = limits.max_body_bytes,
            "webhook body too large"
        );
        discard(request.into_body(), limits.max_body_bytes.saturating_mul(2)).await;
        return text_response(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let mode = shared.mode_of(&bot);
    let agent = shared.registry.route(&bot);
    if mode == DeliveryMode::Passthrough && agent.is_none() {
        tracing::debug!("no agent connected");
        return no_agent();
    }

    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            tracing::warn!(limit = limits.max_body_bytes, "webhook body too large");
            return text_response(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "webhook body unreadable");
            return text_response(StatusCode::BAD_REQUEST, "body could not be read");
        }
        Err(_) => return text_response(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
    };

    let info = UpdateInfo::read(&body);
    let request = protocol::Request {
        id: 0,
        bot,
        method: parts.method.as_str().to_owned(),
        path: rest,
        query: parts.uri.query().map(str::to_owned),
        headers: forwarded_headers(&parts.headers, peer, shared.tls),
        body,
        timeout_ms: u32::try_from(limits.bot_timeout.as_millis()).unwrap_or(u32::MAX),
        update_id: info.update_id,
        delivery: protocol::Delivery::Live,
    };
    let live_agent = match mode {
        DeliveryMode::Durable => None,
        // A chat with stored updates waiting takes new ones into the store too, behind them.
        DeliveryMode::Auto if shared.scheduler.has_waiting(&request.bot, &info.queue) => None,
        // A passthrough bot may still have stored updates (its mode changed, or its agent asked
        // for passthrough after an outage): the chat's new updates wait with Telegram until the
        // backlog is delivered, rather than overtake it.
        DeliveryMode::Passthrough if shared.scheduler.has_waiting(&request.bot, &info.queue) => {
            tracing::debug!(queue = %info.queue, "chat has stored updates waiting");
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "earlier updates of this chat are still being delivered",
            );
        }
        DeliveryMode::Auto | DeliveryMode::Passthrough => agent,
    };
    let Some(agent) = live_agent else {
        return store(&shared, request, info.queue).await;
    };
    // In auto mode a copy is kept (cheap: the body is shared) to store if the tunnel fails.
    let fallback = (mode == DeliveryMode::Auto).then(|| request.clone());
    let started = tokio::time::Instant::now();
    match agent.call(request, limits.bot_timeout).await {
        Ok(response) => {
            tracing::debug!(status = response.status, elapsed = ?started.elapsed(), session = agent.session, "delivered");
            bot_response(response)
        }
        Err(error) => match fallback {
            Some(request) if tunnel_failed(&error) => {
                tracing::info!(%error, session = agent.session, "live delivery failed; storing the update");
                store(&shared, request, info.queue).await
            }
            _ => {
                let (status, sentence) = failure_status(&error);
                tracing::warn!(%error, status = status.as_u16(), session = agent.session, "delivery failed");
                text_response(status, sentence)
            }
        },
    }
}

fn no_agent() -> Response<Full<Bytes>> {
    text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "no agent is connected for this bot",
    )
}

/// Whether a live delivery failed before the bot could answer, so that storing the update (and
/// answering 200) is safe and better than an error. A bot that was slow may have acted on the
/// update, so a timeout is passed on for Telegram to retry, as in passthrough.
fn tunnel_failed(error: &CallError) -> bool {
    match error {
        CallError::AgentGone | CallError::Overloaded => true,
        CallError::Failed(failure) => matches!(
            failure.kind,
            FailureKind::BotUnreachable | FailureKind::Overloaded
        ),
        CallError::Timeout(_) | CallError::Encode(_) => false,
    }
}

/// Stores the update for delivery from the store and answers 200 once it is on disk.
async fn store(
    shared: &Shared,
    request: protocol::Request,
    queue: String,
) -> Response<Full<Bytes>> {
    let update = NewUpdate {
        bot: request.bot,
        queue,
        update_id: request.update_id,
        received_at_ms: crate::delivery::unix_millis(),
        method: request.method,
        path: request.path,
        query: request.query,
        headers: request.headers,
        // A copy: the body is a slice of the connection's read buffer, and a stored update may
        // wait for hours; holding the slice would pin the whole buffer, which the store's memory
        // bound does not count.
        body: Bytes::copy_from_slice(&request.body),
    };
    match shared.scheduler.accept(update).await {
        Ok(()) => {
            tracing::debug!(update_id = request.update_id, "stored");
            plain(StatusCode::OK, Bytes::new())
        }
        Err(error @ StoreError::Full { .. }) => {
            tracing::warn!(%error, "store full; Telegram keeps the update and retries");
            text_response(StatusCode::SERVICE_UNAVAILABLE, "relay store is full")
        }
        Err(error) => {
            tracing::error!(%error, "cannot store an update");
            text_response(StatusCode::SERVICE_UNAVAILABLE, "relay store unavailable")
        }
    }
}

/// Reads and drops up to `budget` bytes of a body that will not be used, so that a client still
/// sending it reads our error status instead of a connection reset. The relay reads up to twice
/// the body limit this way; anything larger is cut off.
async fn discard(mut body: Incoming, budget: usize) {
    let mut seen = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > budget {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(BODY_READ_TIMEOUT, drain).await;
}

/// The status Telegram gets when the bot's answer did not come back: all of them make it retry.
fn failure_status(error: &CallError) -> (StatusCode, &'static str) {
    match error {
        CallError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "agent is overloaded"),
        CallError::AgentGone => (StatusCode::BAD_GATEWAY, "agent disconnected"),
        CallError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "bot did not answer in time"),
        CallError::Encode(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "request could not be relayed",
        ),
        CallError::Failed(failure) => match failure.kind {
            FailureKind::BotTimeout => (StatusCode::GATEWAY_TIMEOUT, "bot did not answer in time"),
            FailureKind::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "agent is overloaded"),
            FailureKind::BotUnreachable => (StatusCode::BAD_GATEWAY, "bot is unreachable"),
            FailureKind::BadBotResponse => (
                StatusCode::BAD_GATEWAY,
                "bot answered with something that cannot be relayed",
            ),
            FailureKind::Rejected => (
                StatusCode::BAD_GATEWAY,
                "agent could not deliver the request",
            ),
        },
    }
}

/// The request's headers as they go to the bot: every end-to-end header in order (same-name
/// headers stay together, as hyper groups them), then `X-Forwarded-For` and `X-Forwarded-Proto`.
///
/// When the relay terminates TLS it is the edge, and whatever forwarding headers a caller sent are
/// lies it could tell: they are replaced by the caller's address and `https`, so a bot's IP filter
/// reading the left-most address sees the real sender. Behind a TLS-terminating proxy (`tls`
/// false) the proxy's headers are kept and the proxy's address is appended.
fn forwarded_headers(headers: &HeaderMap, peer: SocketAddr, tls: bool) -> Vec<Header> {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let mut out = Vec::with_capacity(headers.len() + 2);
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut forwarded_proto = None;
    for (name, value) in headers {
        match name.as_str() {
            "x-forwarded-for" => forwarded_for.push(value.as_bytes()),
            "x-forwarded-proto" => forwarded_proto = forwarded_proto.or(Some(value.as_bytes())),
            name if is_hop_by_hop(name) || named_by_connection.iter().any(|n| n == name) => {}
            name => out.push((name.to_owned(), Bytes::copy_from_slice(value.as_bytes()))),
        }
    }
    let peer_ip = peer.ip().to_canonical().to_string();
    let mut chain = if tls {
        Vec::new()
    } else {
        forwarded_for.join(&b", "[..])
    };
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(peer_ip.as_bytes());
    out.push(("x-forwarded-for".into(), Bytes::from(chain)));
    let proto = match (tls, forwarded_proto) {
        (true, _) => Bytes::from_static(b"https"),
        (false, Some(theirs)) => Bytes::copy_from_slice(theirs),
        (false, None) => Bytes::from_static(b"http"),
    };
    out.push(("x-forwarded-proto".into(), proto));
    out
}

/// The bot's answer as Telegram gets it: status, headers and body unchanged, except hop-by-hop
/// headers and `Content-Length`, which hyper sets from the body.
fn bot_response(response: protocol::Response) -> Response<Full<Bytes>> {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        tracing::warn!(
            status = response.status,
            "bot answered with an invalid status"
        );
        return text_response(
            StatusCode::BAD_GATEWAY,
            "bot answered with an invalid status",
        );
    };
    let mut out = plain(status, response.body);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        if is_hop_by_hop(&name) || name == "content-length" {
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::debug!(header = %name, "dropped an invalid header from the bot"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_paths_split_into_bot_and_rest() {
        assert_eq!(split_path("/hook/echo"), Some(("echo", "")));
        assert_eq!(split_path("/hook/echo/"), Some(("echo", "/")));
        assert_eq!(split_path("/hook/echo/a/b"), Some(("echo", "/a/b")));
        assert_eq!(split_path("/hook/"), None);
        assert_eq!(split_path("/hook"), None);
        assert_eq!(split_path("/hooks/echo"), None);
        assert_eq!(split_path("/hook/bad%20name"), None);
    }

    #[test]
    fn forwarded_headers_keep_order_and_duplicates_and_name_the_real_caller() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-dup", HeaderValue::from_static("1"));
        headers.append("connection", HeaderValue::from_static("keep-alive, X-Hop"));
        headers.append("x-hop", HeaderValue::from_static("dropped"));
        headers.append("x-dup", HeaderValue::from_static("2"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.append("x-forwarded-proto", HeaderValue::from_static("http"));
        let peer: SocketAddr = "149.154.167.220:4431".parse().expect("addr");
        let flat = |out: &[Header]| -> Vec<(String, Vec<u8>)> {
            out.iter().map(|(n, v)| (n.clone(), v.to_vec())).collect()
        };
        let at_the_edge = forwarded_headers(&headers, peer, true);
        let expected: Vec<(String, Vec<u8>)> = [
            ("content-type", &b"application/json"[..]),
            ("x-dup", b"1"),
            ("x-dup", b"2"),
            ("x-forwarded-for", b"149.154.167.220"),
            ("x-forwarded-proto", b"https"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
        assert_eq!(flat(&at_the_edge), expected);

        let behind_a_proxy = forwarded_headers(&headers, peer, false);
        let tail = &flat(&behind_a_proxy)[3..];
        assert_eq!(tail[0].1, b"203.0.113.9, 149.154.167.220");
        assert_eq!(tail[1].1, b"http");
    }

    #[test]
    fn failures_map_to_statuses_telegram_retries_and_never_410() {
        use protocol::Failure;
        let kinds = [
            FailureKind::BotTimeout,
            FailureKind::Overloaded,
            FailureKind::BotUnreachable,
            FailureKind::BadBotResponse,
            FailureKind::Rejected,
        ];
        let mut errors: Vec<CallError> = kinds
            .into_iter()
            .map(|kind| {
                CallError::Failed(Failure {
                    id: 1,
                    kind,
                    message: String::new(),
                })
            })
            .collect();
        errors.extend([
            CallError::Overloaded,
            CallError::AgentGone,
            CallError::Timeout(Duration::from_secs(1)),
        ]);
        for error in &errors {
            let (status, _) = failure_status(error);
            assert!(status.is_server_error(), "{error:?} -> {status}");
        }
        assert_eq!(
            failure_status(&CallError::Timeout(Duration::ZERO)).0,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            failure_status(&CallError::AgentGone).0,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn bot_answers_pass_through_without_hop_headers() {
        let response = protocol::Response {
            id: 1,
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"multipart/form-data; boundary=xyz"),
                ),
                ("transfer-encoding".into(), Bytes::from_static(b"chunked")),
                ("content-length".into(), Bytes::from_static(b"999")),
                ("set-cookie".into(), Bytes::from_static(b"a=1")),
                ("set-cookie".into(), Bytes::from_static(b"b=2")),
            ],
            body: Bytes::from_static(b"--xyz--"),
        };
        let out = bot_response(response);
        assert_eq!(out.status(), StatusCode::OK);
        assert_eq!(
            out.headers()["content-type"],
            "multipart/form-data; boundary=xyz"
        );
        assert!(out.headers().get("transfer-encoding").is_none());
        assert!(out.headers().get("content-length").is_none());
        assert_eq!(out.headers().get_all("set-cookie").iter().count(), 2);
    }
}
