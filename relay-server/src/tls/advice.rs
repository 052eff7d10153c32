//! What an operator should know about the public edge: warnings at start (a port Telegram does
//! not send to, a certificate that does not cover the public host) and the `relay-server cert`
//! report. Imports [`super::pem`].

use std::path::PathBuf;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::TlsError;
use super::pem::{self, CertInfo};
use crate::config::{Config, TlsMode};
use crate::data_dir::DataDir;

/// The only ports Telegram sends webhooks to.
pub(crate) const TELEGRAM_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Logs what would make Telegram refuse this edge: a port it does not send to, a certificate
/// that does not cover the public host. `end_entity` is the served certificate.
pub(crate) fn warn_at_start(end_entity: &CertificateDer<'_>, port: u16, public_host: Option<&str>) {
    if !TELEGRAM_PORTS.contains(&port) {
        tracing::warn!(
            port,
            "Telegram sends webhooks only to ports 443, 80, 88 and 8443: listen on one of them \
             (--listen), or forward one of them to this port"
        );
    }
    let Some(host) = public_host else { return };
    if !pem::covers(end_entity, host) {
        let names = CertInfo::of(end_entity)
            .map(|info| info.names)
            .unwrap_or_default();
        tracing::warn!(
            host,
            ?names,
            "the certificate does not cover --public-host: Telegram will refuse the webhook \
             (\"SSL error ... certificate verify failed\" in getWebhookInfo); use a certificate \
             for this name"
        );
    }
}

/// The certificate file `mode` serves, as `relay-server cert` reports it.
fn served_file(config: &Config) -> Result<PathBuf, TlsError> {
    let data_dir = DataDir::new(&config.data_dir);
    let path = match &config.tls {
        TlsMode::Off => {
            return Err(TlsError::Setup(
                "TLS is off (--no-tls): the proxy in front serves the certificate".into(),
            ));
        }
        TlsMode::Files { cert, .. } => cert.clone(),
        TlsMode::SelfSigned { .. } => data_dir.self_signed_cert(),
        TlsMode::Acme(_) => data_dir.acme_cert(),
    };
    if !path.exists() {
        let hint = match config.tls {
            TlsMode::Acme(_) => "ACME has not issued one yet; the relay's log says why",
            _ => "start the relay once to make it",
        };
        return Err(TlsError::File {
            what: "certificate",
            path,
            reason: format!("no such file ({hint})"),
        });
    }
    Ok(path)
}

/// The `relay-server cert` report: the file, its names, validity and fingerprint, and what to do
/// with a self-signed one.
pub(crate) fn report(config: &Config) -> Result<String, TlsError> {
    let path = served_file(config)?;
    let error = |reason: String| TlsError::File {
        what: "certificate",
        path: path.clone(),
        reason,
    };
    let der = CertificateDer::pem_file_iter(&path)
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("no PEM certificate in the file".into()))?
        .map_err(|e| error(e.to_string()))?;
    let info = CertInfo::of(&der).map_err(|e| error(e.to_string()))?;
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let left = info
        .not_after
        .duration_since(SystemTime::now())
        .map(|left| format!("{} days left", left.as_secs() / 86_400))
        .unwrap_or_else(|_| "EXPIRED".into());
    let mut lines = vec![
        format!("file:        {}", path.display()),
        format!("names:       {}", info.names.join(", ")),
        format!(
            "valid:       {} to {} ({left})",
            humantime::format_rfc3339_seconds(info.not_before),
            humantime::format_rfc3339_seconds(info.not_after)
        ),
        format!("fingerprint: {}", info.fingerprint),
    ];
    if info.self_signed {
        lines.push(format!(
            "self-signed: upload the file to Telegram with setWebhook, e.g. curl -F url=https://HOST:PORT/hook/NAME -F certificate=@{} https://api.telegram.org/bot$TOKEN/setWebhook",
            path.display()
        ));
        lines.push(format!(
            "             agents trust it with --pin {} (or the join value)",
            info.fingerprint
        ));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
#[path = "advice_tests.rs"]
mod tests;
