use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::KeyKind;
use crate::tls::{pem, self_signed};

fn key(names: &[&str]) -> Arc<CertifiedKey> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (cert, key) = self_signed::generate(&names, KeyKind::Ecdsa).expect("generated");
    pem::certified_key(cert.as_bytes(), key.as_bytes()).expect("fits")
}

/// The certificate a real handshake to `certificates` presents for `name` and `alpn`, or the
/// handshake's error.
async fn presented(
    certificates: Arc<Certificates>,
    name: &str,
    alpn: &[u8],
) -> Result<Vec<u8>, String> {
    let server = crate::tls::server_config(certificates, true).expect("config");
    let client = test_support::tls::any_certificate_client(alpn);
    let (near, far) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let serve = tokio::spawn(async move {
        if let Ok(mut tls) = acceptor.accept(far).await {
            let _ = tls.write_all(b"x").await;
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(name.to_owned()).expect("name");
    let result = match connector.connect(name, near).await {
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            let _ = tls.read(&mut byte).await;
            let (_, connection) = tls.get_ref();
            Ok(connection
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.to_vec())
                .unwrap_or_default())
        }
        Err(error) => Err(error.to_string()),
    };
    let _ = serve.await;
    result
}

#[tokio::test]
async fn a_replaced_certificate_is_served_from_the_next_handshake() {
    let first = key(&["relay.example.com"]);
    let second = key(&["relay.example.com"]);
    let certificates = Arc::new(Certificates::new(first.clone()));
    let got = presented(certificates.clone(), "relay.example.com", b"http/1.1").await;
    assert_eq!(got, Ok(first.cert[0].to_vec()));
    certificates.replace(second.clone());
    let got = presented(certificates.clone(), "relay.example.com", b"http/1.1").await;
    assert_eq!(got, Ok(second.cert[0].to_vec()));
}

#[tokio::test]
async fn acme_tls_alpn_gets_the_challenge_certificate_for_its_name_or_nothing() {
    let served = key(&["relay.example.com"]);
    let challenge = key(&["relay.example.com"]);
    let certificates = Arc::new(Certificates::new(served.clone()));
    let none = presented(certificates.clone(), "relay.example.com", ACME_TLS_ALPN).await;
    assert!(none.is_err(), "no challenge set: no certificate");
    certificates.set_challenge("Relay.Example.com", challenge.clone());
    let got = presented(certificates.clone(), "relay.example.com", ACME_TLS_ALPN).await;
    assert_eq!(got, Ok(challenge.cert[0].to_vec()));
    let other = presented(certificates.clone(), "other.example.com", ACME_TLS_ALPN).await;
    assert!(other.is_err(), "a challenge is only for its name");
    let plain = presented(certificates.clone(), "relay.example.com", b"http/1.1").await;
    assert_eq!(
        plain,
        Ok(served.cert[0].to_vec()),
        "others still get the served one"
    );
    certificates.clear_challenge("relay.example.com");
    let gone = presented(certificates, "relay.example.com", ACME_TLS_ALPN).await;
    assert!(gone.is_err());
}

#[test]
fn challenges_are_bounded() {
    let certificates = Certificates::new(key(&["a.example"]));
    let challenge = key(&["a.example"]);
    for n in 0..MAX_CHALLENGES + 10 {
        certificates.set_challenge(&format!("n{n}.example"), challenge.clone());
    }
    let held = certificates
        .challenges
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    assert_eq!(held, MAX_CHALLENGES);
}
