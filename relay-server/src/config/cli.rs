//! The command line: flags that override the file, and the subcommands that talk to a running
//! relay's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

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
    pub command: Option<Command>,
}

/// What the command line can ask a running relay.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show delivery counters and queue sizes
    Stats,
    /// List, replay or drop stored updates that kept failing
    #[command(subcommand)]
    DeadLetters(DeadLetterAction),
}

/// What to do with dead letters.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetterAction {
    /// List them, oldest first
    List {
        /// Only this bot's
        #[arg(long)]
        bot: Option<String>,
    },
    /// Queue one for delivery again, behind its chat's waiting updates
    Replay {
        /// The bot
        bot: String,
        /// The number `list` shows
        seq: u64,
    },
    /// Delete one for good
    Drop {
        /// The bot
        bot: String,
        /// The number `list` shows
        seq: u64,
    },
}
