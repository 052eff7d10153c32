//! Relay configuration: command-line flags and an optional TOML file, merged and validated once
//! into [`Config`]. Defaults live here and nowhere else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use protocol::Secret;
use serde::Deserialize;

/// Loopback only: the admin API can replay and drop stored updates.
pub const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8444);
/// Relative, so a first `relay-server` in any directory keeps its state next to the user.
pub const DEFAULT_DATA_DIR: &str = "relay-data";
/// Telegram documents no maximum update size but a receiver should take at least 1 MiB; 4 MiB
/// leaves room for large updates and replies without letting one caller hold much memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Telegram gives up on a webhook after 60 s; answering 504 at 30 s leaves it a clean failure and
/// time to retry, and is far beyond what a healthy bot needs.
pub const DEFAULT_BOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a silent agent connection is trusted; pings go out every third of it (3 s). An agent
/// that vanished without closing its connection (power cut, dropped NAT mapping, a hung process)
/// is dropped within 9 s, so its webhooks get 503 (or are stored) instead of waiting out
/// `bot_timeout`; two lost pings in a row are still tolerated.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(9);
/// Open connections the relay accepts at once (webhooks and agents). Telegram opens at most 100
/// per bot, so this serves dozens of busy bots while bounding memory and file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Requests one agent may have in flight. Well above Telegram's 100 connections per bot.
pub const DEFAULT_MAX_IN_FLIGHT_PER_AGENT: usize = 512;
/// One thread: every webhook crosses the relay twice (in from Telegram, out to the agent's
/// socket) and back, and on one thread those hand-offs are plain function calls, where between
/// threads each is a wake-up. On the benchmark the relay spent 40 % less CPU per request on one
/// thread than on two. The store's writer and file reads have threads of their own either way.
pub const DEFAULT_THREADS: usize = 1;
/// A sanity bound on `threads`.
pub const MAX_THREADS: usize = 1024;
/// How long shutdown waits for in-flight requests before it drops them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A token an operator chooses must be long enough not to be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// Bodies under this are not worth configuring; it also keeps the check against the frame limit honest.
const MIN_BODY_BYTES: usize = 1024;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "relay-server",
    version,
    about = "Public side of a Telegram webhook relay: accepts webhooks at https://HOST:PORT/hook/<bot> and hands them to the relay-agent that serves the bot."
)]
pub struct Cli {
    /// Address to listen on, for webhooks and agents alike [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the generated agent token and self-signed certificate [default: ./relay-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain to serve (for example Let's Encrypt's fullchain.pem)
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "no_tls"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key that goes with --tls-cert
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "no_tls"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for running behind a proxy that terminates TLS
    #[arg(long)]
    pub no_tls: bool,
    /// Host name or IP address the public reaches this relay at: added to the self-signed
    /// certificate and used in the printed commands
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// Token agents must present; may serve any bot. Generated and kept in the data dir if not given
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RELAY_AGENT_TOKEN",
        hide_env_values = true
    )]
    pub agent_token: Option<String>,
    /// TOML configuration file; flags given on the command line override it
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Address of the admin API (dead letters, stats), plain HTTP, token in DATA_DIR/admin-token
    /// [default: 127.0.0.1:8444]
    #[arg(long, value_name = "ADDR", conflicts_with = "no_admin", global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// Do not serve the admin API
    #[arg(long, global = true)]
    pub no_admin: bool,
    /// Threads for network work. One is fastest up to about 50,000 requests a second (measured
    /// in docs/BENCHMARKS.md); more spread a larger load over more cores [default: 1]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Talk to a running relay's admin API instead of starting one
    #[command(subcommand)]
    pub command: Option<crate::admin::Command>,
}

