//! A `procshared` started for the run, stopped with SIGTERM at the end.
//!
//! In memory on TCP (the default), and optionally on a Unix socket too, or
//! with a data dir: then its start-up log is read for the `data dir
//! recovered` line, and the time from spawn to its `listening on` line is
//! kept (the restart time).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What to start.
#[derive(Debug, Default)]
pub struct Spec {
    /// Also listen on this Unix socket (beside TCP on a free port).
    pub unix: Option<PathBuf>,
    /// `--data-dir`: durable mode.
    pub data_dir: Option<PathBuf>,
    /// `--fsync` (with `data_dir`).
    pub fsync: Option<&'static str>,
    /// Further arguments.
    pub extra: Vec<String>,
}

/// The figures of procshared's `data dir recovered` log line.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub elapsed_ms: Option<u64>,
    pub replayed: Option<u64>,
}

pub struct Daemon {
    child: Child,
    tcp_url: String,
    unix_url: Option<String>,
    /// Spawn to the last `listening on` line.
    ready: Duration,
    recovery: Option<mpsc::Receiver<Recovery>>,
    // Held open so that the daemon never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    /// Starts `path --listen 127.0.0.1:0` (plus the `spec`) and waits for
    /// its `listening on` line(s). Logs at `warn`; with a data dir, the
    /// start-up lines of `procshared` itself at `info` too, read from a pipe
    /// (warnings and errors are passed on to this process's stderr).
    pub fn start(path: &Path, spec: &Spec) -> Result<Daemon> {
        let mut cmd = Command::new(path);
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(unix) = &spec.unix {
            cmd.arg("--unix").arg(unix);
        }
        if let Some(dir) = &spec.data_dir {
            cmd.arg("--data-dir").arg(dir);
            cmd.args(["--log-level", "warn,procshared=info"]);
            // Plain log lines, whatever the terminal.
            cmd.env("NO_COLOR", "1");
            cmd.stderr(Stdio::piped());
        } else {
            cmd.args(["--log-level", "warn"]);
            cmd.stderr(Stdio::inherit());
        }
        if let Some(fsync) = spec.fsync {
            cmd.args(["--fsync", fsync]);
        }
        cmd.args(&spec.extra);
        let t0 = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with `cargo build --release -p procshare-server`, \
                     or pass --procshared PATH)",
                    path.display()
                )
            })?;
        let recovery = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || read_log(BufReader::new(stderr), tx));
            rx
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let want = 1 + usize::from(spec.unix.is_some());
        let mut tcp = None;
        let mut unix = None;
        for _ in 0..want {
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let addr = match read {
                Ok(n) if n > 0 => line.trim().strip_prefix("listening on ").map(str::to_owned),
                _ => None,
            };
            match addr {
                Some(a) => match a.strip_prefix("unix:") {
                    Some(p) => unix = Some(format!("unix://{p}")),
                    None => tcp = Some(format!("http://{a}")),
                },
                None => {
                    let _ = child.kill();
                    let status = child.wait()?;
                    bail!(
                        "{} did not say `listening on ADDR` (got {line:?}, exit {status})",
                        path.display()
                    );
                }
            }
        }
        let ready = t0.elapsed();
        let Some(tcp_url) = tcp else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not listen on TCP", path.display());
        };
        if spec.unix.is_some() && unix.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not listen on its Unix socket", path.display());
        }
        crate::cpu::server_started(child.id());
        Ok(Daemon {
            child,
            tcp_url,
            unix_url: unix,
            ready,
            recovery,
            _stdout: stdout,
        })
    }

    pub fn url(&self) -> &str {
        &self.tcp_url
    }

    pub fn unix_url(&self) -> Option<&str> {
        self.unix_url.as_deref()
    }

    /// Spawn to the `listening on` line(s): with a data dir, that includes
    /// the whole recovery.
    pub fn ready(&self) -> Duration {
        self.ready
    }

    /// The `data dir recovered` line (data dir only). It is logged before
    /// `listening on`, so it is there or about to be.
    pub fn recovery(&self) -> Result<Recovery> {
        let Some(rx) = &self.recovery else {
            bail!("procshared was started without a data dir");
        };
        rx.recv_timeout(Duration::from_secs(10))
            .context("procshared did not log `data dir recovered`")
    }

    /// The daemon's resident set size now, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64> {
        Ok(self.status_kib("VmRSS")? * 1024)
    }

    /// A number from the daemon's `/proc/PID/status`: `VmRSS`, `VmHWM`
    /// (in KiB, as there), `Threads`.
    pub fn status_kib(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .map(|v| v.trim().trim_end_matches("kB").trim())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("no {field} in {path}"))
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Result<()> {
        self.terminate();
        let status = self.child.wait()?;
        if !status.success() {
            bail!("procshared exited with {status} after SIGTERM");
        }
        Ok(())
    }

    fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Reached without `stop` only on an error path: do not leave the
        // daemon running.
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let _ = self.child.wait();
        }
        crate::cpu::server_gone(self.child.id());
    }
}

/// Reads procshared's log: sends the figures of `data dir recovered`,
/// passes warnings and errors on, drops the other info lines.
fn read_log(stderr: impl BufRead, tx: mpsc::Sender<Recovery>) {
    for line in stderr.lines() {
        let Ok(line) = line else { return };
        let line = strip_ansi(&line);
        if line.contains("data dir recovered") {
            let _ = tx.send(Recovery {
                elapsed_ms: field(&line, "elapsed_ms"),
                replayed: field(&line, "replayed"),
            });
        } else if line.contains("WARN") || line.contains("ERROR") || !line.contains(" INFO ") {
            eprintln!("procshared: {line}");
        }
    }
}

/// `name=123` in a `tracing` line.
fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The line without ANSI colour codes (`ESC [ ... m`), in case they come.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{field, strip_ansi};

    #[test]
    fn reads_the_recovered_line() {
        let colored = "\u{1b}[2m2026-11-25T20:44:04Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m data dir recovered \
                       \u{1b}[3mreplayed\u{1b}[0m\u{1b}[2m=\u{1b}[0m100 \u{1b}[3melapsed_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m1234";
        let line = strip_ansi(colored);
        assert_eq!(field(&line, "elapsed_ms"), Some(1234));
        assert_eq!(field(&line, "replayed"), Some(100));
        assert_eq!(field(&line, "objects"), None);
    }
}
