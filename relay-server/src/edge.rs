//! The edge: the one public port. Accepts connections under a bound, terminates TLS, and routes
//! each request to the webhook intake, the agent endpoint or the health check ([`Edge::health`]). Imports [`crate::delivery`],
//! [`crate::tunnel`], [`crate::config`], [`crate::response`] and [`crate::data_dir`]; only
//! [`crate::Relay`] uses it.
//!
//! In the order of the data path; each module imports only modules listed below it.
//! - [`listener`]: the accept loop, TLS handshake, HTTP/1 and routing.
//! - [`webhook`]: one webhook, from checks to the answer Telegram gets.
//! - [`checks`]: the checks before a webhook is carried: bot, secret, size, body.
//! - [`body_budget`]: the bytes of bodies held at once, across connections.
//! - [`headers`]: the headers the bot gets and the answer Telegram gets.
//! - [`admission`]: the connection pool, the agents' reserve, and the per-source caps.
//! - [`keep_alive`]: one connection's idle, header, age and request bounds.

pub(crate) mod admission;
pub(crate) mod body_budget;
pub(crate) mod checks;
pub(crate) mod headers;
pub(crate) mod keep_alive;
pub(crate) mod listener;
pub(crate) mod webhook;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use protocol::Secret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{IpRange, Limits};
use crate::delivery::mode::Policy;
use crate::delivery::notice::LogBudget;
use crate::response::text_response;
use crate::tunnel::Tunnel;
use body_budget::BodyBudget;
use headers::Forwarding;

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
    /// The peers whose forwarding headers are believed when TLS is off.
    pub(crate) trusted_proxies: Vec<IpRange>,
    /// The bytes of webhook bodies held at once.
    pub(crate) bodies: BodyBudget,
    /// Bounds the warnings about a spent body budget, which a flood would repeat per request.
    pub(crate) budget_log: LogBudget,
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

    /// Whose forwarding headers a request from `peer` passes on.
    pub(crate) fn forwarding(&self, peer: SocketAddr) -> Forwarding {
        if self.tls {
            Forwarding::Edge
        } else if self.trusted_proxies.iter().any(|r| r.contains(peer.ip())) {
            Forwarding::TrustedProxy
        } else {
            Forwarding::Untrusted
        }
    }
}
