//! The headers across the edge: what the bot gets (the caller's end-to-end headers and honest
//! forwarding headers) and what Telegram gets back (the bot's answer, unchanged but for hop-by-hop
//! headers).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use protocol::{Header, is_hop_by_hop};

use crate::response::{plain, text_response};

/// The request's headers as they go to the bot: every end-to-end header in order (same-name
/// headers stay together, as hyper groups them), then `X-Forwarded-For` and `X-Forwarded-Proto`.
///
/// When the relay terminates TLS it is the edge, and whatever forwarding headers a caller sent are
/// lies it could tell: they are replaced by the caller's address and `https`, so a bot's IP filter
/// reading the left-most address sees the real sender. Behind a TLS-terminating proxy (`tls`
/// false) the proxy's headers are kept and the proxy's address is appended.
pub(crate) fn forwarded_headers(headers: &HeaderMap, peer: SocketAddr, tls: bool) -> Vec<Header> {
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
pub(crate) fn bot_response(response: protocol::Response) -> Response<Full<Bytes>> {
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
#[path = "headers_tests.rs"]
mod tests;
