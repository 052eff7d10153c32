//! The command line: flags that override the file, and the subcommands that talk to a running
//! relay's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::tls::KeyKind;

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
    /// Directory for the generated tokens, certificates (self-signed or ACME) and the store
    /// [default: ./relay-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain to serve (for example certbot's fullchain.pem); read again when it
    /// changes and on SIGHUP, without dropping connections
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
    /// The key of a new self-signed certificate: rsa (RSA-2048, as Telegram's guide makes it) or
    /// ecdsa (P-256). An existing certificate is kept unless this asks for another kind
    /// [default: rsa]
    #[arg(long, value_name = "KIND", conflicts_with_all = ["no_tls", "tls_cert", "acme_domains"])]
    pub self_signed_key: Option<KeyKind>,
    /// Get a certificate for this domain from an ACME CA (Let's Encrypt by default) and renew it;
    /// repeat for more names on the same certificate
    #[arg(long = "acme-domain", value_name = "NAME", conflicts_with_all = ["no_tls", "tls_cert"])]
    pub acme_domains: Vec<String>,
    /// Contact address for the ACME account (the CA's expiry notices)
    #[arg(long, value_name = "ADDR")]
    pub acme_email: Option<String>,
    /// The ACME CA's directory URL [default: Let's Encrypt production]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// A PEM root certificate to trust for the ACME CA's own API (private CAs, tests)
    #[arg(long, value_name = "FILE")]
    pub acme_ca: Option<PathBuf>,
    /// Answer ACME HTTP-01 challenges on this address (port 80), redirecting everything else to
    /// HTTPS; without it the relay answers TLS-ALPN-01 on its own TLS port
    #[arg(long, value_name = "ADDR")]
    pub acme_http_listen: Option<SocketAddr>,
    /// Host name or IP address the public reaches this relay at: put first in the self-signed
    /// certificate, used in the join value and the printed commands, and checked against the
    /// served certificate at start [default: the first --acme-domain]
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

/// What the command line can ask: the first two read the data dir, the others a running relay.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the served certificate's file, names, expiry and SHA-256 fingerprint (the file is
    /// what to upload to Telegram as setWebhook's `certificate` when it is self-signed)
    Cert,
    /// Print the join value an agent needs (relay URL, agent token and certificate pin), for
    /// `RELAY_JOIN=... relay-agent`
    Join {
        /// The `[[agents]]` entry whose token to put in it [default: the any-bot token]
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
    },
    /// Ask the running relay's admin API.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// What the command line can ask a running relay's admin API.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
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
