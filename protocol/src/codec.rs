//! The one place frames become bytes and bytes become frames (serde + bincode 2).
//!
//! Every decode checks the input length against a limit before it looks inside, and bincode's
//! own limit stops the length prefixes from claiming, all together, more than a small multiple of
//! the bytes actually present (see `decode_prefix`); a malformed or hostile message is an error,
//! never a panic or an allocation out of proportion to its size.

use crate::frame::Frame;
use crate::limits::{HEAD_ROOM, MAX_FRAME_LEN};

/// Fixed-width integers would make every id and length 8 bytes; varints keep small frames small.
/// The limit bounds what any length prefix inside a frame may claim.
type Config<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

/// The settings frames are encoded with; decoding uses the same ones with a tighter limit.
const CONFIG: Config<MAX_FRAME_LEN> = config();

const fn config<const LIMIT: usize>() -> Config<LIMIT> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// A frame could not be encoded (in practice only when it is larger than allowed).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(#[from] bincode::error::EncodeError);

/// A message is not a valid frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message is larger than the negotiated limit.
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The message ended before the frame did, or holds bytes after it.
    #[error("frame is truncated or has {0} trailing bytes")]
    Length(usize),
    /// The bytes do not describe a frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
}

/// The frame limit that goes with a body limit: the body plus [`HEAD_ROOM`], never over
/// [`MAX_FRAME_LEN`]. Both sides set their WebSocket message limit to the same value.
pub fn frame_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_add(HEAD_ROOM).min(MAX_FRAME_LEN)
}

/// Encodes one frame into the bytes of one WebSocket binary message.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    // Sized up front: growing the vector while a body is copied in cost a few reallocations of
    // the whole frame per request (seen in profiles).
    let mut bytes = Vec::with_capacity(size_hint(frame));
    bincode::serde::encode_into_std_write(frame, &mut bytes, CONFIG)?;
    Ok(bytes)
}

/// Slightly more than `frame`'s encoded length: its variable parts plus room for the integers
/// and length prefixes.
fn size_hint(frame: &Frame) -> usize {
    const FIXED: usize = 64;
    let headers = |headers: &[crate::frame::Header]| -> usize {
        headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 8)
            .sum()
    };
    FIXED
        + match frame {
            Frame::Request(request) => {
                request.bot.len()
                    + request.method.len()
                    + request.path.len()
                    + request.query.as_ref().map_or(0, String::len)
                    + headers(&request.headers)
                    + request.body.len()
            }
            Frame::Response(response) => headers(&response.headers) + response.body.len(),
            Frame::Failure(failure) => failure.message.len(),
            _ => 0,
        }
}

/// Decodes one WebSocket binary message into a frame, refusing anything over `limit` bytes.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Frame, DecodeError> {
    decode_value(bytes, limit)
}

/// Encodes any value with the same bincode settings as frames, for data kept on disk (the relay's
/// store, the agent's state), so that bincode is configured in this one module.
pub fn encode_value<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(bincode::serde::encode_to_vec(value, CONFIG)?)
}

/// Decodes a value written by [`encode_value`], refusing input over `limit` bytes or with bytes
/// left over.
pub fn decode_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(DecodeError::Length(bytes.len() - used));
    }
    Ok(value)
}

/// Reads only the version out of a message that should be a [`Frame::Hello`], so that a relay
/// can name the side to upgrade even when the rest of a newer hello does not decode.
/// Returns `None` when the message does not start like a hello at all.
pub fn peek_hello_version(bytes: &[u8]) -> Option<u16> {
    let ((variant, version), _): ((u32, u16), usize) = decode_prefix(bytes).ok()?;
    (variant == 0).then_some(version)
}

/// Decodes a `T` from the start of `bytes`, with a bincode limit that is the smallest of a few
/// steps (4 KiB, then ×4 up to [`MAX_FRAME_LEN`]) at or above [`CLAIM_PER_BYTE`] times
/// `bytes.len()`.
///
/// bincode allocates a string or byte buffer at its declared length before it reads the bytes,
/// and its limit, a constant, is all that checks the declaration first: with [`MAX_FRAME_LEN`]
/// alone, a 16-byte message declaring a 15 MB body cost a 15 MB allocation before the error. With
/// the step, what one message can make the decoder allocate stays under 4 KiB for a small message
/// and under 32 times its size (never over [`MAX_FRAME_LEN`]) for a larger one. Lists are bounded
/// apart from this, where the frames are declared (`frame::bounded_list`): bincode does not count
/// them against its limit.
fn decode_prefix<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    fn with<T: serde::de::DeserializeOwned, const LIMIT: usize>(
        bytes: &[u8],
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(bytes, config::<LIMIT>())
    }
    const KIB: usize = 1024;
    match bytes.len().saturating_mul(CLAIM_PER_BYTE) {
        claim if claim <= 4 * KIB => with::<T, { 4 * KIB }>(bytes),
        claim if claim <= 16 * KIB => with::<T, { 16 * KIB }>(bytes),
        claim if claim <= 64 * KIB => with::<T, { 64 * KIB }>(bytes),
        claim if claim <= 256 * KIB => with::<T, { 256 * KIB }>(bytes),
        claim if claim <= 1024 * KIB => with::<T, { 1024 * KIB }>(bytes),
        claim if claim <= 4096 * KIB => with::<T, { 4096 * KIB }>(bytes),
        _ => with::<T, MAX_FRAME_LEN>(bytes),
    }
}

/// The most a valid message claims against bincode's limit per byte it holds: a string or body
/// claims its length, but every integer claims its width in memory, 8 bytes for a `u64` (a length
/// prefix, an id) whose varint may take one.
const CLAIM_PER_BYTE: usize = 8;

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
