//! What can stop an issuance, and the one thing the operator should check for each: the line a
//! failure logs names it, so "certificate not issued" comes with where to look.

use std::path::PathBuf;

use instant_acme::Problem;

/// The ACME problem types (RFC 8555, section 6.7) the hints tell apart.
const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";

/// The hint for a name that does not resolve to the relay.
const DNS: &str = "DNS: each domain needs an A (or AAAA) record pointing at this relay";

/// How the CA validates that the relay controls a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// TLS-ALPN-01 on the relay's own TLS port.
    TlsAlpn01,
    /// HTTP-01 on the `http_listen` port.
    Http01,
}

/// Why no certificate was issued this time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// The ACME server answered with a problem document.
    #[error("the ACME server refused: {0}")]
    Refused(Problem),
    /// The CA tried to validate `domain` and failed.
    #[error("the CA could not validate {domain}: {problem}")]
    Invalid {
        /// The domain whose challenge failed.
        domain: String,
        /// What the CA said.
        problem: Problem,
    },
    /// The ACME server could not be reached, or its answer could not be read.
    #[error("cannot talk to the ACME server: {0}")]
    Unreachable(String),
    /// The server did something the flow does not expect (no usable challenge, an order stuck).
    #[error("unexpected answer from the ACME server: {0}")]
    Unexpected(String),
    /// The issuance did not finish within its deadline.
    #[error("the issuance did not finish within {0:?}")]
    Timeout(std::time::Duration),
    /// The account or certificate could not be kept in the data dir.
    #[error("cannot keep {path}: {reason}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The issued certificate does not work with its key, or cannot be read.
    #[error("the issued certificate is unusable: {0}")]
    Certificate(String),
}

impl From<instant_acme::Error> for AcmeError {
    fn from(error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) => Self::Refused(problem),
            instant_acme::Error::Timeout(_) => Self::Unexpected("the order stayed pending".into()),
            instant_acme::Error::Other(error) => Self::Unreachable(error.to_string()),
            other => Self::Unexpected(other.to_string()),
        }
    }
}

impl AcmeError {
    /// The ACME problem type without its `urn:ietf:params:acme:error:` prefix, if there is one.
    fn problem_type(&self) -> Option<&str> {
        let problem = match self {
            Self::Refused(problem) | Self::Invalid { problem, .. } => problem,
            _ => return None,
        };
        // A validation failure often says more in its subproblems (one per domain).
        let kind = problem
            .r#type
            .as_deref()
            .filter(|kind| !kind.ends_with(":compound"))
            .or_else(|| problem.subproblems.iter().find_map(|s| s.r#type.as_deref()))?;
        Some(kind.strip_prefix(PROBLEM_PREFIX).unwrap_or(kind))
    }

    /// Whether the CA's own words blame DNS, whatever the problem type: Let's Encrypt says `dns`,
    /// while Pebble refuses a name it cannot resolve as `malformed` ("Could not resolve").
    fn mentions_dns(&self) -> bool {
        let problem = match self {
            Self::Refused(problem) | Self::Invalid { problem, .. } => problem,
            _ => return false,
        };
        let details = problem
            .detail
            .iter()
            .chain(problem.subproblems.iter().filter_map(|s| s.detail.as_ref()));
        details
            .map(|detail| detail.to_ascii_lowercase())
            .any(|detail| {
                detail.contains("resolve")
                    || detail.contains("dns problem")
                    || detail.contains("nxdomain")
            })
    }

    /// What the operator should check, in a few words, for the one line a failure logs.
    pub(crate) fn check(&self, validation: Validation) -> &'static str {
        let port = match validation {
            Validation::TlsAlpn01 => {
                "port: TLS-ALPN-01 needs this relay listening on port 443, reachable from the \
                 internet (firewall, NAT, no other server on 443)"
            }
            Validation::Http01 => {
                "port: HTTP-01 needs acme http_listen on port 80, reachable from the internet \
                 (firewall, NAT, no other server on 80)"
            }
        };
        if self.mentions_dns() {
            return DNS;
        }
        match self.problem_type() {
            Some("dns") => DNS,
            Some("caa") => "DNS: a CAA record of the domain forbids this CA",
            Some("rateLimited") => {
                "rate limit: the CA's limits were hit (Let's Encrypt: 5 failed validations per \
                 domain an hour, 50 certificates per domain a week); the retry waits, and the \
                 staging directory is for experiments"
            }
            Some("rejectedIdentifier" | "malformed") => {
                "domain: the CA will not issue for this name (it must be a public DNS name)"
            }
            Some("connection" | "tls" | "incorrectResponse" | "unauthorized") => match self {
                // At validation these mean the CA reached something other than this relay.
                Self::Invalid { .. } => port,
                _ => {
                    "account: the CA refused this relay's account (acme/account.json in the data dir)"
                }
            },
            Some("externalAccountRequired") => {
                "account: this CA wants an external account binding, which the relay does not do"
            }
            Some("badNonce" | "serverInternal") => "the CA: a passing problem on its side",
            Some(_) => {
                "DNS and port: the domain must resolve to this relay, and the CA must reach it"
            }
            None => match self {
                Self::Unreachable(_) => {
                    "the ACME directory URL, this relay's outbound HTTPS, and acme ca for a \
                     private CA"
                }
                Self::Storage { .. } => "the data dir: its owner, permissions and free space",
                Self::Timeout(_) => "the CA: it is slow to validate or issue",
                Self::Certificate(_) | Self::Unexpected(_) => "the CA: it answered out of order",
                Self::Refused(_) | Self::Invalid { .. } => port,
            },
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
