//! Delivery: whether each webhook goes to its agent now or into the store, and delivery from
//! the store in each chat's order. Imports [`crate::tunnel`] (to reach agents) and
//! [`crate::config`] (values); the edge and the admin API use it.
//!
//! In the order of the data path; each module imports only modules listed below it.
//! - [`mode`]: the live-or-stored decision.
//! - [`scheduler`]: the loop that delivers stored updates, retries and buries them.
//! - [`notice`]: the delivery counters, and warnings about dead letters, expired updates and
//!   unreachable bots, bounded in rate.
//! - [`queues`]: per bot, one queue per chat, in memory.
//! - [`store`]: the durable store of updates answered 200 for, with group commit.
//! - [`update`]: what the relay reads inside an update: its `update_id` and its chat's queue.

pub(crate) mod mode;
pub(crate) mod notice;
pub(crate) mod queues;
pub(crate) mod scheduler;
pub(crate) mod store;
pub(crate) mod update;

pub(crate) use scheduler::Scheduler;
