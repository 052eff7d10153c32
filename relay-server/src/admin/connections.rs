//! The admin API's connection slots. There are few, so a connection that has not sent its
//! request yet gives its slot to a newcomer when all are taken: idle or half-open connections
//! (a port scanner, a stuck script) cannot lock the operator's CLI out; only requests actually
//! being answered hold a slot for sure.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The open admin connections.
#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    open: Mutex<VecDeque<Entry>>,
    freed: Notify,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    slot: Arc<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Set once the connection's request has arrived; it may then not be evicted.
    busy: AtomicBool,
    /// Fires when a newcomer takes the slot.
    evicted: CancellationToken,
}

/// One connection's slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    state: Arc<SlotState>,
    connections: Arc<Connections>,
}

impl Connections {
    /// Room for `max` connections at once.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(VecDeque::new()),
            freed: Notify::new(),
        })
    }

    /// A slot for connection `id`: a free one, or the oldest one whose connection has not sent
    /// its request yet; when every slot is answering a request, waits up to `patience` for one.
    pub(crate) async fn take(self: &Arc<Self>, id: u64, patience: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.try_take(id) {
                return Some(slot);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    fn try_take(self: &Arc<Self>, id: u64) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        if open.len() >= self.max {
            let idle = open
                .iter()
                .position(|entry| !entry.slot.busy.load(Ordering::Acquire))?;
            if let Some(entry) = open.remove(idle) {
                entry.slot.evicted.cancel();
            }
        }
        let state = Arc::new(SlotState::default());
        open.push_back(Entry {
            id,
            slot: state.clone(),
        });
        Some(Slot {
            id,
            state,
            connections: self.clone(),
        })
    }
}

impl Slot {
    /// Marks the connection as answering a request: it keeps its slot until it closes.
    pub(crate) fn busy(&self) {
        self.state.busy.store(true, Ordering::Release);
    }

    /// Fires when a newcomer took this slot; the connection should close.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.state.evicted.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.retain(|entry| entry.id != self.id);
        }
        self.connections.freed.notify_waiters();
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
