//! One webhook, `POST /hook/<bot>[/<rest>]`, as a story: the edge's checks, the body, the
//! live-or-stored decision, and the answer. Telegram gets the bot's answer unchanged, `200` once
//! a stored update is on disk, or a status that makes it retry (never 410, which would make
//! Telegram drop the webhook).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tracing::Instrument;

use super::Edge;
use super::body_budget::RETRY_AFTER;
use super::checks::{self, Refusal};
use super::headers::{bot_response, forwarded_headers};
use crate::delivery::mode::{Policy, Route, Wait};
use crate::delivery::update::UpdateInfo;
use crate::response::{plain, retry_later, text_response};

/// The path prefix of every webhook URL.
pub(crate) const HOOK_PREFIX: &str = "/hook/";

/// Splits `/hook/<bot>[/<rest>]` into the bot and the rest (empty, or starting with `/`).
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix(HOOK_PREFIX)?;
    let (bot, rest) = tail.find('/').map_or((tail, ""), |at| tail.split_at(at));
    protocol::bot_name::is_valid(bot).then_some((bot, rest))
}

/// Serves one webhook request.
pub(crate) async fn handle(
    edge: Arc<Edge>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let Some((bot, rest)) = split_path(request.uri().path()) else {
        return text_response(StatusCode::NOT_FOUND, "not found");
    };
    let (bot, rest) = (bot.to_owned(), rest.to_owned());
    let span = tracing::debug_span!("webhook", %bot, %peer);
    intake(&edge, request, peer, bot, rest)
        .instrument(span)
        .await
}

/// Checks the webhook, reads it, and carries it where the policy says.
async fn intake(
    edge: &Edge,
    request: Request<Incoming>,
    peer: SocketAddr,
    bot: String,
    rest: String,
) -> Response<Full<Bytes>> {
    let limit = edge.limits.max_body_bytes;
    if !edge.tunnel.bots.knows(&bot) {
        tracing::debug!("unknown bot");
        return refused(Refusal::UnknownBot);
    }
    if let Err(refusal) = checks::secret(edge.secrets.get(&bot), request.headers()) {
        return refused(refusal);
    }
    if let Err(refusal) = checks::path_suffix(&rest) {
        return refused(refusal);
    }
    let rest = if edge.drop_path_suffix.contains(&bot) {
        String::new()
    } else {
        rest
    };
    let declared = match checks::declared_length(request.headers(), limit) {
        Ok(declared) => declared,
        Err(refusal) => {
            checks::discard(request.into_body(), limit.saturating_mul(2)).await;
            return refused(refusal);
        }
    };
    let admitted = match edge.policy.admit(&bot) {
        Ok(admitted) => admitted,
        Err(wait) => {
            tracing::debug!("no agent connected");
            return waiting(wait);
        }
    };
    // Held until the webhook is answered: the body lives that long (in the request, its frame,
    // and the copy kept to store on failure).
    let Ok(mut share) = edge.bodies.admit(declared.unwrap_or(0)) else {
        if let Some(left_out) = edge.budget_log.allow() {
            tracing::warn!(
                declared,
                in_use = edge.bodies.in_use(),
                left_out,
                "body budget spent; webhook refused"
            );
        }
        // Answered at once, unread: reading the body to the end would hold the connection (and
        // the caller's slot) for what the budget refused.
        return refused(Refusal::OverBudget);
    };
    let (parts, body) = request.into_parts();
    let body = match checks::read_body(body, limit, &mut share).await {
        Ok(body) => body,
        Err(refusal) => return refused(refusal),
    };

    let info = UpdateInfo::read(&body);
    let request = protocol::Request {
        id: 0,
        bot,
        method: parts.method.as_str().to_owned(),
        path: rest,
        query: parts.uri.query().map(str::to_owned),
        headers: forwarded_headers(&parts.headers, peer, edge.forwarding(peer)),
        body,
        timeout_ms: u32::try_from(edge.limits.bot_timeout.as_millis()).unwrap_or(u32::MAX),
        update_id: info.update_id,
        delivery: protocol::Delivery::Live,
    };
    match edge.policy.route(admitted, &request.bot, &info.queue) {
        Route::Store => store_then_ack(edge, request, info.queue).await,
        Route::Wait(wait) => {
            tracing::debug!(queue = %info.queue, reason = wait.reason(), "telegram keeps the update");
            waiting(wait)
        }
        Route::Live {
            agent,
            store_on_failure,
        } => {
            // In auto mode a copy is kept (cheap: the body is shared) to store if the tunnel fails.
            let copy = store_on_failure.then(|| request.clone());
            let started = tokio::time::Instant::now();
            match agent.call(request, edge.limits.bot_timeout).await {
                Ok(response) => {
                    tracing::debug!(status = response.status, elapsed = ?started.elapsed(), session = agent.session, "delivered");
                    bot_response(response)
                }
                Err(error) => match copy {
                    Some(request) if Policy::store_after_failure(store_on_failure, &error) => {
                        tracing::info!(%error, session = agent.session, "live delivery failed; storing the update");
                        store_then_ack(edge, request, info.queue).await
                    }
                    _ => {
                        let status = error.status();
                        tracing::warn!(%error, status = status.as_u16(), session = agent.session, "delivery failed");
                        text_response(status, error.reason())
                    }
                },
            }
        }
    }
}

/// Stores the update for delivery from the store and answers 200 once it is on disk.
async fn store_then_ack(
    edge: &Edge,
    request: protocol::Request,
    queue: String,
) -> Response<Full<Bytes>> {
    let update_id = request.update_id;
    match edge.policy.store_update(request, queue).await {
        Ok(()) => {
            tracing::debug!(update_id, "stored");
            plain(StatusCode::OK, Bytes::new())
        }
        Err(wait) => waiting(wait),
    }
}

fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    match refusal {
        Refusal::OverBudget => {
            // The body is left unread, so the connection cannot carry another request.
            let mut response = retry_later(refusal.reason(), RETRY_AFTER);
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            response
        }
        refusal => text_response(refusal.status(), refusal.reason()),
    }
}

fn waiting(wait: Wait) -> Response<Full<Bytes>> {
    text_response(wait.status(), wait.reason())
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
