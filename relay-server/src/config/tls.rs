//! How the public port speaks TLS: [`TlsMode`], chosen from the flags and the `[tls]` table, and
//! its checks. Imports nothing from the crate.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::ConfigError;

/// Let's Encrypt's production directory: what `--acme-domain` uses unless told otherwise.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt puts at most 100 names on one certificate.
pub const MAX_ACME_DOMAINS: usize = 100;

/// How the listener speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Serve the given certificate chain and key, read again when the files change or on SIGHUP.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// Serve a certificate generated on first start and kept in the data dir.
    SelfSigned {
        /// The key of a new certificate; `None` keeps the one in the data dir whatever its key,
        /// and makes new ones [`KeyKind::Rsa`].
        key: Option<KeyKind>,
    },
    /// Get a certificate from an ACME CA (Let's Encrypt by default) and renew it.
    Acme(AcmeSettings),
    /// Plain HTTP behind a TLS-terminating proxy.
    Off,
}

impl TlsMode {
    /// The default: a self-signed certificate, RSA when new.
    pub const fn self_signed() -> Self {
        Self::SelfSigned { key: None }
    }
}

/// The key of the self-signed certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// RSA-2048, what Telegram's own guide makes and what every client accepts.
    Rsa,
    /// ECDSA P-256: smaller and faster handshakes.
    Ecdsa,
}

impl KeyKind {
    /// Its name in files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ecdsa => "ecdsa",
        }
    }
}

/// Where and for which names ACME certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate covers; the first is its common name.
    pub domains: Vec<String>,
    /// The account's contact, for the CA's expiry notices.
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// An extra root certificate (PEM) to trust for the CA's own API.
    pub ca: Option<PathBuf>,
    /// Where to answer HTTP-01 challenges (port 80); `None` answers TLS-ALPN-01 on the TLS port.
    pub http_listen: Option<SocketAddr>,
}

/// The `[tls]` table of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// `false` for plain HTTP behind a TLS-terminating proxy; absent means on.
    enabled: Option<bool>,
    self_signed_key: Option<KeyKind>,
    #[serde(default)]
    acme: FileAcme,
}

/// The `[tls.acme]` table of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAcme {
    #[serde(default)]
    domains: Vec<String>,
    email: Option<String>,
    directory: Option<String>,
    ca: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
}

/// The TLS flags, as [`super::Cli`] parsed them.
#[derive(Debug, Default)]
pub(super) struct TlsFlags {
    pub no_tls: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed_key: Option<KeyKind>,
    pub acme_domains: Vec<String>,
    pub acme_email: Option<String>,
    pub acme_directory: Option<String>,
    pub acme_ca: Option<PathBuf>,
    pub acme_http_listen: Option<SocketAddr>,
}

impl TlsFlags {
    /// Lays the flags over the file's table: a flag wins, and `--acme-domain` given on the
    /// command line replaces the file's list.
    pub(super) fn merge(self, file: FileTls) -> Result<TlsMode, ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.into()));
        let domains = if self.acme_domains.is_empty() {
            file.acme.domains
        } else {
            self.acme_domains
        };
        let email = self.acme_email.or(file.acme.email);
        let directory = self.acme_directory.or(file.acme.directory);
        let ca = self.acme_ca.or(file.acme.ca);
        let http_listen = self.acme_http_listen.or(file.acme.http_listen);
        let acme_details = email.is_some() || directory.is_some() || ca.is_some();
        if domains.is_empty() && (acme_details || http_listen.is_some()) {
            return invalid(
                "the ACME settings (email, directory, ca, http_listen) need at least one \
                 --acme-domain (or domains in [tls.acme])",
            );
        }
        let files = (self.cert.or(file.cert), self.key.or(file.key));
        if self.no_tls || file.enabled == Some(false) {
            if !domains.is_empty() {
                return invalid("ACME needs TLS: drop --no-tls (or [tls] enabled = false)");
            }
            return Ok(TlsMode::Off);
        }
        let self_signed_key = self.self_signed_key.or(file.self_signed_key);
        match files {
            (Some(cert), Some(key)) if domains.is_empty() => {
                if self_signed_key.is_some() {
                    return invalid(
                        "self_signed_key applies to the self-signed certificate, not to --tls-cert",
                    );
                }
                Ok(TlsMode::Files { cert, key })
            }
            (Some(_), Some(_)) => invalid(
                "give either certificate files (--tls-cert) or ACME domains (--acme-domain), not both",
            ),
            (None, None) if domains.is_empty() => Ok(TlsMode::SelfSigned {
                key: self_signed_key,
            }),
            (None, None) => Ok(TlsMode::Acme(AcmeSettings {
                domains,
                email,
                directory: directory.unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.into()),
                ca,
                http_listen,
            })),
            _ => invalid("give both a TLS certificate and its key, or neither"),
        }
    }
}

impl AcmeSettings {
    /// Checks the names, the contact and the directory URL.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.domains.len() > MAX_ACME_DOMAINS {
            return invalid(format!(
                "at most {MAX_ACME_DOMAINS} ACME domains fit on one certificate"
            ));
        }
        for domain in &self.domains {
            if domain.parse::<std::net::IpAddr>().is_ok() {
                return invalid(format!(
                    "ACME domain {domain:?} is an IP address: ACME certificates here are for \
                     names; serve an IP with the self-signed certificate (--public-host)"
                ));
            }
            if !is_dns_name(domain) {
                return invalid(format!(
                    "ACME domain {domain:?} is not a DNS name (letters, digits, '-' and dots, \
                     optionally starting with '*.')"
                ));
            }
        }
        let mut sorted: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return invalid("an ACME domain is listed twice".into());
        }
        if let Some(email) = &self.email
            && (!email.contains('@') || email.contains(|c: char| c.is_whitespace() || c == ','))
        {
            return invalid(format!("acme email {email:?} is not one e-mail address"));
        }
        if !self.directory.starts_with("https://") {
            return invalid(format!(
                "acme directory {:?} must be an https:// URL",
                self.directory
            ));
        }
        Ok(())
    }
}

/// A name a CA can issue for: dot-separated labels of letters, digits and inner hyphens, at most
/// 253 characters, with an optional leading `*.` wildcard.
fn is_dns_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253 && bare.contains('.') && bare.split('.').all(label)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
