//! Tests for [`super`]: flags, the file, their merge, and every validation message being one line.

use std::path::Path;

use clap::Parser;

use super::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/agent.example.toml");

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["relay-agent"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("flags parse")
}

fn config(args: &[&str]) -> Result<Config, ConfigError> {
    Config::from_cli(cli(args))
}

const BASE: [&str; 4] = [
    "--relay",
    "wss://relay.example.com:8443",
    "--token",
    "tok-123",
];

fn with_base(extra: &[&str]) -> Result<Config, ConfigError> {
    let mut args = BASE.to_vec();
    args.extend_from_slice(extra);
    config(&args)
}

/// A config file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("relay-agent-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn assert_one_line(error: &ConfigError) {
    let text = error.to_string();
    assert!(!text.contains('\n') && !text.is_empty(), "{text:?}");
}

#[test]
fn a_good_bot_flag_is_parsed() {
    let config = with_base(&[
        "--bot",
        "echo=http://127.0.0.1:8080/webhook",
        "--bot",
        "b-2=http://localhost:9/",
    ])
    .expect("valid");
    let names: Vec<_> = config.bots.iter().map(|bot| bot.name.as_str()).collect();
    assert_eq!(names, ["echo", "b-2"]);
    assert_eq!(
        config.bots[0].url.to_string(),
        "http://127.0.0.1:8080/webhook"
    );
    assert_eq!(config.max_concurrency, DEFAULT_MAX_CONCURRENCY);
    assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(config.startup_timeout, Some(DEFAULT_STARTUP_TIMEOUT));
    assert!(
        !format!("{config:?}").contains("tok-123"),
        "the token must not show in Debug"
    );
}

#[test]
fn bad_bot_flags_are_refused_with_one_line() {
    type Check = fn(&ConfigError) -> bool;
    let cases: [(&str, Check); 5] = [
        ("echo", |e| matches!(e, ConfigError::BotSpec(_))),
        ("echo=https://127.0.0.1/hook", |e| {
            e.to_string().contains("plain http")
        }),
        ("bad name=http://127.0.0.1/", |e| {
            matches!(e, ConfigError::BotName(_))
        }),
        ("=http://127.0.0.1/", |e| {
            matches!(e, ConfigError::BotName(_))
        }),
        ("echo=127.0.0.1:8080", |e| {
            matches!(e, ConfigError::BotUrl { .. })
        }),
    ];
    for (flag, expected) in cases {
        let error = with_base(&["--bot", flag]).expect_err(flag);
        assert!(expected(&error), "{flag}: {error}");
        assert_one_line(&error);
    }
    let long = format!("{}=http://127.0.0.1/", "a".repeat(65));
    assert!(matches!(
        with_base(&["--bot", &long]),
        Err(ConfigError::BotName(_))
    ));
}

/// The URL messages, word for word: they are what a user reads on a typo.
#[test]
fn url_errors_quote_the_url_and_say_what_to_write() {
    let error = with_base(&["--bot", "echo=127.0.0.1:8080"]).expect_err("no scheme");
    assert_eq!(
        error.to_string(),
        "bot 'echo' URL '127.0.0.1:8080' does not start with http://: write it like \
         http://127.0.0.1:8080/webhook"
    );
    let error = config(&[
        "--relay",
        "https://r.example.com",
        "--token",
        "t",
        "--bot",
        "e=http://b/",
    ])
    .expect_err("https relay");
    assert_eq!(
        error.to_string(),
        "relay URL 'https://r.example.com' uses http(s): pass --relay ws://HOST[:PORT] or \
         wss://HOST[:PORT]"
    );
    let error = with_base(&["--bot", "e=http://b/", "--api-url", "ftp://x"]).expect_err("ftp");
    assert_eq!(
        error.to_string(),
        "--api-url 'ftp://x' does not start with https:// or http://"
    );
}

/// The bot-name rule is protocol's; the message reads as it always has.
#[test]
fn bad_bot_names_say_the_rule() {
    let error = with_base(&["--bot", "a.b=http://127.0.0.1/"]).expect_err("dot");
    assert_eq!(
        error.to_string(),
        "bot name 'a.b' is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"
    );
}

