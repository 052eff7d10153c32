//! What `relay-server` and `relay-agent` do alike as long-running processes, written once: logs
//! on stderr, the signals that stop them, and the one line a user reads when they cannot start.
//!
//! # Layout
//! - [`init_logging`]: `tracing` to stderr, filtered by `RUST_LOG`, colour only on a terminal.
//! - [`cancel_on_signal`]: SIGTERM and SIGINT cancel a token, for a graceful drain.
//! - [`on_reload_signal`]: SIGHUP asks for a reload instead of ending the process.
//! - [`fail`]: the one-line error and the exit status.
//! - [`toml_error`]: a config file's parse error on one line, without the line's text.
//! - [`share`]: a concurrency limit shared fairly by the bots behind one agent.

pub mod share;

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise. ANSI colours only when stderr is a
/// terminal: in the journal, a file or a pipe they would be escape codes in the text.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// SIGTERM (service managers) and SIGINT (Ctrl-C) both mean: stop accepting, drain, exit 0.
/// The handlers are installed before this returns, so no early signal is lost to the default
/// action (which would end the process without a drain). Must be called inside a Tokio runtime.
pub fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
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

/// SIGHUP calls `reload` (and is logged) instead of ending the process, which is its default
/// action. The handler is installed before this returns. Must be called inside a Tokio runtime;
/// elsewhere than Unix there is no SIGHUP and this does nothing.
pub fn on_reload_signal(reload: impl Fn() + Send + 'static) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("reloading (SIGHUP)");
                reload();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reload;
    Ok(())
}

/// A TOML parse error of `text` as one line: where (`line N: `) and what, but never the text of
/// the line, which toml's own message quotes and which may hold a token.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let what = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {what}")
        }
        None => what,
    }
}

/// Prints `program: error: message` as one line on stderr and returns exit status `code`.
pub fn fail(program: &str, message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("{program}: error: {message}");
    ExitCode::from(code)
}
