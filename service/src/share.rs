//! A concurrency limit shared fairly by named users (the bots behind one agent): each keeps a
//! reserve of slots that only it may take, so one user that fills everything else, such as a
//! bot that has stopped answering, cannot starve the others.
//!
//! The rule: a user below its reserve always gets a free slot; a user at or above it gets one
//! only if the slots still free then cover what every user below its reserve is owed. So one
//! busy user may hold `limit - reserve × (other users)`; the limit is never exceeded. The
//! reserves together never take more than half the limit (each is cut to `limit / (2 × users)`,
//! but at least one while there are as many slots as users), so a busy user always gets at
//! least about half. Names not given at the start share the unreserved slots and have no reserve
//! of their own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// `limit` slots shared by named users, each with a reserve.
#[derive(Debug)]
pub struct FairLimit {
    limit: usize,
    reserve: usize,
    users: HashMap<String, usize>,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug)]
struct State {
    /// Slots held, by user index.
    held: Vec<usize>,
    /// Slots held in all.
    total: usize,
    /// The sum over users below their reserve of what they lack.
    owed: usize,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a FairLimit,
    user: Option<usize>,
}

impl FairLimit {
    /// `limit` slots for `users`, each keeping `reserve` of them for itself, cut to
    /// `limit / (2 × users)` (at least one while `limit` covers every user) so the reserves
    /// never hold more than half the limit.
    pub fn new<'a>(limit: usize, reserve: usize, users: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = HashMap::new();
        for user in users {
            let next = index.len();
            index.entry(user.to_owned()).or_insert(next);
        }
        let users = index.len();
        let half_share = limit.checked_div(2 * users).unwrap_or(limit);
        let floor = usize::from(users > 0 && limit >= users);
        let reserve = reserve.min(half_share.max(floor));
        let count = index.len();
        Self {
            limit,
            reserve,
            users: index,
            state: Mutex::new(State {
                held: vec![0; count],
                total: 0,
                owed: reserve * count,
            }),
            released: Notify::new(),
        }
    }

    /// The slots in all.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The slots each named user keeps for itself (after fitting them into the limit).
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    /// Slots held in all.
    pub fn in_use(&self) -> usize {
        self.lock().total
    }

    /// A slot for `user` now, if the rule allows one.
    pub fn try_acquire(&self, user: &str) -> Option<Permit<'_>> {
        let index = self.users.get(user).copied();
        let mut state = self.lock();
        let free = self.limit - state.total;
        let below_reserve = index.is_some_and(|i| state.held[i] < self.reserve);
        // Below its reserve a user takes from what it is owed, which the free slots always
        // cover; otherwise it must leave the others' dues free.
        if free == 0 || !(below_reserve || free > state.owed) {
            return None;
        }
        state.total += 1;
        if let Some(i) = index {
            if below_reserve {
                state.owed -= 1;
            }
            state.held[i] += 1;
        }
        Some(Permit {
            limit: self,
            user: index,
        })
    }

    /// A slot for `user`, waiting until the rule allows one. Callers bound the wait.
    pub async fn acquire(&self, user: &str) -> Permit<'_> {
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before the check, so a release between the two is not missed.
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire(user) {
                return permit;
            }
            released.await;
        }
    }

    fn release(&self, user: Option<usize>) {
        {
            let mut state = self.lock();
            state.total -= 1;
            if let Some(i) = user {
                state.held[i] -= 1;
                if state.held[i] < self.reserve {
                    state.owed += 1;
                }
            }
        }
        // Every waiter looks again: which of them may go depends on who they are.
        self.released.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counts are changed together under the lock, so a poisoned lock still holds them.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.release(self.user);
    }
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
