//! Forwarding one relayed request to its bot over a pooled keep-alive HTTP client, and turning the
//! bot's answer, or the reason there is none, into the frame that goes back to the relay.
//!
//! The reason decides whether the relay counts the attempt against a stored update (see
//! docs/DELIVERY.md): [`FailureKind::BotUnreachable`] (not counted) when the request never got to
//! the bot: the connection was refused, could not be made in time (DNS included), or was closed or
//! reset before the first byte of an answer. "Got to the bot" means what the agent can see: a
//! connection was open and hyper began writing the request on it ([`Watched`]). A bot whose
//! process hangs while its kernel still completes connections therefore looks like a bot that
//! took the request, and its silence is a [`FailureKind::BotTimeout`] (counted), as is any answer
//! that comes too late; an answer that is not HTTP, or breaks off, is a
//! [`FailureKind::BadBotResponse`] (counted).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use protocol::{Failure, FailureKind, Frame, Request, Response};
use service::share::FairLimit;
use tokio::time::Instant;

use crate::config::Config;
use crate::text::{chain, seconds};
use crate::url::BotUrl;

/// How long connecting to a bot may take. Bots sit on this machine or network and accept in
/// milliseconds; a connect that hangs means packets are dropped, and waiting longer will not help.
pub(crate) const BOT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle keep-alive connection to a bot is kept. Telegram sends in bursts; 90 s keeps
/// connections warm between bursts without holding them forever.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The largest read buffer per bot connection, which bounds a bot's response head.
pub(crate) const MAX_BUF_SIZE: usize = 64 * 1024;

/// The agent gives up this much before the relay does, so that its clean failure reaches the
/// relay before the relay times out on its own.
pub(crate) const RELAY_MARGIN: Duration = Duration::from_millis(500);

/// The least time any forward gets, even when the relay's deadline is nearly spent.
pub(crate) const MIN_FORWARD_TIMEOUT: Duration = Duration::from_millis(100);

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sends relayed requests to the bots. One per agent, shared by all sessions, so that keep-alive
/// connections and the concurrency limit outlive reconnects.
#[derive(Debug)]
pub(crate) struct Forwarder {
    client: Client<HttpConnector, Watched>,
    bots: HashMap<String, BotUrl>,
    /// `--max-concurrency`, shared fairly: each bot keeps `--reserved-per-bot` of it, so a bot
    /// that stopped answering holds at most the rest and the others' requests still go through.
    permits: FairLimit,
    request_timeout: Duration,
}

/// Why a forward produced no response: the kind for the relay and one line for both logs.
type Failed = (FailureKind, String);

impl Forwarder {
    /// A forwarder for `config`'s bots and limits.
    pub(crate) fn new(config: &Config) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(BOT_CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(MAX_BUF_SIZE)
            .build(connector);
        Forwarder {
            client,
            bots: config
                .bots
                .iter()
                .map(|bot| (bot.name.clone(), bot.url.clone()))
                .collect(),
            permits: FairLimit::new(
                config.max_concurrency,
                config.reserved_per_bot,
                config.bots.iter().map(|bot| bot.name.as_str()),
            ),
            request_timeout: config.request_timeout,
        }
    }

    /// Delivers `request` to its bot and returns the [`Frame::Response`] or [`Frame::Failure`] to
    /// send back. Bot response bodies over `max_body` bytes are refused.
    pub(crate) async fn forward(&self, request: Request, max_body: usize) -> Frame {
        let (id, bot, method) = (request.id, request.bot.clone(), request.method.clone());
        let started = Instant::now();
        match self.exchange(request, max_body).await {
            Ok(response) => {
                let status = response.status;
                tracing::debug!(bot, request = id, method, status, elapsed = ?started.elapsed(), "forwarded");
                Frame::Response(response)
            }
            Err((kind, message)) => {
                tracing::warn!(bot, request = id, ?kind, reason = %message, "forward failed");
                Frame::Failure(Failure { id, kind, message })
            }
        }
    }

    /// How long this request may take: our own limit, or the relay's minus a margin if sooner.
    fn budget(&self, relay_timeout_ms: u32) -> Duration {
        let relay = Duration::from_millis(u64::from(relay_timeout_ms))
            .saturating_sub(RELAY_MARGIN)
            .max(MIN_FORWARD_TIMEOUT);
        self.request_timeout.min(relay)
    }

