//! Runs the real `counter` binary, worker processes and all, and checks the
//! counts it prints: once with its embedded server, once against a separately
//! started `procshared` (the way it runs across hosts).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WORKERS: u64 = 4;
const INCREMENTS: u64 = 200;

/// Generous: the deadlines catch a hang, they do not time anything.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Kills a child process when dropped, so a failing test leaves no server or
/// counter running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `counter` with `PROCSHARE_URL` set to `url` (or unset), and returns
/// its stdout once it exited successfully.
fn run_counter(url: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_counter"));
    cmd.args([
        "--workers",
        &WORKERS.to_string(),
        "--increments",
        &INCREMENTS.to_string(),
    ])
    .stdout(Stdio::piped());
    match url {
        Some(url) => cmd.env("PROCSHARE_URL", url),
        None => cmd.env_remove("PROCSHARE_URL"),
    };
    let mut child = KillOnDrop(cmd.spawn().expect("start counter"));

    // Read stdout on a thread, so the wait for it can have a deadline. The
    // pipe reaches EOF once the counter and all its workers (which inherit
    // it) have exited.
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let r = stdout.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(r);
    });
    let out = rx
        .recv_timeout(RUN_DEADLINE)
        .unwrap_or_else(|_| panic!("counter did not finish within {RUN_DEADLINE:?}"))
        .expect("read counter's stdout");
    let status = child.0.wait().expect("wait for counter");
    assert!(
        status.success(),
        "counter failed ({status}); stdout:\n{out}"
    );
    out
}

/// The `(got, expected)` of the line `label: GOT (expected EXPECTED) ...`.
fn count(out: &str, label: &str) -> (u64, u64) {
    let prefix = format!("{label}: ");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"));
    let (got, rest) = line
        .split_once(" (expected ")
        .unwrap_or_else(|| panic!("malformed line {line:?}"));
    let expected = rest.split_once(')').map_or(rest, |(e, _)| e);
    (
        got.parse().unwrap_or_else(|_| panic!("count in {line:?}")),
        expected
            .parse()
            .unwrap_or_else(|_| panic!("expected in {line:?}")),
    )
}

fn assert_counts(out: &str) {
    for label in ["fetch_add", "lock+get+set"] {
        assert_eq!(
            count(out, label),
            (WORKERS * INCREMENTS, WORKERS * INCREMENTS),
            "{label}; output:\n{out}"
        );
    }
}

#[test]
fn counts_with_its_embedded_server() {
    let out = run_counter(None);
    assert!(out.contains("(embedded)"), "{out}");
    assert_counts(&out);
}

/// `target/<profile>/procshared`, built first if it is not there yet.
///
/// Cargo builds only this package's binaries for its tests, so the daemon
/// of another package may be missing from a fresh target directory.
fn procshared() -> PathBuf {
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

/// Starts `procshared` on a free port and returns it with its address, once
/// it has said it is listening.
fn start_procshared() -> (KillOnDrop, String) {
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
        // Keep reading after the first line, so the daemon never blocks on
        // a full pipe.
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
    (child, addr)
}

#[test]
fn counts_against_a_separate_procshared() {
    let (_server, addr) = start_procshared();
    let url = format!("http://{addr}");
    let out = run_counter(Some(&url));
    assert!(out.contains(&url), "{out}");
    assert!(!out.contains("(embedded)"), "{out}");
    assert_counts(&out);

    // A second run against the same long-lived server starts from zero again.
    let again = run_counter(Some(&url));
    assert_counts(&again);
}
