//! [`Pebble`]: Let's Encrypt's test ACME server (Debian's `pebble`), with `pebble-challtestsrv`
//! as its DNS, on 127.0.0.1 with ports the OS picks, validating challenges against the relay for
//! real. Both programs must be installed (`.ci/run` installs them): a test that cannot start
//! them fails, it does not skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use test_support::TempDir;

use test_support::tls::{self, Trust};

/// How Pebble and its DNS are set up.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Where Pebble validates TLS-ALPN-01 (the relay's TLS port in the test).
    pub tls_port: u16,
    /// Where Pebble validates HTTP-01 (the relay's `http_listen` in the test).
    pub http_port: u16,
    /// The issued certificates' lifetime, when short ones are wanted.
    pub validity: Option<Duration>,
    /// Whether every name resolves to 127.0.0.1; without it no name resolves.
    pub resolve: bool,
    /// Pebble's `PEBBLE_AUTHZREUSE`: the percentage of new orders that reuse valid
    /// authorizations.
    pub authz_reuse: u8,
}

impl PebbleOptions {
    /// Free ports for both challenges, every name on 127.0.0.1, 90-day certificates, no reuse.
    pub fn new() -> Self {
        Self {
            tls_port: crate::unused_addr().port(),
            http_port: crate::unused_addr().port(),
            validity: None,
            resolve: true,
            authz_reuse: 0,
        }
    }
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A running Pebble and its DNS; dropping it kills both and removes their files.
#[derive(Debug)]
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The CA of Pebble's own HTTPS certificate: the relay's `--acme-ca`.
    pub api_ca: PathBuf,
    /// How it was set up.
    pub options: PebbleOptions,
    management: SocketAddr,
    api_roots: Arc<rustls::RootCertStore>,
    _children: Children,
    _dir: TempDir,
}

/// The programs started, killed when dropped (also when a later one fails to start).
#[derive(Debug, Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts `pebble-challtestsrv` and `pebble`, and waits until both listen.
    pub fn start(options: PebbleOptions) -> Self {
        let dir = TempDir::new("pebble");
        let (api_ca, cert, key, api_roots) = api_certificate(dir.path());
        let dns = free_udp_and_tcp_port();
        let dns_management = crate::unused_addr();
        let listen = crate::unused_addr();
        let management = crate::unused_addr();
        let ipv4 = if options.resolve { "127.0.0.1" } else { "" };
        let mut children = Children::default();
        children
            .0
            .push(spawn(Command::new("pebble-challtestsrv").args([
                "-dns01",
                &dns.to_string(),
                "-management",
                &dns_management.to_string(),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                ipv4,
            ])));
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = options.validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble config");
        children.0.push(spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_VA_ALWAYS_VALID", "0")
                .env("PEBBLE_AUTHZREUSE", options.authz_reuse.to_string()),
        ));
        let pebble = Self {
            directory: format!("https://{listen}/dir"),
            api_ca,
            options,
            management,
            api_roots,
            _children: children,
            _dir: dir,
        };
        for address in [dns_management, listen, management] {
            pebble.wait_listening(address);
        }
        pebble
    }

    /// Pebble's root for the certificates it issues (its management API's `/roots/0`).
    pub async fn issuing_root(&self) -> CertificateDer<'static> {
        let pem = https_get(self.management, &self.api_roots, "/roots/0").await;
        CertificateDer::from_pem_slice(&pem).expect("a PEM root from /roots/0")
    }

    fn wait_listening(&self, address: SocketAddr) {
        let deadline = std::time::Instant::now() + crate::DEADLINE;
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pebble did not listen on {address} in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(command: &mut Command) -> Child {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {program} ({error}): the ACME tests need Debian's pebble package \
                 (apt-get install pebble); .ci/run installs it"
            )
        })
}

/// A port free for both UDP and TCP (challtestsrv's DNS answers on both).
fn free_udp_and_tcp_port() -> SocketAddr {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let address = udp.local_addr().expect("udp addr");
        if std::net::TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    panic!("no port free for both UDP and TCP in 100 tries");
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, for Pebble's own HTTPS:
/// (the CA's file, the certificate's file, the key's file, roots holding the CA).
fn api_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Arc<rustls::RootCertStore>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble API test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let (ca_path, cert_path, key_path) = (
        dir.join("api-ca.pem"),
        dir.join("api-cert.pem"),
        dir.join("api-key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).expect("write ca");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("ca root");
    (ca_path, cert_path, key_path, Arc::new(roots))
}

/// The body of `GET https://<address><path>`, trusting `roots`.
async fn https_get(address: SocketAddr, roots: &Arc<rustls::RootCertStore>, path: &str) -> Bytes {
    let config = tls::client(Trust::Roots(roots.clone()), &[]);
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = ServerName::from(address.ip());
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("tls with pebble");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(crate::DEADLINE, sender.send_request(request))
        .await
        .expect("pebble answers in time")
        .expect("pebble answers");
    assert!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}
