//! The relay's TLS: a certificate chain from files, or a self-signed certificate generated on first
//! start and kept in the data dir so agents can pin it and Telegram can be given it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsMode;

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
pub struct Tls {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// The PEM file agents pass as `--ca` and operators upload to Telegram, when self-signed.
    pub self_signed_cert: Option<PathBuf>,
}

/// Prepares TLS for `mode`; `None` when TLS is off.
pub fn load(
    mode: &TlsMode,
    data_dir: &Path,
    public_host: Option<&str>,
) -> Result<Option<Tls>, TlsError> {
    let (certs, key, self_signed_cert) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (read_certs(cert)?, read_key(key)?, None),
        TlsMode::SelfSigned => {
            let (cert, key) = self_signed(&data_dir.join("tls"), public_host)?;
            (read_certs(&cert)?, read_key(&key)?, Some(cert))
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

/// Returns the self-signed certificate and key files in `dir`, making them when they are missing
/// or do not cover `public_host`. The names are kept beside them to tell.
fn self_signed(dir: &Path, public_host: Option<&str>) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("self-signed-cert.pem");
    let key_path = dir.join("self-signed-key.pem");
    let names_path = dir.join("self-signed-names");
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
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    crate::files::write_private(&key_path, key.serialize_pem().as_bytes())
        .map_err(write_error(&key_path))?;
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
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_made_once_and_remade_for_a_new_host() {
        let dir = crate::files::tests::temp_dir("tls");
        let first = load(&TlsMode::SelfSigned, &dir, None)
            .expect("tls")
            .expect("on");
        let cert = first.self_signed_cert.expect("self-signed path");
        let pem = std::fs::read(&cert).expect("cert file");
        load(&TlsMode::SelfSigned, &dir, None).expect("tls");
        assert_eq!(
            std::fs::read(&cert).expect("cert file"),
            pem,
            "kept across starts"
        );
        load(&TlsMode::SelfSigned, &dir, Some("relay.example.com")).expect("tls");
        assert_ne!(
            std::fs::read(&cert).expect("cert file"),
            pem,
            "remade for the new name"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_or_empty_files_name_the_file() {
        let dir = crate::files::tests::temp_dir("tls-bad");
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not pem").expect("write");
        let mode = TlsMode::Files {
            cert: cert.clone(),
            key: dir.join("missing-key.pem"),
        };
        let err = load(&mode, &dir, None).expect_err("bad files");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
