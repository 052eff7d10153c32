//! Dialing the relay: TCP, TLS for `wss://`, and the WebSocket upgrade carrying the bearer token,
//! all under one deadline. Also decides which dial failures are worth retrying.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use protocol::Secret;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};
use tokio_util::either::Either;

use protocol::Tracked;

use crate::config::{Config, ConfigError};
use crate::error::AgentError;
use crate::text::seconds;
use crate::tls::{self, PinMismatch};
use crate::url::{RelayUrl, UrlError};

/// Bytes read from the relay's socket at a time. tungstenite zero-fills its whole read buffer
/// before every read, which at its default of 128 KiB was a visible memset per request in
/// profiles; 16 KiB still takes a dozen requests per read, and larger messages grow the buffer.
const READ_BUFFER: usize = 16 * 1024;

/// How long one dial (TCP connect, TLS handshake, WebSocket upgrade) may take. A relay that has
/// not answered in 10 s is down or unreachable; trying again soon beats waiting longer.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The byte stream under the WebSocket: plain TCP for `ws://`, TLS for `wss://`.
pub(crate) type RelayStream = Either<TcpStream, TlsStream<TcpStream>>;

/// A connected, upgraded socket to the relay, over a connection that notes its progress (see
/// [`protocol::Progress`]).
pub(crate) type RelaySocket = WebSocketStream<Tracked<RelayStream>>;

/// Why a dial failed.
#[derive(Debug)]
pub(crate) enum DialError {
    /// Trying again cannot help (wrong token, wrong URL, untrusted certificate).
    Fatal(AgentError),
    /// The relay is down, unreachable or slow; try again later. Holds a one-line description.
    Retry(String),
}

/// Dials the relay. Built once, so the TLS roots are read once.
#[derive(Debug)]
pub(crate) struct Dialer {
    relay: RelayUrl,
    token: Secret,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dialer {
    /// A dialer for `config`'s relay; reads the system roots and `--ca`, and takes `--pin`, when the
    /// relay is `wss://`.
    pub(crate) fn new(config: &Config) -> Result<Dialer, AgentError> {
        let tls = if config.relay.is_tls() {
            Some(tls::relay_config(config.ca.as_deref(), config.pin)?)
        } else {
            if let Some(ca) = &config.ca {
                tracing::warn!(ca = %ca.display(), "--ca is ignored: the relay URL is ws://, not wss://");
            }
            if let Some(pin) = &config.pin {
                tracing::warn!(%pin, "--pin is ignored: the relay URL is ws://, not wss://");
            }
            None
        };
        Ok(Dialer {
            relay: config.relay.clone(),
            token: config.token.clone(),
            tls,
        })
    }

    /// Connects, upgrades and authenticates, within [`CONNECT_TIMEOUT`].
    pub(crate) async fn dial(&self) -> Result<RelaySocket, DialError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.dial_untimed()).await {
            Ok(dialed) => dialed,
            Err(_) => Err(DialError::Retry(format!(
                "no answer within {}",
                seconds(CONNECT_TIMEOUT)
            ))),
        }
    }

    async fn dial_untimed(&self) -> Result<RelaySocket, DialError> {
        let tcp = TcpStream::connect((self.relay.host(), self.relay.port()))
            .await
            .map_err(|error| DialError::Retry(error.to_string()))?;
        // Frames are whole messages written in batches; Nagle would only delay small ones.
        tcp.set_nodelay(true)
            .map_err(|error| DialError::Retry(error.to_string()))?;
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some(tls) => {
                let name = ServerName::try_from(self.relay.host().to_owned()).map_err(|_| {
                    DialError::Retry(format!("'{}' is not a valid TLS name", self.relay.host()))
                })?;
                let connector = TlsConnector::from(tls.clone());
                let tls = connector.connect(name, tcp).await.map_err(|error| {
                    untrusted(&error).map_or_else(
                        || DialError::Retry(format!("TLS handshake failed: {error}")),
                        DialError::Fatal,
                    )
                })?;
                Either::Right(tls)
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(protocol::MAX_FRAME_LEN))
            .max_frame_size(Some(protocol::MAX_FRAME_LEN))
            .read_buffer_size(READ_BUFFER);
        let request = self.request().map_err(DialError::Fatal)?;
        let (socket, _) = tokio_tungstenite::client_async_with_config(
            request,
            Tracked::new(stream),
            Some(config),
        )
        .await
        .map_err(|error| self.upgrade_error(error))?;
        Ok(socket)
    }

    /// The upgrade request: the agent endpoint and the bearer token (marked sensitive, so that
    /// http's own `Debug` hides it too).
    fn request(&self) -> Result<tungstenite::handshake::client::Request, AgentError> {
        let endpoint = self.relay.endpoint();
        let mut request = endpoint.as_str().into_client_request().map_err(|_| {
            ConfigError::from(UrlError::Relay {
                url: self.relay.to_string(),
                reason: "cannot be turned into a WebSocket request",
            })
        })?;
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", self.token.expose()))
            .map_err(|_| ConfigError::Token("is not a valid HTTP header value"))?;
        bearer.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, bearer);
        Ok(request)
    }

    fn upgrade_error(&self, error: tungstenite::Error) -> DialError {
        match error {
            tungstenite::Error::Http(response) => match response.status().as_u16() {
                401 => DialError::Fatal(AgentError::TokenRejected),
                404 => DialError::Fatal(AgentError::NoAgentEndpoint {
                    url: self.relay.endpoint(),
                }),
                // The relay's session cap for the token, or its throttle after wrong tokens.
                429 => DialError::Retry(
                    "relay refused the session with HTTP 429: this token has as many sessions as \
                     it may open (max_sessions_per_token), or this address sent too many wrong \
                     tokens within a minute"
                        .into(),
                ),
                status => DialError::Retry(format!(
                    "relay answered HTTP {status} to the WebSocket upgrade"
                )),
            },
            tungstenite::Error::Io(error) => untrusted(&error).map_or_else(
                || DialError::Retry(format!("WebSocket upgrade failed: {error}")),
                DialError::Fatal,
            ),
            error => DialError::Retry(format!("WebSocket upgrade failed: {error}")),
        }
    }
}

/// The fatal error for an I/O error that carries a rustls certificate verdict.
fn untrusted(error: &std::io::Error) -> Option<AgentError> {
    let rustls::Error::InvalidCertificate(reason) =
        error.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    if let rustls::CertificateError::Other(other) = reason
        && let Some(mismatch) = other.0.downcast_ref::<PinMismatch>()
    {
        return Some(AgentError::PinMismatch {
            presented: mismatch.presented,
            expected: mismatch.expected,
        });
    }
    Some(AgentError::UntrustedCertificate {
        reason: reason.to_string(),
    })
}
