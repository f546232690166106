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
        let mut child = Command::new(procshared_bin())
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
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
