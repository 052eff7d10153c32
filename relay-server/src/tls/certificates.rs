//! The certificate new handshakes get, swapped while the relay runs, and the ACME challenge
//! certificates of TLS-ALPN-01. rustls asks [`Certificates`] once per handshake, so a replaced
//! certificate is served from the next handshake on, and connections already open keep theirs.
//! Imports nothing from the crate.

// Until `tls::acme` lands (the next commits), only the tests set challenges.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenge certificates held at once: one per name being validated, and a certificate has at
/// most 100 names.
const MAX_CHALLENGES: usize = 100;

/// The served certificate and the challenge certificates, shared by the relay's one
/// `ServerConfig` and whatever renews them.
pub(crate) struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certificates {
    /// Serves `key` until it is replaced.
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
            challenges: RwLock::new(HashMap::new()),
        }
    }

    /// The chain new handshakes get.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `key` from the next handshake on.
    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// Answers TLS-ALPN-01 for `domain` with `key` until [`Certificates::clear_challenge`];
    /// beyond [`MAX_CHALLENGES`] names the oldest is not kept.
    pub(crate) fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        let mut challenges = self
            .challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if challenges.len() >= MAX_CHALLENGES && !challenges.contains_key(domain) {
            return;
        }
        challenges.insert(domain.to_ascii_lowercase(), key);
    }

    /// Stops answering TLS-ALPN-01 for `domain`.
    pub(crate) fn clear_challenge(&self, domain: &str) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !acme {
            return Some(self.current());
        }
        // A validation handshake offers only acme-tls/1 and must get the challenge certificate
        // for its name or nothing: the served certificate would fail the validation anyway.
        let name = hello.server_name()?.to_ascii_lowercase();
        self.challenges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let challenges = self
            .challenges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Certificates")
            .field("chain_len", &self.current().cert.len())
            .field("challenges", &challenges)
            .finish()
    }
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
