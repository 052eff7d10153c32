//! A relay-server process: its configuration file, its start, its admin counters, and the kill,
//! stop and restart the recovery measurements need.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::process::Signal;
use serde::Deserialize;

use relay_server::data_dir::DataDir;

use crate::child::Child;
use crate::client::Endpoint;
use crate::lab::{AGENT_TOKEN, Lab};
use crate::{net, update};

/// How long SIGTERM may take: the relay's drain grace (10 s) plus a margin.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// One admin request, on loopback.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a relay is started with.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// HTTPS with the relay's self-signed certificate; otherwise `--no-tls`.
    pub tls: bool,
    /// Serve the admin API on a free port, for [`Relay::stats`].
    pub admin: bool,
    /// Bots configured by name, with their delivery mode; each checks [`update::SECRET`].
    pub bots: Vec<(String, &'static str)>,
    /// `[limits]` lines, such as `heartbeat_timeout = "3s"`.
    pub limits: Vec<String>,
    /// `[delivery]` lines, such as `max_store_bytes = 4294967296`.
    pub delivery: Vec<String>,
}

impl RelayConfig {
    /// A relay serving [`update::BOT`] in `mode`.
    pub fn bench(tls: bool, mode: &'static str) -> RelayConfig {
        RelayConfig {
            tls,
            bots: vec![(update::BOT.to_owned(), mode)],
            ..RelayConfig::default()
        }
    }

    fn toml(&self) -> String {
        let mut toml = String::from("# Written by the relay bench.\n");
        let mut table = |name: &str, lines: &[String]| {
            if !lines.is_empty() {
                let _ = writeln!(toml, "[{name}]\n{}\n", lines.join("\n"));
            }
        };
        table("limits", &self.limits);
        table("delivery", &self.delivery);
        for (bot, mode) in &self.bots {
            let _ = writeln!(
                toml,
                "[bots.{bot}]\nsecret_token = \"{}\"\nmode = \"{mode}\"\n",
                update::SECRET
            );
        }
        toml
    }
}

/// The admin API's counters the bench reads.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Stats {
    /// Updates taken into the store.
    pub stored: u64,
    /// Stored updates delivered.
    pub delivered: u64,
    /// Updates waiting in the store.
    pub waiting: u64,
    /// Updates refused because the store was full.
    pub refused_full: u64,
    /// Agent sessions connected.
    pub agents: u64,
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    child: Child,
    name: String,
    dir: PathBuf,
    port: u16,
    admin: Option<u16>,
    tls: bool,
    server: PathBuf,
}

impl Relay {
    /// Starts a relay in a new directory of `lab` and waits until it listens.
    pub async fn start(lab: &Lab, name: &str, config: &RelayConfig) -> Result<Relay> {
        let dir = lab.subdir(name)?;
        std::fs::write(dir.join("relay.toml"), config.toml())
            .context("cannot write the relay's configuration")?;
        let port = net::free_port()?;
        let admin = if config.admin {
            Some(net::free_port()?)
        } else {
            None
        };
        let server = lab.relay_server().to_owned();
        let mut command = command(&server, &dir, port, admin, config.tls);
        let child = Child::spawn(name, &mut command, &dir.join("relay.log"))?;
        let mut relay = Relay {
            child,
            name: name.to_owned(),
            dir,
            port,
            admin,
            tls: config.tls,
            server,
        };
        relay.wait_listening().await?;
        Ok(relay)
    }

    /// Waits until the relay accepts connections.
    pub async fn wait_listening(&mut self) -> Result<()> {
        net::wait_listening(&mut self.child, net::local(self.port)).await
    }

    /// The process.
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// The process, to check or signal it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The self-signed certificate agents and clients must trust, when TLS is on.
    pub fn ca(&self) -> Option<PathBuf> {
        self.tls
            .then(|| DataDir::new(self.dir.join("data")).self_signed_cert())
    }

    /// The agent's `--relay` URL.
    pub fn agent_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The webhook URL of `bot`, as wrk uses it.
    pub fn hook_url(&self, bot: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/hook/{bot}", self.port)
    }

    /// Where the bench's own webhooks go.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let address = net::local(self.port);
        match self.ca() {
            Some(ca) => Endpoint::tls(address, &ca),
            None => Ok(Endpoint::plain(address)),
        }
    }

    /// Whether the relay serves its admin API.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The admin counters (the relay must have been started with `admin`).
    pub async fn stats(&self) -> Result<Stats> {
        let port = self.admin.context("this relay has no admin API")?;
        let token_file = self.dir.join("data/admin-token");
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?;
        let value = Endpoint::plain(net::local(port))
            .get_json("/stats", token.trim(), ADMIN_TIMEOUT)
            .await?;
        serde_json::from_value(value).context("unexpected admin stats")
    }

    /// SIGKILL, and reap: a crash, as far as the relay can tell.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, and wait for the graceful exit; returns how long it took.
    pub async fn stop(&mut self) -> Result<Duration> {
        let started = tokio::time::Instant::now();
        self.child.signal(Signal::TERM)?;
        self.child.wait_exit(STOP_TIMEOUT).await?;
        Ok(started.elapsed())
    }

    /// Starts the relay again with the same arguments and data dir, without waiting for it.
    pub fn respawn(&mut self) -> Result<()> {
        let mut command = command(&self.server, &self.dir, self.port, self.admin, self.tls);
        self.child = Child::spawn(&self.name, &mut command, &self.dir.join("relay.log"))?;
        Ok(())
    }
}

/// The relay's command line: everything in `dir`, the fixed agent token, the config file.
fn command(server: &Path, dir: &Path, port: u16, admin: Option<u16>, tls: bool) -> Command {
    let mut command = Command::new(server);
    command
        .arg("--listen")
        .arg(net::local(port).to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("relay.toml"))
        .arg("--agent-token")
        .arg(AGENT_TOKEN);
    match admin {
        Some(port) => command
            .arg("--admin-listen")
            .arg(net::local(port).to_string()),
        None => command.arg("--no-admin"),
    };
    if !tls {
        command.arg("--no-tls");
    }
    command
}
