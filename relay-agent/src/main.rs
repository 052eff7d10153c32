//! The `relay-agent` binary: parses flags, sets up logging and signals, and calls
//! [`relay_agent::run`].

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers, and glibc's malloc spent a fifth of the agent's time on them (measured with perf,
/// see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use relay_agent::{Cli, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// One thread: the agent's work is hand-offs between one WebSocket and the bots' connections,
/// which cost a function call on one thread and a wake-up between threads. On the benchmark it
/// halved the agent's CPU per request (docs/BENCHMARKS.md); one core carries far more than
/// Telegram sends.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("relay-agent: error: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let shutdown = CancellationToken::new();
    if let Err(error) = cancel_on_signal(shutdown.clone()) {
        eprintln!("relay-agent: error: cannot watch for SIGTERM and SIGINT: {error}");
        return ExitCode::FAILURE;
    }
    match relay_agent::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay-agent: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (service managers) and SIGINT (Ctrl-C) both mean: close the session and exit 0.
/// The handlers are installed before this returns, so no early signal is lost to the default
/// action.
fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    Ok(())
}
