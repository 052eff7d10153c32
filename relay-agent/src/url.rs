//! The three kinds of address the agent uses: the relay's WebSocket URL, a bot's local HTTP URL
//! and the Bot API's base URL, each checked once when parsed and then turned into what the dialer,
//! the forwarder and the reply client need.

use std::fmt;

use http::Uri;
use http::uri::{Authority, PathAndQuery};

use protocol::Secret;

/// An address that does not parse or is not of the kind the agent needs. Each message says what
/// is wrong; the relay's also says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The relay URL does not parse or is not ws/wss.
    #[error("relay URL '{url}' {reason}: pass --relay ws://HOST[:PORT] or wss://HOST[:PORT]")]
    Relay {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bot URL that is not plain HTTP with a host. The message does not name the bot, which
    /// this module does not know: [`crate::ConfigError::BotUrl`] adds it.
    #[error("URL '{url}' {reason}")]
    Bot {
        /// The URL as given.
        url: String,
        /// What is wrong with it and what to use instead.
        reason: &'static str,
    },
    /// A Bot API URL that is not http(s) with a host.
    #[error("--api-url '{url}' {reason}")]
    Api {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The relay's address: `ws://` or `wss://`, a host, an optional port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    given: String,
    tls: bool,
    authority: Authority,
    host: String,
    port: u16,
    /// The given path without its trailing `/`, so that [`protocol::AGENT_PATH`] joins cleanly.
    prefix: String,
    query: Option<String>,
}

impl RelayUrl {
    /// Parses and checks a relay URL.
    pub fn parse(url: &str) -> Result<RelayUrl, UrlError> {
        let invalid = |reason| UrlError::Relay {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| invalid("does not parse"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            Some("https" | "http") => return Err(invalid("uses http(s)")),
            _ => return Err(invalid("does not start with ws:// or wss://")),
        };
        let authority = uri.authority().cloned().ok_or(invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("carries a user name (the token goes in --token)"));
        }
        // IPv6 hosts come bracketed; sockets and TLS want the bare address.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("has no host"));
        }
        if tls && rustls_pki_types::ServerName::try_from(host).is_err() {
            return Err(invalid(
                "has a host that is not a valid DNS name or IP address",
            ));
        }
        Ok(RelayUrl {
            given: url.to_owned(),
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host: host.to_owned(),
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            query: uri.query().map(str::to_owned),
        })
    }

    /// Whether the relay is reached over TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host to connect to, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to, defaulted from the scheme.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the relay's agent endpoint, the target of the WebSocket upgrade.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let query = self
            .query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!(
            "{scheme}://{}{}{}{query}",
            self.authority,
            self.prefix,
            protocol::AGENT_PATH
        )
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

/// A bot's webhook endpoint: plain `http://` to a host on this machine or network. The agent
/// talks to bots without TLS because they sit next to it; the relay side carries the TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotUrl {
    authority: Authority,
    path: String,
    query: Option<String>,
}

impl BotUrl {
    /// Parses and checks a bot URL; the error says what is wrong and what to write instead.
    pub fn parse(url: &str) -> Result<BotUrl, UrlError> {
        BotUrl::check(url).map_err(|reason| UrlError::Bot {
            url: url.to_owned(),
            reason,
        })
    }

    fn check(url: &str) -> Result<BotUrl, &'static str> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "does not parse: write it like http://127.0.0.1:8080/webhook")?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "uses https: the agent talks plain http:// to bots on its own \
                            network, so write http://",
                );
            }
            _ => {
                return Err(
                    "does not start with http://: write it like http://127.0.0.1:8080/webhook",
                );
            }
        }
        let authority = match uri.authority() {
            Some(authority) if !authority.host().is_empty() => authority.clone(),
            _ => return Err("has no host: write it like http://127.0.0.1:8080/webhook"),
        };
        Ok(BotUrl {
            authority,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
        })
    }

    /// The URL for one request: this URL's path with the request's path suffix appended, and the
    /// two queries joined with `&`. An empty suffix leaves the path exactly as configured.
    pub fn join(&self, suffix: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut target = if suffix.is_empty() {
            self.path.clone()
        } else {
            format!("{}{suffix}", self.path.trim_end_matches('/'))
        };
        if target.is_empty() {
            target.push('/');
        }
        let query = [self.query.as_deref(), query]
            .into_iter()
            .flatten()
            .filter(|q| !q.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if !query.is_empty() {
            target = format!("{target}?{query}");
        }
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(target)?)
            .build()
    }
}

impl fmt::Display for BotUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = self
            .query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        write!(f, "http://{}{}{query}", self.authority, self.path)
    }
}

/// The Bot API server the agent calls when it performs a bot's reply to a stored update:
/// `https://api.telegram.org`, or a self-hosted `telegram-bot-api` (which may be plain `http://`
/// on a local network). A path, if any, is kept as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    tls: bool,
    authority: Authority,
    /// The given path without its trailing `/`.
    prefix: String,
}

impl ApiUrl {
    /// Parses and checks a Bot API base URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<ApiUrl, UrlError> {
        ApiUrl::check(url).map_err(|reason| UrlError::Api {
            url: url.to_owned(),
            reason,
        })
    }

    fn check(url: &str) -> Result<ApiUrl, &'static str> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "does not parse: write it like https://api.telegram.org")?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("does not start with https:// or http://"),
        };
        let authority = match uri.authority() {
            Some(authority) if !authority.host().is_empty() => authority.clone(),
            _ => return Err("has no host: write it like https://api.telegram.org"),
        };
        if authority.as_str().contains('@') {
            return Err("carries a user name, which the Bot API does not use");
        }
        if uri.query().is_some() {
            return Err("has a query, which the Bot API does not use");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if tls && rustls_pki_types::ServerName::try_from(host).is_err() {
            return Err("has a host that is not a valid DNS name or IP address");
        }
        Ok(ApiUrl {
            tls,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            authority,
        })
    }

    /// Whether calls go over TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The URL of one Bot API method for one bot: `{base}/bot{token}/{method}`. It holds the
    /// token, so it is never logged; [`ApiUrl::masked`] is the loggable form.
    pub fn method(&self, token: &Secret, method: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(if self.tls { "https" } else { "http" })
            .authority(self.authority.clone())
            .path_and_query(format!("{}/bot{}/{method}", self.prefix, token.expose()))
            .build()
    }

    /// [`ApiUrl::method`] with the token replaced by `***`, for logs.
    pub fn masked(&self, method: &str) -> String {
        format!("{self}/bot***/{method}")
    }
}

impl Default for ApiUrl {
    /// Telegram's public Bot API.
    fn default() -> ApiUrl {
        ApiUrl {
            tls: true,
            authority: Authority::from_static("api.telegram.org"),
            prefix: String::new(),
        }
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.prefix)
    }
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
