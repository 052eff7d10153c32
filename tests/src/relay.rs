//! [`TestRelay`]: a real relay-server on 127.0.0.1, on a runtime of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use protocol::Secret;
use relay_server::tunnel::Registry;
use relay_server::{Config, Relay, TlsMode};
use tokio_util::sync::CancellationToken;

/// The token every test relay accepts for any bot.
pub const TOKEN: &str = "test-agent-token-0123456789";

/// A running relay. Dropping it kills it.
#[derive(Debug)]
pub struct TestRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its configuration (to restart it the same way).
    pub config: Config,
    /// The self-signed certificate agents and Telegram must trust, when TLS is on.
    pub ca: Option<PathBuf>,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The admin API's token.
    pub admin_token: Secret,
    registry: Arc<Registry>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl TestRelay {
    /// A relay with TLS (self-signed) and the any-bot [`TOKEN`], with defaults otherwise.
    pub fn config() -> Config {
        let mut config = Config::new(crate::temp_dir("relay"));
        config.agent_token = Some(Secret::new(TOKEN));
        config.tls = TlsMode::self_signed();
        config.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config
    }

    /// Starts a relay with [`TestRelay::config`].
    pub fn start() -> Self {
        Self::start_with(Self::config())
    }

    /// Starts a relay with `config` on a port the OS picks.
    pub fn start_with(config: Config) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::serve(config, listener)
    }

    fn serve(config: Config, listener: std::net::TcpListener) -> Self {
        crate::init_logging();
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let relay = Relay::prepare(config.clone()).expect("relay prepares");
        let ca = relay.self_signed_cert().map(PathBuf::from);
        let admin_token = relay
            .admin_token()
            .cloned()
            .expect("test relays serve the admin API");
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind admin");
        let admin_addr = admin.local_addr().expect("admin addr");
        admin.set_nonblocking(true).expect("nonblocking");
        let registry = relay.registry();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("relay")
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let admin = tokio::net::TcpListener::from_std(admin).expect("admin listener");
            relay.run_with_admin(listener, Some(admin), stop).await;
            let _ = stopped_tx.send(());
        });
        Self {
            addr,
            config,
            ca,
            admin_addr,
            admin_token,
            registry,
            runtime: Some(runtime),
            shutdown,
            stopped: Some(stopped),
        }
    }

    /// The URL agents dial.
    pub fn agent_url(&self) -> String {
        let scheme = if self.tls() { "wss" } else { "ws" };
        format!("{scheme}://localhost:{}", self.addr.port())
    }

    /// Whether the relay speaks TLS.
    pub fn tls(&self) -> bool {
        self.config.tls != TlsMode::Off
    }

    /// Whether an agent serving `bot` is connected now.
    pub fn serves(&self, bot: &str) -> bool {
        self.registry.route(bot).is_some()
    }

    /// Waits until an agent serving `bot` is connected.
    pub async fn wait_for_bot(&self, bot: &str) {
        crate::eventually(&format!("an agent serves {bot}"), || self.serves(bot)).await;
    }

    /// Waits until no agent serves `bot`.
    pub async fn wait_until_gone(&self, bot: &str) {
        crate::eventually(&format!("no agent serves {bot}"), || !self.serves(bot)).await;
    }

    /// Asks the admin API, as `relay-server stats` or `relay-server dead-letters …` do.
    pub async fn admin(&self, method: hyper::Method, path: &str) -> serde_json::Value {
        relay_server::admin::call(self.admin_addr, &self.admin_token, method, path)
            .await
            .expect("admin API answers")
    }

    /// One counter from the admin API's `/stats`.
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.admin(hyper::Method::GET, "/stats").await;
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
    }

    /// Waits until counter `name` reads `value`, or panics after [`crate::DEADLINE`]. For
    /// counters that move after the bot has seen an update: the agent's acknowledgement is still
    /// on its way to the relay then.
    pub async fn stat_reaches(&self, name: &str, value: u64) {
        let deadline = tokio::time::Instant::now() + crate::DEADLINE;
        loop {
            let now = self.stat(name).await;
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "counter {name} stayed at {now}, expected {value}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Kills the relay as a crash would: every task and socket gone at once, nothing graceful.
    /// Tasks are dropped rather than run to an end; the store's writer finishes the batch it is
    /// committing and closes the file, so a new relay in this process can open it again.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            std::thread::spawn(move || runtime.shutdown_timeout(std::time::Duration::from_secs(5)))
                .join()
                .expect("relay runtime shut down");
        }
    }

    /// Stops the relay the way SIGTERM does and waits until its drain is over.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(stopped) = self.stopped.take() {
            let drained = tokio::time::timeout(crate::DEADLINE, stopped).await;
            assert!(drained.is_ok(), "relay did not stop within the deadline");
        }
        self.kill();
    }

    /// Starts a new relay with the same configuration and data dir on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let listener = bind_again(self.addr);
        *self = Self::serve(self.config.clone(), listener);
    }
}

/// Binds the address a stopped relay had; the kernel may take a moment to release it.
fn bind_again(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = std::time::Instant::now() + crate::DEADLINE;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return listener,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("cannot bind {addr} again: {error}"),
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.kill();
    }
}
