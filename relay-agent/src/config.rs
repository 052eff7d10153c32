//! The agent's settings: the validated [`Config`] and its defaults, made by merging the flags
//! ([`cli`]) with the TOML file ([`file`](mod@file)); [`error`] says why a setting is refused. Imports only
//! its own parts and [`crate::url`]; nothing here imports the rest of the agent.
//!
//! Flags override the file; bots from both are merged. Everything is checked once, here, so the
//! rest of the agent works with values that are known to be usable.

pub(crate) mod cli;
pub(crate) mod error;
pub(crate) mod file;
pub(crate) mod relay;

use std::path::PathBuf;
use std::time::Duration;

use protocol::{DeliveryMode, Pin, Secret, bot_name};

pub use cli::Cli;
pub use error::ConfigError;
use file::{File, read_file};

use crate::url::{ApiUrl, BotUrl, RelayUrl};

/// How many requests may be at the bot at once. Telegram opens at most 100 connections per bot
/// (`max_connections` ≤ 100), so 100 never holds back a single bot.
pub(crate) const DEFAULT_MAX_CONCURRENCY: usize = 100;

/// Of `--max-concurrency`, the requests each bot may always have at its bot, whatever the other
/// bots hold, so that one slow bot cannot starve the others; a lone bot may use the whole limit.
/// Ten carry 100 updates a second for a bot that answers in 100 ms, more than most bots get, and
/// ten for each of a few other bots still leave a busy bot most of the default 100. Where the
/// reserves would not fit the limit, each bot keeps an equal part of it instead.
pub(crate) const DEFAULT_RESERVED_PER_BOT: usize = 10;

/// The largest `--max-concurrency` accepted: far past anything Telegram sends, low enough that a
/// typo cannot turn the agent into a flood against its own bots.
pub(crate) const MAX_CONCURRENCY_LIMIT: usize = 10_000;

/// How long a bot may take to answer. Telegram gives up after 60 s and the relay sooner, so 30 s
/// leaves room for the relay to answer with a clean 504 before Telegram retries on its own.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the relay may stay silent before the connection counts as dead. Pings go every third
/// of it (3 s), so a vanished relay (power cut, dropped NAT mapping) is noticed within 9 s and
/// two lost pings in a row are still tolerated. The pings cost a few bytes every 3 s.
pub(crate) const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(9);

/// The shortest heartbeat timeout accepted, so that pings every third of it are not a busy loop.
pub(crate) const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(100);

/// How long the agent keeps trying to reach the relay on its first start before it gives up: a
/// mistyped `--relay` should fail loudly under a service manager, not retry in silence forever.
pub(crate) const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The name used in the hello when neither `--name` nor the host name gives one.
pub(crate) const FALLBACK_NAME: &str = "relay-agent";

/// Where the agent keeps its state when neither `--state-dir` nor `state_dir` says: next to where
/// it was started, like relay-server's `./relay-data`.
pub(crate) const DEFAULT_STATE_DIR: &str = "./relay-agent-data";

/// The environment variable that holds a bot's token is this prefix and the bot's name, upper-cased
/// with `-` as `_`: bot `shop-bot` reads `RELAY_BOT_TOKEN_SHOP_BOT`.
pub(crate) const BOT_TOKEN_ENV_PREFIX: &str = "RELAY_BOT_TOKEN_";

/// A bot this agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bot {
    /// The bot's name on the relay, following [`bot_name::RULE`].
    pub name: String,
    /// Where the bot listens for webhook requests.
    pub url: BotUrl,
    /// The bot's Telegram token, for the Bot API calls the agent makes on the bot's behalf; without
    /// it such calls are dropped (and counted).
    pub bot_token: Option<Secret>,
    /// The delivery mode the agent asks the relay for, if any.
    pub mode: Option<DeliveryMode>,
}

