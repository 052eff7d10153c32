//! [`TestBot`]: a local HTTP/1 server on 127.0.0.1 that records every request and answers as the
//! test says. It stands in for a bot, and for the Bot API where a test needs one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as the bot saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Every header in the order hyper kept them, as (lowercase name, value bytes as sent).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body bytes.
    pub body: Bytes,
}

impl Received {
    /// All values of header `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The one value of header `name`, as text; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.values(name);
        assert!(
            values.len() <= 1,
            "header {name} appears {} times",
            values.len()
        );
        values
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// What the bot answers: a status, headers in order, and a body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
}

impl Answer {
    /// A status with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: Bytes::new(),
        }
    }

    /// A status, a content type and a body.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// What a bot's handler may answer with: an [`Answer`], or a whole response when a test needs
/// headers no [`Answer`] can carry (bytes that are not text, say).
pub trait IntoAnswer {
    /// The response hyper sends.
    fn into_response(self) -> Response<Full<Bytes>>;
}

impl IntoAnswer for Answer {
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response.body(Full::new(self.body)).expect("valid answer")
    }
}

impl IntoAnswer for Response<Full<Bytes>> {
    fn into_response(self) -> Response<Full<Bytes>> {
        self
    }
}

/// A response with a status and a body, for handlers that go on to change its headers.
pub fn respond(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    response
}

type Handler = Arc<
    dyn Fn(Received) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync,
>;

/// A running bot. Its server stops with the test's runtime.
#[derive(Clone)]
pub struct TestBot {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl std::fmt::Debug for TestBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBot").field("addr", &self.addr).finish()
    }
}

impl TestBot {
    /// A bot on a port the OS picks that records each request and answers it with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoAnswer,
    {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), handler).await
    }

    /// [`TestBot::start`] at `addr`: for a bot that comes back where it was (see
    /// [`unused_addr`]).
    pub async fn start_at<F, Fut>(addr: SocketAddr, handler: F) -> Self
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoAnswer,
    {
        let handler: Handler = Arc::new(move |request| {
            let answer = handler(request);
            Box::pin(async move { answer.await.into_response() })
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the test bot");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, counter) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let received = record(request).await;
                            log.lock().expect("log").push(received.clone());
                            Ok::<_, Infallible>(handler(received).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            connections,
        }
    }

    /// A bot that answers 200 with `{"ok":true}` at once.
    pub async fn ok() -> Self {
        Self::start(|_| async { Answer::with_body(200, "application/json", r#"{"ok":true}"#) })
            .await
    }

    /// A bot that answers 200 after `delay`.
    pub async fn slow(delay: Duration) -> Self {
        Self::start(move |_| async move {
            tokio::time::sleep(delay).await;
            Answer::status(200)
        })
        .await
    }

    /// The bot's URL, with `path` after the port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the bot has received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// How many requests the bot has received.
    pub fn count(&self) -> usize {
        self.received.lock().expect("log").len()
    }

    /// How many connections the bot has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An address on 127.0.0.1 that nothing listens on: the OS picks a free port, which is then
/// let go. Connections to it are refused until a [`TestBot::start_at`] takes it.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn record(request: Request<hyper::body::Incoming>) -> Received {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Received {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}
