//! Requests in flight: what one webhook waiting for a slow bot costs the relay and the agent in
//! memory. A bot inside the bench holds every request until all K have arrived, so that K are
//! in flight at once when memory is read.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::lab::Lab;
use crate::pair::Pair;
use crate::relay::RelayConfig;

/// The bot's name on the relay.
const BOT: &str = "hold";
/// How long the K requests may take to reach the bot. Must stay well under the relay's bot
/// timeout (30 s), or the first ones would time out while the last arrive.
const GATHER_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest the bot holds a request, should the bench never release it.
const HOLD_LIMIT: Duration = Duration::from_secs(25);
/// Each client request, from send to answer: longer than the hold limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// Pause between looks at the held count.
const POLL: Duration = Duration::from_millis(10);

/// The memory reading.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Requests held at once.
    pub requests: usize,
    /// Relay RSS growth per request, KiB.
    pub relay_kib: f64,
    /// Agent RSS growth per request, KiB.
    pub agent_kib: f64,
}

/// The holding bot's shared state.
#[derive(Debug, Default)]
struct Holder {
    holding: AtomicBool,
    held: AtomicUsize,
    release: CancellationToken,
}

/// Holds `requests` webhooks in flight through a fresh passthrough relay and agent.
pub async fn measure(lab: &Lab, requests: usize) -> Result<InFlight> {
    let holder = Arc::new(Holder::default());
    let stop = CancellationToken::new();
    let _stop_bot = stop.clone().drop_guard();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let bot_url = format!("http://{}/webhook", listener.local_addr()?);
    tokio::spawn(serve(listener, holder.clone(), stop.clone()));

    let config = RelayConfig {
        bots: vec![(BOT.to_owned(), "passthrough")],
        ..RelayConfig::default()
    };
    let mut pair = Pair::start(lab, "in-flight", &config, &bot_url).await?;
    let relay_before = pair.relay.child().rss_kib()?;
    let agent_before = pair.agent.child().rss_kib()?;

    holder.holding.store(true, Ordering::SeqCst);
    let endpoint = pair.relay.endpoint()?;
    let mut calls = JoinSet::new();
    for _ in 0..requests {
        let endpoint = endpoint.clone();
        calls.spawn(async move {
            endpoint
                .post_update(&format!("/hook/{BOT}"), REQUEST_TIMEOUT)
                .await
        });
    }
    let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    while holder.held.load(Ordering::SeqCst) < requests {
        pair.check_alive()?;
        if tokio::time::Instant::now() >= deadline {
            holder.release.cancel();
            bail!(
                "only {} of {requests} requests reached the bot within {GATHER_TIMEOUT:?}",
                holder.held.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let relay_during = pair.relay.child().rss_kib()?;
    let agent_during = pair.agent.child().rss_kib()?;
    holder.release.cancel();

    let mut failed = Vec::new();
    while let Some(joined) = calls.join_next().await {
        match joined.context("a webhook task panicked")? {
            Ok(status) if status == StatusCode::OK => {}
            Ok(status) => failed.push(status.to_string()),
            Err(error) => failed.push(format!("{error:#}")),
        }
    }
    if !failed.is_empty() {
        failed.dedup();
        bail!(
            "held requests did not all get 200 after release ({} failed: {})",
            failed.len(),
            failed.join(", ")
        );
    }
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / requests as f64;
    Ok(InFlight {
        requests,
        relay_kib: per(relay_during, relay_before),
        agent_kib: per(agent_during, agent_before),
    })
}

/// The holding bot: answers at once until `holding` is set, then holds each request until
/// `release` (or [`HOLD_LIMIT`]). Serves until `stop`.
async fn serve(listener: TcpListener, holder: Arc<Holder>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let holder = holder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let holder = holder.clone();
                async move {
                    if holder.holding.load(Ordering::SeqCst) {
                        holder.held.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::time::timeout(HOLD_LIMIT, holder.release.cancelled()).await;
                    }
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}
