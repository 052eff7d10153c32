//! The relay's TLS: which certificate it serves, how that certificate changes while it runs, and
//! the protocol policy of every handshake. Imports [`crate::config`], [`crate::data_dir`] and
//! [`crate::reload`];
//! [`crate::Relay`] and [`crate::edge`] use it.
//!
//! The relay's one `ServerConfig` asks [`Certificates`] for the certificate at every handshake,
//! so whatever replaces it (a reload of the files, an ACME renewal) reaches new connections at
//! once and leaves open ones alone.
//!
//! In the order of the data path; each module imports only modules listed below it.
//! - [`advice`]: warnings at start and the `relay-server cert` report.
//! - [`watch`]: reads certificate files again when they change and on SIGHUP.
//! - [`self_signed`]: the relay's own certificate, RSA-2048 or ECDSA, kept in the data dir.
//! - [`certificates`]: the certificate new handshakes get, and ACME's challenge certificates.
//! - [`pem`]: PEM files into a served key; a certificate's names, dates and fingerprint.

pub(crate) mod advice;
pub(crate) mod certificates;
pub(crate) mod pem;
pub(crate) mod self_signed;
pub(crate) mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::{AcmeSettings, KeyKind, TlsMode};
use crate::data_dir::DataDir;
use crate::reload::Reload;
pub(crate) use certificates::Certificates;

/// The TLS versions the relay speaks: Telegram needs TLS 1.2 or newer, and 1.0 and 1.1 are
/// deprecated (RFC 8996).
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Sessions kept for resumption by session ID (TLS 1.2 clients without tickets). A few hundred
/// bytes each; Telegram opens at most 100 connections per bot.
const SESSION_CACHE_SIZE: usize = 4096;

/// A TLS setup problem, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("cannot use {what} {path}: {reason}")]
    File {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The self-signed certificate could not be written to the data dir.
    #[error("cannot write the self-signed certificate to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen or rustls refused the material.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// Where the served certificate comes from, and so what keeps it current.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// Files, read again when they change ([`watch`]).
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// The relay's own certificate, whose public file is given to agents and Telegram.
    SelfSigned {
        /// The PEM certificate.
        cert: PathBuf,
    },
    /// An ACME CA, which issues and renews it.
    #[allow(dead_code)] // read by `tls::acme`, which lands next
    Acme(AcmeSettings),
}

/// The relay's TLS, ready for the listener.
#[derive(Debug)]
pub(crate) struct Tls {
    /// The rustls server configuration every handshake uses.
    pub config: Arc<ServerConfig>,
    /// What it serves, replaceable while the relay runs.
    pub certificates: Arc<Certificates>,
    /// Where that comes from.
    pub source: Source,
}

/// Prepares TLS for `mode`; `None` when TLS is off.
pub(crate) fn load(
    mode: &TlsMode,
    data_dir: &DataDir,
    public_host: Option<&str>,
) -> Result<Option<Tls>, TlsError> {
    let (key, source) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (
            pem::read_pair(cert, key)?,
            Source::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
        ),
        TlsMode::SelfSigned { key } => {
            let made = self_signed::ensure(data_dir, public_host, *key)?;
            (
                made.key,
                Source::SelfSigned {
                    cert: made.cert_file,
                },
            )
        }
        TlsMode::Acme(settings) => {
            // Served until ACME has a certificate: a handshake works, though no client trusts it.
            let (cert, key) = self_signed::generate(&settings.domains, KeyKind::Ecdsa)
                .map_err(|e| TlsError::Setup(format!("cannot generate a certificate: {e}")))?;
            let key = pem::certified_key(cert.as_bytes(), key.as_bytes())
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            (key, Source::Acme(settings.clone()))
        }
    };
    let certificates = Arc::new(Certificates::new(key));
    let config = server_config(certificates.clone(), matches!(source, Source::Acme(_)))?;
    Ok(Some(Tls {
        config,
        certificates,
        source,
    }))
}

/// The policy of every handshake: TLS 1.2 and 1.3, AEAD cipher suites only, resumption by
/// stateless tickets or the session cache, HTTP/1.1 (and ACME's `acme-tls/1` when `acme`).
pub(crate) fn server_config(
    certificates: Arc<Certificates>,
    acme: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme {
        config
            .alpn_protocols
            .push(certificates::ACME_TLS_ALPN.to_vec());
    }
    // A resumed handshake skips the certificate and the key exchange's signature: for clients that
    // open a connection per request it is most of the handshake's cost.
    config.ticketer = ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    Ok(Arc::new(config))
}

/// ring, limited to AEAD suites (AES-GCM and ChaCha20-Poly1305) with forward secrecy, named
/// here rather than taken from ring's defaults so that a new default cannot widen the policy.
fn provider() -> CryptoProvider {
    use ring::cipher_suite::*;
    CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring::default_provider()
    }
}

/// Keeps the served certificate current until `shutdown`: files are watched and read again on
/// `reload`; a self-signed certificate needs nothing.
pub(crate) fn maintain(tls: Tls, reload: &Reload, shutdown: CancellationToken) {
    match tls.source {
        Source::Files { cert, key } => {
            let files = watch::WatchedFiles::new(cert, key);
            tokio::spawn(files.run(tls.certificates, reload.subscribe(), shutdown));
        }
        Source::SelfSigned { .. } | Source::Acme(_) => {}
    }
}

/// The end-entity certificate of `key`, if it has one.
pub(crate) fn end_entity(key: &CertifiedKey) -> Option<&rustls_pki_types::CertificateDer<'static>> {
    key.cert.first()
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
