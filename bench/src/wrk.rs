//! wrk, the load generator: the Lua script that makes every request a fresh Telegram update, one
//! run, and its machine-readable result.
//!
//! Each wrk thread has a Lua state of its own. `setup` numbers the threads, and each thread's ids
//! start at `run base + thread number × THREAD_SPAN`, so ids never repeat within a run; the run
//! base grows with every run, so they never repeat across runs either (agents remember ids for the
//! whole bench).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::Shape;
use crate::update;

/// Ids one wrk thread may use in one run; far more than it can send.
const THREAD_SPAN: i64 = 1_000_000_000;
/// wrk's own per-request timeout. Nothing here should take a second; a request that takes this
/// long counts as an error instead of stretching the latency tail unnoticed.
const REQUEST_TIMEOUT: &str = "10s";
/// How much longer than its duration a wrk run may take before it is killed.
const RUN_GRACE: Duration = Duration::from_secs(30);
/// Marks the one line of wrk's output the script writes for the bench.
const RESULT_MARK: &str = "BENCH-RESULT ";

static RUNS: AtomicI64 = AtomicI64::new(1);

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Outcome {
    /// Requests answered (whatever the status).
    pub requests: u64,
    /// How long the run took, µs.
    pub duration_us: u64,
    /// Connections that could not be opened.
    pub connect: u64,
    /// Reads that failed (the peer closed or reset).
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Answers with a status of 400 or above (wrk's own count; neither nginx nor the relay ever
    /// answers 1xx or 3xx here, and counting every non-2xx in Lua would slow wrk down).
    pub status: u64,
    /// Requests that took longer than wrk's timeout.
    pub timeout: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
}

impl Outcome {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 * 1e6 / self.duration_us.max(1) as f64
    }

    /// Requests that went wrong, of any kind.
    pub fn errors(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }

    /// The non-zero error counts, such as `status 12, timeout 3`.
    pub fn error_text(&self) -> String {
        let counts = [
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("status", self.status),
            ("timeout", self.timeout),
        ];
        counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// wrk with the bench's script.
#[derive(Debug)]
pub struct Wrk {
    script: PathBuf,
}

impl Wrk {
    /// Writes the Lua script into `dir`.
    pub fn prepare(dir: &Path) -> Result<Wrk> {
        let script = dir.join("update.lua");
        std::fs::write(&script, lua_script())
            .with_context(|| format!("cannot write {}", script.display()))?;
        Ok(Wrk { script })
    }

    /// Runs wrk against `url` with `shape` for `duration`.
    pub async fn run(&self, url: &str, shape: Shape, duration: Duration) -> Result<Outcome> {
        let base = RUNS.fetch_add(1, Ordering::Relaxed) * update::OWN_IDS;
        let mut command = tokio::process::Command::new("wrk");
        command
            .arg("-t")
            .arg(shape.threads().to_string())
            .arg("-c")
            .arg(shape.connections.to_string())
            .arg("-d")
            .arg(format!("{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg(REQUEST_TIMEOUT)
            .arg("-s")
            .arg(&self.script);
        if !shape.keep_alive {
            command.arg("-H").arg("Connection: close");
        }
        command
            .arg(url)
            .arg("--")
            .arg(base.to_string())
            .process_group(0)
            .kill_on_drop(true);
        let output = tokio::time::timeout(duration + RUN_GRACE, command.output())
            .await
            .with_context(|| format!("wrk did not finish within {:?}", duration + RUN_GRACE))?
            .context("cannot run wrk (is it installed? bench/run installs it)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout
            .lines()
            .find_map(|line| line.strip_prefix(RESULT_MARK))
        else {
            bail!(
                "wrk against {url} gave no result ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        };
        serde_json::from_str(line).with_context(|| format!("cannot parse wrk's result {line}"))
    }
}

/// The script: a POST of a fresh update per request, and one JSON line at the end.
fn lua_script() -> String {
    format!(
        r#"-- Written by the relay bench: every request is a Telegram update with a unique update_id.
local thread_span = {THREAD_SPAN}
local base = 0
local count = 0
next_tid = 0
tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  base = tonumber(args[1]) + tid * thread_span
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["{header}"] = "{secret}"
end

local function body_of(id)
  return {body}
end

function request()
  count = count + 1
  return wrk.format(nil, nil, nil, body_of(base + count))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#,
        header = update::SECRET_HEADER,
        secret = update::SECRET,
        body = update::lua_expression(),
        mark = RESULT_MARK,
    )
}
