//! The `relay-agent` binary as a user meets it: flag errors, help, giving up on an unreachable
//! relay, and stopping on SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use test_support::{DEADLINE, Program, TempDir, terminate};

/// The binary under test.
const AGENT: Program = Program {
    path: env!("CARGO_BIN_EXE_relay-agent"),
    name: "relay-agent",
    log: "info",
};

/// The agent with `args`, started in a fresh working directory of its own: the agent keeps its
/// state in `./relay-agent-data` by default, and two agents may not share one.
fn agent(args: &[&str]) -> (Command, TempDir) {
    let dir = TempDir::new("agent-cli");
    (AGENT.command(args, dir.path()), dir)
}

fn wait(child: Child) -> (ExitStatus, String) {
    AGENT.wait(child)
}

/// Runs the agent to completion: its exit status and what it wrote to stderr.
fn run(args: &[&str]) -> (ExitStatus, String) {
    run_in(args).0
}

/// [`run`], also returning the working directory it ran in.
fn run_in(args: &[&str]) -> ((ExitStatus, String), TempDir) {
    let (mut command, dir) = agent(args);
    (wait(command.spawn().expect("start relay-agent")), dir)
}

/// Asserts a validation failure: exit 2 and exactly one `relay-agent: error:` line.
fn assert_one_line_error(args: &[&str], mentions: &str) {
    let dir = TempDir::new("agent-cli");
    AGENT.assert_one_line_error(args, dir.path(), 2, mentions);
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
        .env("RELAY_JOIN", "rj1.super-secret-join")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--relay",
        "--token",
        "RELAY_AGENT_TOKEN",
        "--ca",
        "--pin",
        "--join",
        "RELAY_JOIN",
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
    assert!(!help.contains("super-secret-join"));
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
    terminate(&child);
    let (status, stderr) = wait(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn an_unusable_state_dir_is_named_and_bot_tokens_stay_out_of_errors() {
    let dir = TempDir::new("agent-cli");
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

#[test]
fn relay_join_in_the_environment_is_enough_to_dial_and_a_bad_one_is_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay = format!("ws://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let join = protocol::Join {
        relay: relay.clone(),
        token: protocol::Secret::new("join-5ecret-token"),
        pin: None,
    }
    .encode();
    let args = [
        "--bot",
        "echo=http://127.0.0.1:1/",
        "--startup-timeout",
        "1s",
    ];
    let (mut command, _dir) = agent(&args);
    let child = command
        .env("RELAY_JOIN", &join)
        .spawn()
        .expect("start relay-agent");
    let (status, stderr) = wait(child);
    // No relay or token flag, yet it dialed the join value's relay.
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "relay-agent: error: cannot reach the relay at {relay}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("5ecret"), "{stderr}");

    let cut = &join[..join.len() - 6];
    let (mut command, _dir) = agent(&args);
    let child = command
        .env("RELAY_JOIN", cut)
        .spawn()
        .expect("start relay-agent");
    let (status, stderr) = wait(child);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("relay-agent: error: --join (or RELAY_JOIN): damaged join value"),
        "{stderr}"
    );
    assert!(!stderr.contains("5ecret"), "{stderr}");
}
