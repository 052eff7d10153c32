//! A child process under test: spawned with its output in a log file, measured through `/proc`,
//! signalled, and killed (and reaped) when dropped, so that no error path leaves one running.

use std::fmt::Display;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal};

/// How often [`Child::wait_exit`] looks.
const EXIT_POLL: Duration = Duration::from_millis(5);
/// Lines of a log shown when its process failed.
const TAIL_LINES: usize = 20;

/// A running process.
#[derive(Debug)]
pub struct Child {
    name: String,
    process: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Spawns `command` with stdout and stderr appended to `log`, and `RUST_LOG=warn`, in a
    /// process group of its own: Ctrl-C in the terminal reaches only the bench, which then kills
    /// its children in an order it controls.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Child> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone().context("cannot duplicate a log handle")?;
        let process = command
            .env("RUST_LOG", "warn")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Child {
            name: name.to_owned(),
            process,
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// CPU time used so far, user and system, all threads (`/proc/PID/stat` fields 14 and 15).
    pub fn cpu(&self) -> Result<Duration> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .with_context(|| format!("{path} has no command name"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |index: usize| -> Result<u64> {
            fields
                .get(index)
                .and_then(|field| field.parse().ok())
                .with_context(|| format!("{path} has no field {}", index + 3))
        };
        // `rest` starts at field 3 (state), so utime (14) is at 11 and stime (15) at 12.
        let total = ticks(11)? + ticks(12)?;
        let per_second = rustix::param::clock_ticks_per_second().max(1);
        Ok(Duration::from_micros(total * 1_000_000 / per_second))
    }

    /// Resident memory in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path} has no VmRSS"))
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(Pid::from_raw)
            .context("process id out of range")?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("cannot signal {}", self.name))
    }

    /// An error if the process has exited, with its log's tail printed.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.process.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failure(format!("exited ({status})"))),
            Err(error) => Err(self.failure(format!("cannot be waited for: {error}"))),
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it. Harmless if it has already exited. The wait needs
    /// no timeout: nothing survives SIGKILL, not even a stopped process.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// An error saying what happened to this process; prints the tail of its log to stderr, since
    /// the error itself stays one line.
    pub fn failure(&self, what: impl Display) -> anyhow::Error {
        eprintln!(
            "--- last lines of the log of {} ---\n{}--- end of log ---",
            self.name,
            tail(&self.log)
        );
        anyhow!("{} {what}", self.name)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "(no log)\n".into();
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let mut out = String::new();
    for line in &lines[start..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}
