//! What ACME keeps in the data dir: the account's credentials (`acme/account.json`, 0600), the
//! issued chain (`acme/cert.pem`) and its key (`acme/key.pem`, 0600). Each file is written
//! beside itself and renamed into place, so a crash leaves the old file or the new, never half.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;
use rustls::sign::CertifiedKey;

use super::error::AcmeError;
use crate::data_dir::{DataDir, write_private};
use crate::tls::pem;

/// The part of a certificate's lifetime left when it is renewed: a third, as certbot and Caddy
/// do (30 of Let's Encrypt's 90 days), so failing renewals have weeks of retries before expiry.
const RENEW_WITH_LEFT: u32 = 3;

/// A certificate the relay may serve, and when to renew it.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The chain and key, for the resolver.
    pub(crate) key: Arc<CertifiedKey>,
    /// The end of its validity.
    pub(crate) not_after: SystemTime,
    /// When to start renewing it.
    pub(crate) renew_at: SystemTime,
}

impl Issued {
    /// Checks `chain_pem` and `key_pem` and reads the leaf's validity; `None` when the leaf does
    /// not cover every one of `domains`.
    pub(crate) fn parse(
        chain_pem: &[u8],
        key_pem: &[u8],
        domains: &[String],
    ) -> Result<Option<Self>, AcmeError> {
        let key = pem::certified_key(chain_pem, key_pem)
            .map_err(|e| AcmeError::Certificate(e.to_string()))?;
        let leaf = key
            .cert
            .first()
            .ok_or_else(|| AcmeError::Certificate("an empty chain".into()))?;
        if !domains.iter().all(|domain| pem::covers(leaf, domain)) {
            return Ok(None);
        }
        let info = pem::CertInfo::of(leaf).map_err(|e| AcmeError::Certificate(e.to_string()))?;
        let (not_before, not_after) = (info.not_before, info.not_after);
        Ok(Some(Self {
            key,
            not_after,
            renew_at: renew_at(not_before, not_after),
        }))
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed.
pub(crate) fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_after - lifetime / RENEW_WITH_LEFT
}

/// The certificate kept from an earlier issuance, when there is one that covers `domains`.
pub(crate) fn load_certificate(
    data_dir: &DataDir,
    domains: &[String],
) -> Result<Option<Issued>, AcmeError> {
    let (cert_path, key_path) = (data_dir.acme_cert(), data_dir.acme_key());
    let chain = match std::fs::read(&cert_path) {
        Ok(chain) => chain,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(storage(&cert_path)(e)),
    };
    let key = std::fs::read(&key_path).map_err(storage(&key_path))?;
    Issued::parse(&chain, &key, domains)
}

/// Keeps a new chain and key, the key first: a crash between the two renames leaves a key that
/// does not fit the chain, which the next start refuses and issues anew.
pub(crate) fn save_certificate(
    data_dir: &DataDir,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(), AcmeError> {
    replace(&data_dir.acme_key(), key_pem.as_bytes())?;
    replace(&data_dir.acme_cert(), chain_pem.as_bytes())
}

/// The account kept for `directory`, if any: credentials made on another directory (staging
/// before production) do not count.
pub(crate) fn load_account(
    data_dir: &DataDir,
    directory: &str,
) -> Result<Option<AccountCredentials>, AcmeError> {
    let path = data_dir.acme_account();
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(storage(&path)(e)),
    };
    let unreadable = |e: serde_json::Error| AcmeError::Storage {
        path: path.clone(),
        reason: format!("not an account file ({e}); remove it to make a new account"),
    };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(unreadable)?;
    if value.get("directory").and_then(|d| d.as_str()) != Some(directory) {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(unreadable)
}

/// Keeps the account's credentials (they hold its private key: 0600).
pub(crate) fn save_account(
    data_dir: &DataDir,
    credentials: &AccountCredentials,
) -> Result<(), AcmeError> {
    let path = data_dir.acme_account();
    let text = serde_json::to_vec(credentials).map_err(|e| AcmeError::Storage {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    replace(&path, &text)
}

/// Writes `contents` (0600) beside `path` and renames it into place.
fn replace(path: &Path, contents: &[u8]) -> Result<(), AcmeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(storage(dir))?;
    }
    let mut new = path.as_os_str().to_owned();
    new.push(".new");
    let new = PathBuf::from(new);
    write_private(&new, contents).map_err(storage(&new))?;
    std::fs::rename(&new, path).map_err(storage(path))
}

fn storage(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError {
    let path = path.to_owned();
    move |e| AcmeError::Storage {
        path,
        reason: e.to_string(),
    }
}

#[cfg(test)]
#[path = "stored_tests.rs"]
mod tests;
