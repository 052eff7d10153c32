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
use crate::tls::self_signed;

/// Why there is no join value for this configuration.
#[derive(Debug, thiserror::Error)]
pub enum JoinUnavailable {
    /// The relay does not know the name agents reach it at.
    #[error(
        "the relay does not know its public name: give --public-host HOST (or an --acme-domain)"
    )]
    NoHost,
    /// Each agent has its own token in the configuration, and none was named.
    #[error(
        "the configuration gives each agent its own token ([[agents]]): name one with `relay-server join --agent NAME`"
    )]
    PerAgentTokens,
    /// No `[[agents]]` entry has that name.
    #[error("no [[agents]] entry is named {0:?}")]
    UnknownAgent(String),
    /// TLS is off and the relay is not on this machine: the token would cross the network in
    /// clear, and agents should dial the proxy in front instead.
    #[error(
        "TLS is off (--no-tls): agents reach the relay through the TLS proxy in front; run them with --relay wss://PROXY-HOST and RELAY_AGENT_TOKEN"
    )]
    Plaintext,
    /// The self-signed certificate on disk is for other names; the relay makes a new one, with
    /// a new pin, when it next starts.
    #[error(
        "the self-signed certificate in the data dir is not for {0}: start the relay with this public host first (it makes a new certificate, with a new pin)"
    )]
    StaleCertificate(String),
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
/// The host is the advertised one, else the address listened on unless it is a wildcard. The
/// token is `agent`'s (an `[[agents]]` name), else the any-bot token.
pub fn join_value(
    config: &Config,
    listening: SocketAddr,
    agent: Option<&str>,
) -> Result<Join, JoinUnavailable> {
    let ip = listening.ip();
    let host = match config.advertised_host() {
        Some(host) => host.to_owned(),
        None if !ip.is_unspecified() => ip.to_string(),
        None => return Err(JoinUnavailable::NoHost),
    };
    let data_dir = DataDir::new(&config.data_dir);
    let token = token(config, &data_dir, agent)?;
    let scheme = if config.tls == TlsMode::Off {
        if !is_loopback(&host) {
            return Err(JoinUnavailable::Plaintext);
        }
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

/// The token an agent joins with: `agent`'s, the configured any-bot token, or the generated one.
fn token(
    config: &Config,
    data_dir: &DataDir,
    agent: Option<&str>,
) -> Result<Secret, JoinUnavailable> {
    if let Some(name) = agent {
        return config
            .agents
            .iter()
            .find(|grant| grant.name == name)
            .map(|grant| grant.token.clone())
            .ok_or_else(|| JoinUnavailable::UnknownAgent(name.to_owned()));
    }
    match (&config.agent_token, config.agents.is_empty()) {
        (Some(token), _) => Ok(token.clone()),
        (None, false) => Err(JoinUnavailable::PerAgentTokens),
        (None, true) => {
            let path = data_dir.agent_token();
            let text = std::fs::read_to_string(&path).map_err(|e| JoinUnavailable::File {
                path: path.clone(),
                reason: format!("{e} (start the relay once to make it)"),
            })?;
            Ok(Secret::new(text.trim()))
        }
    }
}

/// `localhost` or a loopback address: a plain connection that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The pin of the served certificate when no public CA vouches for it: the self-signed one, or
/// a file that signed itself. ACME certificates are renewed with new keys, so they are trusted
/// through the CA instead.
fn pin(config: &Config, data_dir: &DataDir) -> Result<Option<Pin>, JoinUnavailable> {
    let path = match &config.tls {
        TlsMode::Off | TlsMode::Acme(_) => return Ok(None),
        TlsMode::SelfSigned { .. } => {
            let host = config.public_host.as_deref();
            if !self_signed::is_for(data_dir, host) {
                let host = host.unwrap_or("localhost");
                return Err(JoinUnavailable::StaleCertificate(host.to_owned()));
            }
            data_dir.self_signed_cert()
        }
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