/// Validated settings. Build it with [`Config::from_cli`] or [`Config::new`]; the tuning fields
/// are public and checked again by [`Config::validate`] when the agent starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where relay-server listens for agents.
    pub relay: RelayUrl,
    /// The bearer token the relay expects.
    pub token: Secret,
    /// Certificates to trust for the relay (PEM): each as the relay's exact one, and as a CA.
    pub ca: Option<PathBuf>,
    /// The relay certificate's fingerprint; alone (without `ca`), nothing else is trusted.
    pub pin: Option<Pin>,
    /// The bots this agent serves, in the order given.
    pub bots: Vec<Bot>,
    /// The name announced in the hello, for the relay's logs.
    pub name: String,
    /// How many requests may be at the bots at once.
    pub max_concurrency: usize,
    /// Of those, how many each bot may always have, whatever the others hold; where the bots'
    /// reserves would not fit `max_concurrency`, each keeps an equal part of it instead.
    pub reserved_per_bot: usize,
    /// How long a bot may take to answer.
    pub request_timeout: Duration,
    /// How long the relay may stay silent before the connection counts as dead.
    pub heartbeat_timeout: Duration,
    /// How long to try reaching the relay at start; `None` retries forever.
    pub startup_timeout: Option<Duration>,
    /// Where the duplicate windows are kept. `None` keeps them in memory only, so they are lost
    /// when the agent stops: [`Config::new`] starts there, so that code which builds a config
    /// (tests, embedders) never shares a directory by accident; [`Config::from_cli`] defaults
    /// to [`DEFAULT_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
    /// The Bot API server that replies to stored updates go to.
    pub api_url: ApiUrl,
}

