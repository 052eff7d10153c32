//! `relay-server`: parse flags, set up logging and signals, bind, and run the relay, or run one
//! admin command against a running relay.

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers, and glibc's malloc (consolidating and unlinking chunks) was among the largest costs
/// in the profiles (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Parser;
use relay_server::config::Command;
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
        return match runtime.block_on(admin_command(command, &config)) {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(PROGRAM, error, 1),
        };
    }
    // Plain `{error}`: each error's own text already names its cause, and anyhow's `{:#}` would
    // print that cause a second time.
    match runtime.block_on(serve(config)) {
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let limits = &config.limits;
    raise_open_file_limit(
        limits
            .max_connections
            .saturating_add(limits.agent_reserve)
            .saturating_add(limits.max_agent_sessions),
    );
    let relay = Relay::prepare(config)?;
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
    print_banner(&relay, &listener);
    relay.run_with_admin(listener, admin, shutdown).await;
    Ok(())
}

/// Runs an admin subcommand against the relay this configuration describes.
async fn admin_command(command: Command, config: &Config) -> anyhow::Result<String> {
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

/// Tells a new user the two things they need: the agent command and the webhook URL.
fn print_banner(relay: &Relay, listener: &TcpListener) {
    let config = relay.config();
    let address = listener.local_addr().unwrap_or(config.listen);
    let port = address.port();
    let named = config.public_host.clone().or_else(|| {
        (!address.ip().is_unspecified()).then(|| match address.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        })
    });
    let host = named.clone().unwrap_or_else(|| "HOST".into());
    let (http, ws) = if relay.tls_enabled() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    // The token is shown once, when it is made; later starts point at its file, so logs that
    // capture stdout (the journal) do not keep repeating a secret.
    let token = match (relay.any_bot_token(), relay.token_file()) {
        (Some(token), Some(_)) if relay.token_is_new() => token.expose().to_owned(),
        (Some(_), Some(file)) => {
            let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
            format!("\"$(cat {})\"", file.display())
        }
        (Some(_), None) => "\"$RELAY_AGENT_TOKEN\"".to_owned(),
        (None, _) => "TOKEN-FROM-YOUR-CONFIG".to_owned(),
    };
    let ca = relay
        .self_signed_cert()
        .map(|path| {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            format!(" --ca {}", path.display())
        })
        .unwrap_or_default();
    println!(
        "relay-server {} listening on {address} ({http})",
        env!("CARGO_PKG_VERSION")
    );
    println!();
    println!("Webhook URL of bot NAME:   {http}://{host}:{port}/hook/NAME");
    println!("Run the agent beside the bot:");
    println!(
        "  relay-agent --relay {ws}://{host}:{port} --token {token}{ca} --bot NAME=http://127.0.0.1:PORT/PATH"
    );
    if named.is_none() {
        println!(
            "(replace HOST with this machine's public name or IP, or start with --public-host HOST)"
        );
    }
    if let Some(cert) = relay.self_signed_cert() {
        println!(
            "The certificate is self-signed: copy {} to the agent's machine for --ca,",
            cert.display()
        );
        println!("and upload it to Telegram as setWebhook's `certificate`.");
    }
    println!();
}
