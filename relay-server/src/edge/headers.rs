//! The headers across the edge: what the bot gets (the caller's end-to-end headers and honest
//! forwarding headers) and what Telegram gets back (the bot's answer, unchanged but for hop-by-hop
//! headers).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use protocol::{Header, is_hop_by_hop};

use crate::response::{plain, text_response};

/// Whose forwarding headers the bot gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarding {
    /// The relay terminates TLS: it is the edge, the caller's own forwarding headers are lies it
    /// could tell, and the bot gets the caller's address and `https`.
    Edge,
    /// Plain HTTP from a peer that is not a trusted proxy: its forwarding headers are replaced
    /// by its address and `http`, so nobody can pose as Telegram by sending them.
    Untrusted,
    /// Plain HTTP from a trusted proxy (one that terminates TLS in front of the relay): its
    /// headers are kept and its address is appended.
    TrustedProxy,
}

/// The address of whoever sent the request: the peer, or, behind a trusted proxy, the last
/// address the proxy put in `X-Forwarded-For` (the one it saw; earlier entries are the client's
/// own claims). The peer when that is missing or not an address.
pub(crate) fn client_address(
    headers: &HeaderMap,
    peer: SocketAddr,
    forwarding: Forwarding,
) -> IpAddr {
    if forwarding != Forwarding::TrustedProxy {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer.ip())
}

/// The request's headers as they go to the bot: every end-to-end header in order (same-name
/// headers stay together, as hyper groups them), then `X-Forwarded-For` and `X-Forwarded-Proto`
/// as [`Forwarding`] says, so a bot's IP filter reading the left-most address sees the real
/// sender.
pub(crate) fn forwarded_headers(
    headers: &HeaderMap,
    peer: SocketAddr,
    forwarding: Forwarding,
) -> Vec<Header> {
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
    let trusted = forwarding == Forwarding::TrustedProxy;
    let mut chain = if trusted {
        forwarded_for.join(&b", "[..])
    } else {
        Vec::new()
    };
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(peer_ip.as_bytes());
    out.push(("x-forwarded-for".into(), Bytes::from(chain)));
    let proto = match (forwarding, forwarded_proto) {
        (Forwarding::Edge, _) => Bytes::from_static(b"https"),
        (Forwarding::TrustedProxy, Some(theirs)) => Bytes::copy_from_slice(theirs),
        (Forwarding::TrustedProxy | Forwarding::Untrusted, _) => Bytes::from_static(b"http"),
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
