//! A request to read the certificates again, as SIGHUP makes it: sent once, seen by every part of
//! the relay that watches for it. Imports nothing from the crate.

use std::sync::Arc;

use tokio::sync::watch;

/// Asks a running relay to read its certificate files again; cheap to clone, and requests made
/// while a reload is under way are folded into the next one.
#[derive(Debug, Clone)]
pub struct Reload(Arc<watch::Sender<u64>>);

impl Default for Reload {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Reload {
    /// Asks for a reload.
    pub fn request(&self) {
        self.0.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver that wakes on every request made from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
