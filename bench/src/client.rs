//! The bench's own HTTP/1 client, for what wrk cannot do: readiness probes, admin stats, and the
//! webhooks of the recovery and memory measurements. One connection per request, so that each
//! request's fate (refused, timed out, answered) is its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::update;

/// The largest answer body read; the bench only reads small JSON.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where requests go: an address, plain or TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    address: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Plain HTTP to `address`.
    pub fn plain(address: SocketAddr) -> Endpoint {
        Endpoint { address, tls: None }
    }

    /// HTTPS to `address`, trusting only the certificate(s) in the PEM file `ca`.
    pub fn tls(address: SocketAddr, ca: &Path) -> Result<Endpoint> {
        Ok(Endpoint {
            address,
            tls: Some(tls_config(ca)?),
        })
    }

    /// The address requests go to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// POSTs a Telegram update with a fresh `update_id` to `path` and returns the status.
    pub async fn post_update(&self, path: &str, timeout: Duration) -> Result<StatusCode> {
        let body = update::render(update::next_id());
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(update::SECRET_HEADER, update::SECRET)
            .body(Full::new(Bytes::from(body)))?;
        Ok(self.send(request, timeout).await?.0)
    }

    /// GETs `path` with a bearer token and parses the answer as JSON.
    pub async fn get_json(
        &self,
        path: &str,
        bearer: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
            .body(Full::new(Bytes::new()))?;
        let (status, body) = self.send(request, timeout).await?;
        if !status.is_success() {
            bail!("GET {path} answered {status}");
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path} did not answer JSON"))
    }

    /// Sends one request on a new connection; the whole exchange must finish within `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes)> {
        tokio::time::timeout(timeout, self.send_untimed(request))
            .await
            .map_err(|_| anyhow!("no answer from {} within {timeout:?}", self.address))?
    }

    async fn send_untimed(&self, mut request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some(config) => {
                let name = ServerName::from(self.address.ip());
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Either::Right(connector.connect(name, tcp).await?)
            }
        };
        let host = header::HeaderValue::try_from(self.address.to_string())?;
        request.headers_mut().insert(header::HOST, host);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends with the exchange: this request is its only one.
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow!("answer body unreadable: {error}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Client TLS settings that trust exactly the certificates in `ca`.
pub fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("bad PEM in {}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
