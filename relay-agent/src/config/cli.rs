//! The command-line flags, as clap parses them; [`super::Config::from_cli`] checks and merges
//! them. Imports nothing from the crate.

use std::path::PathBuf;

use clap::Parser;
use protocol::Secret;

/// Command-line flags. Each may also come from the config file; a flag wins over the file.
#[derive(Debug, Parser)]
#[command(
    name = "relay-agent",
    version,
    about = "Dials out to relay-server and forwards webhook requests to bots on this network.",
    after_help = "Stops cleanly on SIGTERM or Ctrl-C (SIGINT). Logging follows RUST_LOG (default: info)."
)]
pub struct Cli {
    /// The join value relay-server's banner prints (rj1.…): the relay's URL, the agent token and,
    /// for a self-signed certificate, its pin, in one value. Prefer the environment variable, so
    /// the token does not show in the process list. --relay, --token (or RELAY_AGENT_TOKEN),
    /// --ca and --pin, and the same keys in the config file, each win over its part; --ca or
    /// --pin replace its pin.
    #[arg(long, env = "RELAY_JOIN", hide_env_values = true, value_name = "VALUE",
          value_parser = parse_secret)]
    pub join: Option<Secret>,

    /// The relay's address: ws://HOST:PORT or wss://HOST:PORT (the port defaults to 80 / 443).
    /// A path, if any, is kept and /agent/v1 is appended.
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,

    /// The agent token the relay expects (sent as a bearer token). Prefer the environment
    /// variable, so the token does not show in the process list.
    #[arg(long, env = "RELAY_AGENT_TOKEN", hide_env_values = true, value_name = "TOKEN",
          value_parser = parse_secret)]
    pub token: Option<Secret>,

    /// A PEM file with the certificate(s) to trust for the relay, in addition to the system's
    /// roots; needed when relay-server uses a self-signed certificate. A certificate in it that
    /// the relay presents as is, is trusted as that exact certificate, even when it is marked
    /// CA:TRUE or names only an IP address (as openssl req -x509 makes them); others in it act
    /// as CAs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Trust the relay's certificate by its SHA-256 fingerprint, sha256:HEX (64 hex digits;
    /// colons between pairs, as openssl prints them, are fine), with no file. A pin is exact:
    /// given without --ca, no other certificate is trusted for the relay, not even one from a
    /// public CA. The Bot API is never pinned.
    #[arg(long, value_name = "sha256:HEX")]
    pub pin: Option<String>,

    /// A bot to serve: its name on the relay and the plain-HTTP URL of its local webhook
    /// endpoint, e.g. echo=http://127.0.0.1:8080/webhook. Repeat for more bots.
    #[arg(long = "bot", value_name = "NAME=URL")]
    pub bots: Vec<String>,

    /// A TOML file with the same settings (keys: join, relay, token, ca, pin, name, max_concurrency,
    /// reserved_per_bot, request_timeout, heartbeat_timeout, startup_timeout, state_dir,
    /// api_url, and a [bots.NAME] table with url and bot_token).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The name this agent gives the relay, for logs [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// How many requests may be at the bots at once, 1 to 10000 [default: 100].
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Of --max-concurrency, how many requests each bot may always have at its bot, whatever
    /// the other bots hold, so one slow bot cannot starve the others; where the bots' reserves
    /// would not fit the limit, each keeps an equal part of it [default: 10].
    #[arg(long, value_name = "N")]
    pub reserved_per_bot: Option<usize>,

    /// How long a bot may take to answer, such as 30s [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// How long the relay may stay silent before the agent reconnects [default: 9s].
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_timeout: Option<String>,

    /// How long to keep trying to reach the relay at start before exiting with an error;
    /// 0s retries forever. After the first connection the agent always retries [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub startup_timeout: Option<String>,

    /// Where the agent keeps the update ids each bot has already answered, so that updates the
    /// relay delivers again reach the bot only once, across restarts. Created if missing
    /// [default: ./relay-agent-data].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// A bot's Telegram token, needed only to make the Bot API call a bot puts in its answer to an
    /// update the relay stored while the agent or bot was away. Also read from
    /// RELAY_BOT_TOKEN_NAME (the bot's name upper-cased, - as _); prefer that. Repeat for more
    /// bots.
    #[arg(long = "bot-token", value_name = "NAME=TOKEN", value_parser = parse_secret)]
    pub bot_tokens: Vec<Secret>,

    /// The Bot API server for those calls, http:// or https:// [default: Telegram's,
    /// api.telegram.org over HTTPS].
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,

    /// Ask the relay for a delivery mode for a bot: passthrough, durable or auto. The relay's own
    /// configuration of the bot wins; without either, the relay's default (auto) applies.
    /// Repeat for more bots.
    #[arg(long = "mode", value_name = "NAME=MODE")]
    pub modes: Vec<String>,
}

fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}
