//! ACME against a real ACME server: Debian's Pebble validates TLS-ALPN-01 and HTTP-01 against
//! the relay's own sockets, issues short-lived certificates for the renewal test, and refuses
//! a domain its DNS does not know. Pebble must be installed (`.ci/run` installs it); without it
//! these tests fail rather than skip.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, Once};
use std::time::Duration;

use bytes::Bytes;
use e2e::{Pebble, PebbleOptions, TestRelay};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use relay_server::config::AcmeSettings;
use relay_server::data_dir::DataDir;
use relay_server::{Config, TlsMode};
use test_support::tls::{self, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an issuance may take here: Pebble answers in milliseconds, validation included.
const ISSUE_DEADLINE: Duration = Duration::from_secs(30);

/// Everything the relays in this test binary log, to find the line a failure writes.
static LOGS: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        eprint!("{text}");
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&text);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("info,relay_server=debug")
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// The lines logged so far that contain every one of `parts`.
fn logged(parts: &[&str]) -> Vec<String> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .map(String::from)
        .collect()
}

/// A test relay that gets its certificate for `domain` from `pebble`.
fn acme_config(pebble: &Pebble, domain: &str, http_listen: Option<SocketAddr>) -> Config {
    let mut config = TestRelay::config();
    config.tls = TlsMode::Acme(AcmeSettings {
        domains: vec![domain.to_owned()],
        email: Some("ops@relay.test".into()),
        directory: pebble.directory.clone(),
        ca: Some(pebble.api_ca.clone()),
        http_listen,
    });
    config
}

