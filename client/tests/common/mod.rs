//! Test support: the real `procshared` binary on an ephemeral port, and the
//! real `procshare` CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for something that should take milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `target/<profile>/`, found from this test executable (`…/deps/test-hash`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// The `procshared` binary. `cargo test --workspace` builds it; when only
/// this crate's tests were built, build it now.
pub fn procshared_bin() -> PathBuf {
    let bin = target_dir().join(format!("procshared{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "procshare-server", "--bin", "procshared"])
            .status()
            .expect("run cargo build for procshared");
        assert!(status.success(), "building procshared failed");
    }
    assert!(bin.exists(), "procshared not found at {}", bin.display());
    bin
}

/// A `procshared` process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `procshared --listen 127.0.0.1:0` and waits for its
    /// `listening on ADDR` line.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1:0", extra)
    }

    /// Starts `procshared --listen ADDR` with `extra` flags.
    pub fn start_on(addr: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(procshared_bin())
            .args(["--listen", addr, "--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start procshared");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = read_line_within(stdout, DEADLINE).expect("procshared printed no line");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_owned();
        Server { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit; returns whether it was clean.
    pub fn terminate(mut self) -> bool {
        signal(self.child.id(), "TERM");
        wait_within(&mut self.child, DEADLINE).is_some_and(|s| s.success())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first line of `r` on a helper thread, giving up after `limit`.
pub fn read_line_within(r: impl std::io::Read + Send + 'static, limit: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let ok = BufReader::new(r)
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false);
        let _ = tx.send(ok.then_some(line));
    });
    rx.recv_timeout(limit).ok().flatten()
}

/// Waits for `child` to exit, at most `limit` (then kills it and gives up).
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    // A watchdog that kills the child if the deadline passes first.
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            signal(pid, "KILL");
            return true;
        }
        false
    });
    let status = child.wait().ok();
    let _ = tx.send(());
    let killed = watchdog.join().unwrap_or(false);
    if killed {
        None
    } else {
        status
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// The `procshare` CLI.
pub fn cli_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_procshare"))
}

/// Runs the CLI against `url` and waits for it.
pub fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(cli_bin())
        .arg("--url")
        .arg(url)
        .args(args)
        .output()
        .expect("run procshare")
}

/// Runs the CLI, expects success, returns stdout without the final newline.
pub fn cli_ok(url: &str, args: &[&str]) -> String {
    let out = cli(url, args);
    assert!(
        out.status.success(),
        "procshare {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .trim_end()
        .to_owned()
}

/// Runs the CLI, expects exit `code`, returns stderr.
pub fn cli_fails(url: &str, args: &[&str], code: i32) -> String {
    let out = cli(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "procshare {args:?}: stderr {stderr:?}"
    );
    stderr
}

// ---------------------------------------------------------------------------
// Background CLI processes and "who is blocked" polling, for the semantics
// tests (sem_*.rs, cli_waits.rs). Nothing here sleeps: a test learns that a
// process is blocked on the server by asking the server (`describe`).
// ---------------------------------------------------------------------------

/// Starts `procshare --url URL ARGS` without waiting for it; stdout and
/// stderr are piped.
pub fn spawn_cli_child(url: &str, args: &[&str]) -> Child {
    Command::new(cli_bin())
        .arg("--url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn procshare")
}

/// Waits (at most [`DEADLINE`]) for a background process to exit and
/// collects what it printed; kills it and panics if it does not exit.
pub fn finish_child(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("collect the output of a child process"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("process {pid} did not exit within {DEADLINE:?}");
        }
    }
}

/// A process's stdout, without the final newline.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// A process's stderr.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Several background CLI processes whose exits arrive, in the order they
/// happen, on one channel: "the next process to finish", "has any finished
/// yet", without polling or sleeping.
pub struct CliGroup {
    url: String,
    pids: Vec<u32>,
    tx: mpsc::Sender<(usize, Output)>,
    rx: mpsc::Receiver<(usize, Output)>,
}

impl CliGroup {
    pub fn new(url: &str) -> CliGroup {
        let (tx, rx) = mpsc::channel();
        CliGroup {
            url: url.to_owned(),
            pids: Vec::new(),
            tx,
            rx,
        }
    }

