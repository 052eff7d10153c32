//! Tests for [`super`]: real TLS handshakes over an in-memory pipe against certificates made
//! here with rcgen, the way openssl and relay-server make them.

use std::path::PathBuf;
use std::sync::Arc;

use protocol::Pin;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ServerConfig};
use test_support::TempDir;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{PinMismatch, api_config, relay_config};
use crate::test_relay::TEST_DEADLINE;

/// A certificate the relay serves and the key it signs with.
struct Served {
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
    /// The first certificate in PEM.
    pem: String,
}

impl Served {
    /// A self-signed certificate for `names`, marked CA:TRUE when `ca` (as `openssl req -x509`
    /// marks them).
    fn self_signed(names: &[&str], ca: bool) -> Served {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Served {
            chain: vec![cert.der().clone()],
            key,
            pem: cert.pem(),
        }
    }

    fn der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// A PEM file with this certificate, as `--ca` takes it.
    fn pem_file(&self, dir: &TempDir) -> PathBuf {
        let path = dir.path().join("relay.pem");
        std::fs::write(&path, &self.pem).expect("write PEM");
        path
    }

    fn server_config(&self, key: &KeyPair) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
                key.serialize_der(),
            )))
            .expect("signing key");
        let certified = Arc::new(CertifiedKey::new(self.chain.clone(), signing));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        Arc::new(config)
    }
}

/// Serves one certificate whatever the client asks for, with whatever key it was given, so a
/// test can present a certificate with a key that does not match it.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// One handshake from `client` to `server` under the name `name`; the client's verdict.
async fn handshake(
    client: Arc<rustls::ClientConfig>,
    name: &str,
    server: Arc<ServerConfig>,
) -> Result<(), rustls::Error> {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        let _ = TlsAcceptor::from(server).accept(server_end).await;
    });
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let dialed = tokio::time::timeout(
        TEST_DEADLINE,
        TlsConnector::from(client).connect(name, client_end),
    )
    .await
    .expect("handshake ends in time");
    serving.abort();
    match dialed {
        Ok(_) => Ok(()),
        Err(error) => Err(*error
            .into_inner()
            .expect("an error with a cause")
            .downcast::<rustls::Error>()
            .expect("a rustls error")),
    }
}

#[tokio::test]
async fn a_ca_true_self_signed_certificate_in_ca_is_trusted_as_that_exact_certificate() {
    let served = Served::self_signed(&["localhost"], true);
    let dir = TempDir::new("tls-ca-true");
    let file = served.pem_file(&dir);
    let server = served.server_config(&served.key);

    // As a root alone (what --ca did before), webpki refuses it as the server's own.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(served.der().clone()).expect("root");
    let roots_only = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let refused = handshake(Arc::new(roots_only), "localhost", server.clone())
        .await
        .expect_err("webpki refuses a CA certificate as an end entity");
    assert!(
        refused.to_string().contains("CaUsedAsEndEntity"),
        "{refused}"
    );

    let client = relay_config(Some(&file), None).expect("config");
    handshake(client.clone(), "localhost", server.clone())
        .await
        .expect("the exact certificate is trusted");
    // Exact bytes are trusted like a known_hosts entry: the name is not what is checked.
    handshake(client, "relay.example.org", server)
        .await
        .expect("trusted under another name too");
}

#[tokio::test]
async fn a_pin_trusts_the_certificate_with_that_fingerprint_and_no_file() {
    let served = Served::self_signed(&["localhost"], true);
    let client = relay_config(None, Some(Pin::of(served.der()))).expect("config");
    handshake(client, "localhost", served.server_config(&served.key))
        .await
        .expect("pinned certificate is trusted");
}

#[tokio::test]
async fn an_ip_only_self_signed_certificate_works_with_ca_and_with_a_pin() {
    let served = Served::self_signed(&["127.0.0.1"], false);
    let dir = TempDir::new("tls-ip-only");
    let file = served.pem_file(&dir);
    for client in [
        relay_config(Some(&file), None).expect("config"),
        relay_config(None, Some(Pin::of(served.der()))).expect("config"),
    ] {
        handshake(client, "127.0.0.1", served.server_config(&served.key))
            .await
            .expect("IP-only certificate is trusted");
    }
}

#[tokio::test]
async fn a_different_certificate_is_a_pin_mismatch_naming_both_fingerprints() {
    let served = Served::self_signed(&["localhost"], true);
    let expected = Pin::of(b"another certificate");
    let client = relay_config(None, Some(expected)).expect("config");
    let error = handshake(client, "localhost", served.server_config(&served.key))
        .await
        .expect_err("not the pinned certificate");
    let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = &error else {
        panic!("not a certificate verdict: {error}");
    };
    let mismatch = other
        .0
        .downcast_ref::<PinMismatch>()
        .expect("a pin mismatch");
    assert_eq!(mismatch.presented, Pin::of(served.der()));
    assert_eq!(mismatch.expected, expected);
}

#[tokio::test]
async fn the_pinned_certificate_without_its_key_is_refused() {
    // Anyone can copy a relay's certificate; only the relay has its key. The handshake
    // signature is still checked when the certificate itself is pinned or given with --ca.
    let served = Served::self_signed(&["localhost"], true);
    let dir = TempDir::new("tls-wrong-key");
    let file = served.pem_file(&dir);
    let impostor = KeyPair::generate().expect("key");
    for client in [
        relay_config(None, Some(Pin::of(served.der()))).expect("config"),
        relay_config(Some(&file), None).expect("config"),
    ] {
        let error = handshake(client, "localhost", served.server_config(&impostor))
            .await
            .expect_err("the signature does not verify");
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(CertificateError::BadSignature)
            ),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn a_private_ca_in_ca_still_works_as_a_ca_and_a_stranger_is_refused() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let served = Served {
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key,
        pem: leaf.pem(),
    };
    let dir = TempDir::new("tls-private-ca");
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, ca.pem()).expect("write");
    let client = relay_config(Some(&file), None).expect("config");
    handshake(
        client.clone(),
        "localhost",
        served.server_config(&served.key),
    )
    .await
    .expect("a leaf of the private CA is trusted");
    // As a CA, names are checked as usual.
    assert!(
        handshake(
            client.clone(),
            "relay.example.org",
            served.server_config(&served.key)
        )
        .await
        .is_err()
    );
    // A self-signed certificate that is in no file and has no pin is refused.
    let stranger = Served::self_signed(&["localhost"], false);
    let error = handshake(client, "localhost", stranger.server_config(&stranger.key))
        .await
        .expect_err("a stranger");
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_bot_api_is_never_given_the_relay_s_certificate() {
    let served = Served::self_signed(&["localhost"], false);
    let error = handshake(
        api_config().expect("config"),
        "localhost",
        served.server_config(&served.key),
    )
    .await
    .expect_err("the Bot API trusts only the system's roots");
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}
