//! The machine and tool versions a run measured on, for the report's header.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A program that does not print its version within this is treated as unknown.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a version command is checked for having exited.
const VERSION_POLL: Duration = Duration::from_millis(5);

/// What the report says about where it ran.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// `wrk -v`, first words.
    pub wrk: String,
    /// `nginx -v`.
    pub nginx: String,
    /// `rustc --version`, if rustc is on PATH.
    pub rustc: Option<String>,
    /// `relay-server --version`.
    pub relay: String,
    /// The 1, 5 and 15 minute load averages when the run began: other work on the machine skews
    /// every number, and this is the one hint of it the report can give.
    pub load: String,
}

impl Machine {
    /// Reads `/proc` and asks each tool for its version; unknown values say so.
    pub fn read(relay_server: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        // wrk prints its version with its usage, and exits 1.
        let wrk = version("wrk", &["-v"])
            .map(|text| {
                text.split(" Copyright")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_else(|| "unknown".into());
        let nginx = version("nginx", &["-v"])
            .map(|text| text.trim_start_matches("nginx version: ").to_owned())
            .unwrap_or_else(|| "unknown".into());
        let relay = version(relay_server, &["--version"]).unwrap_or_else(|| "unknown".into());
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu,
            cores,
            kernel,
            wrk,
            nginx,
            rustc: version("rustc", &["--version"]),
            relay,
            load,
        }
    }
}

/// The first line a program prints (on stdout or stderr) when asked for its version, if it does
/// so within [`VERSION_TIMEOUT`].
fn version(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    // A version is a few lines, well within a pipe's buffer: the child never blocks on writing.
    while child.try_wait().ok()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(VERSION_POLL);
    }
    let output = child.wait_with_output().ok()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(line.to_owned())
}
