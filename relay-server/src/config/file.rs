//! The TOML file, and [`Config::from_cli`], which lays the flags over it. Every key is optional
//! and unknown keys are an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::Secret;
use serde::Deserialize;

use super::tls::{FileTls, TlsFlags};
use super::{
    AgentGrant, BotSettings, Cli, Config, ConfigError, DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR,
    DEFAULT_THREADS, DeliveryMode, DeliverySettings, IpRange, Limits,
};

/// The configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    listen: Option<SocketAddr>,
    threads: Option<usize>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    public_host: Option<String>,
    agent_token: Option<Secret>,
    trusted_proxies: Option<Vec<IpRange>>,
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
struct FileLimits {
    max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    bot_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
    max_handshakes_per_source: Option<usize>,
    agent_reserve: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    keep_alive_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_connection_age: Option<Duration>,
    max_requests_per_connection: Option<u32>,
    max_agent_sessions: Option<usize>,
    max_sessions_per_token: Option<usize>,
    body_budget_bytes: Option<usize>,
    max_in_flight_per_agent: Option<usize>,
    reserved_in_flight_per_bot: Option<usize>,
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
    drop_path_suffix: Option<bool>,
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

impl Config {
    /// Reads the file named by `--config` (if any) and lays the flags over it.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Parses `text` as the file `path` holds and lays the flags over it: [`Config::from_cli`]
    /// without the read, for the config fuzz target (`crate::fuzzing`).
    pub(crate) fn from_file_text(cli: Cli, path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::merge(cli, FileConfig::parse(path, text)?)
    }

    pub(super) fn merge(cli: Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let tls = TlsFlags {
            no_tls: cli.no_tls,
            cert: cli.tls_cert,
            key: cli.tls_key,
            self_signed_key: cli.self_signed_key,
            acme_domains: cli.acme_domains,
            acme_email: cli.acme_email,
            acme_directory: cli.acme_directory,
            acme_ca: cli.acme_ca,
            acme_http_listen: cli.acme_http_listen,
        }
        .merge(file.tls)?;
        let defaults = Limits::default();
        let delivery = DeliverySettings::default();
        let given = file.limits;
        let limits = Limits {
            max_body_bytes: given.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            bot_timeout: given.bot_timeout.unwrap_or(defaults.bot_timeout),
            heartbeat_timeout: given
                .heartbeat_timeout
                .unwrap_or(defaults.heartbeat_timeout),
            max_connections: given.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_source: given
                .max_connections_per_source
                .unwrap_or(defaults.max_connections_per_source),
            max_handshakes_per_source: given
                .max_handshakes_per_source
                .unwrap_or(defaults.max_handshakes_per_source),
            agent_reserve: given.agent_reserve.unwrap_or(defaults.agent_reserve),
            keep_alive_timeout: given
                .keep_alive_timeout
                .unwrap_or(defaults.keep_alive_timeout),
            header_read_timeout: given
                .header_read_timeout
                .unwrap_or(defaults.header_read_timeout),
            max_connection_age: given
                .max_connection_age
                .unwrap_or(defaults.max_connection_age),
            max_requests_per_connection: given
                .max_requests_per_connection
                .unwrap_or(defaults.max_requests_per_connection),
            max_agent_sessions: given
                .max_agent_sessions
                .unwrap_or(defaults.max_agent_sessions),
            max_sessions_per_token: given
                .max_sessions_per_token
                .unwrap_or(defaults.max_sessions_per_token),
            body_budget_bytes: given
                .body_budget_bytes
                .unwrap_or(defaults.body_budget_bytes),
            max_in_flight_per_agent: given
                .max_in_flight_per_agent
                .unwrap_or(defaults.max_in_flight_per_agent),
            reserved_in_flight_per_bot: given
                .reserved_in_flight_per_bot
                .unwrap_or(defaults.reserved_in_flight_per_bot),
            shutdown_grace: given.shutdown_grace.unwrap_or(defaults.shutdown_grace),
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
                        drop_path_suffix: bot.drop_path_suffix.unwrap_or(false),
                    };
                    (name, settings)
                })
                .collect(),
            limits,
            delivery: DeliverySettings {
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
            trusted_proxies: file
                .trusted_proxies
                .unwrap_or_else(|| IpRange::loopback().to_vec()),
        };
        config.validate()?;
        Ok(config)
    }
}

impl FileConfig {
    /// Reads and parses one file.
    pub(super) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub(super) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: service::toml_error(text, &error),
        })
    }
}
