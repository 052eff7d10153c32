//! The size limits every frame is held to, whatever a peer negotiated.

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