/// Waits until `relay` serves, for `domain`, a chain that `roots` trust and that `accept` takes.
async fn trusted_chain(
    relay: &TestRelay,
    domain: &str,
    roots: &std::sync::Arc<rustls::RootCertStore>,
    deadline: Duration,
    accept: impl Fn(&[rustls_pki_types::CertificateDer<'static>]) -> bool,
) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Ok(chain) = tls::chain(relay.addr, domain, Trust::Roots(roots.clone())).await
            && accept(&chain)
        {
            return chain;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no trusted chain for {domain} within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("file").permissions().mode() & 0o777
}

#[tokio::test]
async fn tls_alpn_01_gets_a_trusted_full_chain_and_keeps_it_across_a_restart() {
    capture_logs();
    let domain = "alpn.relay.test";
    let pebble = Pebble::start(PebbleOptions::new());
    let mut relay =
        TestRelay::start_on(acme_config(&pebble, domain, None), pebble.options.tls_port);
    let roots = tls::roots(pebble.issuing_root().await);

    let chain = trusted_chain(&relay, domain, &roots, ISSUE_DEADLINE, |_| true).await;
    // Pebble's root signs only its intermediate: a leaf alone would not verify.
    assert!(
        chain.len() >= 2,
        "the full chain is served: {}",
        chain.len()
    );
    let data_dir = DataDir::new(&relay.config.data_dir);
    #[cfg(unix)]
    {
        assert_eq!(mode(&data_dir.acme_account()), 0o600);
        assert_eq!(mode(&data_dir.acme_key()), 0o600);
    }
    assert!(data_dir.acme_cert().exists());
    // The challenge certificate went with its order: acme-tls/1 gets nothing now.
    let challenge = tls::connect(relay.addr, domain, Trust::Anything, &[b"acme-tls/1"]).await;
    assert!(
        challenge.is_err(),
        "no challenge certificate after issuance"
    );

    relay.restart();
    let kept = tls::chain(relay.addr, domain, Trust::Roots(roots.clone()))
        .await
        .expect("the kept chain is served from the first handshake after a restart");
    assert_eq!(
        kept[0], chain[0],
        "the kept certificate, not a new issuance"
    );
    assert_eq!(
        logged(&["serving the certificate kept", domain]).len(),
        1,
        "one restart served the kept certificate"
    );
}

#[tokio::test]
async fn http_01_on_http_listen_and_every_other_request_is_redirected_to_https() {
    capture_logs();
    let domain = "http.relay.test";
    let pebble = Pebble::start(PebbleOptions::new());
    let http_listen = SocketAddr::from(([127, 0, 0, 1], pebble.options.http_port));
    let config = acme_config(&pebble, domain, Some(http_listen));
    let relay = TestRelay::start_on(config, pebble.options.tls_port);
    let roots = tls::roots(pebble.issuing_root().await);

    let chain = trusted_chain(&relay, domain, &roots, ISSUE_DEADLINE, |_| true).await;
    assert!(chain.len() >= 2, "the full chain is served");
    assert!(
        logged(&["acme certificate issued", domain]).len() == 1,
        "issued once"
    );

    let answer = raw_get(http_listen, domain, "/bot/path?x=1").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = format!(
        "location: https://{domain}:{}/bot/path?x=1\r\n",
        relay.addr.port()
    );
    assert!(answer.to_ascii_lowercase().contains(&location), "{answer}");
    let unknown = raw_get(http_listen, domain, "/.well-known/acme-challenge/nope").await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
}

/// One `GET` over plain HTTP/1.1, and the whole answer (the server closes after it).
async fn raw_get(address: SocketAddr, host: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(e2e::DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the listener closes after one answer")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_in_place_and_open_connections_keep_working() {
    capture_logs();
    let domain = "renew.relay.test";
    let mut options = PebbleOptions::new();
    options.validity = Some(Duration::from_secs(15));
    // Every new order reuses the valid authorization, so the renewal takes the path that uses
    // it as it is.
    options.authz_reuse = 100;
    let pebble = Pebble::start(options);
    let mut config = acme_config(&pebble, domain, None);
    config.limits.keep_alive_timeout = Duration::from_secs(120);
    let relay = TestRelay::start_on(config, pebble.options.tls_port);
    let roots = tls::roots(pebble.issuing_root().await);
    let first = trusted_chain(&relay, domain, &roots, ISSUE_DEADLINE, |_| true).await;

    let stream = tls::connect(
        relay.addr,
        domain,
        Trust::Roots(roots.clone()),
        &[b"http/1.1"],
    )
    .await
    .expect("a connection before the renewal");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    assert_eq!(health(&mut sender, domain).await, 200);

    // Renewal starts with a third of the 15 s left: about 10 s after the first issuance.
    let renewed = trusted_chain(&relay, domain, &roots, Duration::from_secs(40), |chain| {
        chain[0] != first[0]
    })
    .await;
    assert_ne!(renewed[0], first[0]);
    assert_eq!(
        health(&mut sender, domain).await,
        200,
        "the connection opened before the renewal still works"
    );
    assert!(
        !logged(&["already valid; used as it is", domain]).is_empty(),
        "the renewal used the valid authorization as it is"
    );
}

async fn health(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
) -> u16 {
    let request = http::Request::get("/healthz")
        .header(http::header::HOST, host)
        .body(Empty::new())
        .expect("request");
    tokio::time::timeout(e2e::DEADLINE, sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_failed_issuance_keeps_the_temporary_certificate_and_logs_one_line_naming_dns() {
    capture_logs();
    let domain = "unresolved.relay.test";
    let mut options = PebbleOptions::new();
    options.resolve = false;
    let pebble = Pebble::start(options);
    let relay = TestRelay::start_on(acme_config(&pebble, domain, None), pebble.options.tls_port);

    let until = tokio::time::Instant::now() + ISSUE_DEADLINE;
    while logged(&["acme certificate not issued", domain]).is_empty() {
        assert!(
            tokio::time::Instant::now() < until,
            "no failure line in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = logged(&["acme certificate not issued", domain]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("check=\"DNS"), "{}", lines[0]);
    assert!(lines[0].contains("retry_in="), "{}", lines[0]);

    // The temporary self-signed certificate keeps serving.
    let roots = tls::roots(pebble.issuing_root().await);
    assert!(
        tls::chain(relay.addr, domain, Trust::Roots(roots))
            .await
            .is_err(),
        "nothing Pebble signed is served"
    );
    let chain = tls::chain(relay.addr, domain, Trust::Anything)
        .await
        .expect("the temporary certificate still serves");
    assert_eq!(chain.len(), 1, "a self-signed certificate, alone");
}

#[tokio::test]
async fn a_challenge_the_ca_cannot_reach_fails_validation_and_the_line_names_the_port() {
    capture_logs();
    let domain = "unreachable.relay.test";
    let pebble = Pebble::start(PebbleOptions::new());
    // Pebble validates TLS-ALPN-01 on its tlsPort, where nothing listens: the relay is elsewhere.
    let relay = TestRelay::start_with(acme_config(&pebble, domain, None));

    let until = tokio::time::Instant::now() + ISSUE_DEADLINE;
    while logged(&["acme certificate not issued", domain]).is_empty() {
        assert!(
            tokio::time::Instant::now() < until,
            "no failure line in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = logged(&["acme certificate not issued", domain]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("could not validate"), "{}", lines[0]);
    assert!(lines[0].contains("check=\"port"), "{}", lines[0]);
    assert!(lines[0].contains("443"), "{}", lines[0]);
    let chain = tls::chain(relay.addr, domain, Trust::Anything)
        .await
        .expect("the temporary certificate still serves");
    assert_eq!(chain.len(), 1, "a self-signed certificate, alone");
}
