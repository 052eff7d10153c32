//! The `relay-server` binary as a user meets it: the plain first start and its printed
//! instructions, one-line errors for the mistakes a user can make, and stopping on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RELAY: &str = env!("CARGO_BIN_EXE_relay-server");

/// How long any run of the binary may take in these tests.
const DEADLINE: Duration = Duration::from_secs(20);

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-server-cli-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn relay(args: &[&str], cwd: &PathBuf) -> Command {
    let mut command = Command::new(RELAY);
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("RELAY_AGENT_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit, killing it if it outlives [`DEADLINE`].
fn wait(mut child: Child) -> (ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if started.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("relay-server did not exit within {DEADLINE:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    (status, stderr)
}

/// Runs the relay with `args` and asserts it fails with one `relay-server: error:` line.
fn assert_one_line_error(args: &[&str], code: i32, mentions: &str) {
    let dir = temp_dir("error");
    let (status, stderr) = wait(relay(args, &dir).spawn().expect("start relay-server"));
    assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].starts_with("relay-server: error: "), "{stderr}");
    assert!(lines[0].contains(mentions), "{stderr}");
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
    drop(taken);
}

#[test]
fn plain_start_prints_the_agent_command_and_keeps_its_token_and_certificate() {
    let dir = temp_dir("first-start");
    let mut child = relay(&["--listen", "127.0.0.1:0"], &dir)
        .spawn()
        .expect("start relay-server");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut banner = Vec::new();
    while !banner
        .iter()
        .any(|l: &String| l.contains("relay-agent --relay"))
    {
        match lines.recv_timeout(DEADLINE) {
            Ok(line) => banner.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no agent command printed; got {banner:?}");
            }
        }
    }
    let token = std::fs::read_to_string(dir.join("relay-data/agent-token")).expect("token kept");
    let command = banner
        .iter()
        .find(|l| l.contains("relay-agent --relay"))
        .expect("command");
    assert!(command.contains("wss://127.0.0.1:"), "{command}");
    assert!(command.contains(token.trim()), "{command}");
    assert!(
        command.contains("--ca ") && command.contains("self-signed-cert.pem"),
        "{command}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("https://127.0.0.1:") && l.contains("/hook/NAME")),
        "{banner:?}"
    );
    assert!(dir.join("relay-data/tls/self-signed-cert.pem").exists());

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let (status, stderr) = wait(child);
    assert!(status.success(), "SIGTERM should exit 0: {stderr}");
}
