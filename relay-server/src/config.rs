//! Relay configuration: command-line flags and an optional TOML file, merged and validated once
//! into [`Config`]. Defaults live here and nowhere else; lower modules get values, never the
//! command line.
//!
//! - [`cli`]: the flags and the admin subcommands.
//! - `file`: the TOML file and how flags are laid over it.
//! - `validate`: the checks every value passes, wherever it came from.
//! - [`tls`]: how the public port speaks TLS: files, self-signed or ACME.
//! - [`ip_range`]: address ranges, for `trusted_proxies`.
//! - [`error`]: why a configuration is refused ([`ConfigError`]).

pub mod cli;
pub mod error;
mod file;
pub mod ip_range;
pub mod tls;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use protocol::Secret;

pub use cli::{AdminCommand, Cli, Command, DeadLetterAction};
pub use error::ConfigError;
pub use ip_range::IpRange;
pub use protocol::DeliveryMode;
pub use tls::{AcmeSettings, KeyKind, TlsMode};

/// Loopback only: the admin API can replay and drop stored updates.
pub const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8444);
/// Relative, so a first `relay-server` in any directory keeps its state next to the user.
pub const DEFAULT_DATA_DIR: &str = "relay-data";
/// Telegram documents no maximum update size but a receiver should take at least 1 MiB, and real
/// updates are far smaller (a message with 4096 characters of text and every entity is under
/// 100 KiB). The same bound holds the bot's answer, a Bot API call whose text or caption is at
/// most 4096 characters; only a bot that uploads a file inside its answer (multipart) needs more,
/// and can have it by raising the limit. 1 MiB takes both with room to spare and keeps one
/// caller's cost small.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Telegram gives up on a webhook after 60 s; answering 504 at 30 s leaves it a clean failure and
/// time to retry, and is far beyond what a healthy bot needs.
pub const DEFAULT_BOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a silent agent connection is trusted; pings go out every third of it (3 s). An agent
/// that vanished without closing its connection (power cut, dropped NAT mapping, a hung process)
/// is dropped within 9 s, so its webhooks get 503 (or are stored) instead of waiting out
/// `bot_timeout`; two lost pings in a row are still tolerated.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(9);
/// Open HTTP connections the relay accepts at once (webhooks, health checks, agents before their
/// upgrade). Telegram opens at most 100 per bot, so this serves dozens of busy bots while bounding
/// memory and file descriptors. Agent sessions, once upgraded, count toward
/// [`DEFAULT_MAX_AGENT_SESSIONS`] instead.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Open connections from one source (an IPv4 address, or an IPv6 /64). Telegram sends every bot's
/// webhooks from a few addresses (149.154.160.0/20, 91.108.4.0/22), up to 100 connections per
/// bot, so one Telegram address may carry hundreds of connections for a relay with many bots:
/// 1024 is a quarter of the pool, ten busy bots' worth from a single address, and still leaves
/// three quarters of the pool to everyone else when one address misbehaves.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 1024;
/// TLS handshakes in progress from one source. A handshake costs the relay CPU and buffers while
/// the peer has proved nothing. Telegram may open up to 100 connections at once for one busy bot
/// (its `max_connections`), and a few bots may burst from the same address at the same moment;
/// each handshake takes milliseconds, so 256 at once from one address is above what Telegram
/// needs, while a flood of half-open handshakes from one address stops there, a quarter of its
/// connection share.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 256;
/// Connections kept for agents when the general pool is full: a connection on one of these may
/// make one request, and it must be the agent upgrade (anything else gets 503 and the connection
/// closes), so webhooks or a flood that took the pool cannot keep a restarted agent out. 64 lets
/// many agents reconnect at once after a relay restart.
pub const DEFAULT_AGENT_RESERVE: usize = 64;
/// How long a keep-alive connection may sit idle between requests. Telegram reuses its
/// connections for the next update; nginx keeps idle ones 75 s, many clients assume about 60 s.
/// 60 s keeps a bot that gets an update a minute on warm connections, and an idle connection
/// gives its slot back after a minute.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request's header block may take once its first byte arrived. Telegram sends its
/// ≤ 4 KiB header block at once; 10 s is generous for a slow mobile link and short for a
/// slowloris that trickles a header.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection serves requests: after it, the next answer carries
/// `Connection: close`. Without it a client that sends a cheap request now and then holds its
/// slot for ever; an hour costs Telegram one new TLS handshake an hour per connection.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(60 * 60);
/// The most requests one connection serves; the last answer carries `Connection: close`.
/// 10,000 is nothing to Telegram's connection reuse and bounds what one connection may do.
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u32 = 10_000;
/// Agent sessions at once, all tokens together. Each idle session costs the relay about 30 KiB
/// (see docs/BENCHMARKS.md), so 1024 cost about 30 MiB; they do not take webhook slots.
pub const DEFAULT_MAX_AGENT_SESSIONS: usize = 1024;
/// Agent sessions at once for one token. One agent needs one session (two for a moment while it
/// reconnects); 32 lets a dozen agents share the any-bot token while a leaked token cannot open
/// more than 32 sessions.
pub const DEFAULT_MAX_SESSIONS_PER_TOKEN: usize = 32;
/// Bytes of webhook bodies the relay holds at once while it reads and carries them. 64 MiB fits a
/// small VPS (a 512 MiB one keeps most of its memory for the store and the system), holds 64
/// bodies of the largest size and thousands of real updates (a few KiB each); past it webhooks
/// get 503 with `Retry-After` and Telegram sends them again.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;
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
    /// The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed when TLS is off
    /// (a TLS-terminating proxy in front); from any other peer those headers are replaced.
    /// Loopback by default (a proxy on the same machine); empty trusts nobody. Ignored when the
    /// relay terminates TLS: then it is the edge.
    pub trusted_proxies: Vec<IpRange>,
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
    /// Open HTTP connections at once.
    pub max_connections: usize,
    /// Open connections from one source address (IPv6: one /64).
    pub max_connections_per_source: usize,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_source: usize,
    /// Connections beyond `max_connections` that may only upgrade to an agent session.
    pub agent_reserve: usize,
    /// How long a keep-alive connection may wait idle for its next request.
    pub keep_alive_timeout: Duration,
    /// How long a request's header block may take once it has started.
    pub header_read_timeout: Duration,
    /// The longest a connection serves requests.
    pub max_connection_age: Duration,
    /// The most requests one connection serves.
    pub max_requests_per_connection: u32,
    /// Agent sessions at once.
    pub max_agent_sessions: usize,
    /// Agent sessions at once per token.
    pub max_sessions_per_token: usize,
    /// Bytes of webhook bodies held at once.
    pub body_budget_bytes: usize,
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
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            agent_reserve: DEFAULT_AGENT_RESERVE,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            max_requests_per_connection: DEFAULT_MAX_REQUESTS_PER_CONNECTION,
            max_agent_sessions: DEFAULT_MAX_AGENT_SESSIONS,
            max_sessions_per_token: DEFAULT_MAX_SESSIONS_PER_TOKEN,
            body_budget_bytes: DEFAULT_BODY_BUDGET_BYTES,
            max_in_flight_per_agent: DEFAULT_MAX_IN_FLIGHT_PER_AGENT,
            reserved_in_flight_per_bot: DEFAULT_RESERVED_IN_FLIGHT_PER_BOT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Config {
    /// Defaults everywhere: self-signed TLS, a generated token, any bot.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            data_dir: data_dir.into(),
            tls: TlsMode::self_signed(),
            public_host: None,
            agent_token: None,
            agents: Vec::new(),
            bots: BTreeMap::new(),
            limits: Limits::default(),
            delivery: DeliverySettings::default(),
            admin_listen: Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
            threads: DEFAULT_THREADS,
            trusted_proxies: IpRange::loopback().to_vec(),
        }
    }

    /// The name the public reaches the relay at: `public_host`, else the first ACME domain.
    pub fn advertised_host(&self) -> Option<&str> {
        match (&self.public_host, &self.tls) {
            (Some(host), _) => Some(host),
            (None, TlsMode::Acme(acme)) => acme.domains.first().map(String::as_str),
            (None, _) => None,
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
