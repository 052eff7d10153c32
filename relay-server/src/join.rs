//! The join value: the relay URL, the agent token and, for a self-signed certificate, its pin,
//! in the one value an agent takes as `RELAY_JOIN` (format: [`protocol::Join`]). Read from the
//! configuration and the data dir, so `relay-server join` works beside a running relay. Imports
//! [`crate::tls`], [`crate::config`] and [`crate::data_dir`].

use std::net::SocketAddr;
use std::path::PathBuf;

use protocol::{Join, Pin, Secret};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{Config, TlsMode};
use crate::data_dir::DataDir;
use crate::tls::pem::CertInfo;

/// Why there is no join value for this configuration.
#[derive(Debug, thiserror::Error)]
pub enum JoinUnavailable {
    /// The relay does not know the name agents reach it at.
    #[error(
        "the relay does not know its public name: give --public-host HOST (or an --acme-domain)"
    )]
    NoHost,
    /// Each agent has its own token in the configuration.
    #[error(
        "the configuration gives each agent its own token ([[agents]]): run each agent with its token (--relay URL, RELAY_AGENT_TOKEN)"
    )]
    PerAgentTokens,
    /// A file the value needs could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The join value for agents of the relay `config` describes, listening on `listening` (where
/// the configured port was 0, the one bound), whose data dir holds its token and certificate.
/// The host is the advertised one, else the address listened on unless it is a wildcard.
pub fn join_value(config: &Config, listening: SocketAddr) -> Result<Join, JoinUnavailable> {
    let ip = listening.ip();
    let host = match config.advertised_host() {
        Some(host) => host.to_owned(),
        None if !ip.is_unspecified() => ip.to_string(),
        None => return Err(JoinUnavailable::NoHost),
    };
    let data_dir = DataDir::new(&config.data_dir);
    let token = match (&config.agent_token, config.agents.is_empty()) {
        (Some(token), _) => token.clone(),
        (None, false) => return Err(JoinUnavailable::PerAgentTokens),
        (None, true) => {
            let path = data_dir.agent_token();
            let text = std::fs::read_to_string(&path).map_err(|e| JoinUnavailable::File {
                path: path.clone(),
                reason: format!("{e} (start the relay once to make it)"),
            })?;
            Secret::new(text.trim())
        }
    };
    let scheme = if config.tls == TlsMode::Off {
        "ws"
    } else {
        "wss"
    };
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => host,
    };
    Ok(Join {
        relay: format!("{scheme}://{host}:{}", listening.port()),
        token,
        pin: pin(config, &data_dir)?,
    })
}

/// The pin of the served certificate when no public CA vouches for it: the self-signed one, or
/// a file that signed itself. ACME certificates are renewed with new keys, so they are trusted
/// through the CA instead.
fn pin(config: &Config, data_dir: &DataDir) -> Result<Option<Pin>, JoinUnavailable> {
    let path = match &config.tls {
        TlsMode::Off | TlsMode::Acme(_) => return Ok(None),
        TlsMode::SelfSigned { .. } => data_dir.self_signed_cert(),
        TlsMode::Files { cert, .. } => cert.clone(),
    };
    let error = |reason: String| JoinUnavailable::File {
        path: path.clone(),
        reason,
    };
    let der = CertificateDer::pem_file_iter(&path)
        .map_err(|e| error(format!("{e} (start the relay once to make it)")))?
        .next()
        .ok_or_else(|| error("no PEM certificate in it".into()))?
        .map_err(|e| error(e.to_string()))?;
    let info = CertInfo::of(&der).map_err(|e| error(e.to_string()))?;
    Ok(info.self_signed.then_some(info.fingerprint))
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
