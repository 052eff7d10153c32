//! The TLS client settings the agent uses: [`relay_config`] for the relay (`wss://`), which trusts
//! exactly the certificate given with `--ca` or `--pin`, and [`api_config`] for the Bot API
//! (`https://`), which trusts the system's roots only. Imports only [`crate::error`].
//!
//! # Why an exact certificate skips the usual checks
//! A self-signed relay certificate (what `openssl req -x509` or relay-server itself makes) is
//! often marked CA:TRUE, or names only an IP address; webpki refuses such a certificate as a
//! server's own even when it is given as a root (`CaUsedAsEndEntity`). The agent is given that
//! very certificate, its bytes or its SHA-256, the way ssh's `known_hosts` holds a host key: when
//! the relay shows exactly those bytes, it holds the matching private key (the handshake
//! signature is still verified), so names, dates and CA flags add nothing and are not checked.
//! Any other certificate goes through webpki's usual checks against the system's roots and the
//! `--ca` certificates, so a private CA given with `--ca` still works as a CA; but a `--pin`
//! given alone trusts nothing else, because a pin is meant to be exact.

use std::path::Path;
use std::sync::Arc;

use protocol::Pin;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::error::AgentError;

/// The TLS settings for the relay: the relay's certificate is accepted when it is exactly one of
/// the certificates in `ca` or its SHA-256 is `pin`; otherwise it must verify against the
/// system's roots and `ca`, unless only a `pin` is given (then nothing else is trusted).
pub(crate) fn relay_config(
    ca: Option<&Path>,
    pin: Option<Pin>,
) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let provider = provider();
    let exact = match ca {
        Some(path) => read_ca(path)?,
        None => Vec::new(),
    };
    let fallback = if pin.is_some() && ca.is_none() {
        None
    } else {
        let mut roots = system_roots();
        let (added, ignored) = roots.add_parsable_certificates(exact.iter().cloned());
        tracing::debug!(added, ignored, "added the --ca certificates as roots");
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|error| AgentError::Tls(error.to_string()))?,
        )
    };
    let verifier = RelayVerifier {
        exact,
        pin,
        fallback,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = builder(provider)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS settings for the Bot API: ring, TLS 1.2+, the system's roots. Never pinned: the Bot
/// API is Telegram's (or a local server's) and has nothing to do with the relay's certificate.
pub(crate) fn api_config() -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let config = builder(provider())?
        .with_root_certificates(system_roots())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder(
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, AgentError> {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| AgentError::Tls(error.to_string()))
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping unreadable system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    roots
}

/// Every certificate in the PEM file at `path`; at least one.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let ca_error = |reason: String| AgentError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| ca_error(format!("cannot read it ({error})")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ca_error(format!("not valid PEM ({error})")))?;
    if certs.is_empty() {
        return Err(ca_error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The relay presented a certificate other than the pinned one. Carried inside rustls's error
/// ([`CertificateError::Other`]) so that the dialer can report it as
/// [`AgentError::PinMismatch`]. Fingerprints are public, so both are shown.
#[derive(Debug, thiserror::Error)]
#[error("the relay's certificate is {presented}, not the pinned {expected}")]
pub(crate) struct PinMismatch {
    /// The fingerprint of what the relay presented.
    pub(crate) presented: Pin,
    /// The `--pin`.
    pub(crate) expected: Pin,
}

/// Trusts the exact certificates and the pin, then (when there is one) the webpki fallback.
#[derive(Debug)]
struct RelayVerifier {
    /// The `--ca` certificates, each trusted as the relay's own when presented as is.
    exact: Vec<CertificateDer<'static>>,
    /// The `--pin`.
    pin: Option<Pin>,
    /// The usual checks, for certificates that are neither; `None` for a `--pin` alone.
    fallback: Option<Arc<WebPkiServerVerifier>>,
    /// What the handshake signatures are checked with.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Pin::of(end_entity);
        if self.pin == Some(presented) || self.exact.iter().any(|cert| cert == end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = self.fallback.as_ref().map(|fallback| {
            fallback.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        });
        match (verdict, self.pin) {
            (Some(Ok(verified)), _) => Ok(verified),
            // A pin was given and the certificate is neither it nor otherwise trusted: say so
            // in terms of the pin, the one thing the user can compare.
            (_, Some(expected)) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    presented,
                    expected,
                })),
            ))),
            (Some(Err(error)), None) => Err(error),
            // Not built: without a pin there is always a fallback.
            (None, None) => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
