//! The changes the writer takes, each with the channel its result goes back on, and the tally
//! of what the store holds.

use tokio::sync::oneshot;

use super::error::StoreError;
use super::record::StoredUpdate;

/// Where a change's result goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One change the writer applies, with the channel its result goes back on.
pub(super) enum Op {
    /// Adds `record` to `bot`'s pending updates under the next seq.
    Append {
        bot: String,
        record: Vec<u8>,
        reply: Reply<u64>,
    },
    /// Removes a delivered update; true if it was there.
    Remove {
        bot: String,
        seq: u64,
        reply: Reply<bool>,
    },
    /// Counts a failed attempt and keeps its error.
    Fail {
        bot: String,
        seq: u64,
        error: String,
        reply: Reply<Option<StoredUpdate>>,
    },
    /// Moves a pending update to the dead letters; true if it was there.
    Bury {
        bot: String,
        seq: u64,
        reason: String,
        reply: Reply<bool>,
    },
    /// Moves a dead letter back to pending under a new seq.
    Replay {
        bot: String,
        seq: u64,
        reply: Reply<Option<StoredUpdate>>,
    },
    /// Deletes a dead letter; true if it was there.
    DropDead {
        bot: String,
        seq: u64,
        reply: Reply<bool>,
    },
    /// Removes those of `keys` (pending or dead) received before `cutoff_ms`.
    Expire {
        keys: Vec<(String, u64)>,
        cutoff_ms: u64,
        reply: Reply<Vec<StoredUpdate>>,
    },
}

/// What the store holds, as the writer counts it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    /// What the records of both tables cost: their bytes and the memory overhead of each
    /// ([`super::cost::of_record`]). This is what `max_store_bytes` caps.
    pub bytes: u64,
    /// Records in the pending table.
    pub pending: usize,
    /// Records in the dead table.
    pub dead: usize,
}

/// An applied op's result, held until the commit decides whether it stands.
pub(super) enum Answer {
    Seq(Reply<u64>, Result<u64, StoreError>),
    Flag(Reply<bool>, Result<bool, StoreError>),
    Update(
        Reply<Option<StoredUpdate>>,
        Result<Option<StoredUpdate>, StoreError>,
    ),
    Updates(
        Reply<Vec<StoredUpdate>>,
        Result<Vec<StoredUpdate>, StoreError>,
    ),
}

impl Answer {
    /// Sends the op's own result, or the batch's `failure` in its place. A caller that gave up
    /// has dropped its receiver; there is no one left to tell, so a failed send is fine.
    pub(super) fn send(self, failure: Option<&StoreError>) {
        fn pick<T>(
            own: Result<T, StoreError>,
            failure: Option<&StoreError>,
        ) -> Result<T, StoreError> {
            match failure {
                Some(error) => Err(error.clone()),
                None => own,
            }
        }
        match self {
            Self::Seq(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Flag(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Update(reply, own) => drop(reply.send(pick(own, failure))),
            Self::Updates(reply, own) => drop(reply.send(pick(own, failure))),
        }
    }
}

impl Op {
    /// New-record bytes, for the writer's batch byte bound.
    pub(super) fn weight(&self) -> usize {
        match self {
            Self::Append { record, .. } => record.len(),
            _ => 0,
        }
    }

    /// The pending key a removal was for: one that did not happen is done once the store works
    /// again (the update was delivered).
    pub(super) fn removal(&self) -> Option<(String, u64)> {
        match self {
            Self::Remove { bot, seq, .. } => Some((bot.clone(), *seq)),
            _ => None,
        }
    }

    /// An answer of `error` for an op that was never applied.
    pub(super) fn refused(self, error: &StoreError) -> Answer {
        let error = error.clone();
        match self {
            Self::Append { reply, .. } => Answer::Seq(reply, Err(error)),
            Self::Remove { reply, .. }
            | Self::Bury { reply, .. }
            | Self::DropDead { reply, .. } => Answer::Flag(reply, Err(error)),
            Self::Fail { reply, .. } | Self::Replay { reply, .. } => {
                Answer::Update(reply, Err(error))
            }
            Self::Expire { reply, .. } => Answer::Updates(reply, Err(error)),
        }
    }
}