#[test]
fn relay_url_and_tunables_are_validated() {
    let bot = ["--bot", "echo=http://127.0.0.1:8080/"];
    let bad: [&[&str]; 8] = [
        &["--relay", "https://relay.example.com", "--token", "t"],
        &["--relay", "relay.example.com", "--token", "t"],
        &[
            "--relay",
            "ws://h",
            "--token",
            "t",
            "--max-concurrency",
            "0",
        ],
        &[
            "--relay",
            "ws://h",
            "--token",
            "t",
            "--max-concurrency",
            "10001",
        ],
        &[
            "--relay",
            "ws://h",
            "--token",
            "t",
            "--request-timeout",
            "0s",
        ],
        &[
            "--relay",
            "ws://h",
            "--token",
            "t",
            "--request-timeout",
            "soon",
        ],
        &[
            "--relay",
            "ws://h",
            "--token",
            "t",
            "--heartbeat-timeout",
            "1ms",
        ],
        &["--relay", "ws://h", "--token", "with space"],
    ];
    for args in bad {
        let mut args = args.to_vec();
        args.extend_from_slice(&bot);
        let error = config(&args).expect_err(&format!("{args:?}"));
        assert_one_line(&error);
    }
    let error = config(&["--token", "t", "--bot", "echo=http://127.0.0.1/"]).expect_err("no relay");
    assert!(matches!(error, ConfigError::MissingRelay), "{error}");
    let error = with_base(&[]).expect_err("no bots");
    assert!(matches!(error, ConfigError::NoBots), "{error}");
    assert!(error.to_string().contains("--bot"));
}

#[test]
fn durations_parse_and_zero_startup_timeout_means_forever() {
    let config = with_base(&[
        "--bot",
        "echo=http://127.0.0.1:8080/",
        "--request-timeout",
        "1m",
        "--heartbeat-timeout",
        "500ms",
        "--startup-timeout",
        "0s",
        "--max-concurrency",
        "7",
        "--reserved-per-bot",
        "2",
        "--name",
        "box",
    ])
    .expect("valid");
    assert_eq!(config.reserved_per_bot, 2);
    assert_eq!(config.request_timeout, Duration::from_secs(60));
    assert_eq!(config.heartbeat_timeout, Duration::from_millis(500));
    assert_eq!(config.startup_timeout, None);
    assert_eq!(config.max_concurrency, 7);
    assert_eq!(config.name, "box");
}

#[test]
fn the_example_file_parses() {
    let config = config(&["--config", EXAMPLE]).expect("example is valid");
    assert_eq!(config.relay.to_string(), "wss://relay.example.com:8443");
    assert_eq!(
        config.relay.endpoint(),
        "wss://relay.example.com:8443/agent/v1"
    );
    assert_eq!(config.token.expose(), "change-me");
    assert_eq!(
        config.ca.as_deref(),
        Some(Path::new("/etc/relay-agent/relay-ca.pem"))
    );
    assert_eq!(config.name, "home-server");
    assert_eq!(config.max_concurrency, 100);
    assert_eq!(config.reserved_per_bot, 10);
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.heartbeat_timeout, Duration::from_secs(9));
    assert_eq!(config.startup_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.bots.len(), 1);
    assert_eq!(config.bots[0].name, "echo");
    assert_eq!(
        config.bots[0].url.to_string(),
        "http://127.0.0.1:8080/webhook"
    );
    assert_eq!(
        config.state_dir.as_deref(),
        Some(Path::new("./relay-agent-data"))
    );
    assert_eq!(config.api_url, ApiUrl::default());
    assert_eq!(config.bots[0].bot_token, None);
}

#[test]
fn unknown_keys_in_the_file_are_refused_with_the_line() {
    let top = TempFile::new(
        "unknown-top",
        "relay = \"ws://h\"\ntoken = \"t\"\nrelya = \"typo\"\n",
    );
    let error = config(&["--config", top.path()]).expect_err("unknown key");
    assert!(matches!(error, ConfigError::File { .. }), "{error}");
    assert!(error.to_string().contains("line 3"), "{error}");
    assert!(error.to_string().contains("relya"), "{error}");
    assert_one_line(&error);

    let bot = TempFile::new(
        "unknown-bot",
        "[bots.echo]\nurl = \"http://127.0.0.1/\"\ncolour = \"x\"\n",
    );
    let error = config(&["--config", bot.path()]).expect_err("unknown bot key");
    assert!(error.to_string().contains("colour"), "{error}");
    assert_one_line(&error);

    let error = config(&["--config", "/nonexistent/agent.toml"]).expect_err("missing file");
    assert!(
        error.to_string().contains("/nonexistent/agent.toml"),
        "{error}"
    );
    assert_one_line(&error);
}

