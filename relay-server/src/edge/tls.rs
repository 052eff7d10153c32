//! The relay's TLS: a certificate chain from files, or a self-signed certificate generated on first
//! start and kept in the data dir so agents can pin it and Telegram can be given it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsMode;
use crate::data_dir::{DataDir, write_private};

/// Names every self-signed certificate carries, so local agents and tests can verify it.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

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

/// What [`load`] produced: the acceptor's config and, for a self-signed certificate, its file.
#[derive(Debug)]
pub(crate) struct Tls {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// The PEM file agents pass as `--ca` and operators upload to Telegram, when self-signed.
    pub self_signed_cert: Option<PathBuf>,
    /// STAND-IN: the live resolver, in ACME mode.
    pub certificates: Option<Arc<crate::tls::certificates::Certificates>>,
}

/// Prepares TLS for `mode`; `None` when TLS is off.
pub(crate) fn load(
    mode: &TlsMode,
    data_dir: &DataDir,
    public_host: Option<&str>,
) -> Result<Option<Tls>, TlsError> {
    let (certs, key, self_signed_cert) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (read_certs(cert)?, read_key(key)?, None),
        TlsMode::SelfSigned => {
            let (cert, key) = self_signed(data_dir, public_host)?;
            (read_certs(&cert)?, read_key(&key)?, Some(cert))
        }
        TlsMode::Acme(settings) => {
            // STAND-IN for the lead's version.
            let (cert, key) = self_signed(data_dir, settings.domains.first().map(|d| d.as_str()))?;
            let key = crate::tls::pem::certified_key(
                &std::fs::read(&cert).map_err(|e| TlsError::Setup(e.to_string()))?,
                &std::fs::read(&key).map_err(|e| TlsError::Setup(e.to_string()))?,
            )
            .map_err(TlsError::Setup)?;
            let certificates = Arc::new(crate::tls::certificates::Certificates::new(key));
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Setup(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(certificates.clone());
            config.alpn_protocols = vec![b"http/1.1".to_vec(), b"acme-tls/1".to_vec()];
            return Ok(Some(Tls {
                config: Arc::new(config),
                self_signed_cert: None,
                certificates: Some(certificates),
            }));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Setup(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Tls {
        config: Arc::new(config),
        self_signed_cert,
        certificates: None,
    }))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        what: "certificate",
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Returns the self-signed certificate and key files in the data dir, making them when they are missing
/// or do not cover `public_host`. The names are kept beside them to tell.
fn self_signed(
    data_dir: &DataDir,
    public_host: Option<&str>,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = data_dir.self_signed_cert();
    let key_path = data_dir.self_signed_key();
    let names_path = data_dir.self_signed_names();
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    if let Some(host) = public_host.filter(|h| !LOCAL_NAMES.contains(h)) {
        // Telegram checks the host against the certificate's first name, so the public one leads.
        names.insert(0, host.to_owned());
    }
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_path).ok();
    if cert_path.exists() && key_path.exists() && current.as_deref() == Some(wanted.as_str()) {
        return Ok((cert_path, key_path));
    }
    let (cert, key) = generate(&names)
        .map_err(|e| TlsError::Setup(format!("cannot generate a certificate: {e}")))?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(write_error(&key_path))?;
    std::fs::write(&cert_path, cert.pem()).map_err(write_error(&cert_path))?;
    std::fs::write(&names_path, wanted).map_err(write_error(&names_path))?;
    tracing::info!(cert = %cert_path.display(), names = ?names, "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

/// A self-signed certificate for `names`, whose common name is the first of them: Telegram checks
/// the host against the CN or a SAN of an uploaded certificate. The key is ECDSA P-256, which
/// `ring` can generate (it cannot make RSA keys); bring an RSA certificate with `--tls-cert` if a
/// client insists on one.
fn generate(names: &[String]) -> Result<(rcgen::Certificate, rcgen::KeyPair), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, names[0].as_str());
    subject.push(rcgen::DnType::OrganizationName, "relay-server self-signed");
    params.distinguished_name = subject;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
