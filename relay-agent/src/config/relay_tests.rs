//! Tests for [`super`]: a join value fills in what nothing else gives, and its faults are one
//! line that never shows the token.

use clap::Parser;
use protocol::{Join, Pin, Secret};
use test_support::TempDir;

use crate::config::{Cli, Config, ConfigError};

const TOKEN: &str = "join-5ecret-token";

fn join(pin: Option<Pin>) -> String {
    Join {
        relay: "wss://relay.example.org:8443".into(),
        token: Secret::new(TOKEN),
        pin,
    }
    .encode()
}

fn config(args: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["relay-agent", "--bot", "echo=http://127.0.0.1:8080/"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("flags parse");
    Config::from_cli_and_env(cli, |_| None)
}

fn pin(n: u8) -> Pin {
    Pin::of(&[n])
}

#[test]
fn a_join_value_alone_gives_the_relay_the_token_and_the_pin() {
    let config = config(&["--join", &join(Some(pin(1)))]).expect("valid");
    assert_eq!(config.relay.to_string(), "wss://relay.example.org:8443");
    assert_eq!(config.token.expose(), TOKEN);
    assert_eq!(config.pin, Some(pin(1)));
    assert_eq!(config.ca, None);
    let debug = format!("{config:?}");
    assert!(!debug.contains("5ecret"), "{debug}");
}

#[test]
fn explicit_flags_win_over_the_join_value_s_parts() {
    let value = join(Some(pin(1)));
    let flags = config(&[
        "--join",
        &value,
        "--relay",
        "wss://other.example.org",
        "--token",
        "flag-token",
        "--pin",
        &pin(2).to_string(),
    ])
    .expect("valid");
    assert_eq!(flags.relay.to_string(), "wss://other.example.org");
    assert_eq!(flags.token.expose(), "flag-token");
    assert_eq!(flags.pin, Some(pin(2)));

    // --ca replaces the join value's pin: the file given on purpose is what is trusted.
    let with_ca = config(&["--join", &value, "--ca", "/etc/relay.pem"]).expect("valid");
    assert_eq!(with_ca.pin, None);
    assert_eq!(
        with_ca.ca.as_deref(),
        Some(std::path::Path::new("/etc/relay.pem"))
    );
    assert_eq!(with_ca.token.expose(), TOKEN);
}

#[test]
fn the_file_takes_join_and_pin_and_its_keys_win_over_a_join_value() {
    let dir = TempDir::new("agent-join-file");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!("join = \"{}\"\npin = \"{}\"\n", join(Some(pin(1))), pin(3)),
    )
    .expect("write");
    let file = path.to_str().expect("utf-8");
    let from_file = config(&["--config", file]).expect("valid");
    assert_eq!(from_file.token.expose(), TOKEN);
    assert_eq!(from_file.pin, Some(pin(3)));

    std::fs::write(
        &path,
        "relay = \"ws://127.0.0.1:9000\"\ntoken = \"file-token\"\n",
    )
    .expect("write");
    let mixed = config(&["--config", file, "--join", &join(Some(pin(1)))]).expect("valid");
    assert_eq!(mixed.relay.to_string(), "ws://127.0.0.1:9000");
    assert_eq!(mixed.token.expose(), "file-token");
    assert_eq!(mixed.pin, Some(pin(1)));
}

#[test]
fn a_bad_join_value_or_pin_is_one_line_naming_where_it_came_from() {
    let value = join(None);
    let cut = &value[..value.len() - 5];
    let dir = TempDir::new("agent-bad-pin-file");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "pin = \"sha256:abc\"\n").expect("write");
    let file = path.to_str().expect("utf-8");
    for (args, key) in [
        (vec!["--join", cut], "--join (or RELAY_JOIN)"),
        (vec!["--join", TOKEN], "--join (or RELAY_JOIN)"),
        (
            vec!["--join", &value, "--pin", "sha256:12:34"],
            "--pin: a pin is sha256:",
        ),
        (
            vec!["--join", &value, "--config", file],
            "pin in the config file",
        ),
    ] {
        let error = config(&args).expect_err("refused");
        let text = error.to_string();
        assert!(
            matches!(error, ConfigError::Join { .. } | ConfigError::Pin { .. }),
            "{text}"
        );
        assert!(text.starts_with(key), "{text}");
        assert!(!text.contains('\n') && !text.contains("5ecret"), "{text}");
    }
}

#[test]
fn an_empty_join_value_counts_as_not_given() {
    let error = config(&["--join", " "]).expect_err("no relay");
    assert!(matches!(error, ConfigError::MissingRelay), "{error}");
    assert!(error.to_string().contains("--join"), "{error}");
}
