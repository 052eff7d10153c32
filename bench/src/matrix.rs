//! The load matrix: every shape, every round, every variant in turn, so that drift over time
//! (thermal, page cache, a noisy neighbour) hits all variants alike; and what each run cost the
//! tunnel's processes in CPU.

use std::time::Duration;

use anyhow::Result;

use crate::cli::{Plan, Shape};
use crate::variant::{Cpu, Setup, Variant};
use crate::wrk::{Outcome, Wrk};

/// The shape of the warm-up runs: enough connections to touch every code path's buffers.
const WARMUP: Shape = Shape {
    connections: 40,
    keep_alive: true,
};

/// One wrk run of one variant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What wrk measured.
    pub outcome: Outcome,
    /// CPU the tunnel's processes used during the run (and the drain, for durable).
    pub cpu: Option<Cpu>,
    /// How long a durable relay took to deliver its backlog after the run.
    pub drain: Option<Duration>,
}

impl Sample {
    fn per_request(&self, time: Duration) -> f64 {
        time.as_secs_f64() * 1e6 / self.outcome.requests.max(1) as f64
    }
}

/// All rounds of one variant under one shape.
#[derive(Debug, Clone)]
pub struct Row {
    /// The load shape.
    pub shape: Shape,
    /// The variant.
    pub variant: Variant,
    /// One sample per round, in order.
    pub samples: Vec<Sample>,
}

/// A row's medians over its rounds; ratios are taken per round against that round's direct run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Requests per second.
    pub rate: f64,
    /// Rate relative to direct.
    pub rate_ratio: Option<f64>,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// p50 relative to direct.
    pub p50_ratio: Option<f64>,
    /// Relay CPU per request, µs.
    pub relay_us: Option<f64>,
    /// Agent CPU per request, µs.
    pub agent_us: Option<f64>,
    /// The longest drain after a round (durable).
    pub drain: Option<Duration>,
    /// Error counts, per round that had any; such a row is a failed measurement.
    pub errors: Option<String>,
}

/// Every row, in shape order, then variant order.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Matrix {
    /// Warms every variant up, then runs the plan.
    pub async fn run(plan: &Plan, wrk: &Wrk, setups: &mut [Setup]) -> Result<Matrix> {
        for setup in setups.iter_mut() {
            setup.check_alive()?;
            let outcome = wrk.run(setup.url(), WARMUP, plan.warmup).await?;
            setup.settle().await?;
            if outcome.errors() > 0 {
                eprintln!(
                    "warm-up {}: {} errors ({})",
                    setup.variant.label(),
                    outcome.errors(),
                    outcome.error_text()
                );
            }
        }
        let mut rows = Vec::new();
        for &shape in &plan.shapes {
            let first = rows.len();
            rows.extend(setups.iter().map(|setup| Row {
                shape,
                variant: setup.variant,
                samples: Vec::new(),
            }));
            for round in 1..=plan.rounds {
                for (index, setup) in setups.iter_mut().enumerate() {
                    let sample = measure(wrk, setup, shape, plan.duration).await?;
                    eprintln!(
                        "{:<16} round {round}/{}  {:<16} {:>9.0} req/s  p50 {:>7} µs{}",
                        shape.label(),
                        plan.rounds,
                        setup.variant.label(),
                        sample.outcome.rate(),
                        sample.outcome.p50_us,
                        if sample.outcome.errors() > 0 {
                            format!("  ERRORS: {}", sample.outcome.error_text())
                        } else {
                            String::new()
                        }
                    );
                    rows[first + index].samples.push(sample);
                }
            }
        }
        Ok(Matrix { rows })
    }

    /// The summary of `variant` under `shape`, if it ran.
    pub fn summary(&self, shape: Shape, variant: Variant) -> Option<Summary> {
        let row = self.row(shape, variant)?;
        let direct = self.row(shape, Variant::Direct)?;
        let pairs = || row.samples.iter().zip(&direct.samples);
        let ratios = |f: fn(&Sample) -> f64| {
            (variant != Variant::Direct)
                .then(|| median(pairs().map(|(s, d)| f(s) / f(d).max(f64::MIN_POSITIVE))))
                .flatten()
        };
        let cpu = |f: fn(&Cpu) -> Duration| {
            median(
                row.samples
                    .iter()
                    .filter_map(|s| s.cpu.as_ref().map(|cpu| s.per_request(f(cpu)))),
            )
        };
        let errors: Vec<String> = row
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.outcome.errors() > 0)
            .map(|(i, s)| format!("round {}: {}", i + 1, s.outcome.error_text()))
            .collect();
        Some(Summary {
            rate: median(row.samples.iter().map(|s| s.outcome.rate()))?,
            rate_ratio: ratios(|s| s.outcome.rate()),
            p50_us: median(row.samples.iter().map(|s| s.outcome.p50_us as f64))?,
            p99_us: median(row.samples.iter().map(|s| s.outcome.p99_us as f64))?,
            p50_ratio: ratios(|s| s.outcome.p50_us as f64),
            relay_us: cpu(|c| c.relay),
            agent_us: cpu(|c| c.agent),
            drain: row.samples.iter().filter_map(|s| s.drain).max(),
            errors: (!errors.is_empty()).then(|| errors.join("; ")),
        })
    }

    /// The variants that ran, in order.
    pub fn variants(&self) -> Vec<Variant> {
        let mut variants: Vec<Variant> = Vec::new();
        for row in &self.rows {
            if !variants.contains(&row.variant) {
                variants.push(row.variant);
            }
        }
        variants
    }

    /// The shapes that ran, in order.
    pub fn shapes(&self) -> Vec<Shape> {
        let mut shapes: Vec<Shape> = Vec::new();
        for row in &self.rows {
            if !shapes.contains(&row.shape) {
                shapes.push(row.shape);
            }
        }
        shapes
    }

    /// Rows with errors, as `shape variant: counts`.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|row| {
                let summary = self.summary(row.shape, row.variant)?;
                Some(format!(
                    "{} {}: {}",
                    row.shape.label(),
                    row.variant.label(),
                    summary.errors?
                ))
            })
            .collect()
    }

    fn row(&self, shape: Shape, variant: Variant) -> Option<&Row> {
        self.rows
            .iter()
            .find(|row| row.shape == shape && row.variant == variant)
    }
}

/// One run: CPU before, wrk, the drain, CPU after.
async fn measure(wrk: &Wrk, setup: &mut Setup, shape: Shape, duration: Duration) -> Result<Sample> {
    setup.check_alive()?;
    let before = setup.cpu()?;
    let outcome = wrk.run(setup.url(), shape, duration).await?;
    let drain = setup.settle().await?;
    let after = setup.cpu()?;
    let cpu = before.zip(after).map(|(before, after)| Cpu {
        relay: after.relay.saturating_sub(before.relay),
        agent: after.agent.saturating_sub(before.agent),
    });
    Ok(Sample {
        outcome,
        cpu,
        drain,
    })
}

/// The median, or `None` for no values.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
#[path = "matrix_tests.rs"]
mod tests;
