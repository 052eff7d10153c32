//! The wire format between `relay-server` and `relay-agent`.
//!
//! One WebSocket connection carries many requests at once. Every WebSocket binary message holds
//! exactly one [`Frame`], encoded by [`codec`]. The first frame each way is a handshake:
//! the agent sends [`Frame::Hello`] with its [`PROTOCOL_VERSION`] and the bots it serves, and the
//! relay answers [`Frame::HelloAck`] or closes the connection with a [`close`] code and a reason
//! that says which side to upgrade.
//!
//! # Layout
//! - [`bot_name`]: the rule every bot name follows.
//! - [`frame`]: the frames and the values they carry.
//! - [`codec`]: the one `encode`/`decode` pair, with a hard size limit.
//! - [`close`]: WebSocket close codes both sides agree on.
//! - [`link`]: the connection loop both sides run: a batching writer with heartbeats and a reader
//!   with a receive deadline.
//! - [`progress`]: byte counters under a connection, so a deadline can tell a slow line from a
//!   dead one.
//! - [`secret`]: tokens that never show in logs and compare in constant time.

pub mod bot_name;
pub mod close;
pub mod codec;
pub mod frame;
pub mod link;
pub mod progress;
pub mod secret;

pub use codec::{
    DecodeError, EncodeError, decode, decode_value, encode, encode_value, frame_limit,
    peek_hello_version,
};
pub use frame::{
    Delivery, DeliveryMode, Failure, FailureKind, Frame, HOP_BY_HOP, Header, Hello, HelloAck,
    Request, RequestId, Response, is_hop_by_hop,
};
pub use link::{LinkConfig, LinkError, LinkReader, Outbox};
pub use progress::{Progress, Tracked};
pub use secret::Secret;

/// The protocol version this build speaks. Bump it on any change to [`Frame`] that an older peer
/// could not decode; [`Frame::Hello`] stays the first variant with `version` as its first field
/// forever, so that any two versions can at least tell each other apart.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest request or response body a relay may be configured to carry (16 MiB).
///
/// Telegram documents no maximum update size; real updates are a few KiB, and 1 MiB is the
/// minimum a receiver should accept. The cap keeps one frame's worst-case allocation bounded.
pub const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Room in a frame for everything that is not the body: ids, bot name, path, query, headers.
///
/// Both sides read at most 64 KiB of HTTP header block, so 128 KiB leaves a wide margin.
pub const HEAD_ROOM: usize = 128 * 1024;

/// The largest frame any peer may send, whatever it negotiated.
pub const MAX_FRAME_LEN: usize = MAX_BODY_LIMIT + HEAD_ROOM;

/// The path of the relay's agent endpoint (a WebSocket upgrade). The `v1` names the endpoint's
/// shape, not the frame version: versions are settled by the hello.
pub const AGENT_PATH: &str = "/agent/v1";
