//! A benchmark of relay-server and relay-agent: real processes on 127.0.0.1, an nginx bot, and
//! wrk, comparing each way through the relay with the bot reached directly.
//!
//! # Layout
//! Top to bottom: each module imports only modules listed below it.
//! - [`report`]: what is printed.
//! - [`machine`]: the machine the numbers were measured on.
//! - [`extras`]: memory, dead-agent detection, restart recovery, durable intake.
//! - [`matrix`]: the load matrix, round by round.
//! - [`variant`]: each way a request can take to the bot.
//! - [`wrk`]: the load generator and what it measured.
//! - [`pair`]: a relay and an agent started together.
//! - [`agent`]: a relay-agent under test.
//! - [`relay`]: a relay-server under test.
//! - [`nginx`]: the bot: nginx answering every update.
//! - [`client`]: the bench's own HTTP requests and readiness checks.
//! - [`update`]: the Telegram update every request carries.
//! - [`net`]: free ports.
//! - [`child`]: a spawned process, its log, its CPU and memory, its signals.
//! - [`lab`]: the temporary directory, the binaries under test, and what is on PATH.
//! - [`cli`]: the options and the [`Plan`] they make.

pub mod agent;
pub mod child;
pub mod cli;
pub mod client;
pub mod extras;
pub mod lab;
pub mod machine;
pub mod matrix;
pub mod net;
pub mod nginx;
pub mod pair;
pub mod relay;
pub mod report;
pub mod update;
pub mod variant;
pub mod wrk;

use anyhow::{Context, Result, bail};
use rustix::process::{Resource, Rlimit};

pub use cli::{Options, Plan};

use crate::extras::Extras;
use crate::lab::Lab;
use crate::machine::Machine;
use crate::matrix::Matrix;
use crate::nginx::Nginx;
use crate::report::Report;
use crate::variant::Setup;
use crate::wrk::Wrk;

/// Runs the benchmark until it is done or Ctrl-C; either way every child is killed and the
/// temporary directory removed (by the drops of what [`run`] holds).
pub async fn run_until_interrupted(options: Options) -> Result<()> {
    tokio::select! {
        result = run(options) => result,
        signal = tokio::signal::ctrl_c() => {
            signal.context("cannot watch for Ctrl-C")?;
            bail!("interrupted")
        }
    }
}

/// Runs the benchmark and prints the report on stdout (progress goes to stderr). Misses of
/// targets are results; an error means a measurement did not work.
pub async fn run(options: Options) -> Result<()> {
    let plan = Plan::new(options)?;
    raise_open_files_limit(plan.idle_agents)?;
    let lab = Lab::new(&plan.bin_dir)?;
    for tool in ["wrk", "nginx"] {
        if !lab::on_path(tool) {
            bail!("{tool} is not installed; bench/run installs it");
        }
    }
    let machine = Machine::read(lab.relay_server());
    eprintln!("bench: working in {}", lab.path().display());

    let mut nginx = Nginx::start(&lab.subdir("nginx")?).await?;
    let wrk = Wrk::prepare(lab.path())?;
    let mut setups = Setup::start_all(&lab, &nginx).await?;
    let matrix = Matrix::run(&plan, &wrk, &mut setups).await?;
    // The measurements below start processes of their own; these would only take memory.
    drop(setups);
    nginx.check_alive()?;
    let extras = Extras::run(&plan, &lab, &nginx, &wrk).await?;

    let report = Report {
        plan: &plan,
        machine: &machine,
        matrix: &matrix,
        extras: &extras,
    };
    print!("{}", report.render());
    let mut failures = matrix.failures();
    if extras.store_rate.outcome.errors() > 0 {
        failures.push(format!(
            "durable intake: {}",
            extras.store_rate.outcome.error_text()
        ));
    }
    if !failures.is_empty() {
        bail!("requests failed: {}", failures.join("; "));
    }
    Ok(())
}

/// Raises this process's open-file limit to the hard limit; children inherit it. The idle-agent
/// measurement holds one socket per agent here and one in the relay.
fn raise_open_files_limit(idle_agents: usize) -> Result<()> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if let Some(maximum) = limit.maximum
        && limit.current.is_some_and(|current| current < maximum)
    {
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            },
        )
        .context("cannot raise the open-file limit")?;
    }
    let needed = idle_agents as u64 + 512;
    let current = rustix::process::getrlimit(Resource::Nofile).current;
    if current.is_some_and(|current| current < needed) {
        bail!(
            "the open-file limit ({}) is too low for {idle_agents} idle agents; lower --idle-agents or raise `ulimit -Hn`",
            current.unwrap_or_default()
        );
    }
    Ok(())
}
