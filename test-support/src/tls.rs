//! What a TLS server presents, seen by a client that accepts any certificate but still checks
//! the handshake's signatures, or by one that trusts given roots: for tests that ask which
//! certificate a relay serves, and whether a client would trust it.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A verifier for tests that checks the handshake's signatures but no chain: it accepts any
/// certificate (the test looks at the chain itself afterwards), or exactly one, as Telegram
/// trusts a certificate uploaded with `setWebhook`.
#[derive(Debug)]
pub struct AnyCertificate {
    only: Option<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Default for AnyCertificate {
    fn default() -> Self {
        Self {
            only: None,
            algorithms: ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl AnyCertificate {
    /// Accepts `cert` as the server's certificate and nothing else.
    pub fn exactly(cert: CertificateDer<'static>) -> Self {
        Self {
            only: Some(cert),
            ..Self::default()
        }
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.only {
            Some(only) if only != end_entity => Err(rustls::CertificateError::UnknownIssuer.into()),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
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

/// Whom a client trusts.
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
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions");
    let mut config = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::default()))
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