impl Config {
    /// A config with every default, for code (such as end-to-end tests) that builds it directly.
    /// `bots` holds `(name, url)` pairs.
    pub fn new(
        relay_url: &str,
        token: Secret,
        bots: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let bots = bots
            .into_iter()
            .map(|(name, url)| bot(name, &url))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            relay: RelayUrl::parse(relay_url)?,
            token,
            ca: None,
            pin: None,
            bots,
            name: default_name(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            reserved_per_bot: DEFAULT_RESERVED_PER_BOT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            startup_timeout: Some(DEFAULT_STARTUP_TIMEOUT),
            state_dir: None,
            api_url: ApiUrl::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Merges the flags with the config file they name, if any, and with bot tokens from the
    /// environment, and validates the result.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        Config::from_cli_and_env(cli, |name| std::env::var(name).ok())
    }

    /// [`Config::from_cli`] with the environment as a function, so that tests need not change
    /// the process's environment. Bot tokens: a `--bot-token` flag wins over the environment,
    /// which wins over the file, as for the agent token.
    pub(crate) fn from_cli_and_env(
        mut cli: Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut file = match &cli.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let relay = relay::merge(&mut cli, &mut file)?;
        let mut bots = cli
            .bots
            .iter()
            .map(|spec| {
                let (name, url) = spec
                    .split_once('=')
                    .ok_or_else(|| ConfigError::BotSpec(spec.clone()))?;
                bot(name.to_owned(), url)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (name, entry) in file.bots {
            let mut bot = bot(name, &entry.url)?;
            bot.bot_token = entry.bot_token;
            bot.mode = entry.mode;
            bots.push(bot);
        }
        for bot in &mut bots {
            let from_env = env(&bot_token_env(&bot.name)).filter(|token| !token.is_empty());
            if let Some(token) = from_env {
                bot.bot_token = Some(Secret::new(token));
            }
        }
        for spec in &cli.bot_tokens {
            let (name, token) = spec
                .expose()
                .split_once('=')
                .ok_or(ConfigError::BotTokenSpec)?;
            let bot = bots
                .iter_mut()
                .find(|bot| bot.name == name)
                .ok_or_else(|| ConfigError::BotTokenForUnknownBot(name.to_owned()))?;
            bot.bot_token = Some(Secret::new(token));
        }
        for spec in &cli.modes {
            let (name, mode) = spec
                .split_once('=')
                .ok_or_else(|| ConfigError::ModeSpec(spec.clone()))?;
            let mode =
                DeliveryMode::parse(mode).ok_or_else(|| ConfigError::ModeSpec(spec.clone()))?;
            let bot = bots
                .iter_mut()
                .find(|bot| bot.name == name)
                .ok_or_else(|| ConfigError::ModeForUnknownBot(name.to_owned()))?;
            bot.mode = Some(mode);
        }
        let api_url = cli
            .api_url
            .or(file.api_url)
            .map(|url| ApiUrl::parse(&url))
            .transpose()?
            .unwrap_or_default();
        let config = Config {
            relay: RelayUrl::parse(&relay.relay)?,
            token: relay.token,
            ca: relay.ca,
            pin: relay.pin,
            bots,
            name: cli.name.or(file.name).unwrap_or_else(default_name),
            max_concurrency: cli
                .max_concurrency
                .or(file.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY),
            reserved_per_bot: cli
                .reserved_per_bot
                .or(file.reserved_per_bot)
                .unwrap_or(DEFAULT_RESERVED_PER_BOT),
            request_timeout: duration(
                "--request-timeout",
                cli.request_timeout,
                file.request_timeout,
            )?
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            heartbeat_timeout: duration(
                "--heartbeat-timeout",
                cli.heartbeat_timeout,
                file.heartbeat_timeout,
            )?
            .unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT),
            // Zero means "retry forever", which is what `None` says.
            startup_timeout: match duration(
                "--startup-timeout",
                cli.startup_timeout,
                file.startup_timeout,
            )? {
                None => Some(DEFAULT_STARTUP_TIMEOUT),
                Some(Duration::ZERO) => None,
                Some(timeout) => Some(timeout),
            },
            state_dir: Some(
                cli.state_dir
                    .or(file.state_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            ),
            api_url,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields a caller may have set by hand. [`crate::run`] calls it first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let token = self.token.expose();
        if token.is_empty() {
            return Err(ConfigError::Token("is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Token(
                "has spaces, control or non-ASCII characters",
            ));
        }
        if self.bots.is_empty() {
            return Err(ConfigError::NoBots);
        }
        for (i, bot) in self.bots.iter().enumerate() {
            check_bot_name(&bot.name)?;
            if let Some(token) = &bot.bot_token {
                check_bot_token(&bot.name, token)?;
            }
            if self.bots[..i].iter().any(|other| other.name == bot.name) {
                return Err(ConfigError::DuplicateBot(bot.name.clone()));
            }
        }
        if self.name.trim().is_empty() || self.name.len() > 255 {
            return Err(ConfigError::Value {
                key: "--name",
                reason: "must be 1 to 255 bytes".into(),
            });
        }
        if !(1..=MAX_CONCURRENCY_LIMIT).contains(&self.max_concurrency) {
            return Err(ConfigError::Value {
                key: "--max-concurrency",
                reason: format!("must be between 1 and {MAX_CONCURRENCY_LIMIT}"),
            });
        }
        if self.reserved_per_bot > MAX_CONCURRENCY_LIMIT {
            return Err(ConfigError::Value {
                key: "--reserved-per-bot",
                reason: format!("must be at most {MAX_CONCURRENCY_LIMIT}"),
            });
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Value {
                key: "--request-timeout",
                reason: "must be more than 0s".into(),
            });
        }
        if self.heartbeat_timeout < MIN_HEARTBEAT_TIMEOUT {
            return Err(ConfigError::Value {
                key: "--heartbeat-timeout",
                reason: format!("must be at least {MIN_HEARTBEAT_TIMEOUT:?}"),
            });
        }
        Ok(())
    }
}

fn bot(name: String, url: &str) -> Result<Bot, ConfigError> {
    check_bot_name(&name)?;
    let url = BotUrl::parse(url).map_err(|error| ConfigError::BotUrl {
        bot: name.clone(),
        error,
    })?;
    Ok(Bot {
        name,
        url,
        bot_token: None,
        mode: None,
    })
}

/// The environment variable that may hold `bot`'s token.
pub(crate) fn bot_token_env(bot: &str) -> String {
    format!(
        "{BOT_TOKEN_ENV_PREFIX}{}",
        bot.to_ascii_uppercase().replace('-', "_")
    )
}

/// A Telegram token (`123456:ABC-def...`) goes into the Bot API URL's path, so only characters that
/// need no escaping there are accepted.
fn check_bot_token(bot: &str, token: &Secret) -> Result<(), ConfigError> {
    let token = token.expose();
    let reason = if token.is_empty() {
        "is empty"
    } else if token.len() > 256 {
        "is longer than 256 characters"
    } else if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
    {
        "has characters other than A-Z a-z 0-9 : _ -"
    } else {
        return Ok(());
    };
    Err(ConfigError::BotToken {
        bot: bot.to_owned(),
        reason,
    })
}

fn check_bot_name(name: &str) -> Result<(), ConfigError> {
    if bot_name::is_valid(name) {
        Ok(())
    } else {
        Err(ConfigError::BotName(name.to_owned()))
    }
}

/// A flag's duration if given, else the file's.
fn duration(
    key: &'static str,
    flag: Option<String>,
    file: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    match flag {
        None => Ok(file),
        Some(text) => humantime_serde::re::humantime::parse_duration(&text)
            .map(Some)
            .map_err(|error| ConfigError::Value {
                key,
                reason: format!("'{text}' is not a duration ({error}): write it like 30s or 1m"),
            }),
    }
}

/// The host name, so that the relay's logs say which machine an agent runs on.
fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.len() <= 255)
        .unwrap_or_else(|| FALLBACK_NAME.to_owned())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
