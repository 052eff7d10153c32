//! The relay's certificate as an operator lives with it: files renewed in place (certbot) are
//! served without a restart while open connections carry on, and the join value the relay
//! prints for its own self-signed certificate is all an agent needs.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use e2e::{Answer, FakeTelegram, TestAgent, TestBot, TestRelay, update_json};
use relay_server::TlsMode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// Writes a new self-signed ECDSA pair for localhost to `cert` and `key` (the key first, as
/// certbot does) and returns the certificate.
fn write_pair(cert: &Path, key: &Path) -> CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("made");
    std::fs::write(key, made.signing_key.serialize_pem()).expect("write key");
    std::fs::write(cert, made.cert.pem()).expect("write cert");
    made.cert.der().clone()
}

/// One `GET /healthz` on an open connection; the answer's body.
async fn health(tls: &mut TlsStream<tokio::net::TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok\n") {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection closed");
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(e2e::DEADLINE, read)
        .await
        .expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_files_are_served_to_new_connections_while_open_ones_carry_on() {
    let dir = e2e::temp_dir("renewed-files");
    let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    let first = write_pair(&cert, &key);
    let mut config = TestRelay::config();
    config.tls = TlsMode::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    let relay = TestRelay::start_with(config);
    let served = test_support::tls::served_chain(relay.addr, "localhost")
        .await
        .expect("handshake");
    assert_eq!(served[0], first);

    let tcp = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("tcp");
    let connector =
        tokio_rustls::TlsConnector::from(test_support::tls::any_certificate_client(b"http/1.1"));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut open = connector.connect(name, tcp).await.expect("handshake");
    assert!(health(&mut open).await.starts_with("HTTP/1.1 200"));

    let second = write_pair(&cert, &key);
    let deadline = tokio::time::Instant::now() + e2e::DEADLINE;
    loop {
        let served = test_support::tls::served_chain(relay.addr, "localhost")
            .await
            .expect("handshake");
        if served[0] == second {
            break;
        }
        assert_eq!(served[0], first, "only the old or the new certificate");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was not served within {:?}",
            e2e::DEADLINE
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection opened before the renewal is the same connection, still serving.
    assert!(health(&mut open).await.starts_with("HTTP/1.1 200"));
    let (_, session) = open.get_ref();
    assert_eq!(session.peer_certificates().expect("chain")[0], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_value_the_relay_makes_is_all_an_agent_needs() {
    let relay = TestRelay::start();
    let bot = TestBot::start(|request| async move {
        Answer::with_body(200, "application/json", request.body)
    })
    .await;
    let join = relay_server::join::join_value(&relay.config, relay.addr)
        .expect("a join value")
        .encode();
    let state_dir = e2e::temp_dir("join-agent");
    let bot_flag = format!("echo={}", bot.url("/"));
    let cli = relay_agent::Cli::try_parse_from([
        "relay-agent",
        "--join",
        &join,
        "--bot",
        &bot_flag,
        "--state-dir",
        state_dir.to_str().expect("utf-8"),
    ])
    .expect("flags parse");
    let config = relay_agent::Config::from_cli(cli).expect("a join value is enough");
    assert!(config.ca.is_none(), "no certificate file was copied");
    let mut agent = TestAgent::start(config);
    tokio::select! {
        () = relay.wait_for_bot("echo") => {}
        ended = agent.exited() => panic!("the agent stopped: {ended:?}"),
    }
    let cert = relay.ca.as_ref().expect("self-signed");
    let der = CertificateDer::pem_file_iter(cert)
        .expect("pem")
        .next()
        .expect("one")
        .expect("valid");
    let telegram = FakeTelegram::uploaded(&relay, der);
    let update = update_json(7, 7_000_000_007, "joined");
    let reply = telegram.send("/hook/echo", update.clone()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(&reply.body[..], update.as_bytes());
}
