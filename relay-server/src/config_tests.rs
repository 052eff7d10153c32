use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::file::FileConfig;
use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("relay-server").chain(args.iter().copied()))
        .expect("flags parse")
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(Path::new("test.toml"), text).expect("file parses")
}

#[test]
fn plain_start_uses_the_defaults() {
    let config = Config::merge(cli(&[]), FileConfig::default()).expect("valid");
    assert_eq!(config.listen, "0.0.0.0:8443".parse().expect("addr"));
    assert_eq!(config.data_dir, PathBuf::from("relay-data"));
    assert_eq!(config.tls, TlsMode::self_signed());
    assert!(config.agent_token.is_none());
    assert_eq!(config.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn flags_override_the_file() {
    let file = file(
        r#"
        listen = "127.0.0.1:9000"
        agent_token = "from-the-file-0123456789"
        [limits]
        bot_timeout = "5s"
        "#,
    );
    let config = Config::merge(
        cli(&[
            "--listen",
            "127.0.0.1:9001",
            "--agent-token",
            "from-the-flag-0123456789",
        ]),
        file,
    )
    .expect("valid");
    assert_eq!(config.listen.port(), 9001);
    assert_eq!(
        config.agent_token.expect("token").expose(),
        "from-the-flag-0123456789"
    );
    assert_eq!(config.limits.bot_timeout, Duration::from_secs(5));
}

#[test]
fn tls_flags_come_in_pairs_and_exclude_no_tls() {
    assert!(Cli::try_parse_from(["relay-server", "--tls-cert", "c.pem"]).is_err());
    assert!(
        Cli::try_parse_from([
            "relay-server",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--no-tls"
        ])
        .is_err()
    );
    let config = Config::merge(
        cli(&["--tls-cert", "c", "--tls-key", "k"]),
        FileConfig::default(),
    )
    .expect("valid");
    assert!(matches!(config.tls, TlsMode::Files { .. }));
    let config = Config::merge(cli(&["--no-tls"]), FileConfig::default()).expect("valid");
    assert_eq!(config.tls, TlsMode::Off);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_a_reason() {
    let err = FileConfig::parse(Path::new("x.toml"), "lisen = 1").expect_err("unknown key");
    assert!(err.to_string().contains("lisen"), "{err}");
    let short = Config::merge(cli(&["--agent-token", "short"]), FileConfig::default());
    assert!(
        short
            .expect_err("short")
            .to_string()
            .contains("at least 16")
    );
    let slow = file("[limits]\nbot_timeout = \"60s\"");
    assert!(Config::merge(cli(&[]), slow).is_err());
    let bad_bot = file("[bots.\"no/slash\"]\n");
    assert!(Config::merge(cli(&[]), bad_bot).is_err());
    let bad_secret = file("[bots.echo]\nsecret_token = \"has space\"");
    assert!(Config::merge(cli(&[]), bad_secret).is_err());
}

#[test]
fn agents_restrict_bots_and_must_not_share_tokens() {
    let config = Config::merge(
        cli(&[]),
        file(
            r#"
            [[agents]]
            name = "home"
            token = "home-token-0123456789"
            bots = ["shop", "echo"]
            [bots.news]
            secret_token = "s3cret_-"
            "#,
        ),
    )
    .expect("valid");
    let bots: Vec<_> = config.configured_bots().collect();
    assert_eq!(bots, ["shop", "echo", "news"]);
    let twice = file(
        r#"
        [[agents]]
        name = "a"
        token = "same-token-0123456789"
        bots = ["a"]
        [[agents]]
        name = "b"
        token = "same-token-0123456789"
        bots = ["b"]
        "#,
    );
    assert!(Config::merge(cli(&[]), twice).is_err());
}

#[test]
fn every_example_config_in_deploy_parses() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut seen = 0;
    for entry in std::fs::read_dir(&deploy).expect("deploy dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("relay-server") && name.ends_with(".toml") {
            let file = FileConfig::read(&path).expect("example parses");
            Config::merge(cli(&[]), file).expect("example is valid");
            seen += 1;
        }
    }
    assert!(seen > 0, "no relay-server*.toml in deploy/");
}

#[test]
fn a_bot_may_drop_the_path_after_its_name() {
    let config = Config::merge(
        cli(&[]),
        file("[bots.plain]\n[bots.fixed]\ndrop_path_suffix = true\n"),
    )
    .expect("valid");
    assert!(!config.bots["plain"].drop_path_suffix);
    assert!(config.bots["fixed"].drop_path_suffix);
    let not_a_bool = FileConfig::parse(Path::new("x.toml"), "[bots.x]\ndrop_path_suffix = 1\n");
    assert!(not_a_bool.is_err());
}

#[test]
fn a_file_that_does_not_parse_is_named_by_line_without_echoing_the_line() {
    // A token on the broken line must not reach the terminal or the journal.
    let text = "listen = \"127.0.0.1:9000\"\nagent_token = \"hidden-token-0123456789\" oops\n";
    let error = FileConfig::parse(Path::new("relay.toml"), text).expect_err("does not parse");
    let message = error.to_string();
    assert!(
        message.starts_with("config file relay.toml: line 2: "),
        "{message}"
    );
    assert!(!message.contains("hidden-token"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn each_bot_keeps_a_reserve_of_its_agents_in_flight_limit() {
    let defaults = Config::merge(cli(&[]), FileConfig::default()).expect("valid");
    assert_eq!(
        defaults.limits.reserved_in_flight_per_bot,
        DEFAULT_RESERVED_IN_FLIGHT_PER_BOT
    );
    let config = Config::merge(
        cli(&[]),
        file("[limits]\nmax_in_flight_per_agent = 8\nreserved_in_flight_per_bot = 3\n"),
    )
    .expect("valid");
    assert_eq!(config.limits.reserved_in_flight_per_bot, 3);
}

#[test]
fn connection_and_memory_budgets_are_read_and_checked() {
    let config = Config::merge(
        cli(&["--no-tls"]),
        file(
            r#"
            trusted_proxies = ["10.0.0.0/8", "::1"]
            [limits]
            max_connections_per_source = 100
            max_handshakes_per_source = 10
            agent_reserve = 0
            keep_alive_timeout = "75s"
            header_read_timeout = "5s"
            max_connection_age = "30m"
            max_requests_per_connection = 500
            max_agent_sessions = 50
            max_sessions_per_token = 5
            body_budget_bytes = 8388608
            "#,
        ),
    )
    .expect("valid");
    let limits = config.limits;
    assert_eq!(limits.max_connections_per_source, 100);
    assert_eq!(limits.max_handshakes_per_source, 10);
    assert_eq!(limits.agent_reserve, 0);
    assert_eq!(limits.keep_alive_timeout, Duration::from_secs(75));
    assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(limits.max_connection_age, Duration::from_secs(1800));
    assert_eq!(limits.max_requests_per_connection, 500);
    assert_eq!(limits.max_agent_sessions, 50);
    assert_eq!(limits.max_sessions_per_token, 5);
    assert_eq!(limits.body_budget_bytes, 8 * 1024 * 1024);
    assert_eq!(config.trusted_proxies.len(), 2);

    let defaults = Config::merge(cli(&[]), FileConfig::default()).expect("valid");
    assert_eq!(defaults.trusted_proxies, IpRange::loopback().to_vec());
    assert_eq!(defaults.limits.max_body_bytes, 1024 * 1024);

    for bad in [
        "[limits]\nbody_budget_bytes = 1024",
        "[limits]\nmax_connections_per_source = 0",
        "[limits]\nmax_sessions_per_token = 2000",
        "[limits]\nkeep_alive_timeout = \"10ms\"",
        "[limits]\nmax_requests_per_connection = 0",
    ] {
        assert!(Config::merge(cli(&[]), file(bad)).is_err(), "{bad}");
    }
    let nonsense = FileConfig::parse(Path::new("x.toml"), "trusted_proxies = [\"10.0.0/8\"]");
    assert!(nonsense.is_err());
}
