//! [`FakeTelegram`]: sends webhooks to the relay the way Telegram does: HTTPS (trusting the relay's
//! self-signed certificate, as Telegram does once it is uploaded), `POST`, `Content-Type:
//! application/json` exactly, and the secret header.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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
        let tcp = TcpStream::connect(self.addr)
            .await
            .expect("connect to relay");
        tcp.set_nodelay(true).expect("nodelay");
        match &self.tls {
            Some(connector) => {
                let name = ServerName::try_from("localhost").expect("name");
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .expect("tls handshake with relay");
                exchange(TokioIo::new(stream), self.addr, method, path, headers, body).await
            }
            None => exchange(TokioIo::new(tcp), self.addr, method, path, headers, body).await,
        }
    }
}

async fn exchange<Io>(
    io: Io,
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Reply
where
    Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = tokio::time::timeout(crate::DEADLINE, sender.send_request(request))
        .await
        .expect("relay answers in time")
        .expect("relay answers");
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers: parts.headers,
        body,
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
