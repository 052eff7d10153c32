//! The live-or-stored decision, in one place: each bot's [`DeliveryMode`] (the operator's, else
//! what its agent asked for, else the default), and for each webhook whether it goes to the agent
//! now, into the store, or back to Telegram with a 503 to retry later.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use protocol::DeliveryMode;

use super::scheduler::{Scheduler, unix_millis};
use super::store::{NewUpdate, StoreError, StoreHealth};
use crate::tunnel::bots::KnownBots;
use crate::tunnel::{AgentHandle, CallError, Registry};

/// Decides, per webhook, between live delivery, the store and a 503.
#[derive(Debug)]
pub(crate) struct Policy {
    /// The modes the operator set per bot; they win over what agents ask for.
    operator: BTreeMap<String, DeliveryMode>,
    default: DeliveryMode,
    bots: Arc<KnownBots>,
    registry: Arc<Registry>,
    scheduler: Scheduler,
}

/// What [`Policy::admit`] found before the body was read: the bot's mode and its agent, which
/// decide the route once the body says which chat the update belongs to.
#[derive(Debug)]
pub(crate) struct Admitted {
    mode: DeliveryMode,
    agent: Option<Arc<AgentHandle>>,
}

/// Where one webhook goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// To this agent now. With `store_on_failure` (auto mode), a failure before the bot could
    /// see the update stores it instead ([`Policy::store_after_failure`]).
    Live {
        /// The newest session serving the bot.
        agent: Arc<AgentHandle>,
        /// Whether a tunnel failure falls back to the store.
        store_on_failure: bool,
    },
    /// Into the store, answered 200 once it is on disk, and delivered from there.
    Store,
    /// Back to Telegram, which keeps the update and retries.
    Wait(Wait),
}

/// Why a webhook is answered 503 for Telegram to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A passthrough bot with no agent connected.
    NoAgent,
    /// A passthrough bot whose chat still has stored updates: new ones wait with Telegram until
    /// the backlog is delivered, rather than overtake it.
    Backlog,
    /// The store is at its byte cap.
    StoreFull,
    /// The store could not take the update (disk failing).
    StoreUnavailable,
}

impl Wait {
    /// Always 503: each of these passes, and Telegram retries.
    pub(crate) fn status(self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    /// The sentence that goes with the status.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Wait::NoAgent => "no agent is connected for this bot",
            Wait::Backlog => "earlier updates of this chat are still being delivered",
            Wait::StoreFull => "relay store is full",
            Wait::StoreUnavailable => "relay store unavailable",
        }
    }
}

impl Policy {
    /// The policy for `operator`'s modes and `default`, with what agents declared in `bots`.
    pub(crate) fn new(
        operator: BTreeMap<String, DeliveryMode>,
        default: DeliveryMode,
        bots: Arc<KnownBots>,
        registry: Arc<Registry>,
        scheduler: Scheduler,
    ) -> Self {
        Self {
            operator,
            default,
            bots,
            registry,
            scheduler,
        }
    }

    /// How `bot`'s webhooks are delivered: the operator's `mode` for it, else the mode its agent
    /// asked for, else the default.
    pub(crate) fn mode_of(&self, bot: &str) -> DeliveryMode {
        self.operator
            .get(bot)
            .copied()
            .or_else(|| self.bots.declared_mode(bot))
            .unwrap_or(self.default)
    }

    /// The check before the body is read: looks up `bot`'s mode and agent once, and tells a
    /// passthrough bot with no agent at once.
    pub(crate) fn admit(&self, bot: &str) -> Result<Admitted, Wait> {
        let mode = self.mode_of(bot);
        let agent = self.registry.route(bot);
        if mode == DeliveryMode::Passthrough && agent.is_none() {
            return Err(Wait::NoAgent);
        }
        Ok(Admitted { mode, agent })
    }

    /// Where an admitted webhook for `bot` whose update belongs to `queue` goes.
    pub(crate) fn route(&self, admitted: Admitted, bot: &str, queue: &str) -> Route {
        let Admitted { mode, agent } = admitted;
        let backlog = mode != DeliveryMode::Durable && self.scheduler.has_waiting(bot, queue);
        match (mode, agent) {
            (DeliveryMode::Durable, _) => Route::Store,
            // A chat with stored updates waiting takes new ones into the store too, behind them.
            (DeliveryMode::Auto, _) if backlog => Route::Store,
            // A passthrough bot may still have stored updates (its mode changed, or its agent
            // asked for passthrough after an outage).
            (DeliveryMode::Passthrough, _) if backlog => Route::Wait(Wait::Backlog),
            (DeliveryMode::Auto, None) => Route::Store,
            (DeliveryMode::Passthrough, None) => Route::Wait(Wait::NoAgent),
            (mode, Some(agent)) => Route::Live {
                agent,
                store_on_failure: mode == DeliveryMode::Auto,
            },
        }
    }

    /// Whether a live delivery that failed with `error` is stored instead (and answered 200):
    /// only in auto mode (`store_on_failure`), and only when the bot cannot have seen the update
    /// ([`CallError::store_instead`]). Otherwise Telegram gets the error's status and retries.
    pub(crate) fn store_after_failure(store_on_failure: bool, error: &CallError) -> bool {
        store_on_failure && error.store_instead()
    }

    /// Whether the store takes writes, for `/healthz`.
    pub(crate) fn store_health(&self) -> StoreHealth {
        self.scheduler.store().health()
    }

    /// Stores `request`, an update of `queue`, for delivery from the store. `Ok` means it is on
    /// disk and the relay may answer 200.
    pub(crate) async fn store_update(
        &self,
        request: protocol::Request,
        queue: String,
    ) -> Result<(), Wait> {
        let update = NewUpdate {
            bot: request.bot,
            queue,
            update_id: request.update_id,
            received_at_ms: unix_millis(),
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            // A copy: the body is a slice of the connection's read buffer, and a stored update
            // may wait for hours; holding the slice would pin the whole buffer, which the store's
            // memory bound does not count.
            body: Bytes::copy_from_slice(&request.body),
        };
        match self.scheduler.accept(update).await {
            Ok(()) => Ok(()),
            Err(error @ StoreError::Full { .. }) => {
                tracing::warn!(%error, "store full; Telegram keeps the update and retries");
                Err(Wait::StoreFull)
            }
            Err(error @ StoreError::Failing(_)) => {
                // Logged once by the store when it started failing, not once per webhook.
                tracing::debug!(%error, "store failing; Telegram keeps the update and retries");
                Err(Wait::StoreUnavailable)
            }
            Err(error) => {
                tracing::error!(%error, "cannot store an update");
                Err(Wait::StoreUnavailable)
            }
        }
    }
}

#[cfg(test)]
#[path = "mode_tests.rs"]
mod tests;
