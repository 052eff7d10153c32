//! Who gets a connection: a slot from the general pool or, when it is full, from the agents'
//! reserve; and no more than a set number of open connections, and of TLS handshakes in
//! progress, per source address. A connection over a per-source cap is closed at once and holds
//! nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The general pool and the agents' reserve.
#[derive(Debug)]
pub(crate) struct Pool {
    general: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
}

/// A connection's place in the [`Pool`]; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    /// Taken from the agents' reserve: the connection may only upgrade to an agent session.
    pub(crate) reserved: bool,
}

impl Pool {
    /// `general` slots for anyone and `reserve` more for agents.
    pub(crate) fn new(general: usize, reserve: usize) -> Self {
        Self {
            general: Arc::new(Semaphore::new(general)),
            reserve: Arc::new(Semaphore::new(reserve)),
        }
    }

    /// Waits for a slot, general first. `None` once the pool is closed (it never is).
    pub(crate) async fn slot(&self) -> Option<Slot> {
        let general = |permit| Slot {
            _permit: permit,
            reserved: false,
        };
        if let Ok(permit) = self.general.clone().try_acquire_owned() {
            return Some(general(permit));
        }
        tokio::select! {
            biased;
            permit = self.general.clone().acquire_owned() => permit.ok().map(general),
            permit = self.reserve.clone().acquire_owned() => permit.ok().map(|permit| Slot {
                _permit: permit,
                reserved: true,
            }),
        }
    }
}

/// The source a connection is counted under: an IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually gets a whole /64, so counting single IPv6 addresses would bound
/// nothing).
pub(crate) fn source_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// How many of something each source has, up to a cap.
#[derive(Debug)]
pub(crate) struct PerSource {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection (or handshake) of a source; dropping it uncounts it.
#[derive(Debug)]
pub(crate) struct Counted {
    per_source: Arc<PerSource>,
    source: IpAddr,
}

impl PerSource {
    /// At most `cap` per source.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more for the source of `address`, unless it is at the cap.
    pub(crate) fn enter(self: &Arc<Self>, address: IpAddr) -> Option<Counted> {
        let source = source_of(address);
        let mut counts = self.lock();
        let count = counts.entry(source).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Counted {
            per_source: self.clone(),
            source,
        })
    }

    /// How many the source of `address` has now.
    #[cfg(test)]
    pub(crate) fn count(&self, address: IpAddr) -> usize {
        self.lock().get(&source_of(address)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.per_source.lock();
        if let Some(count) = counts.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
