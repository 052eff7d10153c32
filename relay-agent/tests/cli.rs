//! The `relay-agent` binary as a user meets it: flag errors, help, giving up on an unreachable
//! relay, and stopping on SIGTERM.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_relay-agent");

/// How long any run of the binary may take in these tests.
const DEADLINE: Duration = Duration::from_secs(20);

/// A working directory of one run's own, removed when dropped: the agent keeps its state in
/// `./relay-agent-data` by default, and two agents may not share one.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> WorkDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("relay-agent-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create work dir");
        WorkDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent with `args`, started in a fresh working directory.
fn agent(args: &[&str]) -> (Command, WorkDir) {
    let dir = WorkDir::new();
    let mut command = Command::new(AGENT);
    command
        .current_dir(dir.path())
        .args(args)
        .env_remove("RELAY_AGENT_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (command, dir)
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
                panic!("relay-agent did not exit within {DEADLINE:?}");
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

/// Runs the agent to completion: its exit status and what it wrote to stderr.
fn run(args: &[&str]) -> (ExitStatus, String) {
    run_in(args).0
}

/// [`run`], also returning the working directory it ran in.
fn run_in(args: &[&str]) -> ((ExitStatus, String), WorkDir) {
    let (mut command, dir) = agent(args);
    (wait(command.spawn().expect("start relay-agent")), dir)
}

/// Asserts a validation failure: exit 2 and exactly one `relay-agent: error:` line.
fn assert_one_line_error(args: &[&str], mentions: &str) {
    let (status, stderr) = run(args);
    assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].starts_with("relay-agent: error: "), "{stderr}");
    assert!(lines[0].contains(mentions), "{stderr}");
}

#[test]
fn validation_errors_are_one_line() {
    let base = ["--relay", "ws://127.0.0.1:9", "--token", "t"];
    assert_one_line_error(&base, "--bot");
    assert_one_line_error(&[&base[..], &["--bot", "nonsense"]].concat(), "NAME=URL");
    assert_one_line_error(
        &[&base[..], &["--bot", "echo=https://127.0.0.1/"]].concat(),
        "http://",
    );
    assert_one_line_error(
        &[&base[..], &["--bot", "no/slash=http://127.0.0.1/"]].concat(),
        "bot name",
    );
    assert_one_line_error(
        &[
            "--relay",
            "http://x",
            "--token",
            "t",
            "--bot",
            "a=http://h/",
        ],
        "--relay",
    );
    assert_one_line_error(
        &["--relay", "ws://x", "--bot", "a=http://h/"],
        "RELAY_AGENT_TOKEN",
    );
    assert_one_line_error(
        &[
            &base[..],
            &["--bot", "a=http://h/", "--request-timeout", "soon"],
        ]
        .concat(),
        "--request-timeout",
    );
    assert_one_line_error(
        &["--config", "/nonexistent/agent.toml"],
        "/nonexistent/agent.toml",
    );
}

#[test]
fn unknown_flags_are_refused_by_clap() {
    let (status, stderr) = run(&["--no-such-flag"]);
    assert!(!status.success());
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn help_documents_every_flag_and_hides_the_token() {
    let (mut command, _dir) = agent(&["--help"]);
    let output = command
        .env("RELAY_AGENT_TOKEN", "super-secret-value")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--relay",
        "--token",
        "RELAY_AGENT_TOKEN",
        "--ca",
        "--bot",
        "--config",
        "--name",
        "--max-concurrency",
        "--request-timeout",
        "--heartbeat-timeout",
        "--startup-timeout",
        "--state-dir",
        "--bot-token",
        "RELAY_BOT_TOKEN_",
        "--api-url",
        "SIGTERM",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(!help.contains("super-secret-value"));
}

#[test]
fn an_unreachable_relay_ends_the_agent_after_the_startup_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay = format!("ws://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let args = [
        "--relay",
        &relay,
        "--token",
        "t",
        "--bot",
        "echo=http://127.0.0.1:1/",
        "--startup-timeout",
        "1s",
    ];
    let ((status, stderr), dir) = run_in(&args);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        dir.path().join("relay-agent-data/echo.ids").is_file(),
        "the default state directory is made in the working directory"
    );
    assert!(
        stderr.contains(&format!("relay unreachable at {relay}")),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "relay-agent: error: cannot reach the relay at {relay}: "
        )),
        "{stderr}"
    );
    assert!(last.contains("check --relay"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_agent_cleanly() {
    // A relay that accepts TCP but never answers the upgrade: the agent is mid-dial when told to stop.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let relay = format!("ws://{}", listener.local_addr().expect("addr"));
    let args = [
        "--relay",
        &relay,
        "--token",
        "t",
        "--bot",
        "echo=http://127.0.0.1:1/",
    ];
    let (mut command, _dir) = agent(&args);
    let child = command.spawn().expect("start relay-agent");
    let started = Instant::now();
    let _connection = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(started.elapsed() < DEADLINE, "the agent never dialed");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("accept: {error}"),
        }
    };
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let (status, stderr) = wait(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn an_unusable_state_dir_is_named_and_bot_tokens_stay_out_of_errors() {
    let dir = WorkDir::new();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").expect("write");
    let state = file.join("state");
    let state = state.to_str().expect("utf-8 path");
    let args = [
        "--relay",
        "ws://127.0.0.1:9",
        "--token",
        "t",
        "--bot",
        "echo=http://127.0.0.1:1/",
        "--state-dir",
        state,
    ];
    let (status, stderr) = run(&args);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "relay-agent: error: cannot use the state directory {state}"
        )),
        "{stderr}"
    );
    assert!(last.contains("check --state-dir"), "{stderr}");

    assert_one_line_error(
        &[
            "--relay",
            "ws://127.0.0.1:9",
            "--token",
            "t",
            "--bot",
            "echo=http://127.0.0.1:1/",
            "--bot-token",
            "echo=12345:has a space",
        ],
        "bot token for 'echo'",
    );
    let (_, stderr) = run(&[
        "--relay",
        "ws://127.0.0.1:9",
        "--token",
        "t",
        "--bot",
        "echo=http://127.0.0.1:1/",
        "--bot-token",
        "12345:no-name-given",
    ]);
    assert!(stderr.contains("--bot-token"), "{stderr}");
    assert!(!stderr.contains("no-name-given"), "{stderr}");
}
