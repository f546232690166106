//! A `procshared` started for the run, stopped with SIGTERM at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct Daemon {
    child: Child,
    url: String,
    // Held open so that the daemon never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    /// Starts `path --listen 127.0.0.1:0 --log-level warn` and waits for its
    /// `listening on 127.0.0.1:PORT` line.
    pub fn start(path: &Path) -> Result<Daemon> {
        let mut child = Command::new(path)
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with `cargo build --release -p procshare-server`, \
                     or pass --procshared PATH or --url URL)",
                    path.display()
                )
            })?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = match read {
            Ok(n) if n > 0 => line.trim().strip_prefix("listening on ").map(str::to_owned),
            _ => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait()?;
            bail!(
                "{} did not say `listening on ADDR` (got {line:?}, exit {status})",
                path.display()
            );
        };
        Ok(Daemon {
            child,
            url: format!("http://{addr}"),
            _stdout: stdout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
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
    }
}
