//! What the agent does with one relayed request, from the duplicate check to the frame that
//! answers the relay.
//!
//! For each request, in this order:
//! 1. **Duplicate check** (requests with an `update_id` only): an update the bot has already
//!    answered with a 2xx does not reach it again. A stored one is acknowledged at once with an
//!    empty 200 marked `x-relay-duplicate: 1` (if the bot had answered it live and that answer is
//!    still remembered, the relay never passed it on, so its Bot API call is made first); a live
//!    one (a Telegram retry) gets the bot's first answer again, or that empty 200 if it is no
//!    longer remembered.
//! 2. **Forward** to the bot ([`Forwarder::forward`]).
//! 3. On a **2xx** answer: **record** the `update_id`, and remember a live answer. Other answers
//!    are not recorded, so the retry reaches the bot again.
//! 4. For a **stored** update: **make the Bot API call** in the answer, if any
//!    ([`Replier::perform`]), since Telegram will never see this answer.
//! 5. **Answer the relay**; for a stored update this is the acknowledgement.
//!
//! # Guarantees for stored updates
//! - The relay deletes an update only on the agent's 2xx answer, sent after steps 3 and 4, so an
//!   update is never lost: any crash before that means redelivery.
//! - Agent crash after the bot answered and before the id is recorded: the bot sees the update
//!   again (at-least-once; this window cannot be closed without the bot's help).
//! - Crash after the id is recorded and before the call is made: the redelivery is a duplicate,
//!   so **that one reply is lost** (replies are at-most-once).
//! - Crash after the call and before the relay gets the answer: the redelivery is a duplicate,
//!   acknowledged without calling the bot or repeating the call.
//! - Machine crash: see [`crate::bot::dedupe`] for the ids of the last [`SYNC_INTERVAL`].
//!
//! For a stored update, steps 3 and 4 run as a task of their own, so that a `Cancel` from the
//! relay (its deadline passed), which aborts the request's task, cannot stop the agent between
//! recording an id and making the call. When the agent stops, it waits up to [`DRAIN_TIMEOUT`]
//! for them. A live answer is recorded synchronously, right after the bot's answer, so no
//! cancel can come between the two either.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Delivery, Failure, FailureKind, Frame, Request, Response};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::api::reply::{API_CALL_TIMEOUT, Replier};
use crate::bot::dedupe::{self, Answer, Dedupe, Limits};
use crate::bot::forward::Forwarder;
use crate::config::Config;
use crate::error::AgentError;
use crate::stats::{Counter, Stats};

/// How often recorded ids are synced to disk. Each record reaches the OS at once, which is enough
/// to survive the agent being killed; syncing once a second bounds what a machine crash can lose
/// without an fsync per update.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long the agent waits, when it stops, for Bot API calls already under way: each has its own
/// [`API_CALL_TIMEOUT`], so this is enough for all of them.
pub(crate) const DRAIN_TIMEOUT: Duration = API_CALL_TIMEOUT;

/// The header that marks an answer the agent gave without asking the bot.
pub(crate) const DUPLICATE_HEADER: &str = "x-relay-duplicate";

/// Handles requests for all sessions: one per agent, so that its windows, pools and counters
/// outlive reconnects.
#[derive(Debug)]
pub(crate) struct Handler {
    forwarder: Forwarder,
    dedupe: Dedupe,
    replier: Arc<Replier>,
    stats: Arc<Stats>,
    /// The tasks of steps 3 and 4, waited for when the agent stops.
    settling: TaskTracker,
}

impl Handler {
    /// A handler for `config`: opens the state directory (if any) and builds the clients.
    pub(crate) fn new(config: &Config, stats: Arc<Stats>) -> Result<Handler, AgentError> {
        Handler::with_limits(config, stats, Limits::default())
    }

    /// [`Handler::new`] with other duplicate-window bounds.
    pub(crate) fn with_limits(
        config: &Config,
        stats: Arc<Stats>,
        limits: Limits,
    ) -> Result<Handler, AgentError> {
        let bots: Vec<&str> = config.bots.iter().map(|bot| bot.name.as_str()).collect();
        Ok(Handler {
            forwarder: Forwarder::new(config),
            dedupe: Dedupe::open(config.state_dir.as_deref(), &bots, limits)?,
            replier: Arc::new(Replier::new(config, stats.clone())?),
            stats,
            settling: TaskTracker::new(),
        })
    }

