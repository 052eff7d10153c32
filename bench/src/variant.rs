//! The ways a webhook reaches the bot, measured side by side: directly, through the relay in
//! three configurations, through one nginx reverse proxy (the reference hop), and through the
//! plain TCP tunnels rathole and bore when they are installed (`cargo install rathole bore-cli`).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::Child;
use crate::client::Endpoint;
use crate::lab::Lab;
use crate::nginx::Nginx;
use crate::pair::Pair;
use crate::relay::RelayConfig;
use crate::{net, update};

/// How long a durable relay may take to deliver its backlog after a run before the row counts as
/// failed. Delivery runs beside intake, so a backlog of a few seconds' intake is normal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long rathole or bore may take to carry its first request.
const TUNNEL_READY: Duration = Duration::from_secs(15);
/// bore's control port, fixed by bore itself.
const BORE_CONTROL_PORT: u16 = 7835;

/// One way to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// wrk → nginx.
    Direct,
    /// wrk → relay (plain HTTP) → WebSocket → agent → nginx, passthrough.
    WsPassthrough,
    /// The same over TLS on both hops, as deployed.
    TlsPassthrough,
    /// TLS, durable mode: the relay answers once the update is fsynced, then delivers it.
    TlsDurable,
    /// wrk → rathole server → rathole client → nginx, plain TCP.
    Rathole,
    /// wrk → bore server → bore client → nginx, plain TCP.
    Bore,
    /// wrk → nginx as a reverse proxy → nginx: the reference cost of one HTTP proxy hop.
    NginxProxy,
}

impl Variant {
    /// The name the tables use.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::WsPassthrough => "ws-passthrough",
            Variant::TlsPassthrough => "tls-passthrough",
            Variant::TlsDurable => "tls-durable",
            Variant::Rathole => "rathole",
            Variant::Bore => "bore",
            Variant::NginxProxy => "nginx-proxy",
        }
    }
}

/// What carries the requests of one variant.
#[derive(Debug)]
enum Tunnel {
    /// Nothing: wrk talks to the bot.
    None,
    /// A relay and its agent.
    Relay(Box<Pair>),
    /// A rathole or bore server and client.
    Tcp { server: Child, client: Child },
    /// One nginx proxying to the bot.
    Proxy(Nginx),
}

/// One variant, started and ready for load.
#[derive(Debug)]
pub struct Setup {
    /// Which variant.
    pub variant: Variant,
    url: String,
    tunnel: Tunnel,
}

/// CPU time of the two tunnel processes.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    /// The relay (or rathole server).
    pub relay: Duration,
    /// The agent (or rathole client).
    pub agent: Duration,
}

impl Setup {
    /// Starts every variant against `nginx`; rathole only if it is on PATH.
    pub async fn start_all(lab: &Lab, nginx: &Nginx) -> Result<Vec<Setup>> {
        let mut setups = vec![Setup {
            variant: Variant::Direct,
            url: nginx.url(),
            tunnel: Tunnel::None,
        }];
        let relays = [
            (Variant::WsPassthrough, false, "passthrough"),
            (Variant::TlsPassthrough, true, "passthrough"),
            (Variant::TlsDurable, true, "durable"),
        ];
        for (variant, tls, mode) in relays {
            let mut config = RelayConfig::bench(tls, mode);
            // The durable row waits for the store to drain, which needs the admin counters.
            config.admin = variant == Variant::TlsDurable;
            let pair = Pair::start(lab, variant.label(), &config, &nginx.url()).await?;
            setups.push(Setup {
                variant,
                url: pair.relay.hook_url(update::BOT),
                tunnel: Tunnel::Relay(Box::new(pair)),
            });
        }
        if crate::lab::on_path("rathole") {
            setups.push(start_rathole(lab, nginx).await?);
        }
        if crate::lab::on_path("bore") {
            setups.push(start_bore(lab, nginx).await?);
        }
        let proxy = Nginx::start_proxy(&lab.subdir("nginx-proxy")?, nginx).await?;
        setups.push(Setup {
            variant: Variant::NginxProxy,
            url: proxy.url(),
            tunnel: Tunnel::Proxy(proxy),
        });
        Ok(setups)
    }

