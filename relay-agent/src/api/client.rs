//! The HTTP client for the Bot API: pooled keep-alive connections over TLS (the system's roots,
//! never the relay's pin) or plain HTTP for a local Bot API server.
//!
//! hyper-util's pooled client needs a connector; this one is hyper-util's `HttpConnector` (DNS,
//! happy eyeballs, connect timeout) with a tokio-rustls handshake on top. Written here rather than
//! taken from `hyper-rustls` because every piece is already a dependency and [`crate::tls`]
//! already builds the rustls settings; the only addition is `tower-service`, the trait hyper-util's
//! connectors implement, which hyper-util already depends on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::error::AgentError;
use crate::tls;
use crate::url::ApiUrl;

/// How long an idle connection to the Bot API is kept. Replies to stored updates come in bursts
/// while the relay catches up; 90 s keeps the TLS session warm through one.
pub(crate) const API_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled Bot API client.
pub(crate) type ApiClient = Client<ApiConnector, Full<Bytes>>;

/// A client for `url`: reads the system's root certificates when `url` is `https://`.
pub(crate) fn build(url: &ApiUrl) -> Result<ApiClient, AgentError> {
    let tls = if url.is_tls() {
        Some(TlsConnector::from(tls::api_config()?))
    } else {
        None
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = ApiConnector { http, tls };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(API_POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// Opens TCP connections, and TLS over them for `https://` URIs.
#[derive(Clone)]
pub(crate) struct ApiConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for ApiConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConnector")
            .field("http", &self.http)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for ApiConnector {
    type Response = TokioIo<ApiStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let tcp = http.call(uri).await?.into_inner();
            if !https {
                return Ok(TokioIo::new(ApiStream(Either::Left(tcp))));
            }
            let tls = tls.ok_or("an https:// call on a client built for http://")?;
            let stream = tls.connect(ServerName::try_from(host)?, tcp).await?;
            Ok(TokioIo::new(ApiStream(Either::Right(stream))))
        })
    }
}

/// A connection to the Bot API, plain or TLS.
#[derive(Debug)]
pub(crate) struct ApiStream(Either<TcpStream, TlsStream<TcpStream>>);

impl Connection for ApiStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ApiStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