/// The configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    threads: Option<usize>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    public_host: Option<String>,
    agent_token: Option<Secret>,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    delivery: FileDelivery,
    #[serde(default)]
    agents: Vec<FileAgent>,
    #[serde(default)]
    bots: BTreeMap<String, FileBot>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// `false` for plain HTTP behind a TLS-terminating proxy; absent means on.
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    bot_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_in_flight_per_agent: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    name: String,
    token: Secret,
    bots: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBot {
    secret_token: Option<Secret>,
    mode: Option<DeliveryMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDelivery {
    default_mode: Option<DeliveryMode>,
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    max_store_bytes: Option<u64>,
    chats_in_parallel: Option<usize>,
}

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (used by the binary to bind; tests bind their own listener). Port 8443 is
    /// one of the four Telegram accepts and needs no root to bind.
    pub listen: SocketAddr,
    /// Where generated state lives.
    pub data_dir: PathBuf,
    /// How TLS is served.
    pub tls: TlsMode,
    /// The public name of this relay, if known.
    pub public_host: Option<String>,
    /// A token that may serve any bot; `None` with no `agents` means "generate one".
    pub agent_token: Option<Secret>,
    /// Tokens that may serve only the bots listed.
    pub agents: Vec<AgentGrant>,
    /// Bot-specific settings, by bot name.
    pub bots: BTreeMap<String, BotSettings>,
    /// Sizes, counts and timeouts.
    pub limits: Limits,
    /// Stored delivery.
    pub delivery: Delivery,
    /// Where the admin API listens (plain HTTP, meant for loopback); `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    /// Threads the binary's runtime gets for network work; see [`DEFAULT_THREADS`].
    pub threads: usize,
}

/// How the listener speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Serve the given certificate chain and key.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// Serve a certificate generated on first start and kept in the data dir.
    SelfSigned,
    /// Plain HTTP behind a TLS-terminating proxy.
    Off,
}

/// A token restricted to some bots.
#[derive(Debug, Clone)]
pub struct AgentGrant {
    /// A name for logs.
    pub name: String,
    /// The bearer token.
    pub token: Secret,
    /// The bots it may serve.
    pub bots: Vec<String>,
}

/// What the relay knows about one bot.
#[derive(Debug, Clone, Default)]
pub struct BotSettings {
    /// The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token`; checked at the edge.
    pub secret_token: Option<Secret>,
    /// How this bot's updates are delivered; `None` means [`Delivery::default_mode`].
    pub mode: Option<DeliveryMode>,
}

pub use protocol::DeliveryMode;

/// How stored updates are kept and delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The mode of bots without their own `mode`.
    pub default_mode: DeliveryMode,
    /// Failed attempts after which a stored update goes to the dead-letter list.
    pub max_attempts: u32,
    /// Stored updates older than this are dropped (and logged and counted). Telegram itself
    /// keeps updates for 24 h.
    pub retention: Duration,
    /// The most payload bytes the store holds; past it new updates get 503 and Telegram keeps them.
    pub max_store_bytes: u64,
    /// How many chats of one bot may have an update in flight at once.
    pub chats_in_parallel: usize,
}

/// Ten attempts with backoff doubling from 1 s to a 60 s cap span about 8 minutes: long enough
/// to ride out a bot restart, short enough that a poison update does not block its chat for hours.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Telegram keeps undelivered updates for 24 h; the relay promises no less.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Stored updates are also held in memory for fast delivery, so the cap bounds both.
pub const DEFAULT_MAX_STORE_BYTES: u64 = 256 * 1024 * 1024;
/// Telegram's own default for `max_connections`: chats of one bot delivered side by side.
pub const DEFAULT_CHATS_IN_PARALLEL: usize = 40;

impl Default for Delivery {
    fn default() -> Self {
        Self {
            default_mode: DeliveryMode::Auto,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retention: DEFAULT_RETENTION,
            max_store_bytes: DEFAULT_MAX_STORE_BYTES,
            chats_in_parallel: DEFAULT_CHATS_IN_PARALLEL,
        }
    }
}

