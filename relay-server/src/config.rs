//! Relay configuration: command-line flags and an optional TOML file, merged and validated once
//! into [`Config`]. Defaults live here and nowhere else; lower modules get values, never the
//! command line.
//!
//! - [`cli`]: the flags and the admin subcommands.
//! - `file`: the TOML file and how flags are laid over it.
//! - `validate`: the checks every value passes, wherever it came from.

pub mod cli;
mod file;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use protocol::Secret;

pub use cli::{Cli, Command, DeadLetterAction};
pub use protocol::DeliveryMode;

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
/// Of an agent's `max_in_flight_per_agent`, the requests each of its bots may always have in
/// flight, whatever its other bots hold, so one slow bot cannot starve the others. Ten slots
/// carry 100 updates a second for a bot that answers in 100 ms, more than most bots get, and
/// ten for each of many bots still leave a busy bot most of the default 512. Where the reserves
/// of an agent's bots would not fit the limit, each bot keeps an equal part of it instead.
pub const DEFAULT_RESERVED_IN_FLIGHT_PER_BOT: usize = 10;
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
    pub delivery: DeliverySettings,
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
    /// How this bot's updates are delivered; `None` means [`DeliverySettings::default_mode`].
    pub mode: Option<DeliveryMode>,
    /// Drop whatever follows `/hook/<bot>` in the path, so the bot is always called at the URL
    /// its agent was given (the query string still passes). Off by default.
    pub drop_path_suffix: bool,
}

/// How stored updates are kept and delivered.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// The mode of bots without their own `mode`.
    pub default_mode: DeliveryMode,
    /// Failed attempts the bot caused (a non-2xx answer, no answer in time after it took the
    /// request) after which a stored update goes to the dead-letter list. Attempts that cannot
    /// reach the bot never count: they are retried until [`DeliverySettings::retention`].
    pub max_attempts: u32,
    /// Stored updates older than this are dropped (and logged and counted). Telegram itself
    /// keeps updates for 24 h.
    pub retention: Duration,
    /// The most payload bytes the store holds; past it new updates get 503 and Telegram keeps them.
    pub max_store_bytes: u64,
    /// How many chats of one bot may have an update in flight at once.
    pub chats_in_parallel: usize,
}

/// Ten attempts with backoff doubling from 1 s to a 60 s cap wait about 4 minutes in all
/// (1 + 2 + 4 + … + 60 + 60 + 60 = 243 s, plus the attempts themselves): enough for a bot that
/// answers 5xx while it starts up or sheds load, short enough that a poison update (one the bot
/// keeps failing) does not block its chat for long. Only answers count (and timeouts after the
/// bot took the request): a bot that is down or restarting, and so cannot be reached, is retried
/// until retention, like Telegram does, however long that takes.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Telegram keeps undelivered updates for 24 h; the relay promises no less.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Stored updates are also held in memory for fast delivery, so the cap bounds both.
pub const DEFAULT_MAX_STORE_BYTES: u64 = 256 * 1024 * 1024;
/// Telegram's own default for `max_connections`: chats of one bot delivered side by side.
pub const DEFAULT_CHATS_IN_PARALLEL: usize = 40;

impl Default for DeliverySettings {
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
    /// Of those, the requests each of the agent's bots may always have in flight, whatever the
    /// others hold (see [`DEFAULT_RESERVED_IN_FLIGHT_PER_BOT`]).
    pub reserved_in_flight_per_bot: usize,
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
            reserved_in_flight_per_bot: DEFAULT_RESERVED_IN_FLIGHT_PER_BOT,
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
            delivery: DeliverySettings::default(),
            admin_listen: Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
            threads: DEFAULT_THREADS,
        }
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

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