    /// Starts one `procshare ARGS`; returns its index in the group.
    pub fn spawn(&mut self, args: &[&str]) -> usize {
        let child = spawn_cli_child(&self.url, args);
        let i = self.pids.len();
        self.pids.push(child.id());
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            if let Ok(out) = child.wait_with_output() {
                let _ = tx.send((i, out));
            }
        });
        i
    }

    /// Starts `n` copies of `procshare ARGS`.
    pub fn spawn_n(&mut self, n: usize, args: &[&str]) {
        for _ in 0..n {
            self.spawn(args);
        }
    }

    pub fn len(&self) -> usize {
        self.pids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// The pid of process `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.pids[i]
    }

    /// The next process to exit (index and output), waiting at most
    /// [`DEADLINE`].
    pub fn next_exit(&self) -> (usize, Output) {
        self.rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no process of the group exited within {DEADLINE:?}"))
    }

    /// The next `n` processes to exit.
    pub fn exits(&self, n: usize) -> Vec<(usize, Output)> {
        (0..n).map(|_| self.next_exit()).collect()
    }

    /// A process that has exited and was not reported yet, if any: `None`
    /// means every other process is still running right now.
    pub fn exited_now(&self) -> Option<(usize, Output)> {
        self.rx.try_recv().ok()
    }
}

fn waiting_field(d: &serde_json::Value, field: &str) -> Option<u64> {
    d[field].as_u64()
}

/// Waits (at most [`DEADLINE`]) until `describe(name)[field] == n`: a loop
/// of RPCs, no sleep. Returns the last description.
pub async fn wait_for_field(
    m: &procshare::Manager,
    name: &str,
    field: &str,
    n: u64,
) -> serde_json::Value {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        // The object may not exist yet (a process about to create it).
        let d = m
            .describe(name)
            .await
            .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
        if waiting_field(&d, field) == Some(n) {
            return d;
        }
        assert!(
            std::time::Instant::now() < end,
            "{name}: never saw {field} == {n}; last: {d}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits (at most [`DEADLINE`]) until exactly `n` calls are blocked on the
/// object `name`, as the server's `describe` reports them.
pub async fn wait_for_waiters(m: &procshare::Manager, name: &str, n: u64) -> serde_json::Value {
    wait_for_field(m, name, "waiters", n).await
}

/// [`wait_for_field`] through the blocking facade.
pub fn wait_for_field_blocking(
    m: &procshare::blocking::Manager,
    name: &str,
    field: &str,
    n: u64,
) -> serde_json::Value {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let d = m
            .describe(name)
            .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
        if waiting_field(&d, field) == Some(n) {
            return d;
        }
        assert!(
            std::time::Instant::now() < end,
            "{name}: never saw {field} == {n}; last: {d}"
        );
        std::thread::yield_now();
    }
}

/// [`wait_for_waiters`] through the blocking facade.
pub fn wait_for_waiters_blocking(
    m: &procshare::blocking::Manager,
    name: &str,
    n: u64,
) -> serde_json::Value {
    wait_for_field_blocking(m, name, "waiters", n)
}

/// [`wait_for_field`] through `procshare describe` (one process per look).
pub fn wait_for_field_cli(url: &str, name: &str, field: &str, n: u64) -> serde_json::Value {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let out = cli(url, &["describe", name]);
        let d: serde_json::Value = if out.status.success() {
            serde_json::from_slice(&out.stdout).expect("describe prints JSON")
        } else {
            serde_json::Value::String(String::from_utf8_lossy(&out.stderr).into_owned())
        };
        if waiting_field(&d, field) == Some(n) {
            return d;
        }
        assert!(
            std::time::Instant::now() < end,
            "{name}: never saw {field} == {n}; last: {d}"
        );
    }
}

/// [`wait_for_waiters`] through `procshare describe`.
pub fn wait_for_waiters_cli(url: &str, name: &str, n: u64) -> serde_json::Value {
    wait_for_field_cli(url, name, "waiters", n)
}
