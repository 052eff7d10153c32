//! The bot: nginx answering every POST with `{"ok":true}`, as fast as a bot can, so that what the
//! tables show is the relay's cost and not the bot's.
//!
//! One process (`master_process off`) serving on one event loop, the same as one worker, and a
//! single process to kill: a worker orphaned by a killed master would keep the port.
//!
//! A second nginx, as a reverse proxy in front of the bot, is the reference hop: the cost of one
//! well-optimised HTTP proxy on this machine, which the relay and agent are compared with.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::child::Child;
use crate::client::Endpoint;
use crate::net;

/// How long the probe request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    /// Starts nginx as the bot, with a configuration of its own in `dir`, and checks that it
    /// answers.
    pub async fn start(dir: &Path) -> Result<Nginx> {
        Nginx::start_as(dir, None).await
    }

    /// Starts nginx as a reverse proxy to `bot`, keeping connections to it alive.
    pub async fn start_proxy(dir: &Path, bot: &Nginx) -> Result<Nginx> {
        Nginx::start_as(dir, Some(bot.port)).await
    }

    async fn start_as(dir: &Path, upstream: Option<u16>) -> Result<Nginx> {
        let port = net::free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, upstream))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"));
        let mut child = Child::spawn("nginx", &mut command, &dir.join("nginx.out"))
            .context("is nginx installed? bench/run installs it")?;
        net::wait_listening(&mut child, net::local(port)).await?;
        let status = Endpoint::plain(net::local(port))
            .post_update("/webhook", PROBE_TIMEOUT)
            .await?;
        if !status.is_success() {
            bail!("nginx answered the probe with {status}");
        }
        Ok(Nginx { child, port })
    }

    /// The bot's URL, as agents and wrk use it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhook", self.port)
    }

    /// Where nginx listens.
    pub fn address(&self) -> std::net::SocketAddr {
        net::local(self.port)
    }

    /// An error if nginx has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.child.check_alive()
    }

    /// The process, for its CPU time.
    pub fn child(&self) -> &Child {
        &self.child
    }
}

/// The configuration: everything nginx writes stays in `dir`. With an `upstream` port it proxies
/// there over keep-alive connections; without, it is the bot.
fn config(dir: &Path, port: u16, upstream: Option<u16>) -> String {
    let dir = dir.display();
    let (upstream_block, location) = match upstream {
        None => (String::new(), r#"return 200 '{"ok":true}';"#.to_owned()),
        Some(bot) => (
            format!("upstream bot {{\n        server 127.0.0.1:{bot};\n        keepalive 256;\n    }}\n"),
            "proxy_pass http://bot;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";".to_owned(),
        ),
    };
    format!(
        r#"# Written by the relay bench.
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # nginx closes a connection after 1000 requests by default; a bench client keeps its own.
    keepalive_requests 100000000;
    keepalive_timeout 300s;

    {upstream_block}
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{
            {location}
        }}
    }}
}}
"#
    )
}
