//! WebSocket close codes (the private-use range 4000–4999) that end a session for a reason the
//! peer must act on. The close reason carries a short human-readable sentence.

/// The peer sent a frame that does not decode, or a frame out of order.
pub const PROTOCOL_ERROR: u16 = 4000;
/// The agent speaks a protocol version the relay does not; the reason says which to upgrade.
pub const VERSION_MISMATCH: u16 = 4001;
/// The agent declared a bot its token may not serve, or an invalid bot name.
pub const BOT_NOT_ALLOWED: u16 = 4003;
/// The agent did not say hello in time.
pub const HELLO_TIMEOUT: u16 = 4008;
/// The relay is shutting down; the agent should reconnect.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the WebSocket protocol itself (RFC 6455, 1002).
pub const WEBSOCKET_PROTOCOL_ERROR: u16 = 1002;
/// The peer sent a message over the size limit (RFC 6455, 1009). Not "going away": the peer
/// should not reconnect as if the other side were restarting, and its log should say why.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Whether a close code means "do not try again until a human changes something".
pub fn is_fatal(code: u16) -> bool {
    matches!(code, VERSION_MISMATCH | BOT_NOT_ALLOWED)
}
