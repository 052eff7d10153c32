//! ACME: the relay gets its certificate from an ACME CA (Let's Encrypt by default) by itself,
//! and renews it in the background at a third of its lifetime left. Until a certificate is
//! issued the relay serves what it has: the one kept from the last issuance, or the temporary
//! self-signed one on first start; a failed issuance is retried with a growing wait and logged
//! in one line that says what to check. New handshakes get the new certificate; open
//! connections keep theirs.
//!
//! Imports [`super::certificates`], [`super::pem`] and the parent's [`Tls`] and [`TlsError`], `crate::config`, `crate::data_dir` and
//! `crate::response`; only [`crate::Relay`] uses it, through [`prepare`] and [`Prepared::spawn`].
//!
//! In the order of an issuance; each module imports only modules listed below it.
//! - [`order`]: one issuance, from the account to the chain kept in the data dir.
//! - [`http01`]: the port-80 listener: HTTP-01 answers, and redirects to HTTPS.
//! - [`challenge`]: the open challenges' answers, taken down with their order.
//! - [`client`]: the HTTPS client the ACME API is reached through.
//! - [`stored`]: the account, certificate and key files, and when to renew.
//! - [`error`]: why an issuance failed, and what to check.

mod challenge;
mod client;
mod error;
mod http01;
mod order;
mod stored;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Source, Tls, TlsError};
use crate::config::AcmeSettings;
use crate::data_dir::DataDir;
use crate::tls::certificates::Certificates;
use challenge::Tokens;
use order::Issuer;

/// The wait after the first failed issuance, doubling after each further one. Let's Encrypt
/// allows 5 failed validations per domain and account an hour: with 2, 4, 8, 16 minutes a
/// broken setup makes 5 attempts in the first half hour and then one an hour, under that limit.
const FIRST_RETRY: Duration = Duration::from_secs(2 * 60);
/// The longest wait between attempts: a fixed DNS record or firewall is picked up within the
/// hour, and a failing setup costs the CA one request an hour.
const MAX_RETRY: Duration = Duration::from_secs(60 * 60);
/// The longest single sleep while waiting for the next issuance.
const RECHECK: Duration = Duration::from_secs(60 * 60);
/// One issuance from account to kept chain: the CA's validation and signing (each polled for at
/// most two minutes) and a few requests of at most 30 s each.
const ISSUE_DEADLINE: Duration = Duration::from_secs(6 * 60);

/// ACME made ready at start: the settings, and the HTTP-01 socket already bound, so a port that
/// is taken (or privileged) fails the start instead of a background task.
#[derive(Debug)]
pub(crate) struct Prepared {
    settings: AcmeSettings,
    data_dir: DataDir,
    http: Option<std::net::TcpListener>,
}

/// ACME for `tls`, when its certificate comes from an ACME CA.
pub(crate) fn prepare(tls: Option<&Tls>, data_dir: &DataDir) -> Result<Option<Prepared>, TlsError> {
    let Some(Source::Acme(settings)) = tls.map(|tls| &tls.source) else {
        return Ok(None);
    };
    let http = match settings.http_listen {
        None => None,
        Some(address) => {
            let bind = || {
                let listener = std::net::TcpListener::bind(address)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            };
            Some(bind().map_err(|source| TlsError::Listen { address, source })?)
        }
    };
    Ok(Some(Prepared {
        settings: settings.clone(),
        data_dir: data_dir.clone(),
        http,
    }))
}

impl Prepared {
    /// Serves the certificate kept from an earlier issuance when it still covers the domains (at
    /// once, before this returns), then issues and renews in the background until `shutdown`.
    /// Redirects of the HTTP-01 listener go to `https_port`; its clients get `header_timeout`.
    pub(crate) fn spawn(
        self,
        certificates: Arc<Certificates>,
        https_port: u16,
        header_timeout: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let tokens = Arc::new(Tokens::default());
        match self.http.map(TcpListener::from_std) {
            None => {}
            Some(Ok(listener)) => {
                let http01 = http01::Http01 {
                    tokens: tokens.clone(),
                    https_port,
                    header_timeout,
                };
                tokio::spawn(http01::serve(listener, http01, shutdown.clone()));
            }
            Some(Err(error)) => tracing::error!(%error, "acme http-01 listener unusable"),
        }
        let domains = &self.settings.domains;
        let first = match stored::load_certificate(&self.data_dir, domains) {
            Ok(Some(kept)) => {
                certificates.replace(kept.key);
                tracing::info!(
                    ?domains,
                    not_after = %humantime::format_rfc3339_seconds(kept.not_after),
                    "serving the certificate kept from the last acme issuance"
                );
                kept.renew_at
            }
            Ok(None) => SystemTime::now(),
            Err(error) => {
                tracing::warn!(%error, "cannot use the kept acme certificate; issuing a new one");
                SystemTime::now()
            }
        };
        let issuer = Issuer {
            settings: self.settings,
            data_dir: self.data_dir,
            certificates,
            tokens,
        };
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = keep_renewed(issuer, first) => {}
            }
        })
    }
}

/// Issues at `next`, and again at each certificate's renewal time, forever.
async fn keep_renewed(issuer: Issuer, mut next: SystemTime) {
    let domains = issuer.settings.domains.clone();
    let mut retry = Backoff::default();
    loop {
        // Weeks of waiting in steps of at most an hour, each measured on the wall clock, so that
        // a suspended machine or a clock set forward cannot carry the renewal past its time.
        while let Ok(wait) = next.duration_since(SystemTime::now())
            && !wait.is_zero()
        {
            tokio::time::sleep(wait.min(RECHECK)).await;
        }
        let issued = match tokio::time::timeout(ISSUE_DEADLINE, issuer.issue()).await {
            Ok(issued) => issued,
            Err(_) => Err(error::AcmeError::Timeout(ISSUE_DEADLINE)),
        };
        match issued {
            Ok(issued) => {
                issuer.certificates.replace(issued.key);
                retry = Backoff::default();
                next = issued.renew_at;
                tracing::info!(
                    ?domains,
                    not_after = %humantime::format_rfc3339_seconds(issued.not_after),
                    renew_at = %humantime::format_rfc3339_seconds(next),
                    "acme certificate issued and served"
                );
            }
            Err(error) => {
                let wait = retry.next();
                next = SystemTime::now() + wait;
                tracing::warn!(
                    ?domains,
                    %error,
                    check = error.check(issuer.validation()),
                    retry_in = ?wait,
                    "acme certificate not issued; the current one keeps serving"
                );
            }
        }
    }
}

/// The waits between failed issuances: [`FIRST_RETRY`], doubling to [`MAX_RETRY`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_RETRY }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        wait
    }
}

#[cfg(test)]
#[path = "acme_tests.rs"]
mod tests;