    /// Finds the bot, waits for a slot and makes the round trip, all within the budget.
    async fn exchange(&self, request: Request, max_body: usize) -> Result<Response, Failed> {
        let budget = self.budget(request.timeout_ms);
        let deadline = Instant::now() + budget;
        let id = request.id;
        let url = self.bots.get(&request.bot).ok_or_else(|| {
            let reason = format!("this agent does not serve bot '{}'", request.bot);
            (FailureKind::Rejected, reason)
        })?;
        let request_bot = request.bot.clone();
        let (outgoing, taken) = watched(build(url, request)?);
        // Waiting for a slot spends the same deadline: the relay's clock is already running.
        let Ok(_permit) =
            tokio::time::timeout_at(deadline, self.permits.acquire(&request_bot)).await
        else {
            let reason = format!(
                "bot '{request_bot}' had no free request slot for {} ({} in all, {} kept for each bot)",
                seconds(budget),
                self.permits.limit(),
                self.permits.reserve(),
            );
            return Err((FailureKind::Overloaded, reason));
        };
        let (status, headers, body) =
            tokio::time::timeout_at(deadline, self.round_trip(url, outgoing, max_body))
                .await
                .map_err(|_| {
                    if taken.load(Ordering::Relaxed) {
                        let reason = format!("bot did not answer within {}", seconds(budget));
                        (FailureKind::BotTimeout, reason)
                    } else {
                        let reason = format!(
                            "cannot connect to the bot at {url}: no connection within {}",
                            seconds(budget)
                        );
                        (FailureKind::BotUnreachable, reason)
                    }
                })??;
        Ok(Response {
            id,
            status,
            headers,
            body,
        })
    }

    /// Sends the request and reads the whole answer, refusing bodies over `max_body`.
    async fn round_trip(
        &self,
        url: &BotUrl,
        outgoing: http::Request<Watched>,
        max_body: usize,
    ) -> Result<(u16, Vec<protocol::Header>, Bytes), Failed> {
        let response = self.client.request(outgoing).await.map_err(|error| {
            let hyper_error = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<hyper::Error>());
            if hyper_error.is_some_and(hyper::Error::is_parse) {
                // Bytes came back, but not an HTTP answer (or a head over the buffer).
                let reason = format!(
                    "the bot at {url} answered with something that is not HTTP: {}",
                    chain(&error)
                );
                return (FailureKind::BadBotResponse, reason);
            }
            let what = if error.is_connect() {
                "cannot connect to the bot"
            } else {
                "the bot closed the connection before answering"
            };
            (
                FailureKind::BotUnreachable,
                format!("{what} at {url}: {}", chain(&error)),
            )
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_body)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    let reason = format!("bot response body over {max_body} bytes");
                    (FailureKind::BadBotResponse, reason)
                } else {
                    // The bot had begun to answer: it has the request, so this one counts.
                    let reason = format!(
                        "the bot connection failed mid-body at {url}: {}",
                        chain(&*error)
                    );
                    (FailureKind::BadBotResponse, reason)
                }
            })?;
        let headers = response_headers(&parts.headers);
        Ok((parts.status.as_u16(), headers, body.to_bytes()))
    }
}

/// A request body that notes when hyper takes the request up on an open connection: hyper asks
/// a body whether it is empty just before it writes the request head, and only on a connection
/// that is established (new or from the pool). That is as close to "the bot has the request" as
/// a client can see: it does not prove the bot's process read it.
pub(crate) struct Watched {
    body: Full<Bytes>,
    taken: Arc<AtomicBool>,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.taken.store(true, Ordering::Relaxed);
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.taken.store(true, Ordering::Relaxed);
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `request` with its body [`Watched`], and the flag that says it was taken up.
fn watched(request: http::Request<Full<Bytes>>) -> (http::Request<Watched>, Arc<AtomicBool>) {
    let taken = Arc::new(AtomicBool::new(false));
    let flag = taken.clone();
    let request = request.map(|body| Watched { body, taken: flag });
    (request, taken)
}

/// The HTTP request for the bot: same method, headers (duplicates and order kept) and body bytes.
/// `Host` becomes the bot's; the original goes to `X-Forwarded-Host`. Hop-by-hop headers and
/// `Content-Length` are left for hyper to set for this connection.
fn build(url: &BotUrl, request: Request) -> Result<http::Request<Full<Bytes>>, Failed> {
    let rejected = |reason: String| (FailureKind::Rejected, reason);
    if !(request.path.is_empty() || request.path.starts_with('/')) {
        return Err(rejected(format!(
            "path '{}' does not start with /",
            request.path
        )));
    }
    let uri = url
        .join(&request.path, request.query.as_deref())
        .map_err(|error| rejected(format!("cannot build the bot URL: {error}")))?;
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| rejected(format!("invalid method '{}'", request.method)))?;
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut host = None;
    for (name, value) in request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| rejected(format!("invalid header name '{name}'")))?;
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| rejected(format!("invalid value for header '{name}'")))?;
        if name == HOST {
            host.get_or_insert(value);
        } else if name != CONTENT_LENGTH && !is_hop_by_hop(&name) {
            headers.append(name, value);
        }
    }
    if let Some(host) = host {
        headers.entry(X_FORWARDED_HOST).or_insert(host);
    }
    let mut outgoing = http::Request::new(Full::new(request.body));
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = headers;
    Ok(outgoing)
}

/// The bot's headers for the relay, minus hop-by-hop ones and `Content-Length` (the relay sets
/// its own for the body it sends).
fn response_headers(headers: &HeaderMap) -> Vec<protocol::Header> {
    headers
        .iter()
        .filter(|(name, _)| **name != CONTENT_LENGTH && !is_hop_by_hop(name))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    protocol::is_hop_by_hop(name.as_str())
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
