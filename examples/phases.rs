//! Workers in lock-step: a starting gun (Event) and phases (Barrier).
//!
//! W worker processes connect, then wait for a shared Event, the starting
//! gun, which the coordinator sets once all of them are there. Then they run
//! K phases of uneven work; between phases they meet at a Barrier of W
//! parties, so that no worker starts phase k + 1 before every worker has
//! finished phase k. In Python:
//!
//! ```python
//! def worker(i, ready, start, phase, finished, log, phases):
//!     ready.wait()                     # Barrier(W + 1): the coordinator is a party
//!     start.wait()                     # Event: the starting gun
//!     for k in range(phases):
//!         work(i, k)                   # uneven: arrival order varies
//!         finished[k] += 1             # atomic here: fetch_add
//!         j = phase.wait()             # Barrier(W): the arrival index, 0..W-1
//!         assert finished[k] == W      # nobody is still in phase k
//!         log.append((k, i, j))
//!
//! ready.wait()                         # all W workers connected
//! start.set()
//! ```
//!
//! How does the coordinator know every worker is connected, without polling
//! a counter? It is the (W + 1)-th party of the `ready` barrier: its own
//! `wait` returns only once all W workers have arrived.
//!
//! The checks, each failing the run: inside each worker, right after the
//! barrier of phase k, that all W workers have finished phase k (the shared
//! `finished` array); and in the coordinator, from the shared log, that each
//! phase's arrival indexes are exactly 0..W-1, one per worker.
//!
//! A worker that fails aborts the phase barrier on its way out, so the
//! others get `BrokenBarrier` at once instead of waiting for a party that
//! will never arrive.
//!
//! ```text
//! cargo run -p procshare-examples --bin phases -- --workers 4 --phases 3
//! PROCSHARE_URL=http://127.0.0.1:50051 cargo run -p procshare-examples --bin phases
//! ```
//!
//! The workers are this same executable, re-run with a hidden `worker`
//! argument.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand};
use procshare::blocking::{BarrierProxy, Manager};
use procshare_examples::{server, Objects, Workers};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "phases",
    about = "W worker processes start together on an Event and run K phases in lock-step on a Barrier"
)]
struct Args {
    /// How many worker processes.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How many phases.
    #[arg(long, default_value_t = 3)]
    phases: u64,
    /// The longest (simulated) work of one worker in one phase, in ms.
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// A safety net, in seconds: the barriers' timeout. A party that does
    /// not arrive within it (a crashed process) breaks the barrier for all.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Testing: the last worker fails in this phase instead of reaching the
    /// barrier (the last, so that the coordinator, joining worker 0 first,
    /// learns of it only through the broken barrier).
    #[arg(long, hide = true)]
    fail_in_phase: Option<u64>,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Internal: run as worker number `index` (the coordinator starts these).
    #[command(hide = true)]
    Worker {
        /// The prefix of the run's object names.
        #[arg(long)]
        objects: String,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        phases: u64,
        #[arg(long)]
        work_ms: u64,
        #[arg(long)]
        timeout: u64,
        #[arg(long)]
        fail_in_phase: Option<u64>,
    },
}

/// One line of the shared log: worker `worker` passed the barrier of phase
/// `phase` as arrival number `arrival`.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Arrival {
    phase: u64,
    worker: usize,
    arrival: u64,
}

/// The names of a run's objects, from the prefix both sides know.
struct Names {
    ready: String,
    start: String,
    phase: String,
    finished: String,
    log: String,
}

impl Names {
    fn new(mut name: impl FnMut(&str) -> String) -> Names {
        Names {
            ready: name("ready"),
            start: name("start"),
            phase: name("phase"),
            finished: name("finished"),
            log: name("log"),
        }
    }
}

