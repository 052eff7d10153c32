//! The edge: the one public port. Accepts connections under a bound, terminates TLS, and routes
//! each request to the webhook intake, the agent endpoint or the health check ([`Edge::health`]). Imports [`crate::delivery`],
//! [`crate::tunnel`], [`crate::config`], [`crate::response`] and [`crate::data_dir`]; only
//! [`crate::Relay`] uses it.
//!
//! In the order of the data path; each module imports only modules listed below it.
//! - [`listener`]: the accept loop, TLS handshake, HTTP/1 and routing.
//! - [`webhook`]: one webhook, from checks to the answer Telegram gets.
//! - [`checks`]: the checks before a webhook is carried: bot, secret, size, body.
//! - [`headers`]: the headers the bot gets and the answer Telegram gets.
//! - [`tls`]: the server certificate, from files or self-signed.

pub(crate) mod checks;
pub(crate) mod headers;
pub(crate) mod listener;
pub(crate) mod tls;
pub(crate) mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use protocol::Secret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::delivery::mode::Policy;
use crate::response::text_response;
use crate::tunnel::Tunnel;

/// What every connection on the public port shares.
#[derive(Debug)]
pub(crate) struct Edge {
    /// Sizes, counts and timeouts.
    pub(crate) limits: Limits,
    /// The secret Telegram must send for each bot that has one.
    pub(crate) secrets: HashMap<String, Secret>,
    /// The bots whose path suffix is dropped (`drop_path_suffix`).
    pub(crate) drop_path_suffix: HashSet<String>,
    /// Whether the listener speaks TLS (for `X-Forwarded-Proto`).
    pub(crate) tls: bool,
    /// Live or stored, per webhook.
    pub(crate) policy: Policy,
    /// The agents.
    pub(crate) tunnel: Arc<Tunnel>,
    /// Fires when the relay stops accepting: connections finish what they are doing and close.
    pub(crate) shutdown: CancellationToken,
    /// Every HTTP connection task, so shutdown can wait for in-flight webhooks.
    pub(crate) tasks: TaskTracker,
}

impl Edge {
    /// The answer to `GET /healthz`: `200 ok` while the store takes writes, `503 store failing`
    /// while a failed write keeps it refusing updates (the details are in the admin `stats` and
    /// the log, not on the public port). A load balancer or monitor then sees what Telegram sees:
    /// stored updates get 503 until the store has recovered.
    pub(crate) fn health(&self) -> Response<Full<Bytes>> {
        if self.policy.store_health().is_healthy() {
            text_response(StatusCode::OK, "ok")
        } else {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "store failing")
        }
    }
}
