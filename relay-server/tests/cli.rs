//! The `relay-server` binary as a user meets it: the plain first start and its printed
//! instructions, one-line errors for the mistakes a user can make, stopping on SIGTERM, and a
//! `kill -9` that loses none of the updates it answered 200 for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use test_support::{DEADLINE, Lines, Program, Stderr, temp_dir, terminate};

/// The binary under test.
const RELAY: Program = Program {
    path: env!("CARGO_BIN_EXE_relay-server"),
    name: "relay-server",
    log: "warn",
};

fn relay(args: &[&str], cwd: &Path) -> Command {
    RELAY.command(args, cwd)
}

/// Runs the relay with `args` and asserts it fails with one `relay-server: error:` line.
fn assert_one_line_error(args: &[&str], code: i32, mentions: &str) {
    RELAY.assert_one_line_error(args, &temp_dir("error"), code, mentions);
}

#[test]
fn mistakes_a_user_can_make_get_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    assert_one_line_error(&["--listen", &port], 1, "already in use");
    assert_one_line_error(
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        1,
        "/nonexistent/cert.pem",
    );
    assert_one_line_error(&["--agent-token", "short"], 2, "at least 16");
    assert_one_line_error(
        &["--config", "/nonexistent/relay.toml"],
        2,
        "/nonexistent/relay.toml",
    );
    let dir = temp_dir("bad-config");
    let bad = dir.join("relay.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nlisen = 1\n").expect("write");
    assert_one_line_error(&["--config", bad.to_str().expect("utf-8")], 2, "lisen");
    // A data dir inside a file: the cause is named once, not repeated after the message.
    let file = dir.join("a-file");
    std::fs::write(&file, "").expect("write");
    let data_dir = file.join("data");
    let data_dir = data_dir.to_str().expect("utf-8");
    assert_one_line_error(&["--data-dir", data_dir], 1, "cannot create the data dir");
    let (_, stderr) = RELAY.run(&["--data-dir", data_dir], &dir);
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    drop(taken);
}

#[test]
fn plain_start_prints_one_join_line_that_carries_url_token_and_pin() {
    let dir = temp_dir("first-start");
    let mut child = relay(
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &dir,
    )
    .spawn()
    .expect("start relay-server");
    let banner = Lines::of(&mut child)
        .until(|line| line.contains("setWebhook"))
        .unwrap_or_else(|banner| {
            let _ = child.kill();
            panic!("no agent command and certificate printed; got {banner:?}");
        });
    let token = std::fs::read_to_string(dir.join("relay-data/agent-token")).expect("token kept");
    let cert = dir.join("relay-data/tls/self-signed-cert.pem");
    let first = banner
        .iter()
        .position(|l| l.contains("RELAY_JOIN="))
        .expect("the environment form");
    let second = banner
        .iter()
        .position(|l| l.contains("relay-agent --join"))
        .expect("the flag form");
    assert!(
        first < second,
        "the environment form comes first: {banner:?}"
    );
    let value = banner[first]
        .split_whitespace()
        .find_map(|word| word.strip_prefix("RELAY_JOIN="))
        .expect("value");
    let join = protocol::Join::parse(value).expect("a join value");
    assert!(join.relay.starts_with("wss://127.0.0.1:"), "{}", join.relay);
    assert_eq!(join.token.expose(), token.trim());
    assert_eq!(join.pin, Some(pin_of(&cert)));
    assert!(
        banner[first].contains("relay-agent --bot NAME="),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("https://127.0.0.1:") && l.contains("/hook/NAME")),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("self-signed-cert.pem") && l.contains("Telegram")),
        "where the certificate to upload is: {banner:?}"
    );

    terminate(&child);
    let (status, stderr) = RELAY.wait(child);
    assert!(status.success(), "SIGTERM should exit 0: {stderr}");

    // Later starts do not repeat the token; `relay-server join` prints the value on request.
    let mut child = relay(
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &dir,
    )
    .spawn()
    .expect("start relay-server");
    let banner = Lines::of(&mut child)
        .until(|line| line.contains("relay-server join"))
        .unwrap_or_else(|banner| {
            let _ = child.kill();
            panic!("no pointer to `relay-server join`; got {banner:?}");
        });
    assert!(
        !banner.iter().any(|l| l.contains(token.trim())),
        "{banner:?}"
    );
    terminate(&child);
    RELAY.wait(child);
    let output = relay(&["--listen", "127.0.0.1:8443", "join"], &dir)
        .output()
        .expect("relay-server join");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    let join = protocol::Join::parse(printed.trim()).expect("a join value");
    assert_eq!(join.relay, "wss://127.0.0.1:8443");
    assert_eq!(join.token.expose(), token.trim());
    assert_eq!(join.pin, Some(pin_of(&cert)));
    // A public host the kept certificate is not for would get a new certificate, and a new pin,
    // at the next start: no value that would stop working then.
    let (status, stderr) = RELAY.run(&["--public-host", "relay.example.com", "join"], &dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("start the relay with this public host first"),
        "{stderr}"
    );
}

