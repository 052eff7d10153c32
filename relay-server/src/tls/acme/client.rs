//! The HTTPS client the ACME API is reached through: the system's roots plus the `ca` file
//! (a private CA, or Pebble in the tests), one short-lived HTTP/1.1 connection per request,
//! every step under a deadline and every answer under a size cap.
//!
//! instant-acme brings a client of its own (hyper-rustls with the platform verifier), which
//! pulls in a second TLS stack's worth of crates and trusts only one extra root in place of
//! the system's; this one is the relay's own rustls, ring and hyper.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::AcmeError;

/// One request to the ACME server, from connecting to the last byte of the answer. Let's
/// Encrypt answers in well under a second; 30 s rides out a slow network without letting a
/// stuck server hold the issuance (which has its own deadline) for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a certificate chain is a few KiB, a directory or order less.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An error on the way to an answer, for instant-acme to carry as `Error::Other`.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The ACME server's HTTPS client.
#[derive(Clone)]
pub(crate) struct Https {
    tls: TlsConnector,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").finish_non_exhaustive()
    }
}

impl Https {
    /// A client trusting the system's roots and every certificate in `ca`.
    pub(crate) fn new(ca: Option<&Path>) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca {
            let unusable = |reason: String| AcmeError::Storage {
                path: path.to_owned(),
                reason,
            };
            let mut found = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unusable(e.to_string()))? {
                let cert = cert.map_err(|e| unusable(format!("not valid PEM ({e})")))?;
                roots
                    .add(cert)
                    .map_err(|e| unusable(format!("an unusable certificate ({e})")))?;
                found += 1;
            }
            if found == 0 {
                return Err(unusable("no PEM certificate in it".into()));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Unexpected(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(instant_acme::Error::Other(error)),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

async fn send(
    tls: TlsConnector,
    mut request: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri} is not an https URL").into());
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let name = ServerName::try_from(host.clone())?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    // HTTP/1.1 wants the origin form and a Host header; hyper's connection API adds neither.
    let authority = uri
        .authority()
        .ok_or("the URL has no host")?
        .as_str()
        .parse()?;
    request.headers_mut().insert(http::header::HOST, authority);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse()?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(BytesResponse::from(http::Response::from_parts(
        parts,
        Full::new(body),
    )))
}
