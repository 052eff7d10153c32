//! One live agent session as the rest of the relay sees it: [`AgentHandle::call`] carries one
//! request across the tunnel and waits for its answer, and [`CallError`] says why none came, what
//! Telegram should be told, and whether a stored update may be tried again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use protocol::{Failure, FailureKind, Frame, Outbox, RequestId, Response};
use service::share::FairLimit;
use tokio::sync::oneshot;

/// What the agent said about one request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The bot answered.
    Response(Response),
    /// The agent could not reach the bot.
    Failure(Failure),
}

/// Why a request got no answer from the bot.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent has as many requests in flight as it may, or the bot as many as its share
    /// allows (what the agent's other bots are guaranteed is kept free for them).
    #[error("agent has its maximum of requests in flight for this bot")]
    Overloaded,
    /// The session ended before the answer came.
    #[error("agent disconnected before answering")]
    AgentGone,
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The agent reported a failure.
    #[error("{}", .0.message)]
    Failed(Failure),
    /// The request could not be framed.
    #[error(transparent)]
    Encode(#[from] protocol::EncodeError),
}

/// How a stored update that met a [`CallError`] is tried again. Only [`Retry::Counted`] is the
/// bot's doing (it answered, badly or too late): the others leave `attempts` alone, so that an
/// update is buried only for what the bot did with it, never for being unable to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The session ended: again as soon as a session serves the bot.
    WhenReconnected,
    /// The agent is at its limit of requests in flight: again after a breather.
    WhenLessBusy,
    /// The bot (or the agent, which never answered) could not be reached: back off, without
    /// counting the attempt, until it answers or retention drops the update.
    WhenReachable,
    /// The bot answered (not 2xx, or not in time after it took the request), or the request can
    /// never be sent: back off, and bury the update after the last attempt.
    Counted,
}

impl CallError {
    /// The status Telegram gets when a live request ends this way: each makes it retry (never
    /// 410, which would make it drop the webhook).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            CallError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            CallError::AgentGone => StatusCode::BAD_GATEWAY,
            CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            CallError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CallError::Failed(failure) => match failure.kind {
                FailureKind::BotTimeout => StatusCode::GATEWAY_TIMEOUT,
                FailureKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                FailureKind::BotUnreachable
                | FailureKind::BadBotResponse
                | FailureKind::Rejected => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The short sentence that goes with [`CallError::status`]; the details stay in the log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CallError::Overloaded => "agent is overloaded",
            CallError::AgentGone => "agent disconnected",
            CallError::Timeout(_) => "bot did not answer in time",
            CallError::Encode(_) => "request could not be relayed",
            CallError::Failed(failure) => match failure.kind {
                FailureKind::BotTimeout => "bot did not answer in time",
                FailureKind::Overloaded => "agent is overloaded",
                FailureKind::BotUnreachable => "bot is unreachable",
                FailureKind::BadBotResponse => "bot answered with something that cannot be relayed",
                FailureKind::Rejected => "agent could not deliver the request",
            },
        }
    }

    /// Whether a live request that failed this way may be stored and answered 200 instead: it
    /// failed before the bot could see it (agent gone or busy, bot unreachable). A bot that was
    /// slow may have acted on the update, so a timeout is passed on for Telegram to retry; a
    /// request too large to frame is too large to store.
    pub(crate) fn store_instead(&self) -> bool {
        match self {
            CallError::AgentGone | CallError::Overloaded => true,
            CallError::Failed(failure) => matches!(
                failure.kind,
                FailureKind::BotUnreachable | FailureKind::Overloaded
            ),
            CallError::Timeout(_) | CallError::Encode(_) => false,
        }
    }

    /// How a stored update that met this error is tried again.
    ///
    /// The relay's own deadline passing ([`CallError::Timeout`]) means the agent never answered:
    /// the agent gives up on a slow bot a margin before the relay does and says so with
    /// [`FailureKind::BotTimeout`], so a silent agent is an agent that cannot be reached.
    pub(crate) fn retry(&self) -> Retry {
        match self {
            CallError::AgentGone => Retry::WhenReconnected,
            CallError::Overloaded => Retry::WhenLessBusy,
            CallError::Timeout(_) => Retry::WhenReachable,
            CallError::Encode(_) => Retry::Counted,
            CallError::Failed(failure) => match failure.kind {
                FailureKind::Overloaded => Retry::WhenLessBusy,
                FailureKind::BotUnreachable => Retry::WhenReachable,
                FailureKind::BotTimeout | FailureKind::BadBotResponse | FailureKind::Rejected => {
                    Retry::Counted
                }
            },
        }
    }
}

