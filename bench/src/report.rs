//! The report: the machine, the load table, the other measurements, and the targets with PASS or
//! MISS. Aligned text for a terminal, or GitHub markdown for docs/BENCHMARKS.md.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Plan, Shape};
use crate::extras::Extras;
use crate::extras::restart::Stop;
use crate::machine::Machine;
use crate::matrix::{Matrix, Summary};
use crate::variant::Variant;

/// The report of one run.
#[derive(Debug)]
pub struct Report<'a> {
    /// The plan it ran.
    pub plan: &'a Plan,
    /// Where it ran.
    pub machine: &'a Machine,
    /// The load matrix.
    pub matrix: &'a Matrix,
    /// The other measurements.
    pub extras: &'a Extras,
}

impl Report<'_> {
    /// The whole report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.machine_section(&mut out);
        self.load_section(&mut out);
        self.extras_section(&mut out);
        self.targets_section(&mut out);
        out
    }

    fn heading(&self, out: &mut String, title: &str) {
        if self.plan.markdown {
            let _ = writeln!(out, "### {title}\n");
        } else {
            let _ = writeln!(out, "== {title} ==\n");
        }
    }

    fn bullet(&self, out: &mut String, text: &str) {
        let _ = writeln!(
            out,
            "{}{text}",
            if self.plan.markdown { "- " } else { "  " }
        );
    }

    fn machine_section(&self, out: &mut String) {
        let m = self.machine;
        self.heading(out, "Machine");
        self.bullet(out, &format!("CPU: {}, {} logical cores", m.cpu, m.cores));
        self.bullet(
            out,
            &format!("kernel {}, load average at start {}", m.kernel, m.load),
        );
        self.bullet(
            out,
            &format!(
                "{}, {}, wrk {}, nginx {}",
                m.relay,
                m.rustc.as_deref().unwrap_or("rustc not on PATH"),
                m.wrk.trim_start_matches("wrk "),
                m.nginx.trim_start_matches("nginx/")
            ),
        );
        let plan = self.plan;
        self.bullet(
            out,
            &format!(
                "{}{} round(s) of {} s per row, median shown; ratios are against the same round's direct run",
                if plan.smoke { "SMOKE RUN: " } else { "" },
                plan.rounds,
                plan.duration.as_secs()
            ),
        );
        out.push('\n');
    }

    fn load_section(&self, out: &mut String) {
        self.heading(out, "Throughput, latency and CPU per request");
        let header = [
            "shape",
            "variant",
            "req/s",
            "× direct",
            "p50",
            "p99",
            "p50 × direct",
            "relay µs/req",
            "agent µs/req",
            "sum µs/req",
        ];
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        let mut longest_drain: Option<Duration> = None;
        for shape in self.matrix.shapes() {
            for variant in self.matrix.variants() {
                let Some(s) = self.matrix.summary(shape, variant) else {
                    continue;
                };
                longest_drain = longest_drain.max(s.drain);
                rows.push(load_row(shape, variant, &s));
                if let Some(text) = &s.errors {
                    errors.push(format!("{} {}: {text}", shape.label(), variant.label()));
                }
            }
        }
        self.table(out, &header, &rows);
        for error in &errors {
            let _ = writeln!(out, "ERROR {error}");
        }
        if let Some(drain) = longest_drain {
            let _ = writeln!(
                out,
                "tls-durable: req/s is the rate the relay took updates into its store; its CPU also \
                 counts delivering them to the bot after the run (drain up to {:.1} s).",
                drain.as_secs_f64()
            );
        }
        out.push('\n');
    }

    fn extras_section(&self, out: &mut String) {
        let extras = self.extras;
        self.heading(out, "Also measured");
        for idle in &extras.idle {
            self.bullet(
                out,
                &format!(
                    "idle agents ({}): {:.1} KiB of relay memory per agent ({} agents; relay RSS {} → {} KiB)",
                    idle.transport,
                    idle.per_agent_kib(),
                    idle.agents,
                    idle.before_kib,
                    idle.after_kib
                ),
            );
        }
        let f = &extras.in_flight;
        self.bullet(
            out,
            &format!(
                "requests in flight (ws passthrough, {} held at the bot): relay {:.1} KiB, agent {:.1} KiB per request; all answered 200 when released",
                f.requests, f.relay_kib, f.agent_kib
            ),
        );
        let dead = &extras.dead_agent;
        let setting = dead_agent_setting(dead.heartbeat);
        let before = if dead.before.is_empty() {
            String::new()
        } else {
            format!("; before it: {}", dead.before.join(", "))
        };
        match dead.detected {
            Some(at) => self.bullet(
                out,
                &format!(
                    "dead agent (SIGSTOP, {setting}): first 503 after {:.1} s{before}",
                    at.as_secs_f64()
                ),
            ),
            None => self.bullet(
                out,
                &format!("dead agent (SIGSTOP, {setting}): no 503 within 120 s{before}"),
            ),
        }
        for restart in &extras.restarts {
            let stop = restart
                .stop_took
                .map(|took| format!("; the graceful stop took {} ms", took.as_millis()))
                .unwrap_or_default();
            let first = match restart.first_success {
                Some(at) => format!("first 200 after {} ms", at.as_millis()),
                None => "no 200 within 30 s".into(),
            };
            self.bullet(
                out,
                &format!(
                    "relay restart ({}, passthrough): {first} from the new relay's start ({} webhooks sent){stop}",
                    restart.stop.label(),
                    restart.attempts
                ),
            );
        }
        let store = &extras.store_rate;
        let errors = if store.outcome.errors() > 0 {
            format!("; ERRORS: {}", store.outcome.error_text())
        } else {
            String::new()
        };
        self.bullet(
            out,
            &format!(
                "durable intake (plain HTTP, no agent, c=100): {:.0} updates/s, p50 {}, p99 {}, {} stored, relay {:.1} µs per update{errors}",
                store.outcome.rate(),
                latency(store.outcome.p50_us as f64),
                latency(store.outcome.p99_us as f64),
                store.stored,
                store.relay_us
            ),
        );
        out.push('\n');
    }

    fn targets_section(&self, out: &mut String) {
        self.heading(out, "Targets");
        let mut rows = Vec::new();
        let ws = Variant::WsPassthrough;
        for connections in [1, 40, 100] {
            let minimum = if connections == 1 { 0.70 } else { 0.50 };
            let shape = Shape {
                connections,
                keep_alive: true,
            };
            let value = self
                .matrix
                .summary(shape, ws)
                .filter(|s| s.errors.is_none())
                .and_then(|s| s.rate_ratio);
            rows.push(target(
                &format!("ws-passthrough req/s vs direct, c={connections}"),
                value.map(|v| format!("{v:.2}")),
                format!("≥ {minimum:.2}"),
                value.map(|v| v >= minimum),
            ));
        }
        let shape = Shape {
            connections: 40,
            keep_alive: true,
        };
        let cpu = self
            .matrix
            .summary(shape, ws)
            .filter(|s| s.errors.is_none())
            .and_then(|s| Some(s.relay_us? + s.agent_us?));
        rows.push(target(
            "relay+agent CPU per request, c=40 ws-passthrough",
            cpu.map(|v| format!("{v:.1} µs")),
            "≤ 15 µs".into(),
            cpu.map(|v| v <= 15.0),
        ));
        for idle in &self.extras.idle {
            let kib = idle.per_agent_kib();
            rows.push(target(
                &format!("relay memory per idle agent ({})", idle.transport),
                Some(format!("{kib:.1} KiB")),
                "≤ 32 KiB".into(),
                Some(kib <= 32.0),
            ));
        }
        let dead = &self.extras.dead_agent;
        rows.push(target(
            &format!(
                "dead agent detected ({})",
                dead_agent_setting(dead.heartbeat)
            ),
            Some(match dead.detected {
                Some(at) => format!("{:.1} s", at.as_secs_f64()),
                None => "> 120 s".into(),
            }),
            "≤ 10 s".into(),
            Some(
                dead.detected
                    .is_some_and(|at| at <= Duration::from_secs(10)),
            ),
        ));
        for restart in &self.extras.restarts {
            let how = match restart.stop {
                Stop::Kill => "kill",
                Stop::Term => "graceful",
            };
            rows.push(target(
                &format!("first success after relay restart ({how})"),
                Some(match restart.first_success {
                    Some(at) => format!("{} ms", at.as_millis()),
                    None => "> 30 s".into(),
                }),
                "≤ 1000 ms".into(),
                Some(
                    restart
                        .first_success
                        .is_some_and(|at| at <= Duration::from_secs(1)),
                ),
            ));
        }
        let store = &self.extras.store_rate;
        let rate = (store.outcome.errors() == 0).then(|| store.outcome.rate());
        rows.push(target(
            "updates/s into the durable store",
            rate.map(|v| format!("{v:.0}")),
            "≥ 20000".into(),
            rate.map(|v| v >= 20_000.0),
        ));
        self.table(out, &["target", "measured", "goal", "result"], &rows);
    }

    fn table(&self, out: &mut String, header: &[&str], rows: &[Vec<String>]) {
        if self.plan.markdown {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let rule: Vec<&str> = header
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 2 { "---" } else { "---:" })
                .collect();
            let _ = writeln!(out, "|{}|", rule.join("|"));
            for row in rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
            out.push('\n');
            return;
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = width.saturating_sub(cell.chars().count());
                if i < 2 {
                    let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
                }
            }
            text.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(header.to_vec()));
        for row in rows {
            let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
        }
    }
}

