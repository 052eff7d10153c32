//! The reasons the agent stops for good. Anything else is retried, so each of these needs a human
//! to change something, and its message is one line that says what.

use std::path::PathBuf;

use protocol::Pin;

use crate::config::ConfigError;

/// Why [`crate::run`] gave up. Every variant is fatal: retrying would fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration handed to [`crate::run`] is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The `--ca` file cannot be read or holds no usable certificate.
    #[error("cannot use the CA file {path}: {reason}; check --ca")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The state directory cannot be created, read or written, or another agent holds it.
    #[error("cannot use the state directory {path}: {reason}; check --state-dir")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The TLS library refused its own settings (a build problem, not a user one).
    #[error("cannot set up TLS: {0}")]
    Tls(String),

    /// The relay answered the upgrade with 401.
    #[error(
        "the relay refused the agent token: check --token (or RELAY_AGENT_TOKEN) against the relay's agent token"
    )]
    TokenRejected,

    /// The relay answered the upgrade with 404.
    #[error("the relay has no agent endpoint at {url}: check --relay")]
    NoAgentEndpoint {
        /// The endpoint the agent asked for.
        url: String,
    },

    /// The relay's TLS certificate did not verify.
    #[error(
        "the relay's certificate is not trusted ({reason}): pass --ca with the relay's certificate file (relay-server prints its path) or --pin with its fingerprint, or --join with the line relay-server's banner prints, or use a certificate from a public CA"
    )]
    UntrustedCertificate {
        /// What rustls said about the certificate.
        reason: String,
    },

    /// The relay's certificate is not the one `--pin` (or the join value) names.
    #[error(
        "the relay's certificate is {presented} but --pin expects {expected}; if the relay made a new certificate, copy the new join line from its banner"
    )]
    PinMismatch {
        /// The fingerprint of the certificate the relay presented (fingerprints are public).
        presented: Pin,
        /// The pin the agent was given.
        expected: Pin,
    },

    /// The relay and the agent speak different protocol versions.
    #[error("relay and agent speak different protocol versions: {reason}")]
    VersionMismatch {
        /// Which side to upgrade, as the relay (or the agent, reading the relay's hello) put it.
        reason: String,
    },

    /// The relay does not let this agent serve one of its bots.
    #[error(
        "the relay refused the bots: {reason}; check the --bot names against the relay's configuration"
    )]
    BotNotAllowed {
        /// The relay's reason, usually naming the bot.
        reason: String,
    },

    /// The relay closed the session with another code that means "do not come back as is".
    #[error("the relay refused the agent (close code {code}): {reason}")]
    Refused {
        /// The close code.
        code: u16,
        /// The relay's reason.
        reason: String,
    },

    /// The relay could not be reached within the startup timeout.
    #[error(
        "cannot reach the relay at {url}: {error}; check --relay (or --join) and that relay-server is running"
    )]
    Unreachable {
        /// The relay URL as configured.
        url: String,
        /// The last attempt's error.
        error: String,
    },
}

impl AgentError {
    /// The error for a close frame with a fatal code (see [`protocol::close::is_fatal`]).
    pub(crate) fn from_close(code: u16, reason: String) -> AgentError {
        match code {
            protocol::close::VERSION_MISMATCH => AgentError::VersionMismatch { reason },
            protocol::close::BOT_NOT_ALLOWED => AgentError::BotNotAllowed { reason },
            _ => AgentError::Refused { code, reason },
        }
    }
}
