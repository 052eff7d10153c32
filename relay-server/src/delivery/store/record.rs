//! A stored update: as the rest of the relay sees it ([`StoredUpdate`], [`NewUpdate`]) and as it
//! sits on disk (the tables, their keys, and the bytes of one record).
//!
//! Both update tables are keyed by `(bot, seq)`, so one bot's updates are one key range (for
//! per-bot listings) and the writer finds any update from what the scheduler holds. The value is
//! everything else, encoded by `protocol::encode_value` inside a version enum: a later build adds a
//! variant and still reads this one.

use bytes::Bytes;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// One update as stored: everything needed to deliver it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredUpdate {
    /// Assigned by the store: unique and increasing across all bots and across restarts, so it
    /// orders updates by arrival. A replayed dead letter gets a new one.
    pub seq: u64,
    /// The bot the webhook was for.
    pub bot: String,
    /// The ordering key the caller computed (such as `chat:123`); opaque to the store.
    pub queue: String,
    /// The Telegram `update_id`, when the body had one.
    pub update_id: Option<i64>,
    /// When the relay received it, in Unix milliseconds (set by the caller; retention goes by it).
    pub received_at_ms: u64,
    /// Failed delivery attempts so far: those the bot answered badly or too late, the ones
    /// that count towards `max_attempts`.
    pub attempts: u32,
    /// Why the last attempt failed, or why it was buried (at most [`MAX_ERROR_LEN`] bytes). On
    /// disk it is the last counted failure's; in memory an unreachable bot's error replaces it.
    pub last_error: Option<String>,
    /// The HTTP method, such as `POST`.
    pub method: String,
    /// What followed `/hook/<bot>` in the path.
    pub path: String,
    /// The query string without the `?`, if any.
    pub query: Option<String>,
    /// The request headers as forwarded, duplicates and order kept.
    pub headers: Vec<protocol::Header>,
    /// The body bytes, untouched.
    pub body: Bytes,
    /// Attempts in a row that did not reach the bot (bot or agent unreachable): they set the
    /// backoff but never count towards `attempts`. Held in memory only, never stored (so the
    /// record's layout is unchanged): after a restart the backoff starts again from its first step.
    #[serde(skip)]
    pub unreachable: u32,
}

/// What [`super::Store::append`] takes: an update as received, before the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewUpdate {
    /// The bot the webhook was for.
    pub bot: String,
    /// The ordering key (such as `chat:123`).
    pub queue: String,
    /// The Telegram `update_id`, when the body had one.
    pub update_id: Option<i64>,
    /// When the relay received it, in Unix milliseconds.
    pub received_at_ms: u64,
    /// The HTTP method.
    pub method: String,
    /// What followed `/hook/<bot>` in the path.
    pub path: String,
    /// The query string without the `?`, if any.
    pub query: Option<String>,
    /// The request headers as forwarded.
    pub headers: Vec<protocol::Header>,
    /// The body bytes.
    pub body: Bytes,
}

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
pub(super) const MAX_ERROR_LEN: usize = 1024;

/// What decoding accepts: bincode's own cap, the largest frame.
const DECODE_LIMIT: usize = protocol::MAX_FRAME_LEN;

/// The largest record `append` accepts whatever the limits say. It leaves room under the decode
/// limit for the error text a failure adds later (plus its length prefix and option tag), so that a
/// record once stored always reads back.
pub(crate) const MAX_RECORD_LEN: usize = DECODE_LIMIT - MAX_ERROR_LEN - 16;

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
pub(crate) fn clip(text: &str) -> String {
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
            unreachable: 0,
        }
    }
}

/// Creates the tables, so that read transactions always find them.
pub(super) fn create_tables(db: &redb::Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(PENDING)?;
    txn.open_table(DEAD)?;
    txn.open_table(META)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