/// One live agent session, shared by the webhooks routed to it.
#[derive(Debug)]
pub struct AgentHandle {
    /// The relay's number for this session.
    pub session: u64,
    /// The agent's self-declared name, for logs.
    pub name: String,
    /// The bots it declared.
    pub bots: Vec<String>,
    outbox: Outbox,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<Reply>>>,
    /// The session's `max_in_flight_per_agent`, shared fairly by its bots.
    in_flight: FairLimit,
    next_id: AtomicU64,
    /// Set (under the pending lock) when the session ends, so a webhook that picked this handle
    /// just before learns at once that nobody will answer, instead of waiting out its deadline.
    closed: std::sync::atomic::AtomicBool,
}

impl AgentHandle {
    /// A handle whose requests go out through `outbox`, as many at once as `in_flight` allows.
    pub(crate) fn new(
        session: u64,
        name: String,
        bots: Vec<String>,
        outbox: Outbox,
        in_flight: FairLimit,
    ) -> Self {
        Self {
            session,
            name,
            bots,
            outbox,
            pending: Mutex::new(HashMap::new()),
            in_flight,
            next_id: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sends `request` (its id is assigned here) and waits up to `timeout` for the answer.
    pub(crate) async fn call(
        &self,
        mut request: protocol::Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = self
            .in_flight
            .try_acquire(&request.bot)
            .ok_or(CallError::Overloaded)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        let message = protocol::link::message(&Frame::Request(request))?;
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = self.lock_pending();
            if self.closed.load(Ordering::Relaxed) {
                return Err(CallError::AgentGone);
            }
            pending.insert(id, reply_tx);
        }
        let mut pending = PendingGuard {
            handle: self,
            id,
            answered: false,
        };
        match tokio::time::timeout_at(deadline, self.outbox.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(CallError::AgentGone),
            Err(_) => return Err(CallError::Timeout(timeout)),
        }
        let reply = match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(CallError::AgentGone),
            Err(_) => return Err(CallError::Timeout(timeout)),
        };
        pending.answered = true;
        match reply {
            Reply::Response(response) => Ok(response),
            Reply::Failure(failure) => Err(CallError::Failed(failure)),
        }
    }

    /// Hands the agent's answer to the waiting webhook; a late answer (after a timeout) is dropped.
    pub(crate) fn resolve(&self, id: RequestId, reply: Reply) -> bool {
        match self.lock_pending().remove(&id) {
            Some(waiter) => waiter.send(reply).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting webhook at once; called when the session ends.
    pub(crate) fn disconnect(&self) {
        let mut pending = self.lock_pending();
        self.closed.store(true, Ordering::Relaxed);
        pending.clear();
    }

    /// Requests waiting for an answer.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock_pending().len()
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Reply>>> {
        // The map holds no invariant a panicking holder could break, so a poisoned lock is usable.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a request from the pending map however `call` ends, and tells the agent to drop it when
/// it ended without an answer (caller gone or deadline passed).
struct PendingGuard<'a> {
    handle: &'a AgentHandle,
    id: RequestId,
    answered: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.handle.lock_pending().remove(&self.id).is_some()
            && !self.answered
            && let Ok(cancel) = protocol::link::message(&Frame::Cancel(self.id))
        {
            // Best effort: if the queue is full the agent's own timeout ends the request.
            let _ = self.handle.outbox.try_send(cancel);
        }
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
pub(crate) mod tests;
