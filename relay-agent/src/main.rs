//! The `relay-agent` binary: parses flags, sets up logging and signals, and calls
//! [`relay_agent::run`].

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers, and glibc's malloc spent a fifth of the agent's time on them (measured with perf,
/// see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use relay_agent::{Cli, Config};
use service::fail;
use tokio_util::sync::CancellationToken;

/// The name every error line starts with.
const PROGRAM: &str = "relay-agent";
/// Exit status for a configuration the user must fix (as for clap's usage errors).
const EXIT_CONFIG: u8 = 2;

/// One thread: the agent's work is hand-offs between one WebSocket and the bots' connections,
/// which cost a function call on one thread and a wake-up between threads. On the benchmark it
/// halved the agent's CPU per request (docs/BENCHMARKS.md); one core carries far more than
/// Telegram sends.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(error) => return fail(PROGRAM, error, EXIT_CONFIG),
    };
    service::init_logging();

    let shutdown = CancellationToken::new();
    if let Err(error) = service::cancel_on_signal(shutdown.clone()) {
        return fail(
            PROGRAM,
            format!("cannot watch for SIGTERM and SIGINT: {error}"),
            1,
        );
    }
    match relay_agent::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(PROGRAM, error, 1),
    }
}
