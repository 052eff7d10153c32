//! The relay's TLS as clients meet it, against the real `relay-server` binary on 127.0.0.1: a real
//! scanner (testssl.sh) finds only TLS 1.2 and 1.3 and only AEAD suites, and clients resume their
//! sessions (rustls over TLS 1.3 and 1.2, OpenSSL over TLS 1.2 by ticket and by session ID), even
//! after more other clients than the relay's session cache holds.
//!
//! The scanner's verdict is read by [`breaches`], which is shown able to fail by feeding it a scan
//! recorded against a deliberately weak OpenSSL server.
//!
//! testssl's own resumption check (`-S`) is not used: against a TLS 1.3 server its `openssl
//! s_client </dev/null` often exits before the session ticket that follows the handshake arrives,
//! and then reports "connect problem" or "not supported" (about one run in five here).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use test_support::{Lines, Program, Stderr, TempDir};

/// The binary under test.
const RELAY: Program = Program {
    path: env!("CARGO_BIN_EXE_relay-server"),
    name: "relay-server",
    log: "warn",
};

/// The scanner's names: Debian's package installs `testssl`, upstream's checkout `testssl.sh`.
const SCANNER_NAMES: [&str; 2] = ["testssl", "testssl.sh"];

/// How long one scan may take before it is killed and the test fails. It takes 35–40 s on two
/// busy cores (most of it testssl's own pauses between probes); six times that is a hang.
const SCAN_DEADLINE: Duration = Duration::from_secs(240);

/// How long one `openssl s_client` run may take; it takes milliseconds.
const OPENSSL_DEADLINE: Duration = Duration::from_secs(20);

/// A scan of `openssl s_server -www -cipher 'ALL:@SECLEVEL=0' -min_protocol TLSv1` (OpenSSL
/// 3.0.19, RSA-2048 certificate from `openssl req -x509`), recorded with [`scan`]'s command line
/// plus `-S`: TLS 1.0 and 1.1 offered, dozens of CBC and anonymous suites.
const WEAK_SCAN: &str = include_str!("tls/weak-openssl-scan.json");

/// Socket reads and writes of the resumption tests; the relay answers on loopback in milliseconds.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS 1.2 clients that connect between a client's two connections in
/// [`sessions_outlive_the_session_cache`], each leaving a session in the relay's session cache:
/// more than it holds ([`session_cache_size`]), so that only a stateless ticket still resumes.
const OTHER_CLIENTS: usize = 4200;

/// A `relay-server` with its self-signed certificate, on an OS-chosen port of 127.0.0.1. Dropping
/// it kills it.
struct Relay {
    child: Child,
    stderr: Stderr,
    addr: SocketAddr,
    cert: PathBuf,
    _dir: TempDir,
}