/// Every bound the relay enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest webhook body, and largest bot answer.
    pub max_body_bytes: usize,
    /// How long a webhook waits for the bot's answer before 504.
    pub bot_timeout: Duration,
    /// How long an agent may stay silent before it is dropped.
    pub heartbeat_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Requests one agent may have in flight.
    pub max_in_flight_per_agent: usize,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bot_timeout: DEFAULT_BOT_TIMEOUT,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight_per_agent: DEFAULT_MAX_IN_FLIGHT_PER_AGENT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// A configuration mistake, worded as what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults everywhere: self-signed TLS, a generated token, any bot.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            data_dir: data_dir.into(),
            tls: TlsMode::SelfSigned,
            public_host: None,
            agent_token: None,
            agents: Vec::new(),
            bots: BTreeMap::new(),
            limits: Limits::default(),
            delivery: Delivery::default(),
            admin_listen: Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
            threads: DEFAULT_THREADS,
        }
    }

    /// Reads the file named by `--config` (if any) and lays the flags over it.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    fn merge(cli: Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let tls = if cli.no_tls || file.tls.enabled == Some(false) {
            TlsMode::Off
        } else {
            match (cli.tls_cert.or(file.tls.cert), cli.tls_key.or(file.tls.key)) {
                (Some(cert), Some(key)) => TlsMode::Files { cert, key },
                (None, None) => TlsMode::SelfSigned,
                _ => {
                    return Err(ConfigError::Invalid(
                        "give both a TLS certificate and its key, or neither".into(),
                    ));
                }
            }
        };
        let defaults = Limits::default();
        let delivery = Delivery::default();
        let limits = Limits {
            max_body_bytes: file
                .limits
                .max_body_bytes
                .unwrap_or(defaults.max_body_bytes),
            bot_timeout: file.limits.bot_timeout.unwrap_or(defaults.bot_timeout),
            heartbeat_timeout: file
                .limits
                .heartbeat_timeout
                .unwrap_or(defaults.heartbeat_timeout),
            max_connections: file
                .limits
                .max_connections
                .unwrap_or(defaults.max_connections),
            max_in_flight_per_agent: file
                .limits
                .max_in_flight_per_agent
                .unwrap_or(defaults.max_in_flight_per_agent),
            shutdown_grace: file
                .limits
                .shutdown_grace
                .unwrap_or(defaults.shutdown_grace),
        };
        let config = Self {
            listen: cli.listen.or(file.listen).unwrap_or(Self::new("").listen),
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            tls,
            public_host: cli.public_host.or(file.public_host),
            agent_token: cli.agent_token.map(Secret::new).or(file.agent_token),
            agents: file
                .agents
                .into_iter()
                .map(|agent| AgentGrant {
                    name: agent.name,
                    token: agent.token,
                    bots: agent.bots,
                })
                .collect(),
            bots: file
                .bots
                .into_iter()
                .map(|(name, bot)| {
                    let settings = BotSettings {
                        secret_token: bot.secret_token,
                        mode: bot.mode,
                    };
                    (name, settings)
                })
                .collect(),
            limits,
            delivery: Delivery {
                default_mode: file.delivery.default_mode.unwrap_or(delivery.default_mode),
                max_attempts: file.delivery.max_attempts.unwrap_or(delivery.max_attempts),
                retention: file.delivery.retention.unwrap_or(delivery.retention),
                max_store_bytes: file
                    .delivery
                    .max_store_bytes
                    .unwrap_or(delivery.max_store_bytes),
                chats_in_parallel: file
                    .delivery
                    .chats_in_parallel
                    .unwrap_or(delivery.chats_in_parallel),
            },
            admin_listen: match (cli.no_admin, cli.admin_listen.or(file.admin_listen)) {
                (true, _) => None,
                (false, Some(address)) => Some(address),
                (false, None) => Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
            },
            threads: cli.threads.or(file.threads).unwrap_or(DEFAULT_THREADS),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that flags, files or tests may have set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return invalid(format!("threads must be 1 to {MAX_THREADS}"));
        }
        let limits = &self.limits;
        if !(MIN_BODY_BYTES..=protocol::MAX_BODY_LIMIT).contains(&limits.max_body_bytes) {
            return invalid(format!(
                "max_body_bytes must be between {MIN_BODY_BYTES} and {}",
                protocol::MAX_BODY_LIMIT
            ));
        }
        if limits.bot_timeout < Duration::from_millis(100)
            || limits.bot_timeout >= Duration::from_secs(60)
        {
            return invalid(
                "bot_timeout must be at least 100ms and under 60s (Telegram gives up at 60s)"
                    .into(),
            );
        }
        if limits.heartbeat_timeout < Duration::from_secs(1) {
            return invalid("heartbeat_timeout must be at least 1s".into());
        }
        if limits.max_connections == 0 || limits.max_in_flight_per_agent == 0 {
            return invalid(
                "max_connections and max_in_flight_per_agent must be at least 1".into(),
            );
        }
        for token in self
            .agent_token
            .iter()
            .chain(self.agents.iter().map(|a| &a.token))
        {
            if token.expose().len() < MIN_TOKEN_LEN {
                return invalid(format!(
                    "agent tokens must be at least {MIN_TOKEN_LEN} characters long"
                ));
            }
        }
        for (index, agent) in self.agents.iter().enumerate() {
            if agent.bots.is_empty() {
                return invalid(format!("agent {:?} lists no bots", agent.name));
            }
            for bot in &agent.bots {
                check_bot_name(bot)?;
            }
            if self.agents[..index]
                .iter()
                .any(|other| other.token == agent.token)
                || self.agent_token.as_ref() == Some(&agent.token)
            {
                return invalid(format!(
                    "agent {:?} reuses another agent's token",
                    agent.name
                ));
            }
        }
        let delivery = &self.delivery;
        if delivery.max_attempts == 0 || delivery.chats_in_parallel == 0 {
            return invalid("max_attempts and chats_in_parallel must be at least 1".into());
        }
        if delivery.retention < Duration::from_secs(60) {
            return invalid("retention must be at least 1m".into());
        }
        if delivery.max_store_bytes < limits.max_body_bytes as u64 {
            return invalid("max_store_bytes must be at least max_body_bytes".into());
        }
        for (name, bot) in &self.bots {
            check_bot_name(name)?;
            if let Some(secret) = &bot.secret_token {
                check_secret_token(name, secret.expose())?;
            }
        }
        if let Some(host) = &self.public_host
            && (host.is_empty() || host.contains(|c: char| c == '/' || c.is_whitespace()))
        {
            return invalid(format!(
                "public_host {host:?} must be a bare host name or IP address"
            ));
        }
        Ok(())
    }

    /// The mode the operator set for `bot`, which wins over what its agent asks for.
    pub fn configured_mode(&self, bot: &str) -> Option<DeliveryMode> {
        self.bots.get(bot).and_then(|settings| settings.mode)
    }

    /// The bots named anywhere in the configuration; webhooks for other bots get 404 unless the
    /// any-bot token is in use and an agent has declared them.
    pub fn configured_bots(&self) -> impl Iterator<Item = &str> {
        self.agents
            .iter()
            .flat_map(|agent| agent.bots.iter().map(String::as_str))
            .chain(self.bots.keys().map(String::as_str))
    }
}

impl FileConfig {
    /// Reads and parses one file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string().replace('\n', " ").trim().to_owned(),
        })
    }
}

/// Bot names appear in URLs and logs: letters, digits, `_` and `-`, at most 64.
pub fn is_valid_bot_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_bot_name(name: &str) -> Result<(), ConfigError> {
    if is_valid_bot_name(name) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "bot name {name:?} must be 1-64 letters, digits, '_' or '-'"
        )))
    }
}

/// Telegram allows 1–256 characters of `A-Z a-z 0-9 _ -` in a webhook secret.
fn check_secret_token(bot: &str, secret: &str) -> Result<(), ConfigError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if (1..=256).contains(&secret.len()) && secret.bytes().all(allowed) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "secret_token of bot {bot:?} must be 1-256 letters, digits, '_' or '-' (Telegram's rule)"
        )))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.tls, TlsMode::SelfSigned);
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
}
