//! How a stored update sits on disk: the tables, their keys, and the bytes of one record.
//!
//! Both update tables are keyed by `(bot, seq)`, so one bot's updates are one key range (for
//! per-bot listings) and the writer finds any update from what the scheduler holds. The value is
//! everything else, encoded by `protocol::encode_value` inside a version enum: a later build adds a
//! variant and still reads this one.

use bytes::Bytes;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::{StoreError, StoredUpdate};

/// Updates waiting for delivery.
pub(super) const PENDING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("pending");
/// Updates that kept failing, kept until replayed, dropped or expired.
pub(super) const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
/// Small counters, such as [`NEXT_SEQ`].
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The seq the next update gets. Kept apart from the update keys so that seqs never repeat, even
/// when every update has been delivered and removed before a restart.
pub(super) const NEXT_SEQ: &str = "next_seq";

/// The longest error text or burial reason kept with an update. The text is for people reading a
/// dead-letter listing; a bounded length keeps a chatty failure from growing a record.
pub const MAX_ERROR_LEN: usize = 1024;

/// What decoding accepts: bincode's own cap, the largest frame.
const DECODE_LIMIT: usize = protocol::MAX_FRAME_LEN;

/// The largest record `append` accepts whatever the limits say. It leaves room under the decode
/// limit for the error text a failure adds later (plus its length prefix and option tag), so that a
/// record once stored always reads back.
pub const MAX_RECORD_LEN: usize = DECODE_LIMIT - MAX_ERROR_LEN - 16;

/// A stored update without its key (the bot and seq live in the table key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fields {
    pub queue: String,
    pub update_id: Option<i64>,
    pub received_at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<protocol::Header>,
    pub body: Bytes,
}

/// The record as read: one variant per layout this build understands.
#[derive(Deserialize)]
enum Versioned {
    V1(Fields),
}

/// The record as written (by reference, so encoding copies nothing but into the output).
/// Must keep the variant order of [`Versioned`].
#[derive(Serialize)]
enum VersionedRef<'a> {
    V1(&'a Fields),
}

/// The bytes of one record.
pub(super) fn encode(fields: &Fields) -> Result<Vec<u8>, StoreError> {
    protocol::encode_value(&VersionedRef::V1(fields))
        .map_err(|error| StoreError::Database(format!("cannot encode a record: {error}")))
}

/// Reads a record; bytes that are not one are an error for the caller to log, never a panic.
pub(super) fn decode(bytes: &[u8]) -> Result<Fields, protocol::DecodeError> {
    match protocol::decode_value(bytes, DECODE_LIMIT)? {
        Versioned::V1(fields) => Ok(fields),
    }
}

/// `text` cut to at most [`MAX_ERROR_LEN`] bytes, on a character boundary.
pub(super) fn clip(text: &str) -> String {
    if text.len() <= MAX_ERROR_LEN {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Fields {
    /// The full update, once its key is known.
    pub(super) fn into_update(self, bot: String, seq: u64) -> StoredUpdate {
        StoredUpdate {
            seq,
            bot,
            queue: self.queue,
            update_id: self.update_id,
            received_at_ms: self.received_at_ms,
            attempts: self.attempts,
            last_error: self.last_error,
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body: self.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            queue: "chat:-1001234567890".into(),
            update_id: Some(i64::MAX),
            received_at_ms: 1_700_000_000_000,
            attempts: 3,
            last_error: Some("bot answered 500".into()),
            method: "POST".into(),
            path: "/x".into(),
            query: Some("a=1".into()),
            headers: vec![
                ("x-dup".into(), Bytes::from_static(b"1")),
                ("x-dup".into(), Bytes::from_static(b"\xff\x00")),
            ],
            body: Bytes::from_static(b"\x00\x01\xfe{}"),
        }
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = encode(&fields()).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), fields());
    }

    #[test]
    fn damaged_records_are_errors() {
        let bytes = encode(&fields()).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        let mut unknown_version = bytes.clone();
        unknown_version[0] = 7;
        assert!(decode(&unknown_version).is_err());
    }

    #[test]
    fn errors_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_ERROR_LEN);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_ERROR_LEN);
        assert!(long.starts_with(&clipped));
    }
}
