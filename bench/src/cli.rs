//! The command line, and the [`Plan`] it turns into: every size and duration of one run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Benchmarks relay-server and relay-agent against an nginx bot reached directly: \
             throughput, latency and CPU per request, then memory, dead-agent detection, \
             restart recovery and the durable store's intake.",
    after_help = "Needs wrk and nginx on PATH (bench/run installs them). Ctrl-C stops every child \
                  and removes the temporary directory."
)]
pub struct Options {
    /// A tiny run that only proves everything works: 1 round of about 1 s per row, c=1 and c=40
    /// keep-alive, 50 idle agents, 100 requests in flight, a short durable run
    #[arg(long)]
    pub smoke: bool,
    /// Seconds per measurement
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Rounds per row; the tables show the median
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Print the tables as GitHub markdown
    #[arg(long)]
    pub markdown: bool,
    /// WebSocket connections for the idle-agent memory measurement
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=8000))]
    pub idle_agents: u64,
    /// Where relay-server and relay-agent are [default: the directory of this executable]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Run only this load shape, by its label in the table (`c=40 new conn`, `c=1 keep-alive`);
    /// repeatable. The other measurements still run
    #[arg(long = "shape", value_name = "SHAPE")]
    pub shapes: Vec<String>,
}

/// One load shape: how many connections wrk keeps busy, and whether it reuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Concurrent connections.
    pub connections: u32,
    /// `false`: a new connection per request (`Connection: close`).
    pub keep_alive: bool,
}

impl Shape {
    /// wrk's threads: one per connection up to two, as wrk needs at least one connection each.
    pub fn threads(self) -> u32 {
        self.connections.clamp(1, 2)
    }

    /// A short label such as `c=40 keep-alive`.
    pub fn label(self) -> String {
        let reuse = if self.keep_alive {
            "keep-alive"
        } else {
            "new conn"
        };
        format!("c={} {reuse}", self.connections)
    }
}

/// Everything one run does, settled before anything starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Length of one wrk run.
    pub duration: Duration,
    /// Rounds per shape.
    pub rounds: u32,
    /// Load shapes, in the order they run.
    pub shapes: Vec<Shape>,
    /// A run per variant before the first measurement, so that first-touch costs (page faults,
    /// allocator growth, connection pools) do not land in the first row.
    pub warmup: Duration,
    /// WebSocket connections for the idle-agent memory measurement.
    pub idle_agents: usize,
    /// Requests held at the bot for the in-flight memory measurement (the relay takes 512 per agent).
    pub in_flight: usize,
    /// How long the durable-intake run lasts.
    pub store_duration: Duration,
    /// A relay heartbeat timeout for the dead-agent measurement; `None` keeps the relay's default.
    /// Only smoke runs shorten it, so that they stay well under a minute.
    pub dead_agent_heartbeat: Option<Duration>,
    /// GitHub markdown instead of aligned text.
    pub markdown: bool,
    /// Where relay-server and relay-agent are.
    pub bin_dir: PathBuf,
    /// Whether this is a smoke run (said in the report).
    pub smoke: bool,
}

impl Plan {
    /// The plan for `options`; `--smoke` overrides sizes and durations.
    pub fn new(options: Options) -> Result<Plan> {
        let bin_dir = match options.bin_dir {
            Some(dir) => dir,
            None => std::env::current_exe()
                .context("cannot find this executable's path; pass --bin-dir")?
                .parent()
                .context("this executable has no parent directory; pass --bin-dir")?
                .to_owned(),
        };
        let keep = |connections| Shape {
            connections,
            keep_alive: true,
        };
        if options.smoke {
            return Ok(Plan {
                duration: Duration::from_secs(1),
                rounds: 1,
                shapes: vec![keep(1), keep(40)],
                warmup: Duration::from_secs(1),
                idle_agents: 50,
                in_flight: 100,
                store_duration: Duration::from_secs(1),
                dead_agent_heartbeat: Some(Duration::from_secs(3)),
                markdown: options.markdown,
                bin_dir,
                smoke: true,
            });
        }
        let duration = Duration::from_secs(options.duration);
        let mut shapes = vec![
            keep(1),
            keep(10),
            keep(40),
            keep(100),
            Shape {
                connections: 40,
                keep_alive: false,
            },
        ];
        if !options.shapes.is_empty() {
            if let Some(unknown) = options
                .shapes
                .iter()
                .find(|label| !shapes.iter().any(|shape| shape.label() == **label))
            {
                let known: Vec<String> = shapes.iter().map(|shape| shape.label()).collect();
                bail!("no load shape {unknown:?}; the shapes are {known:?}");
            }
            shapes.retain(|shape| options.shapes.contains(&shape.label()));
        }
        Ok(Plan {
            duration,
            rounds: options.rounds,
            shapes,
            warmup: Duration::from_secs(1),
            idle_agents: usize::try_from(options.idle_agents).unwrap_or(1000),
            in_flight: 400,
            store_duration: duration,
            dead_agent_heartbeat: None,
            markdown: options.markdown,
            bin_dir,
            smoke: false,
        })
    }
}
