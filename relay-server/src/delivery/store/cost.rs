//! What a stored update costs in memory, which is what `max_store_bytes` caps, and the limits on
//! what the store holds.
//!
//! Every pending update is held in the scheduler's queues as well as on disk: an `Arc` of a
//! [`StoredUpdate`] in a queue slot, each string and header its own allocation. Its encoded
//! record counts the bytes of its strings, headers and body once, but none of that: a tiny
//! update costs several times its record. So each record is charged its length plus
//! [`UPDATE_OVERHEAD`], plus [`HEADER_OVERHEAD`] per header. Dead letters are charged the same:
//! they are on disk only, but a replay brings them back into memory.
//!
//! Not counted here: redb's page cache (bounded on its own, `open::CACHE_BYTES`) and the copies
//! an attempt makes while it is in flight (bounded by the delivery window).

use std::mem::size_of;
use std::sync::Arc;

use super::record::{MAX_RECORD_LEN, StoredUpdate};

/// The default cap on what the records held cost (pending and dead together).
const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// How much the store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    /// Cap on what the records held cost ([`of_record`]), pending and dead together. Past it
    /// appends fail with [`StoreError::Full`](super::StoreError::Full), and the webhook answers 503 so that Telegram
    /// keeps the update.
    pub max_bytes: u64,
    /// The largest encoded record `append` accepts (never more than [`MAX_RECORD_LEN`]).
    pub max_record_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_record_bytes: MAX_RECORD_LEN,
        }
    }
}

/// What an allocator keeps per allocation beyond the bytes asked for (size classes and
/// headers; 16 bytes is what glibc's malloc and mimalloc's small classes round to).
const ALLOCATION_SLACK: usize = 16;

/// Allocations of one update besides its headers: the `Arc`, the bot, the queue key, the
/// method, the path, the query, the error text, the header list and the body.
const ALLOCATIONS: usize = 9;

/// Header slots a header list may have beyond its headers (the edge reserves two for the
/// forwarding headers it adds).
const SPARE_HEADER_SLOTS: usize = 2;

/// The fixed memory cost of one held update beyond its record bytes: the struct inside its
/// `Arc` (the two counts), the queue slot holding the `Arc`, the spare header slots and the
/// allocator's slack on each allocation.
pub(crate) const UPDATE_OVERHEAD: u64 = (size_of::<StoredUpdate>()
    + 2 * size_of::<usize>()
    + size_of::<Arc<StoredUpdate>>()
    + SPARE_HEADER_SLOTS * size_of::<protocol::Header>()
    + ALLOCATIONS * ALLOCATION_SLACK) as u64;

/// The memory cost of one header beyond its name and value bytes: its slot in the list (a
/// `String` and a `Bytes`) and the slack of its two allocations.
pub(crate) const HEADER_OVERHEAD: u64 =
    (size_of::<protocol::Header>() + 2 * ALLOCATION_SLACK) as u64;

/// What holding `record` costs: its bytes, the fixed overhead, and the overhead of each header
/// it holds. A record too damaged to count its headers in is charged as if it had none.
pub(super) fn of_record(record: &[u8]) -> u64 {
    // Each header takes at least two bytes of the record, so a count past that is garbage.
    let headers = header_count(record)
        .unwrap_or(0)
        .min(record.len() as u64 / 2);
    (record.len() as u64)
        .saturating_add(UPDATE_OVERHEAD)
        .saturating_add(headers.saturating_mul(HEADER_OVERHEAD))
}

/// The number of headers in an encoded record, read from its prefix without decoding the rest:
/// the writer charges every record it writes or removes, and decoding would copy each body.
///
/// Follows the record's layout (`record::Fields` in bincode's varint encoding): the version tag,
/// `queue`, `update_id`, `received_at_ms`, `attempts`, `last_error`, `method`, `path`, `query`,
/// then the header list's length. The record tests check it against the encoder.
pub(super) fn header_count(record: &[u8]) -> Option<u64> {
    let mut reader = Prefix(record);
    reader.varint()?; // version
    reader.string()?; // queue
    if reader.option()? {
        reader.varint()?; // update_id
    }
    reader.varint()?; // received_at_ms
    reader.varint()?; // attempts
    if reader.option()? {
        reader.string()?; // last_error
    }
    reader.string()?; // method
    reader.string()?; // path
    if reader.option()? {
        reader.string()?; // query
    }
    reader.varint()
}

/// A cursor over a record's bytes.
struct Prefix<'a>(&'a [u8]);

impl Prefix<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// bincode's varint: one byte below 251, else a marker and 2, 4 or 8 little-endian bytes.
    fn varint(&mut self) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        let wide = |bytes: &[u8]| {
            let mut full = [0u8; 8];
            full[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(full)
        };
        match first {
            0..=250 => Some(u64::from(first)),
            251 => self.take(2).map(wide),
            252 => self.take(4).map(wide),
            253 => self.take(8).map(wide),
            _ => None,
        }
    }

    fn string(&mut self) -> Option<()> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len).map(drop)
    }

    fn option(&mut self) -> Option<bool> {
        match self.take(1)?.first()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