/// The SHA-256 pin of the first certificate in the PEM file `path`.
fn pin_of(path: &Path) -> protocol::Pin {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .expect("pem")
        .next()
        .expect("one certificate")
        .expect("valid");
    protocol::Pin::of(&der)
}

#[test]
fn cert_prints_the_file_to_upload_and_its_fingerprint() {
    let dir = temp_dir("cert-command");
    let (status, stderr) = RELAY.run(&["cert"], &dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("start the relay once"), "{stderr}");
    let mut server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--public-host",
            "203.0.113.7",
        ],
        &dir,
    );
    server.terminate();
    let output = relay(&["cert"], &dir).output().expect("relay-server cert");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let cert = dir.join("relay-data/tls/self-signed-cert.pem");
    assert!(text.contains(&pin_of(&cert).to_string()), "{text}");
    assert!(
        text.contains("names:       203.0.113.7, localhost"),
        "{text}"
    );
    assert!(text.contains("certificate=@"), "{text}");
}

#[test]
fn sighup_reloads_instead_of_stopping() {
    let dir = temp_dir("sighup");
    let mut server = Server::start(
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &dir,
    );
    for _ in 0..2 {
        let hup = Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(hup.success());
    }
    // Still serving after both signals (the default action of SIGHUP would have ended it).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(
            server.child.try_wait().expect("try_wait").is_none(),
            "SIGHUP ended the relay: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = server.terminate();
    assert!(status.success(), "SIGTERM still stops it cleanly");
}

/// A `relay-server` serving in the background. Dropping it kills it, so a failing test leaves no
/// process behind.
struct Server {
    child: Child,
    stderr: Stderr,
}

impl Server {
    /// Starts `relay-server` with `args` in `cwd` and waits for its banner's "listening on"
    /// line, which it prints once its ports are bound and its store is open.
    fn start(args: &[&str], cwd: &Path) -> Self {
        let mut child = relay(args, cwd).spawn().expect("start relay-server");
        let lines = Lines::of(&mut child);
        let stderr = Stderr::of(&mut child);
        let mut server = Self { child, stderr };
        // Timed out, or stdout closed because the relay exited.
        if lines.until(|line| line.contains(" listening on ")).is_err() {
            server.kill();
            panic!("relay-server did not start: {}", server.stderr());
        }
        server
    }

    /// Kills the process with SIGKILL (what `Child::kill` sends on Unix): no signal handler, no
    /// drain, no flush; only what already reached the disk survives. Returns how it ended.
    fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Sends SIGTERM, as systemd and `docker stop` do, and waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        terminate(&self.child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "relay-server did not stop within {DEADLINE:?} of SIGTERM: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process wrote to stderr; call it once the process has exited.
    fn stderr(&mut self) -> String {
        self.stderr.text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A port that was free a moment ago. Another process could take it before the relay binds it;
/// on a test machine that is rare enough, and the relay then fails loudly, not wrongly. The relay
/// must be started on fixed ports here because it is started twice on the same ones.
fn free_ports() -> (SocketAddr, SocketAddr) {
    let first = TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        first.local_addr().expect("addr"),
        second.local_addr().expect("addr"),
    )
}

/// Sends one HTTP/1.1 request (head and body, as written) over a new connection, which the relay
/// closes after its answer (`Connection: close`), and returns the status and the body.
fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect to the relay");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("read the relay's answer");
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// POSTs one update to `path` as Telegram does (`Content-Type: application/json`) and returns
/// the status code.
fn post_update(addr: SocketAddr, path: &str, update: &str) -> u16 {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{update}",
        update.len()
    );
    exchange(addr, &request).0
}

/// The counters of the admin API at `admin`, asked with the token the relay keeps in `data_dir`,
/// as `relay-server stats` does.
fn stats(data_dir: &Path, admin: SocketAddr) -> serde_json::Value {
    let token = std::fs::read_to_string(data_dir.join("admin-token")).expect("admin token");
    let request = format!(
        "GET /stats HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        token.trim()
    );
    let (status, body) = exchange(admin, &request);
    assert_eq!(status, 200, "admin API: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {body}"))
}

