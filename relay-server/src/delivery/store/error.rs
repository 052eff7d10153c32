//! Why a store operation failed.

use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Holding the update would pass the byte cap. Retryable once deliveries free room.
    #[error("store is full: {held} of {max} bytes held, an update costing {record} does not fit")]
    Full {
        /// Bytes charged when the update was refused (records and their memory overhead).
        held: u64,
        /// What the refused update would cost (its record and its memory overhead).
        record: u64,
        /// The cap.
        max: u64,
    },
    /// The update alone is larger than any record may be.
    #[error("update of {len} bytes is over the {max}-byte record limit")]
    TooLarge {
        /// The encoded record's size.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The file could not be opened, read or committed; says which step failed.
    #[error("store database: {0}")]
    Database(String),
    /// A write failed, and every change is refused until the writer has reopened the file and a
    /// write succeeds again. Retryable: the writer keeps trying by itself.
    #[error("store is failing, reopening it: {0}")]
    Failing(String),
    /// The writer thread is gone, so nothing can be written.
    #[error("store writer has stopped")]
    Closed,
    /// The writer did not answer in time (a change may still reach the disk later).
    #[error("store did not answer within {after:?}")]
    TimedOut {
        /// How long the caller waited.
        after: Duration,
    },
    /// A record on disk does not decode. It is logged and left where it is, never deleted.
    #[error("stored record {bot}/{seq} does not decode: {reason}")]
    Corrupt {
        /// The record's bot.
        bot: String,
        /// The record's seq.
        seq: u64,
        /// What the decoder said.
        reason: String,
    },
}

/// Logs a record that does not decode and returns the error for it.
pub(super) fn corrupt(bot: &str, seq: u64, error: &protocol::DecodeError) -> StoreError {
    tracing::error!(bot, seq, %error, "stored record does not decode; left in place");
    StoreError::Corrupt {
        bot: bot.to_owned(),
        seq,
        reason: error.to_string(),
    }
}
