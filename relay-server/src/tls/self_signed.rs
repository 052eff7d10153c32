//! The relay's own certificate, made as Telegram's guide makes one (`openssl req -newkey
//! rsa:2048 -x509 ... -subj /CN=HOST`): RSA-2048 by default, ECDSA P-256 on request, for a
//! domain or an IP address, kept in the data dir so agents can pin it and Telegram can be given
//! it. Imports [`super::pem`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::SignatureAlgorithm;
use rustls::sign::CertifiedKey;

use super::TlsError;
use super::pem::{self, CertInfo};
use crate::config::KeyKind;
use crate::data_dir::{DataDir, write_private};

/// Names every self-signed certificate carries, so local agents and tests can verify it.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long a new self-signed certificate is valid. Nothing renews it and an expired one breaks
/// every webhook at once, so it outlives the machine; it is remade when under
/// [`RENEW_WITHIN`] remain.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// A kept certificate closer than this to its end is remade at start.
const RENEW_WITHIN: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Telegram's guide uses RSA-2048: large enough, and what every client accepts.
const RSA_BITS: usize = 2048;

/// The self-signed certificate the relay serves, and its public file.
#[derive(Debug)]
pub(crate) struct SelfSigned {
    /// The chain (one certificate) and key.
    pub key: Arc<CertifiedKey>,
    /// The PEM file agents pass as `--ca` and operators upload to Telegram.
    pub cert_file: PathBuf,
}

/// Returns the certificate in the data dir, making it when it is missing, damaged, about to
/// expire, does not cover `public_host`, or has another key than `wanted` asks for.
pub(crate) fn ensure(
    data_dir: &DataDir,
    public_host: Option<&str>,
    wanted: Option<KeyKind>,
) -> Result<SelfSigned, TlsError> {
    let cert_file = data_dir.self_signed_cert();
    let key_file = data_dir.self_signed_key();
    let names_file = data_dir.self_signed_names();
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    if let Some(host) = public_host.filter(|h| !LOCAL_NAMES.contains(h)) {
        // Telegram checks the host against the certificate's first name, so the public one leads.
        names.insert(0, host.to_owned());
    }
    let wanted_names = names.join("\n");
    let kept_names = std::fs::read_to_string(&names_file).ok();
    if kept_names.as_deref() == Some(wanted_names.as_str())
        && let Ok(key) = pem::read_pair(&cert_file, &key_file)
    {
        match reason_to_remake(&key, wanted) {
            None => return Ok(SelfSigned { key, cert_file }),
            Some(reason) => tracing::info!(reason, "making a new self-signed certificate"),
        }
    }
    let kind = wanted.unwrap_or(KeyKind::Rsa);
    let (cert_pem, key_pem) = generate(&names, kind)
        .map_err(|e| TlsError::Setup(format!("cannot generate a certificate: {e}")))?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    if let Some(dir) = cert_file.parent() {
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    write_private(&key_file, key_pem.as_bytes()).map_err(write_error(&key_file))?;
    std::fs::write(&cert_file, &cert_pem).map_err(write_error(&cert_file))?;
    std::fs::write(&names_file, wanted_names).map_err(write_error(&names_file))?;
    let key = pem::certified_key(cert_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| TlsError::Setup(format!("the new certificate cannot be served: {e}")))?;
    tracing::info!(
        cert = %cert_file.display(),
        names = ?names,
        key = kind.name(),
        "generated a self-signed certificate"
    );
    Ok(SelfSigned { key, cert_file })
}

/// Why a kept certificate should not be served again, if it should not.
fn reason_to_remake(key: &CertifiedKey, wanted: Option<KeyKind>) -> Option<&'static str> {
    let kind = match key.key.algorithm() {
        SignatureAlgorithm::RSA => KeyKind::Rsa,
        _ => KeyKind::Ecdsa,
    };
    if wanted.is_some_and(|wanted| wanted != kind) {
        return Some("the kept one has another kind of key than self_signed_key asks for");
    }
    let info = key.cert.first().map(CertInfo::of)?.ok()?;
    if info.not_after < SystemTime::now() + RENEW_WITHIN {
        return Some("the kept one expires within 30 days");
    }
    None
}

/// A certificate for `names` whose common name is the first of them (Telegram checks the host
/// against the CN or a SAN of an uploaded certificate), as PEM, with its key as PEM.
pub(crate) fn generate(names: &[String], kind: KeyKind) -> Result<(String, String), String> {
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    let mut subject = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        subject.push(rcgen::DnType::CommonName, first.as_str());
    }
    subject.push(rcgen::DnType::OrganizationName, "relay-server self-signed");
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::from(SystemTime::now());
    // A day back, so a client whose clock is a little behind does not see it as not yet valid.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + VALIDITY;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = match kind {
        KeyKind::Ecdsa => rcgen::KeyPair::generate().map_err(|e| e.to_string())?,
        KeyKind::Rsa => rsa_key()?,
    };
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// An RSA key: `ring`, which signs with it, cannot make one, so the RustCrypto `rsa` crate makes
/// it (constant-time since 0.10) and `ring` takes it over as PKCS#8.
fn rsa_key() -> Result<rcgen::KeyPair, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
        .map_err(|e| format!("RSA key generation failed: {e}"))?;
    let der = private
        .to_pkcs8_der()
        .map_err(|e| format!("RSA key encoding failed: {e}"))?;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "self_signed_tests.rs"]
mod tests;
