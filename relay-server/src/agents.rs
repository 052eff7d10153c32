//! Connected agents: the registry that routes a bot to a session, and the per-session handle that
//! carries one request across the tunnel and waits for its answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Failure, Frame, Outbox, RequestId, Response};
use tokio::sync::{Semaphore, oneshot};

/// What the agent said about one request.
#[derive(Debug)]
pub enum Reply {
    /// The bot answered.
    Response(Response),
    /// The agent could not reach the bot.
    Failure(Failure),
}

/// Why a request got no answer from the bot.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent has as many requests in flight as it may.
    #[error("agent has its maximum of requests in flight")]
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
    in_flight: Semaphore,
    next_id: AtomicU64,
    /// Set (under the pending lock) when the session ends, so a webhook that picked this handle
    /// just before learns at once that nobody will answer, instead of waiting out its deadline.
    closed: std::sync::atomic::AtomicBool,
}

impl AgentHandle {
    /// A handle whose requests go out through `outbox`, with at most `max_in_flight` at once.
    pub fn new(
        session: u64,
        name: String,
        bots: Vec<String>,
        outbox: Outbox,
        max_in_flight: usize,
    ) -> Self {
        Self {
            session,
            name,
            bots,
            outbox,
            pending: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(max_in_flight),
            next_id: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sends `request` (its id is assigned here) and waits up to `timeout` for the answer.
    pub async fn call(
        &self,
        mut request: protocol::Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| CallError::Overloaded)?;
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
    pub fn resolve(&self, id: RequestId, reply: Reply) -> bool {
        match self.lock_pending().remove(&id) {
            Some(waiter) => waiter.send(reply).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting webhook at once; called when the session ends.
    pub fn disconnect(&self) {
        let mut pending = self.lock_pending();
        self.closed.store(true, Ordering::Relaxed);
        pending.clear();
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
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

/// Which sessions serve which bots.
#[derive(Debug, Default)]
pub struct Registry {
    by_bot: Mutex<HashMap<String, Vec<Arc<AgentHandle>>>>,
}

impl Registry {
    /// Makes `handle` the newest session for each of its bots, until the returned guard drops.
    ///
    /// The newest session wins: after a reconnect, traffic moves to the new connection at once
    /// while the old one (perhaps half-dead) is left to its heartbeat.
    pub fn register(self: &Arc<Self>, handle: Arc<AgentHandle>) -> Registration {
        let mut by_bot = self.lock();
        for bot in &handle.bots {
            by_bot.entry(bot.clone()).or_default().push(handle.clone());
        }
        Registration {
            registry: self.clone(),
            handle,
        }
    }

    /// The session to send `bot`'s next request to.
    pub fn route(&self, bot: &str) -> Option<Arc<AgentHandle>> {
        self.lock()
            .get(bot)
            .and_then(|sessions| sessions.last().cloned())
    }

    /// How many distinct sessions are connected.
    pub fn session_count(&self) -> usize {
        let by_bot = self.lock();
        let mut sessions: Vec<u64> = by_bot.values().flatten().map(|h| h.session).collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<AgentHandle>>>> {
        self.by_bot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a session routable; dropping it unregisters the session and fails its waiting requests.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    handle: Arc<AgentHandle>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_bot = self.registry.lock();
        for bot in &self.handle.bots {
            if let Some(sessions) = by_bot.get_mut(bot) {
                sessions.retain(|h| !Arc::ptr_eq(h, &self.handle));
                if sessions.is_empty() {
                    by_bot.remove(bot);
                }
            }
        }
        drop(by_bot);
        self.handle.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use protocol::FailureKind;
    use tokio::sync::mpsc;

    fn handle(
        session: u64,
        bots: &[&str],
        max_in_flight: usize,
    ) -> (
        Arc<AgentHandle>,
        mpsc::Receiver<tokio_tungstenite::tungstenite::Message>,
    ) {
        let (outbox, queue) = mpsc::channel(16);
        let bots = bots.iter().map(|b| b.to_string()).collect();
        (
            Arc::new(AgentHandle::new(
                session,
                "test".into(),
                bots,
                outbox,
                max_in_flight,
            )),
            queue,
        )
    }

    fn request() -> protocol::Request {
        protocol::Request {
            id: 0,
            bot: "echo".into(),
            method: "POST".into(),
            path: String::new(),
            query: None,
            headers: vec![],
            body: Bytes::from_static(b"{}"),
            timeout_ms: 1000,
            update_id: None,
            delivery: protocol::Delivery::Live,
        }
    }

    fn sent(message: tokio_tungstenite::tungstenite::Message) -> Frame {
        let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message else {
            panic!("not binary");
        };
        protocol::decode(&bytes, protocol::MAX_FRAME_LEN).expect("frame")
    }

    #[tokio::test(start_paused = true)]
    async fn answers_reach_the_right_caller() {
        let (agent, mut queue) = handle(1, &["echo"], 8);
        let first = tokio::spawn({
            let agent = agent.clone();
            async move { agent.call(request(), Duration::from_secs(5)).await }
        });
        let second = tokio::spawn({
            let agent = agent.clone();
            async move { agent.call(request(), Duration::from_secs(5)).await }
        });
        let Frame::Request(a) = sent(queue.recv().await.expect("sent")) else {
            panic!()
        };
        let Frame::Request(b) = sent(queue.recv().await.expect("sent")) else {
            panic!()
        };
        assert_ne!(a.id, b.id);
        for (id, status) in [(b.id, 201), (a.id, 200)] {
            let response = Response {
                id,
                status,
                headers: vec![],
                body: Bytes::new(),
            };
            assert!(agent.resolve(id, Reply::Response(response)));
        }
        let statuses = [
            first.await.expect("join").expect("ok").status,
            second.await.expect("join").expect("ok").status,
        ];
        let ids = [a.id, b.id];
        let want = if ids[0] < ids[1] {
            [200, 201]
        } else {
            [201, 200]
        };
        assert_eq!(statuses, want);
        assert_eq!(agent.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_cancels_and_late_answers_are_dropped() {
        let (agent, mut queue) = handle(1, &["echo"], 8);
        let err = agent
            .call(request(), Duration::from_secs(2))
            .await
            .expect_err("timeout");
        assert!(matches!(err, CallError::Timeout(_)));
        let Frame::Request(sent_request) = sent(queue.recv().await.expect("request")) else {
            panic!()
        };
        assert_eq!(
            sent(queue.recv().await.expect("cancel")),
            Frame::Cancel(sent_request.id)
        );
        let late = Response {
            id: sent_request.id,
            status: 200,
            headers: vec![],
            body: Bytes::new(),
        };
        assert!(!agent.resolve(sent_request.id, Reply::Response(late)));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_overload_and_disconnects_are_reported() {
        let (agent, mut queue) = handle(1, &["echo"], 1);
        let call = tokio::spawn({
            let agent = agent.clone();
            async move { agent.call(request(), Duration::from_secs(5)).await }
        });
        let Frame::Request(sent_request) = sent(queue.recv().await.expect("sent")) else {
            panic!()
        };
        let overloaded = agent.call(request(), Duration::from_secs(5)).await;
        assert!(matches!(overloaded, Err(CallError::Overloaded)));
        let failure = Failure {
            id: sent_request.id,
            kind: FailureKind::BotUnreachable,
            message: "refused".into(),
        };
        agent.resolve(sent_request.id, Reply::Failure(failure));
        assert!(matches!(
            call.await.expect("join"),
            Err(CallError::Failed(_))
        ));

        let call = tokio::spawn({
            let agent = agent.clone();
            async move { agent.call(request(), Duration::from_secs(5)).await }
        });
        let _ = queue.recv().await.expect("sent");
        agent.disconnect();
        assert!(matches!(
            call.await.expect("join"),
            Err(CallError::AgentGone)
        ));
    }

    #[test]
    fn newest_session_wins_and_dropping_unregisters() {
        let registry = Arc::new(Registry::default());
        let (old, _q1) = handle(1, &["echo", "shop"], 1);
        let (new, _q2) = handle(2, &["echo"], 1);
        let old_registration = registry.register(old);
        let new_registration = registry.register(new);
        assert_eq!(registry.route("echo").expect("routed").session, 2);
        assert_eq!(registry.route("shop").expect("routed").session, 1);
        assert_eq!(registry.session_count(), 2);
        drop(new_registration);
        assert_eq!(registry.route("echo").expect("routed").session, 1);
        drop(old_registration);
        assert!(registry.route("echo").is_none() && registry.route("shop").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_on_a_handle_whose_session_ended_fails_at_once() {
        let (agent, _queue) = handle(1, &["echo"], 8);
        agent.disconnect();
        let started = tokio::time::Instant::now();
        let result = agent.call(request(), Duration::from_secs(5)).await;
        assert!(matches!(result, Err(CallError::AgentGone)), "{result:?}");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