#[test]
fn flags_override_the_file_and_bots_merge() {
    let file = TempFile::new(
        "override",
        "relay = \"ws://file-relay:1\"\ntoken = \"file-token\"\nname = \"file\"\n\
         request_timeout = \"5s\"\nmax_concurrency = 3\nreserved_per_bot = 1\n\
         [bots.from-file]\nurl = \"http://127.0.0.1:9000/\"\n",
    );
    let config = config(&[
        "--config",
        file.path(),
        "--relay",
        "ws://flag-relay:2",
        "--name",
        "flag",
        "--request-timeout",
        "9s",
        "--bot",
        "from-flag=http://127.0.0.1:9001/",
    ])
    .expect("valid");
    assert_eq!(config.relay.to_string(), "ws://flag-relay:2");
    assert_eq!(config.name, "flag");
    assert_eq!(config.request_timeout, Duration::from_secs(9));
    assert_eq!(config.max_concurrency, 3, "kept from the file");
    assert_eq!(config.reserved_per_bot, 1, "kept from the file");
    let names: Vec<_> = config.bots.iter().map(|bot| bot.name.as_str()).collect();
    assert_eq!(names, ["from-flag", "from-file"]);
}

#[test]
fn the_same_bot_twice_is_an_error() {
    let file = TempFile::new(
        "duplicate",
        "[bots.echo]\nurl = \"http://127.0.0.1:9000/\"\n",
    );
    let error = with_base(&[
        "--config",
        file.path(),
        "--bot",
        "echo=http://127.0.0.1:9001/",
    ])
    .expect_err("duplicate");
    assert!(
        matches!(&error, ConfigError::DuplicateBot(name) if name == "echo"),
        "{error}"
    );
    let error = with_base(&[
        "--bot",
        "a=http://127.0.0.1/",
        "--bot",
        "a=http://127.0.0.1/",
    ])
    .expect_err("duplicate flags");
    assert!(matches!(error, ConfigError::DuplicateBot(_)));
}

#[test]
fn config_new_has_defaults_and_validate_catches_hand_edits() {
    let mut config = Config::new(
        "ws://127.0.0.1:9",
        Secret::new("t"),
        vec![("echo".into(), "http://127.0.0.1:8080/webhook".into())],
    )
    .expect("valid");
    assert_eq!(config.max_concurrency, DEFAULT_MAX_CONCURRENCY);
    assert_eq!(config.heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT);
    assert!(!config.name.is_empty());
    assert_eq!(config.reserved_per_bot, DEFAULT_RESERVED_PER_BOT);
    config.reserved_per_bot = MAX_CONCURRENCY_LIMIT + 1;
    assert!(config.validate().is_err());
    config.reserved_per_bot = DEFAULT_RESERVED_PER_BOT;
    config.max_concurrency = 0;
    assert!(config.validate().is_err());
    assert!(
        Config::new(
            "ws://h",
            Secret::new(""),
            vec![("a".into(), "http://h/".into())]
        )
        .is_err()
    );
    assert!(Config::new("ws://h", Secret::new("t"), vec![]).is_err());
}

#[test]
fn every_agent_config_in_deploy_parses() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut seen = 0;
    for entry in std::fs::read_dir(&deploy).expect("deploy dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("relay-agent") && name.ends_with(".toml") {
            let file = path.to_str().expect("utf-8 path");
            // The deploy example leaves the relay, the token and the pin to RELAY_JOIN.
            let join = protocol::Join {
                relay: "wss://relay.example.com".into(),
                token: Secret::new("from-the-environment"),
                pin: Some(protocol::Pin::of(b"the relay's certificate")),
            }
            .encode();
            config(&["--config", file, "--join", &join])
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            seen += 1;
        }
    }
    assert!(seen > 0, "no relay-agent*.toml in deploy/");
}

#[test]
fn state_dir_api_url_and_bot_tokens_have_defaults() {
    let config = with_base(&["--bot", "echo=http://127.0.0.1:8080/"]).expect("valid");
    assert_eq!(
        config.state_dir.as_deref(),
        Some(Path::new(DEFAULT_STATE_DIR))
    );
    assert_eq!(config.api_url.to_string(), "https://api.telegram.org");
    assert_eq!(config.bots[0].bot_token, None);
    // Built by code, the windows stay in memory unless asked.
    let config = Config::new(
        "ws://h",
        Secret::new("t"),
        vec![("a".into(), "http://h/".into())],
    )
    .expect("valid");
    assert_eq!(config.state_dir, None);
    assert_eq!(config.api_url, ApiUrl::default());
}

