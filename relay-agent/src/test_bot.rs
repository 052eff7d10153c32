//! A bot for tests: a tiny HTTP/1 server on 127.0.0.1:0 that hands each request, body collected,
//! to a handler and counts the connections it accepts.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A request as the bot saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    /// Every header in the order hyper kept them, value bytes as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

impl Received {
    /// All values of one header, in order.
    pub fn values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// A running test bot.
#[derive(Debug)]
pub struct TestBot {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl TestBot {
    /// Starts a bot that answers every request with `handler`. The accept loop lives as long as
    /// the test's runtime.
    pub async fn start<F, Fut>(handler: F) -> TestBot
    where
        F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let received = Received {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                                .collect(),
                            body,
                        };
                        Ok::<_, Infallible>(handler(received).await)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        TestBot { addr, connections }
    }

    /// The bot's URL with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many connections the bot has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A response with a status and a body.
pub fn respond(status: u16, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    response
}
