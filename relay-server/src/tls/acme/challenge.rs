//! The answers to the CA's challenges while an order is open: TLS-ALPN-01 certificates in the
//! relay's [`Certificates`], HTTP-01 key authorizations in [`Tokens`]; each taken down when the
//! order is done with it ([`Answers`] on drop), so no challenge outlives its issuance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::AcmeError;
use crate::tls::certificates::Certificates;

/// A CA validates one order at a time per domain; more open tokens than this is a bug, not load.
const MAX_TOKENS: usize = 100;

/// The HTTP-01 key authorizations the port-80 listener serves, by token.
#[derive(Debug, Default)]
pub(crate) struct Tokens(Mutex<HashMap<String, String>>);

impl Tokens {
    /// The key authorization for `token`, while its challenge is open.
    pub(crate) fn get(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    pub(super) fn insert(&self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let mut tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            return Err(AcmeError::Unexpected(
                "too many open HTTP-01 challenges".into(),
            ));
        }
        tokens.insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    fn remove(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

/// The challenges answered for one order; dropping it takes them all down.
#[derive(Debug)]
pub(crate) struct Answers {
    certificates: Arc<Certificates>,
    tokens: Arc<Tokens>,
    domains: Vec<String>,
    open_tokens: Vec<String>,
}

impl Answers {
    /// No challenge answered yet.
    pub(crate) fn new(certificates: Arc<Certificates>, tokens: Arc<Tokens>) -> Self {
        Self {
            certificates,
            tokens,
            domains: Vec::new(),
            open_tokens: Vec::new(),
        }
    }

    /// Answers TLS-ALPN-01 for `domain`: handshakes offering `acme-tls/1` for it get a
    /// certificate carrying the digest of the key authorization (RFC 8737, section 3).
    pub(crate) fn tls_alpn(&mut self, domain: &str, digest: &[u8]) -> Result<(), AcmeError> {
        let key = tls_alpn_certificate(domain, digest)
            .map_err(|e| AcmeError::Certificate(format!("challenge certificate: {e}")))?;
        self.certificates.set_challenge(domain, key);
        self.domains.push(domain.to_owned());
        Ok(())
    }

    /// Answers HTTP-01: the port-80 listener serves `key_authorization` for `token`.
    pub(crate) fn http(&mut self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        self.tokens.insert(token, key_authorization)?;
        self.open_tokens.push(token.to_owned());
        Ok(())
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        for domain in &self.domains {
            self.certificates.clear_challenge(domain);
        }
        for token in &self.open_tokens {
            self.tokens.remove(token);
        }
    }
}

/// A self-signed certificate for `domain` with the critical `acmeIdentifier` extension.
fn tls_alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its check that key and certificate fit parses the
    // certificate with webpki, which refuses the critical acmeIdentifier extension.
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}