    /// The URL wrk loads.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// CPU used so far by the tunnel's two processes; `None` for direct.
    pub fn cpu(&self) -> Result<Option<Cpu>> {
        let (relay, agent) = match &self.tunnel {
            Tunnel::None => return Ok(None),
            Tunnel::Relay(pair) => (pair.relay.child(), pair.agent.child()),
            Tunnel::Tcp { server, client } => (server, client),
            Tunnel::Proxy(proxy) => {
                return Ok(Some(Cpu {
                    relay: proxy.child().cpu()?,
                    agent: Duration::ZERO,
                }));
            }
        };
        Ok(Some(Cpu {
            relay: relay.cpu()?,
            agent: agent.cpu()?,
        }))
    }

    /// An error if a process of this variant has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match &mut self.tunnel {
            Tunnel::None => Ok(()),
            Tunnel::Relay(pair) => pair.check_alive(),
            Tunnel::Tcp { server, client } => {
                server.check_alive()?;
                client.check_alive()
            }
            Tunnel::Proxy(proxy) => proxy.check_alive(),
        }
    }

    /// After a run: waits until a durable relay has delivered everything it took, so that its
    /// deliveries count in its CPU and do not spill into the next row. Returns how long that took.
    pub async fn settle(&mut self) -> Result<Option<Duration>> {
        match &mut self.tunnel {
            Tunnel::Relay(pair) if self.variant == Variant::TlsDurable => {
                Ok(Some(pair.drain(DRAIN_TIMEOUT).await?))
            }
            _ => Ok(None),
        }
    }
}

/// rathole forwarding a public port to nginx over its default transport (plain TCP).
async fn start_rathole(lab: &Lab, nginx: &Nginx) -> Result<Setup> {
    let dir = lab.subdir("rathole")?;
    let (control, public) = (net::free_port()?, net::free_port()?);
    let token = crate::lab::AGENT_TOKEN;
    let nginx_address = nginx.address();
    let server_toml = format!(
        "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\n[server.services.bench]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{public}\"\n"
    );
    let client_toml = format!(
        "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\n[client.services.bench]\ntoken = \"{token}\"\nlocal_addr = \"{nginx_address}\"\n"
    );
    let spawn = |name: &str, flag: &str, toml: &str| -> Result<Child> {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).with_context(|| format!("cannot write {}", file.display()))?;
        let mut command = Command::new("rathole");
        command.arg(flag).arg(&file);
        Child::spawn(name, &mut command, &dir.join(format!("{name}.log")))
    };
    let mut server = spawn("rathole-server", "--server", &server_toml)?;
    net::wait_listening(&mut server, net::local(control)).await?;
    let mut client = spawn("rathole-client", "--client", &client_toml)?;
    wait_tunnel(&mut server, &mut client, public).await?;
    Ok(Setup {
        variant: Variant::Rathole,
        url: format!("http://127.0.0.1:{public}/webhook"),
        tunnel: Tunnel::Tcp { server, client },
    })
}

/// bore forwarding a public port to nginx. bore opens one connection to its server per public
/// connection, so with keep-alive load it is a plain byte pipe like rathole.
async fn start_bore(lab: &Lab, nginx: &Nginx) -> Result<Setup> {
    let dir = lab.subdir("bore")?;
    let public = net::free_port()?;
    let mut server_command = Command::new("bore");
    server_command.args(["server", "--bind-addr", "127.0.0.1"]);
    let mut server = Child::spawn("bore-server", &mut server_command, &dir.join("server.log"))?;
    net::wait_listening(&mut server, net::local(BORE_CONTROL_PORT)).await?;
    let mut client_command = Command::new("bore");
    client_command
        .arg("local")
        .arg(nginx.address().port().to_string())
        .args(["--local-host", "127.0.0.1", "--to", "127.0.0.1", "--port"])
        .arg(public.to_string());
    let mut client = Child::spawn("bore-client", &mut client_command, &dir.join("client.log"))?;
    wait_tunnel(&mut server, &mut client, public).await?;
    Ok(Setup {
        variant: Variant::Bore,
        url: format!("http://127.0.0.1:{public}/webhook"),
        tunnel: Tunnel::Tcp { server, client },
    })
}

/// Waits until a request through a TCP tunnel's public port reaches nginx.
async fn wait_tunnel(server: &mut Child, client: &mut Child, port: u16) -> Result<()> {
    let endpoint = Endpoint::plain(net::local(port));
    let deadline = tokio::time::Instant::now() + TUNNEL_READY;
    loop {
        server.check_alive()?;
        client.check_alive()?;
        if let Ok(status) = endpoint
            .post_update("/webhook", Duration::from_secs(2))
            .await
            && status.is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            server.failure("(server side of the failure below)");
            return Err(client.failure(format!("does not carry requests after {TUNNEL_READY:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
