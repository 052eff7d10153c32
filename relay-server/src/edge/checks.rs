//! The checks a webhook passes before it is carried anywhere: a bot the relay knows, the secret
//! Telegram was given, and a body within the size limit and the body budget that arrives in time.
//! Each refusal knows its status and the one sentence the caller gets.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use protocol::Secret;

use super::body_budget::Share;

/// Telegram sends the whole body at once; a caller that trickles it is holding a connection slot.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The header Telegram puts the webhook's `secret_token` in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Why a webhook was refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Neither configured nor declared by any agent.
    UnknownBot,
    /// The secret header is missing or wrong.
    WrongSecret,
    /// Declared or read past `max_body_bytes`.
    TooLarge,
    /// The body broke off or was not valid HTTP framing.
    Unreadable,
    /// The body did not arrive within [`BODY_READ_TIMEOUT`].
    Slow,
    /// A dot-segment or an encoded slash after the bot name: a bot's web server (or a proxy in
    /// front of it) could resolve it to a path outside the bot's webhook.
    BadPath,
    /// The bodies in flight have used up `body_budget_bytes`; 503 with `Retry-After`.
    OverBudget,
}

impl Refusal {
    /// The status the caller gets. None is 410 or a 2xx: Telegram keeps its webhook and, for a
    /// 5xx or 408, retries.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::UnknownBot => StatusCode::NOT_FOUND,
            Refusal::WrongSecret => StatusCode::UNAUTHORIZED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable => StatusCode::BAD_REQUEST,
            Refusal::Slow => StatusCode::REQUEST_TIMEOUT,
            Refusal::BadPath => StatusCode::BAD_REQUEST,
            Refusal::OverBudget => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The one sentence the caller gets.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::UnknownBot => "unknown bot",
            Refusal::WrongSecret => "wrong secret token",
            Refusal::TooLarge => "body too large",
            Refusal::Unreadable => "body could not be read",
            Refusal::Slow => "body not received in time",
            Refusal::BadPath => "path not allowed after the bot name",
            Refusal::OverBudget => "relay busy, retry later",
        }
    }
}

/// Checks `presented` headers against the bot's `secret`, if it has one, in constant time.
pub(crate) fn secret(secret: Option<&Secret>, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let presented = headers
        .get(SECRET_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if secret.matches(presented) {
        Ok(())
    } else {
        tracing::warn!("webhook refused: wrong or missing secret token");
        Err(Refusal::WrongSecret)
    }
}

/// Refuses a path suffix (what follows `/hook/<bot>`, empty or starting with `/`) that a server
/// behind the bot's URL could take for another path: a `.` or `..` segment, raw or
/// percent-encoded (`%2e`), an encoded slash (`%2f`) or backslash (`%5c`), or a raw backslash.
pub(crate) fn path_suffix(rest: &str) -> Result<(), Refusal> {
    let lower = rest.to_ascii_lowercase();
    let dot_segment = lower
        .split('/')
        .map(|segment| segment.replace("%2e", "."))
        .any(|segment| segment == "." || segment == "..");
    let hidden_separator = rest.contains('\\') || lower.contains("%2f") || lower.contains("%5c");
    if dot_segment || hidden_separator {
        tracing::warn!(
            path = rest,
            "webhook refused: dot-segment or encoded separator"
        );
        return Err(Refusal::BadPath);
    }
    Ok(())
}

/// The body's declared `Content-Length`, if any; a body declared over `limit` is refused before
/// it is read.
pub(crate) fn declared_length(headers: &HeaderMap, limit: usize) -> Result<Option<usize>, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => {
            tracing::warn!(length = len, limit, "webhook body too large");
            Err(Refusal::TooLarge)
        }
        // At most `limit`, so it fits.
        declared => Ok(declared.map(|len| len as usize)),
    }
}

/// Reads the whole body, at most `limit` bytes, within [`BODY_READ_TIMEOUT`], charging `share`
/// for the memory it holds as it arrives (the buffer's capacity, which grows by doubling, so at
/// most twice the bytes received): memory is held only for bytes a caller really sent. Each chunk
/// is copied once and then dropped, so the body is never held twice.
pub(crate) async fn read_body(
    mut body: Incoming,
    limit: usize,
    share: &mut Share,
) -> Result<Bytes, Refusal> {
    let read = async {
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                tracing::debug!(%error, "webhook body unreadable");
                Refusal::Unreadable
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            let length = buffer.len() + chunk.len();
            if length > limit {
                tracing::warn!(limit, "webhook body too large");
                return Err(Refusal::TooLarge);
            }
            buffer.reserve(chunk.len());
            if let Some(more) = buffer
                .capacity()
                .checked_sub(share.bytes())
                .filter(|&more| more > 0)
            {
                share.grow(more).map_err(|_| Refusal::OverBudget)?;
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or(Err(Refusal::Slow))
}

/// Reads and drops up to `budget` bytes of a body that will not be used, so that a client still
/// sending it reads our error status instead of a connection reset. The relay reads up to twice
/// the body limit this way; anything larger is cut off.
pub(crate) async fn discard(mut body: Incoming, budget: usize) {
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

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
