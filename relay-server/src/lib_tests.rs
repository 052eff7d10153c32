use std::os::unix::fs::PermissionsExt;

use test_support::TempDir;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The store holds message text and the data dir tokens: none of it is readable by others,
/// whatever the umask (0644 files and a 0755 folder under the usual 022 before).
#[tokio::test]
async fn the_data_dir_and_everything_the_relay_writes_there_are_private() {
    let dir = TempDir::new("private");
    let root = dir.path().join("data");
    let mut config = Config::new(&root);
    config.tls = TlsMode::self_signed();
    let relay = Relay::prepare(config).expect("relay prepares");
    let data_dir = DataDir::new(&root);
    assert_eq!(mode(&root), 0o700, "the data dir");
    for file in [
        data_dir.store(),
        data_dir.agent_token(),
        data_dir.admin_token(),
        data_dir.self_signed_key(),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(relay);

    // What agents declare is written there too.
    let bots = KnownBots::new([])
        .remember_in(data_dir.known_bots())
        .remember_modes_in(data_dir.bot_modes());
    Arc::new(bots)
        .note_hello(
            &["echo".into()],
            &[("echo".into(), protocol::DeliveryMode::Durable)],
        )
        .await;
    assert_eq!(mode(&data_dir.known_bots()), 0o600);
    assert_eq!(mode(&data_dir.bot_modes()), 0o600);
}

/// A CA validating TLS-ALPN-01 only looks at the certificate; a connection that negotiated
/// `acme-tls/1` is closed after its handshake, so it never reaches the webhook intake.
#[tokio::test]
async fn a_connection_that_negotiates_acme_tls_1_is_closed_after_its_handshake() {
    use test_support::tls::{self as probe, Trust};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("acme-alpn");
    let mut config = Config::new(dir.path().join("data"));
    config.tls = TlsMode::Acme(config::AcmeSettings {
        domains: vec!["relay.test".into()],
        email: None,
        // Nothing listens there: issuance fails, and the challenge below stays the test's.
        directory: "https://127.0.0.1:9/directory".into(),
        ca: None,
        http_listen: None,
    });
    let relay = Relay::prepare(config).expect("relay prepares");
    let certificates = relay
        .tls
        .as_ref()
        .map(|tls| tls.certificates.clone())
        .expect("ACME serves through the live resolver");
    let params = rcgen::CertificateParams::new(vec!["relay.test".into()]).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let challenge = tls::pem::certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("a certified key");
    certificates.set_challenge("relay.test", challenge);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(listener, shutdown.clone()));

    let mut stream = probe::connect(address, "relay.test", Trust::Anything, &[b"acme-tls/1"])
        .await
        .expect("the challenge certificate is served");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    let request = b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n";
    // The relay may already have closed: a failed write is as good as an empty read.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(test_support::DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("closed in time, not kept open");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "no HTTP on an acme-tls/1 connection: {read:?} {answer:?}"
    );

    // Other handshakes still get the served certificate and HTTP.
    let served = probe::connect(address, "relay.test", Trust::Anything, &[b"http/1.1"]).await;
    assert_eq!(
        served.expect("handshake").get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(test_support::DEADLINE, running).await;
}