#[test]
fn bot_tokens_come_from_flags_the_environment_and_the_file_and_never_show() {
    let file = TempFile::new(
        "bot-tokens",
        "state_dir = \"/var/lib/relay-agent\"\napi_url = \"http://127.0.0.1:8081/\"\n\
         [bots.file-only]\nurl = \"http://127.0.0.1:9000/\"\nbot_token = \"111:file-token\"\n\
         [bots.env-wins]\nurl = \"http://127.0.0.1:9001/\"\nbot_token = \"222:file-token\"\n\
         [bots.flag-wins]\nurl = \"http://127.0.0.1:9002/\"\nbot_token = \"333:file-token\"\n",
    );
    let env = |name: &str| match name {
        "RELAY_BOT_TOKEN_ENV_WINS" => Some("222:env-token".to_owned()),
        "RELAY_BOT_TOKEN_FLAG_WINS" => Some("333:env-token".to_owned()),
        "RELAY_BOT_TOKEN_ECHO" => Some(String::new()),
        _ => None,
    };
    let mut args = BASE.to_vec();
    args.extend_from_slice(&[
        "--config",
        file.path(),
        "--bot",
        "echo=http://127.0.0.1:8080/",
        "--bot-token",
        "flag-wins=333:flag-token",
    ]);
    let config = Config::from_cli_and_env(cli(&args), env).expect("valid");
    let tokens: Vec<_> = config
        .bots
        .iter()
        .map(|bot| {
            (
                bot.name.as_str(),
                bot.bot_token.as_ref().map(Secret::expose),
            )
        })
        .collect();
    assert_eq!(
        tokens,
        [
            ("echo", None),
            ("env-wins", Some("222:env-token")),
            ("file-only", Some("111:file-token")),
            ("flag-wins", Some("333:flag-token")),
        ]
    );
    assert_eq!(
        config.state_dir.as_deref(),
        Some(Path::new("/var/lib/relay-agent"))
    );
    assert_eq!(config.api_url.to_string(), "http://127.0.0.1:8081");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("-token"),
        "tokens must not show in Debug: {debug}"
    );

    // The flags win over the file for the state directory and the Bot API too.
    args.extend_from_slice(&["--state-dir", "here", "--api-url", "https://tg.example.com"]);
    let config = Config::from_cli_and_env(cli(&args), env).expect("valid");
    assert_eq!(config.state_dir.as_deref(), Some(Path::new("here")));
    assert_eq!(config.api_url.to_string(), "https://tg.example.com");
    assert!(!format!("{:?}", cli(&args)).contains("flag-token"));
}

#[test]
fn bot_token_env_names_are_upper_case_with_underscores() {
    assert_eq!(bot_token_env("echo"), "RELAY_BOT_TOKEN_ECHO");
    assert_eq!(bot_token_env("shop-bot_2"), "RELAY_BOT_TOKEN_SHOP_BOT_2");
}

#[test]
fn bad_bot_tokens_and_api_urls_are_refused_without_showing_the_token() {
    let bot = ["--bot", "echo=http://127.0.0.1:8080/"];
    let cases: [(&[&str], &str); 5] = [
        (&["--bot-token", "no-equals-sign-secret"], "NAME=TOKEN"),
        (&["--bot-token", "other=1:secret"], "'other'"),
        (
            &["--bot-token", "echo=1:has secret space"],
            "bot token for 'echo'",
        ),
        (&["--bot-token", "echo="], "is empty"),
        (&["--api-url", "ftp://api.telegram.org"], "--api-url"),
    ];
    for (extra, mentions) in cases {
        let mut args = bot.to_vec();
        args.extend_from_slice(extra);
        let error = with_base(&args).expect_err(mentions);
        let text = error.to_string();
        assert!(text.contains(mentions), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert_one_line(&error);
    }
    let error = Config::from_cli_and_env(cli(&[&BASE[..], &bot[..]].concat()), |name| {
        (name == "RELAY_BOT_TOKEN_ECHO").then(|| "1:bad/secret".to_owned())
    })
    .expect_err("bad env token");
    assert!(matches!(error, ConfigError::BotToken { .. }), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[test]
fn modes_come_from_flags_and_the_file() {
    let dir = std::env::temp_dir().join(format!("relay-agent-modes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("agent.toml");
    std::fs::write(
        &file,
        "relay = \"ws://127.0.0.1:9\"\ntoken = \"t\"\n[bots.a]\nurl = \"http://127.0.0.1:1/\"\nmode = \"durable\"\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let parsed = config(&[
        "--config",
        file,
        "--bot",
        "b=http://127.0.0.1:2/",
        "--mode",
        "b=passthrough",
    ])
    .expect("valid");
    let mode = |name: &str| {
        parsed
            .bots
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.mode)
    };
    assert_eq!(mode("a"), Some(protocol::DeliveryMode::Durable));
    assert_eq!(mode("b"), Some(protocol::DeliveryMode::Passthrough));
    assert!(config(&["--config", file, "--mode", "a=sometimes"]).is_err());
    assert!(config(&["--config", file, "--mode", "zzz=auto"]).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
