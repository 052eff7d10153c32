//! A harness for running the workspace's binaries as a user would: a command with a clean
//! environment, waits with a deadline, SIGTERM, stdout read line by line, and the one-line error
//! every mistake must produce.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any run of a binary may take in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Environment variables a user's shell may hold that would change what the binaries do.
const SECRET_ENV: [&str; 3] = ["RELAY_AGENT_TOKEN", "RELAY_ADMIN_TOKEN", "RELAY_JOIN"];

/// One of the workspace's binaries.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Its path, from `env!("CARGO_BIN_EXE_…")`.
    pub path: &'static str,
    /// Its name, as its error lines start (`relay-server: error: …`).
    pub name: &'static str,
    /// `RUST_LOG` for its runs.
    pub log: &'static str,
}

impl Program {
    /// The program with `args` in `cwd`: no stdin, stdout and stderr piped, no token variables.
    pub fn command(&self, args: &[&str], cwd: &Path) -> Command {
        let mut command = Command::new(self.path);
        command
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in SECRET_ENV {
            command.env_remove(name);
        }
        command
    }

    /// Runs the program to its end: its exit status and what it wrote to stderr.
    pub fn run(&self, args: &[&str], cwd: &Path) -> (ExitStatus, String) {
        self.wait(self.command(args, cwd).spawn().expect("start the program"))
    }

    /// Waits for `child` to exit, killing it (and failing the test) if it outlives [`DEADLINE`].
    pub fn wait(&self, mut child: Child) -> (ExitStatus, String) {
        let started = Instant::now();
        let status = loop {
            match child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if started.elapsed() > DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{} did not exit within {DEADLINE:?}", self.name);
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        (status, stderr)
    }

    /// Runs the program with `args` in `cwd` and asserts it exits with `code` and exactly one
    /// `NAME: error: …` line on stderr that mentions `mentions`.
    pub fn assert_one_line_error(&self, args: &[&str], cwd: &Path, code: i32, mentions: &str) {
        let (status, stderr) = self.run(args, cwd);
        assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        let prefix = format!("{}: error: ", self.name);
        assert!(lines[0].starts_with(&prefix), "{stderr}");
        assert!(lines[0].contains(mentions), "{stderr}");
    }
}

/// Sends SIGTERM to `child`, as systemd and `docker stop` do.
pub fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
}

/// A child's stdout, read line by line on a thread of its own, to its end.
#[derive(Debug)]
pub struct Lines {
    lines: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts reading `child`'s stdout.
    pub fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even once nobody listens: a closed pipe would make the child's
            // next write fail (and `println!` panic).
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Self { lines }
    }

    /// Reads lines until one satisfies `wanted`, within [`DEADLINE`]. `Ok` holds every line read
    /// (the wanted one last); `Err` those read before the deadline passed or stdout closed.
    pub fn until(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let done = wanted(&line);
                    seen.push(line);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(_) => return Err(seen),
            }
        }
    }
}

/// A child's stderr, read to its end on a thread of its own so that a chatty process never blocks
/// on a full pipe.
#[derive(Debug)]
pub struct Stderr {
    reader: Option<JoinHandle<String>>,
}

impl Stderr {
    /// Starts reading `child`'s stderr.
    pub fn of(child: &mut Child) -> Self {
        let pipe = child.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(pipe).read_to_string(&mut text);
            text
        });
        Self {
            reader: Some(reader),
        }
    }

    /// Everything written, once the process has exited (empty when asked twice).
    pub fn text(&mut self) -> String {
        self.reader
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default()
    }
}
