//! STAND-IN: the certificate the relay serves, replaceable while it runs, and the TLS-ALPN-01
//! challenge certificates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The served certificate and the challenge ones.
#[derive(Debug)]
pub(crate) struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certificates {
    /// Serves `key` until replaced.
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// New handshakes get `key`.
    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// What new handshakes get.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The TLS-ALPN-01 certificate for `domain`.
    pub(crate) fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_owned(), key);
    }

    /// Forgets the TLS-ALPN-01 certificate for `domain`.
    pub(crate) fn clear_challenge(&self, domain: &str) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(domain);
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?;
            return self
                .challenges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned();
        }
        Some(self.current())
    }
}
