//! `relay-server`: parse flags, set up logging and signals, bind, and run the relay, or run one
//! admin command against a running relay.

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers, and glibc's malloc (consolidating and unlinking chunks) was among the largest costs
/// in the profiles (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Parser;
use relay_server::config::{AdminCommand, Command};
use relay_server::{Cli, Config, Relay};
use service::fail;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The name every error line starts with.
const PROGRAM: &str = "relay-server";

/// Exit status for a configuration the user must fix (as for clap's usage errors).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let config_file = cli.config.clone();
    service::init_logging();
    let command = cli.command.take();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(error) => return fail(PROGRAM, error, EXIT_CONFIG),
    };
    let runtime = match runtime(config.threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(
                PROGRAM,
                format!("cannot start the async runtime: {error}"),
                1,
            );
        }
    };
    if let Some(command) = command {
        let done = match command {
            Command::Cert => relay_server::certificate_report(&config).map_err(anyhow::Error::from),
            Command::Join { agent } => join_value(&config, agent.as_deref()),
            Command::Admin(command) => runtime.block_on(admin_command(command, &config)),
        };
        return match done {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(PROGRAM, error, 1),
        };
    }
    // Plain `{error}`: each error's own text already names its cause, and anyhow's `{:#}` would
    // print that cause a second time.
    match runtime.block_on(serve(config, config_file.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(PROGRAM, error, 1),
    }
}

/// The async runtime: one thread unless the configuration asks for more (see
/// `relay_server::config::DEFAULT_THREADS` for why).
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

/// File descriptors the relay needs besides its connections: store, logs, TLS files, admin.
const SPARE_DESCRIPTORS: u64 = 64;

/// Raises the soft limit on open files to what the connections need (at most the hard limit), as
/// servers do: the common default soft limit of 1024 would make `accept` fail long before
/// `max_connections` (4096 by default) is reached. `max_connections` counts here as every socket
/// the limits allow: HTTP connections, the agents' reserve and agent sessions. Warns when the
/// hard limit is too low.
fn raise_open_file_limit(max_connections: usize) {
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE_DESCRIPTORS);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below max_connections; raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

async fn serve(config: Config, config_file: Option<&Path>) -> anyhow::Result<()> {
    let limits = &config.limits;
    raise_open_file_limit(
        limits
            .max_connections
            .saturating_add(limits.agent_reserve)
            .saturating_add(limits.max_agent_sessions),
    );
    // SIGHUP is caught from here on: its default action would end the relay, and preparing
    // (a new RSA key, opening the store) can take a moment.
    let reload = relay_server::Reload::default();
    let requests = reload.clone();
    service::on_reload_signal(move || requests.request())
        .map_err(|error| anyhow!("cannot watch for SIGHUP: {error}"))?;
    let relay = Relay::prepare(config)?.reloaded_by(reload);
    let address = relay.config().listen;
    let listener = TcpListener::bind(address).await.map_err(|error| match error.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "address {address} is already in use: stop the program using it or choose another with --listen"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "no permission to listen on {address}: ports below 1024 need root or CAP_NET_BIND_SERVICE; try --listen 0.0.0.0:8443"
        ),
        _ => anyhow!("cannot listen on {address}: {error}"),
    })?;
    let admin = match relay.config().admin_listen {
        None => None,
        Some(address) => Some(TcpListener::bind(address).await.map_err(|error| {
            anyhow!("cannot serve the admin API on {address}: {error}; choose another with --admin-listen or turn it off with --no-admin")
        })?),
    };
    let shutdown = CancellationToken::new();
    service::cancel_on_signal(shutdown.clone())
        .map_err(|error| anyhow!("cannot watch for signals: {error}"))?;
    print_banner(&relay, &listener, config_file);
    relay.run_with_admin(listener, admin, shutdown).await;
    Ok(())
}

