use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::KeyKind;

#[test]
fn the_policy_is_tls_1_2_and_1_3_with_aead_suites_only() {
    let provider = provider();
    for suite in &provider.cipher_suites {
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "{name} is not AEAD"
        );
        assert!(!name.contains("CBC") && !name.contains("SHA1"), "{name}");
    }
    assert_eq!(VERSIONS.len(), 2);
    assert!(VERSIONS.iter().all(|v| matches!(
        v.version,
        rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
    )));
}

/// Two handshakes from one client config over in-memory pipes; whether the second was resumed.
async fn second_handshake_resumes(version: &'static rustls::SupportedProtocolVersion) -> bool {
    let (cert, key) =
        self_signed::generate(&["relay.example.com".into()], KeyKind::Ecdsa).expect("cert");
    let key = pem::certified_key(cert.as_bytes(), key.as_bytes()).expect("fits");
    let server = server_config(Arc::new(Certificates::new(key)), false).expect("config");
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .expect("version")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(test_support::tls::AnyCertificate::default()))
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);
    let mut resumed = false;
    for _ in 0..2 {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
        let serve = tokio::spawn(async move {
            if let Ok(mut tls) = acceptor.accept(far).await {
                // TLS 1.3 tickets follow the handshake: written before the first byte of data.
                let _ = tls.write_all(b"x").await;
                let _ = tls.flush().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        let name = ServerName::try_from("relay.example.com").expect("name");
        let mut tls = connector.connect(name, near).await.expect("handshake");
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.expect("byte");
        resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let _ = serve.await;
    }
    resumed
}

#[tokio::test]
async fn a_second_connection_resumes_its_session_in_tls_1_3_and_1_2() {
    assert!(second_handshake_resumes(&rustls::version::TLS13).await);
    assert!(second_handshake_resumes(&rustls::version::TLS12).await);
}
