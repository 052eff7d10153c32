//! A relay-agent process, dialing one relay and serving one bot.

use std::process::Command;

use anyhow::Result;

use crate::child::Child;
use crate::lab::{AGENT_TOKEN, Lab};
use crate::relay::Relay;

/// Requests the agent may have at the bot at once: above wrk's largest shape and the in-flight
/// measurement, so that the agent's own limit never shapes a result.
const MAX_CONCURRENCY: u32 = 1000;

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts an agent in a new directory of `lab` that serves `bot` at `url` for `relay`.
    /// It is not connected yet when this returns; see [`crate::pair::Pair::wait_ready`].
    pub fn start(lab: &Lab, name: &str, relay: &Relay, bot: &str, url: &str) -> Result<Agent> {
        let dir = lab.subdir(name)?;
        let mut command = Command::new(lab.relay_agent());
        command
            .env("RELAY_AGENT_TOKEN", AGENT_TOKEN)
            .arg("--relay")
            .arg(relay.agent_url())
            .arg("--name")
            .arg(name)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--bot")
            .arg(format!("{bot}={url}"))
            .arg("--max-concurrency")
            .arg(MAX_CONCURRENCY.to_string());
        if let Some(ca) = relay.ca() {
            command.arg("--ca").arg(ca);
        }
        let child = Child::spawn(name, &mut command, &dir.join("agent.log"))?;
        Ok(Agent { child })
    }

    /// The process.
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// The process, to check or signal it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}