/// One line of the load table.
fn load_row(shape: Shape, variant: Variant, s: &Summary) -> Vec<String> {
    let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
    let cpu = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let sum = s.relay_us.zip(s.agent_us).map(|(r, a)| r + a);
    let rate = if s.errors.is_some() {
        "ERROR".to_owned()
    } else {
        format!("{:.0}", s.rate)
    };
    vec![
        shape.label(),
        variant.label().to_owned(),
        rate,
        ratio(s.rate_ratio),
        latency(s.p50_us),
        latency(s.p99_us),
        ratio(s.p50_ratio),
        cpu(s.relay_us),
        cpu(s.agent_us),
        cpu(sum),
    ]
}

/// One line of the targets table; `pass` is `None` when the value was not measured.
fn target(name: &str, value: Option<String>, goal: String, pass: Option<bool>) -> Vec<String> {
    let result = match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "not measured",
    };
    vec![
        name.to_owned(),
        value.unwrap_or_else(|| "-".into()),
        goal,
        result.to_owned(),
    ]
}

/// The heartbeat setting the dead-agent measurement ran with.
fn dead_agent_setting(heartbeat: Option<Duration>) -> String {
    match heartbeat {
        None => "relay defaults".into(),
        Some(timeout) => format!(
            "heartbeat_timeout {} ms set by --smoke",
            timeout.as_millis()
        ),
    }
}

/// A latency in µs, as `420 µs` or `1.25 ms`.
fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
