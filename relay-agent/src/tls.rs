//! The TLS client settings the agent uses for the relay (`wss://`) and the Bot API (`https://`):
//! one place, so both trust the same roots. Imports only [`crate::error`].

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::AgentError;

/// The TLS client settings: ring, TLS 1.2+, the system's roots plus every certificate in `ca`.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping unreadable system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    if let Some(path) = ca {
        let ca_error = |reason: String| AgentError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|error| ca_error(format!("cannot read it ({error})")))?;
        let mut found = 0;
        for cert in certs {
            let cert = cert.map_err(|error| ca_error(format!("not valid PEM ({error})")))?;
            roots
                .add(cert)
                .map_err(|error| ca_error(format!("holds an unusable certificate ({error})")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("holds no PEM certificate".into()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| AgentError::Tls(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
