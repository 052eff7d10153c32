//! Tests for [`run`]: the reconnect loop against fake relays on 127.0.0.1, over plain TCP and TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use protocol::Secret;
use protocol::close::GOING_AWAY;
use protocol::link::close_message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::*;
use crate::test_relay::{FakeRelay, TEST_DEADLINE};

/// A self-signed certificate for `localhost` and `127.0.0.1` (valid until 2126), as relay-server
/// would make one, and its key. Test material only.
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/relay-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/relay-key.pem");

fn config(relay: &str, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::new(
        relay,
        Secret::new("agent-token"),
        vec![("echo".into(), "http://127.0.0.1:1/".into())],
    )
    .expect("valid config");
    tweak(&mut config);
    config
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr.to_string())
}

fn start(config: Config) -> (JoinHandle<Result<(), AgentError>>, CancellationToken) {
    let shutdown = CancellationToken::new();
    (tokio::spawn(run(config, shutdown.clone())), shutdown)
}

async fn finished(agent: JoinHandle<Result<(), AgentError>>) -> Result<(), AgentError> {
    tokio::time::timeout(TEST_DEADLINE, agent)
        .await
        .expect("agent stops in time")
        .expect("agent does not panic")
}

/// What the relay saw in the upgrade request.
#[derive(Debug, Default)]
struct Upgrade {
    path: String,
    authorization: String,
}

/// Accepts one agent connection, upgrading it, or answering `refuse` if given.
async fn upgrade<S>(stream: S, refuse: Option<u16>) -> Option<(FakeRelay<S>, Upgrade)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = Upgrade::default();
    // The error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        seen.path = request.uri().path().to_owned();
        seen.authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match refuse {
            None => Ok(response),
            Some(status) => {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = http::StatusCode::from_u16(status).expect("status");
                Err(refusal)
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .ok()?;
    Some((FakeRelay { ws }, seen))
}

async fn accept(listener: &TcpListener) -> tokio::net::TcpStream {
    let (stream, _) = tokio::time::timeout(TEST_DEADLINE, listener.accept())
        .await
        .expect("agent dials in time")
        .expect("accept");
    stream
}

fn tls_acceptor() -> TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(CERT)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(KEY).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn the_agent_comes_back_quickly_after_the_relay_restarts() {
    let (listener, addr) = listen().await;
    let (agent, shutdown) = start(config(&format!("ws://{addr}"), |_| {}));

    let (mut relay, seen) = upgrade(accept(&listener).await, None)
        .await
        .expect("upgrade");
    assert_eq!(seen.path, "/agent/v1");
    assert_eq!(seen.authorization, "Bearer agent-token");
    relay.accept().await;
    relay
        .ws
        .send(close_message(GOING_AWAY, "restarting"))
        .await
        .expect("close");
    drop(relay);
    let restarted = Instant::now();

    let (mut relay, _) = upgrade(accept(&listener).await, None)
        .await
        .expect("upgrade");
    relay.accept().await;
    assert!(
        restarted.elapsed() < Duration::from_secs(2),
        "{:?}",
        restarted.elapsed()
    );

    shutdown.cancel();
    assert_eq!(u16::from(relay.recv_close().await.code), GOING_AWAY);
    finished(agent).await.expect("clean shutdown");
}

#[tokio::test]
async fn a_refused_token_and_a_missing_endpoint_are_fatal() {
    for (status, expected) in [(401, "check --token"), (404, "/agent/v1: check --relay")] {
        let (listener, addr) = listen().await;
        let (agent, _shutdown) = start(config(&format!("ws://{addr}"), |_| {}));
        assert!(
            upgrade(accept(&listener).await, Some(status))
                .await
                .is_none()
        );
        let error = finished(agent).await.expect_err("fatal");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[tokio::test]
async fn an_unreachable_relay_fails_after_the_startup_timeout() {
    let (listener, addr) = listen().await;
    drop(listener);
    let started = Instant::now();
    let (agent, _shutdown) = start(config(&format!("ws://{addr}"), |c| {
        c.startup_timeout = Some(Duration::from_secs(1));
    }));
    let error = finished(agent).await.expect_err("gives up");
    assert!(matches!(error, AgentError::Unreachable { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot reach the relay at ws://{addr}: ")),
        "{error}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_the_retries() {
    let (listener, addr) = listen().await;
    let (agent, shutdown) = start(config(&format!("ws://{addr}"), |c| {
        c.startup_timeout = None
    }));
    // A relay that drops every connection: the agent keeps retrying until told to stop.
    for _ in 0..3 {
        drop(accept(&listener).await);
    }
    shutdown.cancel();
    finished(agent).await.expect("clean shutdown");
}

#[tokio::test]
async fn an_untrusted_certificate_is_fatal_and_ca_fixes_it() {
    let acceptor = tls_acceptor();
    let (listener, addr) = listen().await;
    let (agent, _shutdown) = start(config(&format!("wss://{addr}"), |_| {}));
    let refused = tokio::time::timeout(TEST_DEADLINE, acceptor.accept(accept(&listener).await))
        .await
        .expect("handshake ends in time");
    assert!(
        refused.is_err(),
        "the agent must not trust the self-signed certificate"
    );
    let error = finished(agent).await.expect_err("fatal");
    assert!(
        matches!(error, AgentError::UntrustedCertificate { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("pass --ca"), "{error}");

    let (agent, shutdown) = start(config(&format!("wss://{addr}"), |c| {
        c.ca = Some(CERT.into())
    }));
    let tls = tokio::time::timeout(TEST_DEADLINE, acceptor.accept(accept(&listener).await))
        .await
        .expect("handshake ends in time")
        .expect("TLS handshake");
    let (mut relay, _) = upgrade(tls, None).await.expect("upgrade");
    assert_eq!(relay.accept().await.bots, ["echo"]);
    shutdown.cancel();
    finished(agent).await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unusable_ca_file_is_named_in_the_error() {
    let not_pem = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/agent.example.toml"));
    for (ca, expected) in [
        (PathBuf::from("/nonexistent/relay-ca.pem"), "cannot read it"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let config = config("wss://127.0.0.1:1", |c| c.ca = Some(ca.clone()));
        let error = run(config, CancellationToken::new())
            .await
            .expect_err("fatal");
        let text = error.to_string();
        assert!(
            text.contains(&ca.display().to_string()) && text.contains(expected),
            "{text}"
        );
    }
}

#[test]
fn run_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&run(
        config("ws://127.0.0.1:1", |_| {}),
        CancellationToken::new(),
    ));
}