impl Relay {
    fn start() -> Self {
        let dir = TempDir::new("tls");
        let data = dir.path().join("data");
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
            "--data-dir",
            data.to_str().expect("utf-8 temp dir"),
        ];
        let mut child = RELAY
            .command(&args, dir.path())
            .spawn()
            .expect("start relay-server");
        let lines = Lines::of(&mut child);
        let stderr = Stderr::of(&mut child);
        let banner = lines.until(|line| line.contains(" listening on "));
        let addr = banner.as_ref().ok().and_then(|lines| {
            let line = lines.last()?;
            let rest = line.split(" listening on ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        });
        let mut relay = Self {
            child,
            stderr,
            addr: "127.0.0.1:0".parse().expect("an address"),
            cert: data.join("tls/self-signed-cert.pem"),
            _dir: dir,
        };
        match addr {
            Some(addr) => relay.addr = addr,
            None => {
                let _ = relay.child.kill();
                let _ = relay.child.wait();
                panic!(
                    "relay-server did not start: {banner:?} {}",
                    relay.stderr.text()
                );
            }
        }
        relay
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_scanner_finds_only_tls12_and_tls13_with_aead_suites() {
    let relay = Relay::start();
    let started = Instant::now();
    let scan = scan(relay.addr);
    let took = started.elapsed();
    let breaches = breaches(&scan);
    assert!(
        breaches.is_empty(),
        "testssl found the relay breaking its TLS policy (scan took {took:?}):\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_policy_check_fails_a_weak_server() {
    let scan: Value = serde_json::from_str(WEAK_SCAN).expect("the recorded scan is JSON");
    let found = breaches(&scan);
    for expected in [
        "TLS1: offered (deprecated), must be not offered",
        "TLS1_1: offered (deprecated), must be not offered",
        "cipher-tls1_2_x2f: TLS_RSA_WITH_AES_128_CBC_SHA is not an allowed AEAD suite",
        "cipher-tls1_2_x3a: TLS_DH_anon_WITH_AES_256_CBC_SHA is not an allowed AEAD suite",
        // AEAD, but with no server authentication.
        "cipher-tls1_2_xa6: TLS_DH_anon_WITH_AES_128_GCM_SHA256 is not an allowed AEAD suite",
    ] {
        assert!(
            found.iter().any(|b| b == expected),
            "{expected:?} missing from {found:#?}"
        );
    }
    // Its authenticated GCM suites and its TLS 1.2 and 1.3 are fine.
    assert!(
        !found
            .iter()
            .any(|b| (b.contains("_GCM_") && !b.contains("_anon_"))
                || b.starts_with("TLS1_2:")
                || b.starts_with("TLS1_3:")),
        "{found:#?}"
    );
    // A scan that says nothing is no pass.
    assert!(breaches(&serde_json::json!({})).len() > 1);
    let mut quiet = scan.clone();
    quiet["scanResult"][0]["cipherTests"] = serde_json::json!([]);
    assert!(
        breaches(&quiet)
            .iter()
            .any(|b| b == "no TLS 1.3 suite offered"),
        "{:#?}",
        breaches(&quiet)
    );
}

#[test]
fn a_second_connection_resumes() {
    let relay = Relay::start();
    let mut by_id = (*client_config(&rustls::version::TLS12, &relay.cert)).clone();
    by_id.resumption = rustls::client::Resumption::in_memory_sessions(8)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let clients = [
        (
            "TLS 1.3",
            client_config(&rustls::version::TLS13, &relay.cert),
        ),
        (
            "TLS 1.2",
            client_config(&rustls::version::TLS12, &relay.cert),
        ),
        ("TLS 1.2 by session ID", Arc::new(by_id)),
    ];
    for (what, client) in &clients {
        assert_eq!(get_health(relay.addr, client), HandshakeKind::Full);
        assert_eq!(
            get_health(relay.addr, client),
            HandshakeKind::Resumed,
            "{what}"
        );
    }
}

/// OpenSSL, which most HTTPS clients use, resumes over TLS 1.2 both with the relay's ticket and,
/// with tickets off (`-no_ticket`), by session ID. (Over TLS 1.3 `s_client </dev/null` may exit
/// before the ticket arrives; rustls covers TLS 1.3 above.)
#[test]
fn openssl_resumes_tls12_by_ticket_and_by_session_id() {
    let relay = Relay::start();
    let dir = TempDir::new("s_client");
    for (what, extra) in [("ticket", None), ("session ID", Some("-no_ticket"))] {
        let session = dir.path().join("session.pem");
        let _ = std::fs::remove_file(&session);
        let first = s_client(relay.addr, extra, "-sess_out", &session);
        assert!(
            first.contains("\nNew, "),
            "{what}: first connection:\n{first}"
        );
        // A ticket only when asked for: the other run resumes by session ID alone.
        assert_eq!(
            first.contains("TLS session ticket lifetime hint:"),
            extra.is_none(),
            "{what}: first connection:\n{first}"
        );
        let second = s_client(relay.addr, extra, "-sess_in", &session);
        assert!(
            second.contains("\nReused, "),
            "{what}: second connection not resumed:\n{second}"
        );
    }
}

#[test]
fn sessions_outlive_the_session_cache() {
    let cache = session_cache_size();
    assert!(OTHER_CLIENTS > cache, "raise OTHER_CLIENTS above {cache}");
    let relay = Relay::start();
    let clients = [&rustls::version::TLS13, &rustls::version::TLS12]
        .map(|version| (version, client_config(version, &relay.cert)));
    for (_, client) in &clients {
        assert_eq!(get_health(relay.addr, client), HandshakeKind::Full);
    }
    // Each a full TLS 1.2 handshake whose session the relay keeps under a new session ID; the
    // cache is shared by both versions, so these push out TLS 1.3 sessions kept there too.
    let mut other = (*client_config(&rustls::version::TLS12, &relay.cert)).clone();
    other.resumption = rustls::client::Resumption::disabled();
    let other = Arc::new(other);
    for _ in 0..OTHER_CLIENTS {
        handshake(relay.addr, &other);
    }
    for (version, client) in &clients {
        assert_eq!(
            get_health(relay.addr, client),
            HandshakeKind::Resumed,
            "{version:?}: no longer resumed after {OTHER_CLIENTS} other clients"
        );
    }
}

/// The relay's `SESSION_CACHE_SIZE`, read from its source, so that [`OTHER_CLIENTS`] cannot
/// fall below it unnoticed.
fn session_cache_size() -> usize {
    let source = include_str!("../src/tls.rs");
    source
        .lines()
        .find_map(|line| line.strip_prefix("const SESSION_CACHE_SIZE: usize = "))
        .and_then(|rest| rest.trim_end_matches(';').replace('_', "").parse().ok())
        .expect("relay-server/src/tls.rs defines SESSION_CACHE_SIZE")
}

/// A client of `version` only that trusts exactly the relay's certificate, with rustls' default
/// resumption (an in-memory session store; session IDs and tickets for TLS 1.2).
fn client_config(
    version: &'static rustls::SupportedProtocolVersion,
    cert: &Path,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("the relay's certificate"))
        .expect("a usable certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("a version ring supports")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A full handshake with `client` on a new connection, then a close without a word.
fn handshake(addr: SocketAddr, client: &Arc<ClientConfig>) {
    let mut tcp = connect(addr);
    let name = ServerName::try_from("localhost").expect("a name");
    let mut conn = ClientConnection::new(client.clone(), name).expect("a client");
    // A TLS 1.2 handshake takes two round trips; complete_io makes at least one each call.
    for _ in 0..8 {
        if !conn.is_handshaking() {
            return;
        }
        conn.complete_io(&mut tcp).expect("handshake");
    }
    panic!("the handshake did not finish in 8 round trips");
}

/// A TCP connection to `addr` whose reads and writes time out after [`IO_TIMEOUT`].
fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp
}

/// Asks the relay for `/healthz` on a new connection of `client` and reads the answer to its end,
/// which also reads the session tickets the relay sends after the handshake. Returns how the
/// handshake went.
fn get_health(addr: SocketAddr, client: &Arc<ClientConfig>) -> HandshakeKind {
    let mut tcp = connect(addr);
    let name = ServerName::try_from("localhost").expect("a name");
    let mut conn = ClientConnection::new(client.clone(), name).expect("a client");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .expect("send the request");
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // The relay may close without a close_notify once it has answered.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read the answer: {e}"),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conn.handshake_kind().expect("the handshake is done")
}

/// One `openssl s_client -tls1_2` connection to `addr` with `extra`, saving its session to or
/// resuming it from `session` (`-sess_out`/`-sess_in`); returns what it printed.
fn s_client(addr: SocketAddr, extra: Option<&str>, flag: &str, session: &Path) -> String {
    let mut command = Command::new("openssl");
    command
        .args([
            "s_client",
            "-tls1_2",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(addr.to_string())
        .args(extra)
        .arg(flag)
        .arg(session);
    let (status, stdout, stderr) = finish(command, OPENSSL_DEADLINE, "openssl s_client");
    assert!(
        status.success(),
        "openssl s_client: {status}\n{stdout}\n{stderr}"
    );
    stdout
}

/// Runs `command` with no stdin, in a process group of its own, and waits for it; kills the group
/// and fails the test after `deadline`. Returns the status, stdout and stderr.
fn finish(mut command: Command, deadline: Duration, what: &str) -> (ExitStatus, String, String) {
    use std::os::unix::process::CommandExt;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hang can be killed with every process it started.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |reader: std::thread::JoinHandle<String>| reader.join().unwrap_or_default();
    (status, text(stdout), text(stderr))
}

/// Reads `pipe` to its end on a thread of its own, so a chatty child never blocks on it.
fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Scans `addr` with testssl.sh: protocols (`-p`) and every cipher of every protocol (`-E`),
/// without DNS lookups. Returns its JSON output; fails the test if testssl is missing or hangs.
fn scan(addr: SocketAddr) -> Value {
    let scanner = SCANNER_NAMES
        .iter()
        .find_map(|name| on_path(name))
        .unwrap_or_else(|| {
            panic!(
                "testssl.sh not found on PATH (looked for {SCANNER_NAMES:?}); install it with \
                 `apt-get install testssl.sh` (.ci/run does)"
            )
        });
    let dir = TempDir::new("testssl");
    let json = dir.path().join("scan.json");
    let mut command = Command::new(&scanner);
    command
        .args(["--quiet", "--color", "0", "--warnings", "off"])
        .args(["--nodns", "none", "--jsonfile-pretty"])
        .arg(&json)
        .args(["-p", "-E"])
        .arg(addr.to_string())
        .current_dir(dir.path());
    let (status, stdout, stderr) = finish(command, SCAN_DEADLINE, "testssl");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl ({status}) wrote no {}: {e}\n{stdout}\n{stderr}",
            json.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("testssl's JSON: {e}\n{text}"))
}

/// The first `name` on `PATH` that is a file.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Everything in a testssl `--jsonfile-pretty` scan that breaks the relay's TLS policy, one line
/// each; empty when the scan shows TLS 1.2 and 1.3 only and AEAD suites only (at least one for
/// each version). A finding the scan lacks is a breach too, so a scan that failed to run never
/// passes.
fn breaches(scan: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let target = &scan["scanResult"][0];
    let finding = |section: &str, id: &str| {
        target[section].as_array().and_then(|items| {
            items
                .iter()
                .find(|item| item["id"] == id)
                .and_then(|item| item["finding"].as_str())
        })
    };
    let mut expect = |section: &str, id: &str, wanted: &str| match finding(section, id) {
        Some(found) if found.starts_with(wanted) => {}
        Some(found) => out.push(format!("{id}: {found}, must be {wanted}")),
        None => out.push(format!("{id}: no finding in {section}")),
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        expect("protocols", old, "not offered");
    }
    for current in ["TLS1_2", "TLS1_3"] {
        expect("protocols", current, "offered");
    }

    // `-E` lists the suites each protocol accepted: "TLS 1.2  xc02b  ECDHE-ECDSA-AES128-GCM-SHA256
    // ECDH 253  AESGCM  128  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", the IANA name last.
    let suites = target["cipherTests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut per_version = [
        ("cipher-tls1_2_", "TLS 1.2", 0),
        ("cipher-tls1_3_", "TLS 1.3", 0),
    ];
    for suite in &suites {
        let id = suite["id"].as_str().unwrap_or_default();
        let text = suite["finding"].as_str().unwrap_or_default();
        if !id.starts_with("cipher-") || text.contains("not offered") {
            continue;
        }
        for (prefix, _, count) in &mut per_version {
            *count += usize::from(id.starts_with(*prefix));
        }
        let name = text.split_whitespace().last().unwrap_or_default();
        let aead = name.contains("_GCM_") || name.contains("_CHACHA20_POLY1305_");
        let weak = ["CBC", "RC4", "DES", "NULL", "EXPORT", "_anon_", "MD5"]
            .iter()
            .any(|bad| name.contains(bad));
        if !aead || weak {
            out.push(format!("{id}: {name} is not an allowed AEAD suite"));
        }
    }
    for (_, version, count) in per_version {
        if count == 0 {
            out.push(format!("no {version} suite offered"));
        }
    }
    out
}
