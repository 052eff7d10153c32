//! What a TLS server presents, seen by a client that accepts any certificate but still checks
//! the handshake's signatures: for tests that ask which certificate a relay serves.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts any certificate chain: the test looks at the chain itself afterwards.
#[derive(Debug)]
pub struct AnyCertificate(WebPkiSupportedAlgorithms);

impl Default for AnyCertificate {
    fn default() -> Self {
        Self(ring::default_provider().signature_verification_algorithms)
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A client config that accepts any certificate and offers `alpn`.
pub fn any_certificate_client(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::default()))
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// The chain the TLS server at `address` presents for the name `sni`, end entity first, within
/// [`crate::process::DEADLINE`]; `Err` with the handshake's error.
pub async fn served_chain(
    address: SocketAddr,
    sni: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(any_certificate_client(b"http/1.1"));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, connection) = tls.get_ref();
        Ok(connection
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default())
    };
    tokio::time::timeout(crate::process::DEADLINE, connect)
        .await
        .map_err(|_| "no handshake within the deadline".to_owned())?
}
