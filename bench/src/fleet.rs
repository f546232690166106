//! Multi-process workloads: `count` worker processes, each this binary
//! re-executed with the hidden `worker` subcommand.
//!
//! Timing: `total` runs from just before the first spawn to the exit of the
//! last worker, so it includes process start and connect like the anchor's
//! (which times `Process.start()` to the last `join()`). Unlike the anchor,
//! the workers meet at a barrier: each prints `ready` on its stdout once
//! connected, and all start together when the parent writes one byte to
//! each stdin. So `startup` (spawn → all ready) and `work` (go → all exited)
//! are also known, with `total = startup + work`.
//!
//! Whatever a worker prints after `ready` (a result line: its latencies, what
//! it was served) comes back in `Timing::outputs`, one string per worker.
//! The CPU time the workers and the server spent from `go` to the last exit
//! comes back too (`Timing::clients_cpu`, `server_cpu`; see `cpu`).
//! `run_during` also runs something in the parent while the workers work
//! (releasing blocked waiters, say).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cpu;

pub struct Timing {
    pub startup: Duration,
    pub work: Duration,
    pub total: Duration,
    /// Each worker's output after its `ready` line, in worker order.
    pub outputs: Vec<String>,
    /// CPU time the workers spent from `go` to their exit (see `cpu`).
    pub clients_cpu: Option<Duration>,
    /// CPU time the server spent meanwhile, when this process started it.
    pub server_cpu: Option<Duration>,
}

/// The live workers; kills whatever is still running when dropped, so that
/// an error never leaves processes behind (or a lock held forever).
struct Fleet {
    pids: Vec<u32>,
    exited: Vec<bool>,
}

impl Fleet {
    fn kill_rest(&mut self) {
        for (pid, exited) in self.pids.iter().zip(&mut self.exited) {
            if !*exited {
                // SAFETY: kill(2) on a worker we spawned. A waiter thread may
                // reap it meanwhile; the window for pid reuse is negligible.
                unsafe {
                    libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                }
                *exited = true;
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill_rest();
    }
}

/// Runs `count` workers; `worker_args(k)` gives worker `k`'s arguments
/// after `worker`.
pub fn run(exe: &Path, count: usize, worker_args: impl Fn(usize) -> Vec<String>) -> Result<Timing> {
    run_during(exe, count, worker_args, || Ok(()))
}

/// As [`run`], and runs `during` in this thread once the workers have been
/// told to go; its failure kills the workers.
pub fn run_during(
    exe: &Path,
    count: usize,
    worker_args: impl Fn(usize) -> Vec<String>,
    during: impl FnOnce() -> Result<()>,
) -> Result<Timing> {
    let mut fleet = Fleet {
        pids: Vec::with_capacity(count),
        exited: Vec::with_capacity(count),
    };
    let (tx, rx) = mpsc::channel::<(usize, std::io::Result<ExitStatus>)>();
    let mut pipes: Vec<(ChildStdin, BufReader<ChildStdout>)> = Vec::with_capacity(count);
    let children_before = cpu::waited_children();
    let t0 = Instant::now();
    for k in 0..count {
        let mut child = Command::new(exe)
            .arg("worker")
            .args(worker_args(k))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start worker {k} ({})", exe.display()))?;
        fleet.pids.push(child.id());
        fleet.exited.push(false);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        pipes.push((stdin, stdout));
        // Reap in any order, so that a failing worker is noticed at once.
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((k, child.wait()));
        });
    }
    drop(tx);

    // Barrier: every worker connected and waiting on its stdin. A worker
    // that fails before it is ready closes its stdout: an empty line.
    for (k, (_, stdout)) in pipes.iter_mut().enumerate() {
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .with_context(|| format!("reading worker {k}'s stdout"))?;
        if line != "ready\n" {
            bail!("worker {k} did not get ready (it said {line:?}; see its error above)");
        }
    }
    // What the workers spent getting ready is left out of their figure.
    let ready_cpu: Option<Duration> = fleet.pids.iter().map(|&p| cpu::on_cpu(p)).sum();
    let server = cpu::current_server();
    let server_at_go = server.and_then(cpu::on_cpu);
    let t_go = Instant::now();
    for (k, (stdin, _)) in pipes.iter_mut().enumerate() {
        stdin
            .write_all(b"g")
            .with_context(|| format!("starting worker {k}"))?;
    }
    // Read the rest of each stdout as it comes, so that a worker never
    // blocks on a full pipe.
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|(stdin, mut stdout)| {
            drop(stdin);
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
                rest
            })
        })
        .collect();
    if let Err(e) = during() {
        fleet.kill_rest();
        return Err(e);
    }

    for _ in 0..count {
        let (k, status) = rx.recv().context("lost a worker's waiter thread")?;
        fleet.exited[k] = true;
        let status = status.with_context(|| format!("waiting for worker {k}"))?;
        if !status.success() {
            fleet.kill_rest();
            bail!("worker {k} failed: {status}");
        }
    }
    let t_end = Instant::now();
    let server_at_end = server.and_then(cpu::on_cpu);
    let spent = cpu::waited_children().saturating_sub(children_before);
    let outputs = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    Ok(Timing {
        startup: t_go - t0,
        work: t_end - t_go,
        total: t_end - t0,
        outputs,
        clients_cpu: ready_cpu.map(|ready| spent.saturating_sub(ready)),
        server_cpu: server_at_go
            .zip(server_at_end)
            .map(|(go, end)| end.saturating_sub(go)),
    })
}
