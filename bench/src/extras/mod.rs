//! The measurements beside the load matrix, each on fresh processes: memory per idle agent and
//! per request in flight, dead-agent detection, recovery after a relay restart, durable intake.

pub mod dead_agent;
pub mod idle;
pub mod in_flight;
pub mod restart;
pub mod store_rate;

use anyhow::Result;

use crate::cli::Plan;
use crate::lab::Lab;
use crate::nginx::Nginx;
use crate::wrk::Wrk;

/// Everything measured here.
#[derive(Debug, Clone)]
pub struct Extras {
    /// Idle-agent memory: plain WebSocket, then TLS.
    pub idle: Vec<idle::Idle>,
    /// Memory per request in flight.
    pub in_flight: in_flight::InFlight,
    /// Dead-agent detection.
    pub dead_agent: dead_agent::DeadAgent,
    /// Restart recovery: SIGKILL, then SIGTERM.
    pub restarts: Vec<restart::Restart>,
    /// Durable intake.
    pub store_rate: store_rate::StoreRate,
}

impl Extras {
    /// Runs each measurement in turn, saying on stderr what it is doing.
    pub async fn run(plan: &Plan, lab: &Lab, nginx: &Nginx, wrk: &Wrk) -> Result<Extras> {
        let mut idle = Vec::new();
        for tls in [false, true] {
            eprintln!(
                "idle agents: {} over {}",
                plan.idle_agents,
                if tls { "tls" } else { "ws" }
            );
            idle.push(idle::measure(lab, tls, plan.idle_agents).await?);
        }
        eprintln!("in flight: {} requests held at the bot", plan.in_flight);
        let in_flight = in_flight::measure(lab, plan.in_flight).await?;
        eprintln!("dead agent: SIGSTOP, then webhooks until a 503");
        let dead_agent = dead_agent::measure(lab, nginx, plan.dead_agent_heartbeat).await?;
        let mut restarts = Vec::new();
        for stop in [restart::Stop::Kill, restart::Stop::Term] {
            eprintln!("relay restart: {}", stop.label());
            restarts.push(restart::measure(lab, nginx, stop).await?);
        }
        eprintln!("durable intake: no agent, c=100");
        let store_rate = store_rate::measure(lab, wrk, plan.store_duration).await?;
        Ok(Extras {
            idle,
            in_flight,
            dead_agent,
            restarts,
            store_rate,
        })
    }
}