/// Runs an admin subcommand against the relay this configuration describes.
async fn admin_command(command: AdminCommand, config: &Config) -> anyhow::Result<String> {
    let address = config
        .admin_listen
        .context("the admin API is turned off in this configuration (--no-admin)")?;
    let token = match std::env::var("RELAY_ADMIN_TOKEN") {
        Ok(token) => protocol::Secret::new(token),
        Err(_) => {
            let path = relay_server::data_dir::DataDir::new(&config.data_dir).admin_token();
            let text = std::fs::read_to_string(&path).map_err(|error| {
                anyhow!("cannot read the admin token {}: {error}; run this where the relay's --data-dir is, or set RELAY_ADMIN_TOKEN", path.display())
            })?;
            protocol::Secret::new(text.trim())
        }
    };
    Ok(relay_server::admin::client(command, address, &token).await?)
}

/// `relay-server join`: the join value, for `RELAY_JOIN`.
fn join_value(config: &Config, agent: Option<&str>) -> anyhow::Result<String> {
    Ok(relay_server::join::join_value(config, config.listen, agent)?.encode())
}

/// Tells a new user the two things they need: the agent command and the webhook URL.
fn print_banner(relay: &Relay, listener: &TcpListener, config_file: Option<&Path>) {
    let config = relay.config();
    let address = listener.local_addr().unwrap_or(config.listen);
    let port = address.port();
    let named = match config.advertised_host() {
        Some(host) => Some(host.to_owned()),
        None => (!address.ip().is_unspecified()).then(|| address.ip().to_string()),
    };
    // An IPv6 address goes in brackets in a URL.
    let host = match named.as_deref().map(str::parse::<std::net::Ipv6Addr>) {
        Some(Ok(ip)) => format!("[{ip}]"),
        _ => named.clone().unwrap_or_else(|| "HOST".into()),
    };
    let http = if relay.tls_enabled() { "https" } else { "http" };
    println!(
        "relay-server {} listening on {address} ({http})",
        env!("CARGO_PKG_VERSION")
    );
    println!();
    println!("Webhook URL of bot NAME:   {http}://{host}:{port}/hook/NAME");
    println!("Run the agent beside the bot:");
    let bot = "--bot NAME=http://127.0.0.1:PORT/PATH";
    match relay_server::join::join_value(config, address, None) {
        // The value holds the token, so it is shown once, when the token is made; later starts
        // name the command that prints it, so logs that capture stdout (the journal) do not keep
        // repeating a secret.
        Ok(join) if relay.token_is_new() => {
            let join = join.encode();
            println!("  RELAY_JOIN={join} relay-agent {bot}");
            println!(
                "(or relay-agent --join {join} {bot}, though that shows the token in the process list)"
            );
        }
        Ok(_) => {
            let mut command = String::from("relay-server join");
            if let Some(file) = config_file {
                let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
                command.push_str(&format!(" --config {}", file.display()));
            }
            let data_dir =
                std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            command.push_str(&format!(" --data-dir {}", data_dir.display()));
            println!("  RELAY_JOIN=<the value `{command}` prints here> relay-agent {bot}");
        }
        Err(why) => {
            // The long form: as on the start that made it, the token is shown once.
            let token = match (relay.any_bot_token(), relay.token_file()) {
                (Some(token), Some(_)) if relay.token_is_new() => token.expose().to_owned(),
                (Some(_), Some(file)) => {
                    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
                    format!("\"$(cat {})\"", file.display())
                }
                _ => "TOKEN".to_owned(),
            };
            let relay_url = if relay.tls_enabled() {
                format!("wss://{host}:{port}")
            } else {
                "wss://PROXY-HOST".to_owned()
            };
            let pin = match (relay.self_signed_cert(), relay.fingerprint()) {
                (Some(_), Some(pin)) => format!(" --pin {pin}"),
                _ => String::new(),
            };
            println!("  RELAY_AGENT_TOKEN={token} relay-agent --relay {relay_url}{pin} {bot}");
            println!("(no join value: {why})");
        }
    }
    if let Some(cert) = relay.self_signed_cert() {
        let cert = std::fs::canonicalize(cert).unwrap_or_else(|_| cert.to_owned());
        println!(
            "The certificate is self-signed: upload {} to Telegram as setWebhook's `certificate`",
            cert.display()
        );
        println!(
            "(`relay-server cert` shows how); agents trust it by its pin, which the join value carries."
        );
    }
    println!();
}
