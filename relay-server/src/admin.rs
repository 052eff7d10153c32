//! The admin API, apart from the public port (loopback by default), and its command-line client.
//! Imports [`crate::delivery`], [`crate::tunnel`] and [`crate::config`]; nothing imports it but
//! [`crate::Relay`] and the binary.
//!
//! - [`client`](mod@client): one request from the command line, and its answer for people.
//! - `api`: the server: counters, dead letters to list, replay and drop.
//! - `connections`: the server's few connection slots, which idle connections give up.

pub(crate) mod api;
pub mod client;
mod connections;

pub use client::{AdminError, call, client};
