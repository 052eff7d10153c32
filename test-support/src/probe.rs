//! TLS handshakes as a client makes them, to see what a server serves: the chain, verified
//! against given roots or taken as it is, with the ALPN protocols a test chooses.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Whom a probe trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates that chain to these roots, for the name asked.
    Roots(Arc<rustls::RootCertStore>),
    /// Any certificate: to see what a server serves before it has a trusted one.
    Anything,
}

/// A client configuration with `trust`, offering `alpn`.
pub fn client(trust: Trust, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let mut config = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Roots holding `root` alone.
pub fn roots(root: CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("a usable root");
    Arc::new(roots)
}

/// A TLS connection to `address` for `name`, or the handshake's error.
pub async fn connect(
    address: SocketAddr,
    name: &str,
    trust: Trust,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from(name.to_owned()).expect("a valid name");
    let connector = tokio_rustls::TlsConnector::from(client(trust, alpn));
    tokio::time::timeout(crate::process::DEADLINE, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The chain `address` serves for `name`, if a handshake with `trust` succeeds.
pub async fn chain(
    address: SocketAddr,
    name: &str,
    trust: Trust,
) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let stream = connect(address, name, trust, &[b"http/1.1"]).await?;
    Ok(stream
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