/// The simulated work of `worker` in `phase`: up to `work_ms`, varying with
/// both, so that the arrival order changes from phase to phase.
fn work(worker: usize, phase: u64, work_ms: u64) {
    let mix = (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ phase.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let ms = (mix >> 17) % (work_ms + 1);
    std::thread::sleep(Duration::from_millis(ms));
}

struct Worker {
    index: usize,
    workers: usize,
    phases: u64,
    work_ms: u64,
    timeout: Duration,
    fail_in_phase: Option<u64>,
}

impl Worker {
    fn run(&self, m: &Manager, names: &Names, phase: &BarrierProxy) -> anyhow::Result<()> {
        let ready = m.barrier(&names.ready, self.workers as u64 + 1, Some(self.timeout))?;
        let start = m.event(&names.start)?;
        let finished = m.array::<i64>(&names.finished, self.phases)?;
        let log = m.list::<Arrival>(&names.log)?;

        ready.wait().context("waiting for everyone to connect")?;
        ensure!(
            start.wait(Some(self.timeout))?,
            "no starting gun within {:?}",
            self.timeout
        );
        for k in 0..self.phases {
            work(self.index, k, self.work_ms);
            if self.fail_in_phase == Some(k) {
                bail!("injected failure in phase {k}");
            }
            finished.fetch_add(k as i64, 1)?;
            let arrival = phase.wait().with_context(|| format!("phase {k} barrier"))?;
            // Past the barrier: every worker has finished phase k.
            let done = finished.get(k as i64)?;
            ensure!(
                done == self.workers as i64,
                "past the barrier of phase {k}, only {done} of {} workers had finished it",
                self.workers
            );
            log.push(Arrival {
                phase: k,
                worker: self.index,
                arrival,
            })?;
        }
        Ok(())
    }
}

fn worker(objects: &str, w: &Worker) -> anyhow::Result<ExitCode> {
    let m = Manager::from_env()?;
    let names = Names::new(|what| format!("{objects}.{what}"));
    let phase = m.barrier(&names.phase, w.workers as u64, Some(w.timeout))?;
    if let Err(e) = w.run(&m, &names, &phase) {
        // Say why first: once the barrier is broken, the others fail, and
        // the coordinator, seeing one of them fail, stops the rest of us.
        eprintln!("phases: error: worker {}: {e:#}", w.index);
        // Break the barrier: the others would otherwise wait for us until
        // its timeout. They get BrokenBarrier now, and fail too.
        let _ = phase.abort();
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    procshare_examples::exit_code("phases", phases(Args::parse()))
}

fn phases(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Role::Worker {
        objects,
        index,
        workers,
        phases,
        work_ms,
        timeout,
        fail_in_phase,
    }) = args.role
    {
        let w = Worker {
            index,
            workers,
            phases,
            work_ms,
            timeout: Duration::from_secs(timeout),
            fail_in_phase,
        };
        return worker(&objects, &w).with_context(|| format!("worker {index}"));
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let (workers, timeout) = (args.workers, Duration::from_secs(args.timeout));

    // Declared first so it is dropped last: an embedded server must outlive
    // the connections to it.
    let server = server()?;
    let m = Manager::connect(server.url())?;
    let mut objects = Objects::new(&m, "phases");
    let prefix = objects.prefix().to_owned();
    let names = Names::new(|what| objects.name(what));
    // The coordinator creates everything, so the sizes are its own.
    let ready = m.barrier(&names.ready, workers as u64 + 1, Some(timeout))?;
    let start = m.event(&names.start)?;
    m.barrier(&names.phase, workers as u64, Some(timeout))?;
    let finished = m.array::<i64>(&names.finished, args.phases)?;
    let log = m.list::<Arrival>(&names.log)?;
    println!(
        "phases: {workers} workers × {} phases, server {server}",
        args.phases
    );

    let spawned = Workers::spawn(server.url(), workers, |i| {
        let mut a = vec![
            "worker".to_owned(),
            "--objects".to_owned(),
            prefix.clone(),
            "--index".to_owned(),
            i.to_string(),
            "--workers".to_owned(),
            workers.to_string(),
            "--phases".to_owned(),
            args.phases.to_string(),
            "--work-ms".to_owned(),
            args.work_ms.to_string(),
            "--timeout".to_owned(),
            args.timeout.to_string(),
        ];
        if let (true, Some(k)) = (i + 1 == workers, args.fail_in_phase) {
            a.extend(["--fail-in-phase".to_owned(), k.to_string()]);
        }
        a
    })?;
    // The coordinator is the last party of `ready`: this returns once every
    // worker has connected and arrived.
    ready
        .wait()
        .context("waiting for the workers to connect (did one fail?)")?;
    println!("all {workers} workers connected; starting them together");
    let started = Instant::now();
    start.set()?;
    spawned.wait_all()?;
    let elapsed = started.elapsed();

    let finished = finished.snapshot()?;
    let log = log.snapshot()?;
    objects.delete_all()?;

    // Per phase: the workers in arrival order.
    let mut by_phase: BTreeMap<u64, BTreeMap<u64, Vec<usize>>> = BTreeMap::new();
    for a in &log {
        by_phase
            .entry(a.phase)
            .or_default()
            .entry(a.arrival)
            .or_default()
            .push(a.worker);
    }
    let mut ok = log.len() as u64 == workers as u64 * args.phases;
    for k in 0..args.phases {
        let arrivals = by_phase.remove(&k).unwrap_or_default();
        let order: Vec<String> = arrivals
            .values()
            .flatten()
            .map(|w| format!("w{w}"))
            .collect();
        let indexes_ok = arrivals.keys().copied().eq(0..workers as u64)
            && arrivals.values().all(|ws| ws.len() == 1);
        let mut seen: Vec<usize> = arrivals.values().flatten().copied().collect();
        seen.sort_unstable();
        let workers_ok = seen.iter().copied().eq(0..workers);
        let done = finished.get(k as usize).copied().unwrap_or(0);
        let phase_ok = indexes_ok && workers_ok && done == workers as i64;
        println!(
            "phase {k}: arrival order {} ({done} of {workers} finished){}",
            order.join(" "),
            if phase_ok { "" } else { "  WRONG" }
        );
        ok &= phase_ok;
    }
    ok &= by_phase.is_empty();
    println!("{} phases in {elapsed:.2?}", args.phases);

    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("phases: the arrival indexes of some phase are not 0..{workers}, one per worker");
        Ok(ExitCode::FAILURE)
    }
}
