//! PEM files into the key rustls serves, and what a certificate says about itself: the names it
//! covers, when it expires and its SHA-256 fingerprint. Imports nothing from the crate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why a certificate chain and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PemError {
    /// The certificate PEM holds nothing usable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The key PEM holds nothing usable.
    #[error("private key: {0}")]
    Key(String),
    /// The key is not the certificate's.
    #[error("the private key does not belong to the certificate ({0})")]
    Mismatch(String),
}

/// The chain in `chain_pem` (end entity first) and the key in `key_pem`, checked to fit together.
pub(crate) fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(PemError::Certificate("no PEM certificate in it".into()));
    }
    // Parsed once here, so that a damaged end-entity certificate is refused now and not at the
    // first handshake.
    x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| PemError::Certificate(format!("not a valid X.509 certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PemError::Key(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PemError::Mismatch(e.to_string()),
        e => PemError::Key(e.to_string()),
    })?;
    Ok(Arc::new(certified))
}

/// Reads both files and makes the served key; the error names the file at fault.
pub(crate) fn read_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, super::TlsError> {
    let read = |path: &Path, what| {
        std::fs::read(path).map_err(|e| super::TlsError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })
    };
    let chain_pem = read(cert, "certificate")?;
    let key_pem = read(key, "private key")?;
    certified_key(&chain_pem, &key_pem).map_err(|error| {
        let (what, path) = match error {
            PemError::Certificate(_) => ("certificate", cert),
            PemError::Key(_) | PemError::Mismatch(_) => ("private key", key),
        };
        super::TlsError::File {
            what,
            path: path.to_owned(),
            reason: error.to_string(),
        }
    })
}

/// What the end-entity certificate of a served chain says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// Its DNS names and IP addresses (subject alternative names, else the common name).
    pub names: Vec<String>,
    /// The start of its validity.
    pub not_before: SystemTime,
    /// The end of its validity.
    pub not_after: SystemTime,
    /// SHA-256 of its DER, as agents pin it.
    pub fingerprint: protocol::Pin,
    /// Whether it signed itself (so Telegram must be given it).
    pub self_signed: bool,
}

impl CertInfo {
    /// Reads the end-entity certificate `der`.
    pub(crate) fn of(der: &CertificateDer<'_>) -> Result<Self, PemError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PemError::Certificate(format!("not a valid X.509 certificate: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        if names.is_empty()
            && let Some(cn) = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_owned());
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let seconds = t.timestamp();
            match u64::try_from(seconds) {
                Ok(seconds) => SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
                Err(_) => SystemTime::UNIX_EPOCH,
            }
        };
        Ok(Self {
            names,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            fingerprint: protocol::Pin::of(der),
            self_signed: cert.subject() == cert.issuer(),
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Whether `der` is valid for `host` as a TLS client checks it (webpki's name rules: SANs,
/// wildcards, IP addresses).
pub(crate) fn covers(der: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    match webpki::EndEntityCert::try_from(der) {
        Ok(cert) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
#[path = "pem_tests.rs"]
mod tests;
