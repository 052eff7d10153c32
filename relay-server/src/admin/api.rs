//! The admin API's server: delivery counters, and the dead-letter list to inspect, replay and
//! drop. It listens apart from the public port (loopback by default) and wants the token kept in
//! `DATA_DIR/admin-token`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::Secret;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::connections::Connections;
use crate::delivery::Scheduler;
use crate::delivery::store::{Store, StoreHealth, StoredUpdate};
use crate::response::plain;
use crate::tunnel::Registry;

/// The admin API serves an operator, not traffic.
const MAX_CONNECTIONS: usize = 16;
/// Every admin request and answer is small and local.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Connections that may wait for a slot while all are answering requests; past it, new ones are
/// closed at once.
const MAX_WAITING: usize = 64;
/// A connection that has not sent its request by now is closed. The CLI sends it at once; 3 s
/// leaves room for an SSH tunnel on a slow link.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// The most dead letters one listing returns.
const MAX_LISTING: usize = 10_000;

/// What the admin API reads and changes.
#[derive(Debug)]
pub(crate) struct Admin {
    /// Stored delivery: counters, the store, replays.
    pub(crate) scheduler: Scheduler,
    /// Connected agents, for the count.
    pub(crate) registry: Arc<Registry>,
}

/// Serves the admin API on `listener` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    token: Secret,
    shutdown: CancellationToken,
) {
    let connections = Connections::new(MAX_CONNECTIONS);
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    let token = Arc::new(token);
    for id in 0u64.. {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // EMFILE and friends: give connections a moment to close instead of spinning.
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            continue;
        };
        let Ok(waiter) = waiting.clone().try_acquire_owned() else {
            continue;
        };
        let (admin, token, connections) = (admin.clone(), token.clone(), connections.clone());
        tokio::spawn(async move {
            // Every slot answering a request: wait as long as one takes at most.
            let Some(slot) = connections.take(id, REQUEST_TIMEOUT).await else {
                return;
            };
            drop(waiter);
            let slot = Arc::new(slot);
            let evicted = slot.evicted();
            let service = service_fn(move |request| {
                let (admin, token) = (admin.clone(), token.clone());
                slot.busy();
                async move {
                    let answer =
                        tokio::time::timeout(REQUEST_TIMEOUT, handle(&admin, &token, request))
                            .await;
                    Ok::<_, Infallible>(
                        answer.unwrap_or_else(|_| error(StatusCode::GATEWAY_TIMEOUT, "timed out")),
                    )
                }
            });
            // One request per connection, so a slot is either waiting for its request (and may
            // be given to a newcomer) or answering it.
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = evicted.cancelled() => {}
            }
        });
    }
}

async fn handle(
    admin: &Admin,
    token: &Secret,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if !token.matches(presented) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let path: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    let query = request.uri().query().unwrap_or_default();
    let scheduler = &admin.scheduler;
    let store = scheduler.store();
    match (request.method().clone(), path.as_slice()) {
        (Method::GET, ["stats"]) => {
            let stats = scheduler.stats();
            let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            json_response(json!({
                "stored": count(&stats.stored),
                "delivered": count(&stats.delivered),
                "retried": count(&stats.retried),
                "unreachable": count(&stats.unreachable),
                "buried": count(&stats.buried),
                "expired": count(&stats.expired),
                "refused_full": count(&stats.refused_full),
                "waiting": scheduler.waiting(),
                "dead_letters": store.dead_count(),
                "store_bytes": store.bytes(),
                "store": store_health(store),
                "agents": admin.registry.session_count(),
            }))
        }
        (Method::GET, ["dead-letters"]) => {
            let bot = query.split('&').find_map(|pair| pair.strip_prefix("bot="));
            match store.dead_letters(bot, MAX_LISTING).await {
                Ok(letters) => json_response(Value::Array(letters.iter().map(describe).collect())),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (Method::POST, ["dead-letters", bot, seq, "replay"]) => {
            let Ok(seq) = seq.parse() else {
                return error(StatusCode::BAD_REQUEST, "bad seq");
            };
            match store.replay(bot, seq).await {
                Ok(Some(update)) => {
                    tracing::info!(
                        bot,
                        old_seq = seq,
                        new_seq = update.seq,
                        "dead letter replayed"
                    );
                    let described = describe(&update);
                    scheduler.enqueue(update);
                    json_response(described)
                }
                Ok(None) => error(StatusCode::NOT_FOUND, "no such dead letter"),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (Method::DELETE, ["dead-letters", bot, seq]) => {
            let Ok(seq) = seq.parse() else {
                return error(StatusCode::BAD_REQUEST, "bad seq");
            };
            match store.drop_dead(bot, seq).await {
                Ok(true) => {
                    tracing::info!(bot, seq, "dead letter dropped");
                    json_response(json!({"dropped": seq}))
                }
                Ok(false) => error(StatusCode::NOT_FOUND, "no such dead letter"),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "unknown admin path"),
    }
}

/// The store's health as `stats` shows it: whether writes work, and if not since when, the last
/// error (from the database or the file system, never update contents) and the reopens tried;
/// and where a damaged file found at start was moved.
fn store_health(store: &Store) -> Value {
    let health = store.health();
    let (error, reopen_attempts) = match &health {
        StoreHealth::Healthy => (None, 0),
        StoreHealth::Failing {
            error,
            reopen_attempts,
            ..
        } => (Some(error.as_str()), *reopen_attempts),
    };
    json!({
        "healthy": health.is_healthy(),
        "error": error,
        "failing_secs": health.failing_for().as_secs(),
        "reopen_attempts": reopen_attempts,
        "moved_aside": store.moved_aside().map(|path| path.display().to_string()),
    })
}

/// One stored update as the API shows it: everything but the body itself.
fn describe(update: &StoredUpdate) -> Value {
    json!({
        "bot": update.bot,
        "seq": update.seq,
        "update_id": update.update_id,
        "queue": update.queue,
        "attempts": update.attempts,
        "last_error": update.last_error,
        "received_at_ms": update.received_at_ms,
        "body_bytes": update.body.len(),
    })
}

fn json_response(value: Value) -> Response<Full<Bytes>> {
    let mut response = plain(StatusCode::OK, Bytes::from(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = json_response(json!({ "error": message }));
    *response.status_mut() = status;
    response
}
