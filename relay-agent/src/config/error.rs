//! Why a configuration is refused: [`ConfigError`], one line that says what to change. Imports
//! only [`crate::url`].

use std::path::PathBuf;

use protocol::{JoinError, PinError, bot_name};

use crate::url::UrlError;

/// A setting is missing or unusable. Each message is one line that says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No relay URL anywhere.
    #[error(
        "no relay URL: pass --join with the value relay-server's banner prints (or set RELAY_JOIN), or --relay wss://HOST:PORT (or set relay in the config file)"
    )]
    MissingRelay,
    /// A relay or Bot API URL that is not usable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// No token anywhere.
    #[error(
        "no agent token: pass --token, set RELAY_AGENT_TOKEN or RELAY_JOIN, or set token in the config file"
    )]
    MissingToken,
    /// The token cannot go into an HTTP header.
    #[error("the agent token {0}: copy it again from the relay's configuration")]
    Token(&'static str),
    /// No bots anywhere.
    #[error(
        "no bots: pass --bot NAME=http://127.0.0.1:PORT/PATH at least once (or add a [bots.NAME] table to the config file)"
    )]
    NoBots,
    /// A `--bot` value without `=`.
    #[error("--bot '{0}' is not NAME=URL: write it like --bot echo=http://127.0.0.1:8080/webhook")]
    BotSpec(String),
    /// A bot name that breaks the rule both sides apply ([`bot_name::RULE`]).
    #[error("bot name '{0}' is invalid: use {rule}", rule = bot_name::RULE)]
    BotName(String),
    /// A bot URL that is not plain HTTP with a host.
    #[error("bot '{bot}' {error}")]
    BotUrl {
        /// The bot's name.
        bot: String,
        /// What is wrong with the URL, which it quotes.
        error: UrlError,
    },
    /// A `--bot-token` value without `=`. The value is not repeated: it may be a token.
    #[error("a --bot-token value is not NAME=TOKEN: write it like --bot-token echo=123456:ABC...")]
    BotTokenSpec,
    /// A bot token for a bot this agent does not serve.
    #[error(
        "--bot-token names bot '{0}', which is not declared: add --bot {0}=URL or fix the name"
    )]
    BotTokenForUnknownBot(String),
    /// A `--mode` that is not `NAME=passthrough|durable|auto`.
    #[error("--mode {0:?} must be NAME=passthrough, NAME=durable or NAME=auto")]
    ModeSpec(String),
    /// A `--mode` for a bot that is not declared.
    #[error("--mode names bot '{0}', which is not declared: add --bot {0}=URL or fix the name")]
    ModeForUnknownBot(String),
    /// A bot token that cannot go into a URL path. The value is not repeated.
    #[error("the bot token for '{bot}' {reason}: copy it again from @BotFather")]
    BotToken {
        /// The bot's name.
        bot: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same bot name twice.
    #[error("bot '{0}' is declared twice: give each bot one --bot flag or one [bots.NAME] table")]
    DuplicateBot(String),
    /// A join value that cannot be read. The value is not repeated: it holds the token.
    #[error("{key}: {error}")]
    Join {
        /// Where it came from.
        key: &'static str,
        /// What is wrong with it.
        error: JoinError,
    },
    /// A `--pin` that is not `sha256:` and 64 hex digits.
    #[error("{key}: {error}")]
    Pin {
        /// Where it came from.
        key: &'static str,
        /// What is wrong with it.
        error: PinError,
    },
    /// A number or duration out of range.
    #[error("{key} {reason}")]
    Value {
        /// The flag.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why, with the line when known.
        reason: String,
    },
}