    /// The counters this handler updates, for tests.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Handles one request and returns the [`Frame::Response`] or [`Frame::Failure`] for the
    /// relay. Bot response bodies over `max_body` bytes are refused.
    pub(crate) async fn handle(&self, request: Request, max_body: usize) -> Frame {
        let (id, delivery, update_id) = (request.id, request.delivery, request.update_id);
        let key = update_id.map(|update_id| dedupe::key(update_id, &request.body));
        let bot = request.bot.clone();
        if let (Some(update_id), Some(key)) = (update_id, key)
            && self.dedupe.contains(&bot, key)
        {
            return self.duplicate(id, &bot, update_id, key, delivery).await;
        }
        let frame = self.forwarder.forward(request, max_body).await;
        let Frame::Response(response) = frame else {
            return frame;
        };
        let settle_needed = update_id.is_some() || matches!(delivery, Delivery::Stored { .. });
        if !(200..300).contains(&response.status) || !settle_needed {
            return Frame::Response(response);
        }
        if let (Delivery::Live, Some(key)) = (delivery, key) {
            // Nothing to wait for: recording cannot be torn by a cancel, so no task of its own.
            remember(&self.dedupe, &bot, key, delivery, &response);
            return Frame::Response(response);
        }
        let settled = self.settling.spawn(
            settle(
                self.dedupe.clone(),
                self.replier.clone(),
                bot,
                update_id,
                key,
                delivery,
                response,
            )
            .in_current_span(),
        );
        match settled.await {
            Ok(response) => Frame::Response(response),
            Err(error) => {
                tracing::error!(request = id, %error, "handling the bot's answer failed");
                Frame::Failure(Failure {
                    id,
                    kind: FailureKind::BadBotResponse,
                    message: "the agent failed while handling the bot's answer".into(),
                })
            }
        }
    }

    /// The answer to an update the bot has already answered.
    async fn duplicate(
        &self,
        id: u64,
        bot: &str,
        update_id: i64,
        key: i64,
        delivery: Delivery,
    ) -> Frame {
        let empty = || Response {
            id,
            status: 200,
            headers: vec![(DUPLICATE_HEADER.to_owned(), Bytes::from_static(b"1"))],
            body: Bytes::new(),
        };
        let response = match delivery {
            Delivery::Stored { attempt } => {
                self.stats.count(Counter::DuplicateStored);
                tracing::debug!(
                    bot,
                    request = id,
                    update = update_id,
                    attempt,
                    "stored update already answered by the bot; acknowledged"
                );
                // The bot answered this update live, but the answer never reached the relay, which
                // then stored the update and told Telegram 200: Telegram never saw the answer, so
                // a Bot API call in it is ours to make, once.
                if let Some(answer) = self.dedupe.take_live_answer(bot, key) {
                    let live = Response {
                        id,
                        status: answer.status,
                        headers: answer.headers,
                        body: answer.body,
                    };
                    self.replier.perform(bot, Some(update_id), &live).await;
                }
                empty()
            }
            Delivery::Live => {
                self.stats.count(Counter::DuplicateLive);
                let first = self.dedupe.live_answer(bot, key);
                tracing::debug!(
                    bot,
                    request = id,
                    update = update_id,
                    remembered = first.is_some(),
                    "live update already answered by the bot; answering again"
                );
                match first {
                    Some(Answer {
                        status,
                        headers,
                        body,
                    }) => Response {
                        id,
                        status,
                        headers,
                        body,
                    },
                    None => empty(),
                }
            }
        };
        Frame::Response(response)
    }

    /// Syncs the duplicate windows to disk.
    pub(crate) async fn sync(&self) {
        let dedupe = self.dedupe.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || dedupe.sync()).await {
            tracing::warn!(%error, "syncing the duplicate windows failed");
        }
    }

    /// Syncs every [`SYNC_INTERVAL`] until `stop` fires.
    pub(crate) async fn sync_until(&self, stop: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(SYNC_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.sync().await,
            }
        }
    }

    /// For shutdown: waits up to [`DRAIN_TIMEOUT`] for answers being settled, syncs the windows
    /// and logs the counters.
    pub(crate) async fn close(&self) {
        self.settling.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.settling.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.settling.len(),
                "stopping with Bot API calls still under way"
            );
        }
        self.sync().await;
        self.stats.log_summary();
    }
}

/// Steps 3 and 4 for a 2xx answer: record the id (and remember a live answer), then make the call
/// in a stored update's answer. Returns the answer for the relay.
async fn settle(
    dedupe: Dedupe,
    replier: Arc<Replier>,
    bot: String,
    update_id: Option<i64>,
    key: Option<i64>,
    delivery: Delivery,
    response: Response,
) -> Response {
    if let Some(key) = key {
        remember(&dedupe, &bot, key, delivery, &response);
    }
    if let Delivery::Stored { .. } = delivery {
        replier.perform(&bot, update_id, &response).await;
    }
    response
}

/// Step 3: records the update as answered, and remembers a live answer for Telegram's retries.
fn remember(dedupe: &Dedupe, bot: &str, key: i64, delivery: Delivery, response: &Response) {
    // A copy, not a clone: the body is a slice of the bot connection's read buffer, and keeping
    // the slice would pin that whole buffer for as long as the answer is cached.
    let live = matches!(delivery, Delivery::Live).then(|| Answer {
        status: response.status,
        headers: response.headers.clone(),
        body: Bytes::copy_from_slice(&response.body),
    });
    dedupe.record(bot, key, live);
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
