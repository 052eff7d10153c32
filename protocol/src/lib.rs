//! The wire format between `relay-server` and `relay-agent`.
//!
//! One WebSocket connection carries many requests at once. Every WebSocket binary message holds
//! exactly one [`Frame`], encoded by [`codec`]. The first frame each way is a handshake:
//! the agent sends [`Frame::Hello`] with its [`PROTOCOL_VERSION`] and the bots it serves, and the
//! relay answers [`Frame::HelloAck`] or closes the connection with a [`close`] code and a reason
//! that says which side to upgrade.
//!
//! # Layout
//! In the order of the data path; each module imports only modules listed below it.
//! - [`link`]: the connection loop both sides run: a batching writer with heartbeats and a reader
//!   with a receive deadline.
//! - [`codec`]: the one `encode`/`decode` pair, with a hard size limit.
//! - [`frame`]: the frames and the values they carry.
//! - [`progress`]: byte counters under a connection, so a deadline can tell a slow line from a
//!   dead one.
//! - [`close`]: WebSocket close codes both sides agree on.
//! - [`limits`]: the size limits every frame is held to.
//! - [`join`]: the join value a relay's banner hands an agent: relay URL, token and certificate
//!   [`Pin`].
//! - [`secret`]: tokens that never show in logs and compare in constant time.
//! - [`bot_name`]: the rule every bot name follows.

pub mod bot_name;
pub mod close;
pub mod codec;
pub mod frame;
pub mod join;
pub mod limits;
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
pub use join::{JOIN_PREFIX, Join, JoinError, MAX_JOIN_LEN, Pin, PinError};
pub use limits::{HEAD_ROOM, MAX_BODY_LIMIT, MAX_FRAME_LEN};
pub use link::{LinkConfig, LinkError, LinkReader, Outbox};
pub use progress::{Progress, Tracked};
pub use secret::Secret;

/// The protocol version this build speaks. Bump it on any change to [`Frame`] that an older peer
/// could not decode; [`Frame::Hello`] stays the first variant with `version` as its first field
/// forever, so that any two versions can at least tell each other apart.
pub const PROTOCOL_VERSION: u16 = 1;

/// The path of the relay's agent endpoint (a WebSocket upgrade). The `v1` names the endpoint's
/// shape, not the frame version: versions are settled by the hello.
pub const AGENT_PATH: &str = "/agent/v1";
