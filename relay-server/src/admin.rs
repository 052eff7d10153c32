//! The admin API and the command line in front of it: delivery counters, and the dead-letter list
//! to inspect, replay and drop. It listens apart from the public port (loopback by default) and
//! wants the token kept in `DATA_DIR/admin-token`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::Secret;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::http::plain;
use crate::state::Shared;
use crate::store::StoredUpdate;

/// The file in the data dir that holds the admin token.
pub const TOKEN_FILE: &str = "admin-token";
/// The admin API serves an operator, not traffic.
const MAX_CONNECTIONS: usize = 16;
/// Every admin request and answer is small and local.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// An idle admin connection gives its slot back after this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most dead letters one listing returns.
const MAX_LISTING: usize = 10_000;

/// What the command line can ask a running relay.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show delivery counters and queue sizes
    Stats,
    /// List, replay or drop stored updates that kept failing
    #[command(subcommand)]
    DeadLetters(DeadLetterAction),
}

/// What to do with dead letters.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetterAction {
    /// List them, oldest first
    List {
        /// Only this bot's
        #[arg(long)]
        bot: Option<String>,
    },
    /// Queue one for delivery again, behind its chat's waiting updates
    Replay {
        /// The bot
        bot: String,
        /// The number `list` shows
        seq: u64,
    },
    /// Delete one for good
    Drop {
        /// The bot
        bot: String,
        /// The number `list` shows
        seq: u64,
    },
}

/// Serves the admin API on `listener` until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, token: Secret) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let token = Arc::new(token);
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // EMFILE and friends: give connections a moment to close instead of spinning.
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (shared, token) = (shared.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (shared, token) = (shared.clone(), token.clone());
                async move {
                    let answer =
                        tokio::time::timeout(REQUEST_TIMEOUT, handle(&shared, &token, request))
                            .await;
                    Ok::<_, Infallible>(
                        answer.unwrap_or_else(|_| error(StatusCode::GATEWAY_TIMEOUT, "timed out")),
                    )
                }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

async fn handle(
    shared: &Shared,
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
    let scheduler = &shared.scheduler;
    let store = scheduler.store();
    match (request.method().clone(), path.as_slice()) {
        (Method::GET, ["stats"]) => {
            let stats = scheduler.stats();
            let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            json_response(json!({
                "stored": count(&stats.stored),
                "delivered": count(&stats.delivered),
                "retried": count(&stats.retried),
                "buried": count(&stats.buried),
                "expired": count(&stats.expired),
                "refused_full": count(&stats.refused_full),
                "waiting": scheduler.waiting(),
                "dead_letters": store.dead_count(),
                "store_bytes": store.bytes(),
                "agents": shared.registry.session_count(),
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

/// Runs one command against the admin API at `address` and returns what to print.
pub async fn client(
    command: Command,
    address: SocketAddr,
    token: &Secret,
) -> Result<String, String> {
    let (method, path) = match &command {
        Command::Stats => (Method::GET, "/stats".to_owned()),
        Command::DeadLetters(DeadLetterAction::List { bot }) => match bot {
            Some(bot) => (Method::GET, format!("/dead-letters?bot={bot}")),
            None => (Method::GET, "/dead-letters".to_owned()),
        },
        Command::DeadLetters(DeadLetterAction::Replay { bot, seq }) => {
            (Method::POST, format!("/dead-letters/{bot}/{seq}/replay"))
        }
        Command::DeadLetters(DeadLetterAction::Drop { bot, seq }) => {
            (Method::DELETE, format!("/dead-letters/{bot}/{seq}"))
        }
    };
    let value = call(address, token, method, &path).await?;
    Ok(render(&command, &value))
}

/// Makes one admin API request and returns its JSON answer, or the error as one line.
pub async fn call(
    address: SocketAddr,
    token: &Secret,
    method: Method,
    path: &str,
) -> Result<Value, String> {
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot reach the admin API at {address}: {e}; is relay-server running with its admin API there (--admin-listen)?"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("admin API at {address}: {e}"))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, address.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("admin API: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(format!("admin API answered {status}: {message}"));
        }
        Ok(value)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("admin API at {address} did not answer within {REQUEST_TIMEOUT:?}"))?
}

/// Human-readable output of a command's answer.
fn render(command: &Command, value: &Value) -> String {
    match command {
        Command::DeadLetters(DeadLetterAction::List { .. }) => {
            let rows = value.as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.is_empty() {
                return "no dead letters".into();
            }
            let mut out = format!(
                "{:>10}  {:<20} {:>12} {:>8}  {}\n",
                "SEQ", "BOT", "UPDATE_ID", "ATTEMPTS", "LAST ERROR"
            );
            for row in rows {
                let field = |name: &str| {
                    row.get(name).map_or(String::new(), |v| {
                        v.to_string().trim_matches('"').to_owned()
                    })
                };
                out.push_str(&format!(
                    "{:>10}  {:<20} {:>12} {:>8}  {}\n",
                    field("seq"),
                    field("bot"),
                    field("update_id"),
                    field("attempts"),
                    field("last_error")
                ));
            }
            out.trim_end().to_owned()
        }
        Command::DeadLetters(DeadLetterAction::Replay { bot, seq }) => {
            format!(
                "replayed {bot} {seq}: queued again as {}",
                value.get("seq").unwrap_or(&Value::Null)
            )
        }
        Command::DeadLetters(DeadLetterAction::Drop { bot, seq }) => format!("dropped {bot} {seq}"),
        Command::Stats => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}
