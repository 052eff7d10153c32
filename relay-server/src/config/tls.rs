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
    /// Lays the flags over the file's table. A source of certificates chosen on the command line
    /// (`--tls-cert`, `--acme-domain`, `--self-signed-key`, `--no-tls`) wins over the file's;
    /// within the file, two sources at once are an error rather than one silently ignored.
    pub(super) fn merge(self, file: FileTls) -> Result<TlsMode, ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.into()));
        if self.no_tls {
            return Ok(TlsMode::Off);
        }
        let file_files = match (file.cert, file.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return invalid("give both a TLS certificate and its key, or neither"),
        };
        let file_acme = !file.acme.domains.is_empty();
        let file_details = file.acme.email.is_some()
            || file.acme.directory.is_some()
            || file.acme.ca.is_some()
            || file.acme.http_listen.is_some();
        if file_details && !file_acme && self.acme_domains.is_empty() {
            return invalid(
                "the [tls.acme] settings (email, directory, ca, http_listen) need domains",
            );
        }
        let flag_details = self.acme_email.is_some()
            || self.acme_directory.is_some()
            || self.acme_ca.is_some()
            || self.acme_http_listen.is_some();
        if flag_details && self.acme_domains.is_empty() && !file_acme {
            return invalid("the --acme-* flags need at least one --acme-domain");
        }
        let flag_files = self.cert.zip(self.key);
        let flag_source =
            flag_files.is_some() || !self.acme_domains.is_empty() || self.self_signed_key.is_some();
        if !flag_source {
            let sources = [
                file.enabled == Some(false),
                file_files.is_some(),
                file_acme,
                file.self_signed_key.is_some(),
            ];
            if sources.iter().filter(|set| **set).count() > 1 {
                return invalid(
                    "[tls] sets more than one of: enabled = false, cert and key, [tls.acme] \
                     domains, self_signed_key; keep one",
                );
            }
            if file.enabled == Some(false) {
                return Ok(TlsMode::Off);
            }
        }
        let acme = |domains| {
            Ok(TlsMode::Acme(AcmeSettings {
                domains,
                email: self.acme_email.or(file.acme.email),
                directory: self
                    .acme_directory
                    .or(file.acme.directory)
                    .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.into()),
                ca: self.acme_ca.or(file.acme.ca),
                http_listen: self.acme_http_listen.or(file.acme.http_listen),
            }))
        };
        if let Some((cert, key)) = flag_files {
            Ok(TlsMode::Files { cert, key })
        } else if !self.acme_domains.is_empty() {
            acme(self.acme_domains)
        } else if let Some(key) = self.self_signed_key {
            Ok(TlsMode::SelfSigned { key: Some(key) })
        } else if let Some((cert, key)) = file_files {
            Ok(TlsMode::Files { cert, key })
        } else if file_acme {
            acme(file.acme.domains)
        } else {
            Ok(TlsMode::SelfSigned {
                key: file.self_signed_key,
            })
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
            if domain.starts_with("*.") {
                return invalid(format!(
                    "ACME domain {domain:?} is a wildcard: TLS-ALPN-01 and HTTP-01 cannot \
                     validate one (that takes DNS-01); list each name"
                ));
            }
            if domain.parse::<std::net::IpAddr>().is_ok() {
                return invalid(format!(
                    "ACME domain {domain:?} is an IP address: ACME certificates here are for \
                     names; serve an IP with the self-signed certificate (--public-host)"
                ));
            }
            if !is_dns_name(domain) {
                return invalid(format!(
                    "ACME domain {domain:?} is not a DNS name (letters, digits, '-' and dots)"
                ));
            }
        }
        let mut sorted: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
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

/// A name a CA can issue for: at least two dot-separated labels of letters, digits and inner
/// hyphens, at most 253 characters.
fn is_dns_name(name: &str) -> bool {
    let bare = name;
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
