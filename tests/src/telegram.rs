//! [`FakeTelegram`]: sends webhooks to the relay the way Telegram does: HTTPS (trusting the relay's
//! self-signed certificate, as Telegram does once it is uploaded), `POST`, `Content-Type:
//! application/json` exactly, and the secret header.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::handshake;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::relay::TestRelay;

/// The relay's answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// A webhook sender aimed at one relay.
#[derive(Clone)]
pub struct FakeTelegram {
    addr: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The secret header value sent with every webhook, as set with setWebhook.
    pub secret: Option<String>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeTelegram {
    /// A sender that trusts `relay`'s certificate.
    pub fn new(relay: &TestRelay) -> Self {
        let tls = relay.tls().then(|| {
            let mut roots = RootCertStore::empty();
            let ca = relay
                .ca
                .as_ref()
                .expect("a TLS test relay has a self-signed certificate");
            for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
                roots.add(cert.expect("cert")).expect("add root");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Self {
            addr: relay.addr,
            tls,
            secret: None,
        }
    }

    /// A sender that trusts exactly `cert`, the certificate uploaded with setWebhook, whatever its
    /// name or CA flag: Telegram takes a self-signed certificate made by `openssl req -x509`
    /// (marked CA:TRUE), which webpki would refuse as a root for a server's own certificate.
    /// The handshake signature is still checked.
    pub fn uploaded(relay: &TestRelay, cert: CertificateDer<'static>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(test_support::tls::AnyCertificate::exactly(cert));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self {
            addr: relay.addr,
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
            secret: None,
        }
    }

    /// The same sender, adding `secret` as `X-Telegram-Bot-Api-Secret-Token`.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Sends one update to `path` (such as `/hook/echo`) as Telegram would.
    pub async fn send(&self, path: &str, update: impl Into<Bytes>) -> Reply {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(secret) = &self.secret {
            headers.push(("x-telegram-bot-api-secret-token", secret.clone()));
        }
        self.request(Method::POST, path, &headers, update.into())
            .await
    }

    /// Sends any request to the relay over a new connection.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Reply {
        let mut sender = self.connect().await.expect("connect to relay");
        let request = self.build(method, path, headers, body);
        let response = tokio::time::timeout(crate::DEADLINE, sender.send_request(request))
            .await
            .expect("relay answers in time")
            .expect("relay answers");
        read_reply(response).await.expect("reply body")
    }

    /// One keep-alive connection to the relay, TLS included.
    async fn connect(&self) -> Result<Sender, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            Some(connector) => {
                let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                let (sender, connection) = handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                Ok(sender)
            }
            None => {
                let (sender, connection) = handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                Ok(sender)
            }
        }
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.body(Full::new(body)).expect("request")
    }

    /// A queue that delivers updates to `path` the way Telegram delivers one chat's updates: over a
    /// keep-alive connection, one at a time, each retried until the relay answers 2xx.
    pub fn queue(&self, path: &str) -> TelegramQueue {
        TelegramQueue {
            telegram: self.clone(),
            path: path.to_owned(),
            sender: None,
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn read_reply(response: hyper::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status,
        headers: parts.headers,
        body,
    })
}

/// See [`FakeTelegram::queue`].
pub struct TelegramQueue {
    telegram: FakeTelegram,
    path: String,
    sender: Option<Sender>,
}

impl std::fmt::Debug for TelegramQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramQueue")
            .field("path", &self.path)
            .finish()
    }
}

impl TelegramQueue {
    /// Delivers one update, retrying on any failure (non-2xx, refused or broken connection) with
    /// a short growing pause, as Telegram does (faster, to keep tests short). Returns how many
    /// attempts it took; panics if the relay never takes it within four [`crate::DEADLINE`]s.
    pub async fn deliver(&mut self, update: Bytes) -> u32 {
        let deadline = tokio::time::Instant::now() + crate::DEADLINE * 4;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never accepted an update after {attempts} attempts",
                self.path
            );
            if self
                .try_once(update.clone())
                .await
                .is_some_and(|status| (200..300).contains(&status))
            {
                return attempts;
            }
            let pause = std::time::Duration::from_millis(20u64 << attempts.min(5));
            tokio::time::sleep(pause).await;
        }
    }

    async fn try_once(&mut self, update: Bytes) -> Option<u16> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.telegram.connect().await.ok()?);
        }
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(secret) = &self.telegram.secret {
            headers.push(("x-telegram-bot-api-secret-token", secret.clone()));
        }
        let request = self
            .telegram
            .build(Method::POST, &self.path, &headers, update);
        let sender = self.sender.as_mut()?;
        let sent = tokio::time::timeout(crate::DEADLINE, async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            read_reply(response).await
        })
        .await;
        match sent {
            Ok(Ok(reply)) => Some(reply.status),
            _ => {
                self.sender = None;
                None
            }
        }
    }
}

/// A realistic Telegram update (a text message in a private chat, with ids past 32 bits).
pub fn update_json(update_id: u64, chat_id: i64, text: &str) -> String {
    format!(
        concat!(
            r#"{{"update_id":{update_id},"message":{{"message_id":{message_id},"#,
            r#""from":{{"id":{chat_id},"is_bot":false,"first_name":"Ada","last_name":"Lovelace","username":"ada_l","language_code":"en"}},"#,
            r#""chat":{{"id":{chat_id},"first_name":"Ada","last_name":"Lovelace","username":"ada_l","type":"private"}},"#,
            r#""date":1764028800,"text":"{text}","entities":[]}}}}"#
        ),
        update_id = update_id,
        message_id = update_id % 100_000,
        chat_id = chat_id,
        text = text,
    )
}
