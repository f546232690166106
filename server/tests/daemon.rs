//! The `procshared` binary itself: its announce line, its flags, and a
//! graceful shutdown that does not wait for blocked clients forever.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procshared")
}

fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(DEADLINE)
        .expect("a line within the deadline")
}

/// Waits for the exit; a watchdog kills the process if the deadline passes.
fn exit_code(child: &mut Child) -> Option<i32> {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let status = child.wait().expect("wait");
    let _ = tx.send(());
    let _ = watchdog.join();
    status.code()
}

fn term(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
}

#[test]
fn announces_the_real_port_and_stops_on_sigterm() {
    let mut d = spawn(&["--listen", "127.0.0.1:0"]);
    let line = first_line(&mut d);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announce line");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "the real port, not 0");
    term(&d);
    assert_eq!(exit_code(&mut d), Some(0), "graceful exit");
}

#[tokio::test]
async fn shutdown_ends_blocked_waits() {
    let mut d = spawn(&["--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let line = first_line(&mut d);
    let url = format!(
        "http://{}",
        line.trim().strip_prefix("listening on ").unwrap()
    );
    let a = procshare::Manager::connect(&url).await.unwrap();
    let b = procshare::Manager::builder()
        .url(&url)
        .call_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    a.lock("l").await.unwrap().acquire().await.unwrap();
    let lock_b = b.lock("l").await.unwrap();
    let blocked = tokio::spawn(async move { lock_b.acquire_timeout(Duration::from_secs(2)).await });
    // Wait until b's acquire is parked on the server.
    loop {
        let d = a.describe("l").await.unwrap();
        if d["waiters"] == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    term(&d);
    // The blocked call does not hold the shutdown up: the server exits.
    let code = tokio::task::spawn_blocking(move || exit_code(&mut d))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    // The client, told UNAVAILABLE, keeps retrying (a restarted server would
    // answer) until the call's deadline, then reports it.
    let result = tokio::time::timeout(DEADLINE, blocked)
        .await
        .expect("the wait ended")
        .unwrap();
    assert!(
        matches!(
            result,
            Err(procshare::Error::Unavailable(_) | procshare::Error::Timeout(_))
        ),
        "{result:?}"
    );
}

#[test]
fn bad_flags_fail_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let out = Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "[[nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log-level"));
}

/// `--log-format json`: every line on stderr is one JSON object a log
/// collector can read, with the level, the target and the message.
#[test]
fn json_logs_are_one_object_per_line() {
    let mut d = spawn(&["--listen", "127.0.0.1:0", "--log-format", "json"]);
    first_line(&mut d);
    term(&d);
    assert_eq!(exit_code(&mut d), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut d.stderr.take().expect("piped"), &mut stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().map(str::to_owned);
    let messages: Vec<String> = lines.iter().filter_map(message).collect();
    for m in [
        "listening on TCP",
        "procshared started",
        "shutting down",
        "stopped",
    ] {
        assert!(messages.iter().any(|x| x == m), "no {m:?} in {messages:?}");
    }
    for v in &lines {
        assert_eq!(v["level"], "INFO", "{v}");
        assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");
    }
    let listening = lines
        .iter()
        .find(|v| v["fields"]["message"] == "listening on TCP")
        .expect("the listening line");
    assert!(listening["fields"]["addr"].is_string(), "{listening}");

    let out = Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-format") && err.contains("expected text or json"),
        "{err}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}