#[test]
fn kill_9_loses_no_update_the_relay_answered_200_for() {
    /// Updates sent before the kill.
    const UPDATES: usize = 200;
    /// Telegram sends different chats' updates side by side; so do these senders, one chat each.
    const CHATS: usize = 4;

    let dir = temp_dir("kill-9");
    let data_dir = dir.join("data");
    let config = dir.join("relay.toml");
    // A bot in durable mode is known without an agent, and every update of it is stored.
    std::fs::write(&config, "[bots.echo]\nmode = \"durable\"\n").expect("write config");
    let (listen, admin) = free_ports();
    let (listen_arg, admin_arg) = (listen.to_string(), admin.to_string());
    let args = [
        "--no-tls",
        "--listen",
        &listen_arg,
        "--admin-listen",
        &admin_arg,
        "--agent-token",
        "kill-nine-agent-token-0123",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ];

    let mut server = Server::start(&args, &dir);
    std::thread::scope(|senders| {
        for chat in 0..CHATS {
            senders.spawn(move || {
                for n in (chat..UPDATES).step_by(CHATS) {
                    let update = format!(
                        r#"{{"update_id":{},"message":{{"message_id":{n},"chat":{{"id":{},"type":"private"}},"date":1764028800,"text":"update {n}"}}}}"#,
                        700_000_000 + n,
                        5_000_000_000 + chat as u64,
                    );
                    let status = post_update(listen, "/hook/echo", &update);
                    assert_eq!(status, 200, "update {n} was not acknowledged");
                }
            });
        }
    });
    let ended = server.kill().expect("relay-server killed");
    assert_eq!(
        ended.signal(),
        Some(9),
        "relay-server was running until the kill: {ended}"
    );
    let killed = server.stderr();
    assert!(
        !killed.contains("ERROR"),
        "the relay logged errors before the kill: {killed}"
    );

    let mut server = Server::start(&args, &dir);
    let counters = stats(&data_dir, admin);
    assert_eq!(
        counters["waiting"], UPDATES,
        "every update answered 200 is back after kill -9: {counters}"
    );
    assert_eq!(counters["dead_letters"], 0, "{counters}");
    // The admin subcommands say the same, as an operator would ask.
    let data_dir_arg = data_dir.to_str().expect("utf-8 path");
    let admin_arg = admin.to_string();
    let output = relay(
        &[
            "--data-dir",
            data_dir_arg,
            "--admin-listen",
            &admin_arg,
            "stats",
        ],
        &dir,
    )
    .output()
    .expect("run relay-server stats");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stats failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains(&format!("\"waiting\": {UPDATES}")),
        "{printed}"
    );
    let output = relay(
        &[
            "--data-dir",
            data_dir_arg,
            "--admin-listen",
            &admin_arg,
            "dead-letters",
            "list",
        ],
        &dir,
    )
    .output()
    .expect("run relay-server dead-letters list");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "no dead letters"
    );

    let status = server.terminate();
    let stderr = server.stderr();
    assert!(
        status.success(),
        "SIGTERM should exit 0: {status}: {stderr}"
    );
}

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = temp_dir("no-ansi");
    let mut child = relay(
        &[
            "--no-tls",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &dir,
    )
    .env("RUST_LOG", "info")
    .spawn()
    .expect("start relay-server");
    let started = Lines::of(&mut child).until(|line| line.contains(" listening on "));
    terminate(&child);
    let (status, stderr) = RELAY.wait(child);
    assert!(started.is_ok(), "relay-server did not start: {stderr}");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("relay listening"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a log that is not a terminal: {stderr:?}"
    );
}

#[test]
fn idle_connections_cannot_lock_the_operator_out_of_the_admin_api() {
    let dir = temp_dir("admin-idle");
    let data_dir = dir.join("data");
    let (listen, admin) = free_ports();
    // Every interface, which the relay warns about; the test still talks over loopback.
    let all_interfaces = format!("0.0.0.0:{}", admin.port());
    let listen_arg = listen.to_string();
    let args = [
        "--no-tls",
        "--listen",
        &listen_arg,
        "--admin-listen",
        &all_interfaces,
        "--agent-token",
        "admin-idle-agent-token-0123",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
    ];
    let mut server = Server::start(&args, &dir);
    // More idle connections than the admin API has slots, none sending a byte.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect_timeout(&admin, DEADLINE).expect("connect"))
        .collect();
    let counters = stats(&data_dir, admin);
    assert_eq!(counters["stored"], 0, "{counters}");
    drop(idle);
    server.kill().expect("relay-server killed");
    let stderr = server.stderr();
    assert!(
        stderr.contains("admin API listens beyond loopback"),
        "no warning about the admin address: {stderr}"
    );
}
