//! [`FakeBotApi`]: a Bot API server on 127.0.0.1 that records every call and answers each with
//! `{"ok":true,...}`, standing in for api.telegram.org when the agent makes the calls bots put in
//! their answers to stored updates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use protocol::Secret;
use relay_agent::Config;
use relay_agent::url::ApiUrl;

/// One call as the Bot API saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The HTTP method.
    pub method: String,
    /// Path and query, such as `/bot123456:TEST-token/sendMessage`.
    pub path: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body bytes.
    pub body: Bytes,
}

/// A running fake Bot API. Its server stops with the test's runtime.
#[derive(Clone)]
pub struct FakeBotApi {
    /// Where it listens.
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<ApiCall>>>,
}

impl std::fmt::Debug for FakeBotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBotApi")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeBotApi {
    /// Starts the server on a port the OS picks.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind bot api");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        // Each answer carries a new message_id, as sendMessage's result would.
        let message_ids = Arc::new(AtomicU64::new(1));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, message_ids) = (log.clone(), message_ids.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (log, message_ids) = (log.clone(), message_ids.clone());
                        async move {
                            let call = record(request).await;
                            log.lock().expect("log").push(call);
                            let id = message_ids.fetch_add(1, Ordering::Relaxed);
                            let body = format!(
                                r#"{{"ok":true,"result":{{"message_id":{id},"date":1764028800,"chat":{{"id":1,"type":"private"}},"text":"thanks"}}}}"#
                            );
                            let response = Response::builder()
                                .status(200)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .expect("valid answer");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls }
    }

    /// The base URL to give the agent as `--api-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `config` with its Bot API pointed here and `token` as the Telegram token of `bot`.
    pub fn serve(&self, mut config: Config, bot: &str, token: &str) -> Config {
        config.api_url = ApiUrl::parse(&self.url()).expect("api url");
        let entry = config
            .bots
            .iter_mut()
            .find(|b| b.name == bot)
            .unwrap_or_else(|| panic!("the agent does not serve {bot}"));
        entry.bot_token = Some(Secret::new(token));
        config
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().expect("log").clone()
    }

    /// How many calls have been received.
    pub fn count(&self) -> usize {
        self.calls.lock().expect("log").len()
    }
}

async fn record(request: Request<hyper::body::Incoming>) -> ApiCall {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    ApiCall {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        content_type: parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        body,
    }
}
