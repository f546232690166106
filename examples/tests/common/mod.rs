//! What the example tests share: running an example binary to completion
//! with a deadline, and starting a separate `procshared` for it to use.
//!
//! No sleeps: every wait is on a pipe (the example's output reaching EOF,
//! the daemon's `listening on` line), with a deadline that catches a hang.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous: the deadlines catch a hang, they do not time anything.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Kills a child process when dropped, so a failing test leaves no server or
/// example running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How an example run ended.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both outputs, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Reads all of `pipe` on a thread; the receiver gets it at EOF.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let r = pipe.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(r);
    });
    rx
}

/// Runs the example binary `exe` with `args` and `PROCSHARE_URL` set to
/// `url` (or unset, for its embedded server), and returns how it ended.
///
/// Panics if it is not over within [`RUN_DEADLINE`].
pub fn run(exe: &str, args: &[&str], url: Option<&str>) -> Run {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    match url {
        Some(url) => cmd.env("PROCSHARE_URL", url),
        None => cmd.env_remove("PROCSHARE_URL"),
    };
    let mut child = KillOnDrop(cmd.spawn().unwrap_or_else(|e| panic!("start {exe}: {e}")));

    // Read both pipes on threads, so the wait for them can have a deadline.
    // Each reaches EOF once the example and all its workers (which inherit
    // them) have exited.
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + RUN_DEADLINE;
    let collect = |rx: mpsc::Receiver<std::io::Result<String>>, what: &str| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        rx.recv_timeout(left)
            .unwrap_or_else(|_| panic!("{exe} did not finish within {RUN_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("read {exe}'s {what}: {e}"))
    };
    let stdout = collect(stdout, "stdout");
    let stderr = collect(stderr, "stderr");
    let status = child.0.wait().expect("wait for the example");
    Run {
        status,
        stdout,
        stderr,
    }
}

/// [`run`], asserting success; returns stdout.
pub fn run_ok(exe: &str, args: &[&str], url: Option<&str>) -> String {
    let r = run(exe, args, url);
    assert!(r.status.success(), "{exe} failed; {}", r.dump());
    r.stdout
}

/// The rest of the first line of `out` that starts with `prefix`.
pub fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

/// Checks that `out` says it used an embedded server (`url: None`) or the
/// one at `url`.
pub fn assert_server(out: &str, url: Option<&str>) {
    match url {
        None => assert!(out.contains("(embedded)"), "{out}"),
        Some(url) => {
            assert!(
                out.contains(&format!("{url} (from PROCSHARE_URL)")),
                "{out}"
            );
            assert!(!out.contains("(embedded)"), "{out}");
        }
    }
}

/// `target/<profile>/procshared`, built first if it is not there yet.
///
/// Cargo builds only this package's binaries for its tests, so the daemon
/// of another package may be missing from a fresh target directory.
pub fn procshared() -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(format!("procshared{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "procshare-server", "--bin", "procshared"]);
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build of procshared failed");
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// A `procshared` of the test's own, on a free port; killed when dropped.
pub struct Procshared {
    _child: KillOnDrop,
    url: String,
}

impl Procshared {
    /// Starts it and returns once it has said it is listening.
    pub fn start() -> Procshared {
        let mut child = KillOnDrop(
            Command::new(procshared())
                .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start procshared"),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading after the first line, so the daemon never blocks
            // on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
            panic!("procshared did not print `listening on ADDR` within {START_DEADLINE:?}")
        });
        Procshared {
            _child: child,
            url: format!("http://{addr}"),
        }
    }

    /// `http://ADDR`, for `PROCSHARE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The names of the objects on the server, through the client API: an
    /// example that cleaned up after itself leaves none behind.
    pub fn objects(&self) -> Vec<String> {
        let m = procshare::blocking::Manager::connect(&self.url).expect("connect to procshared");
        m.list_objects()
            .expect("list objects")
            .into_iter()
            .map(|o| o.name)
            .collect()
    }
}
