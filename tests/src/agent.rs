//! [`TestAgent`]: a real relay-agent, on a runtime of its own.

use std::time::Duration;

use protocol::Secret;
use relay_agent::{AgentError, Config};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::relay::{TOKEN, TestRelay};

/// A running agent. Dropping it kills it.
#[derive(Debug)]
pub struct TestAgent {
    /// Its configuration (to restart it the same way).
    pub config: Config,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    exit: Option<oneshot::Receiver<Result<(), AgentError>>>,
}

impl TestAgent {
    /// A configuration that dials `relay` with its token and serves `bots` (name, local URL).
    pub fn config(relay: &TestRelay, bots: &[(&str, String)]) -> Config {
        let bots = bots
            .iter()
            .map(|(name, url)| (name.to_string(), url.clone()))
            .collect();
        let mut config =
            Config::new(&relay.agent_url(), Secret::new(TOKEN), bots).expect("agent config");
        config.ca = relay.ca.clone();
        config.heartbeat_timeout = Duration::from_secs(5);
        // A state dir of its own, kept across restarts of this agent (the config is reused).
        config.state_dir = Some(crate::temp_dir("agent-state"));
        config
    }

    /// Starts an agent for `bots` and waits until the relay routes the first of them to it.
    pub async fn connect(relay: &TestRelay, bots: &[(&str, String)]) -> Self {
        let agent = Self::start(Self::config(relay, bots));
        relay.wait_for_bot(bots[0].0).await;
        agent
    }

    /// Starts an agent with `config` without waiting for it to connect.
    pub fn start(config: Config) -> Self {
        crate::init_logging();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("agent")
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let (exit_tx, exit) = oneshot::channel();
        let run = relay_agent::run(config.clone(), shutdown.clone());
        runtime.spawn(async move {
            let _ = exit_tx.send(run.await);
        });
        Self {
            config,
            runtime: Some(runtime),
            shutdown,
            exit: Some(exit),
        }
    }

    /// Waits for the agent to exit on its own and returns how it ended.
    pub async fn exited(&mut self) -> Result<(), AgentError> {
        let exit = self.exit.take().expect("agent already awaited");
        tokio::time::timeout(crate::DEADLINE, exit)
            .await
            .expect("agent exits in time")
            .expect("agent task finished")
    }

    /// Kills the agent as a crash would.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops the agent the way SIGTERM does.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(exit) = self.exit.take() {
            let _ = tokio::time::timeout(crate::DEADLINE, exit).await;
        }
        self.kill();
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}
