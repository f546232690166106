//! A pool of worker processes fed through a JoinableQueue.
//!
//! The coordinator puts J jobs ("count the primes below n") into a shared
//! `JoinableQueue`; W worker processes take jobs, compute, store each result
//! in a shared dict under the job's id and mark the job done. The
//! coordinator's `join()` returns once every job is done, and at that point
//! every result is in the dict: a worker stores its result *before* it calls
//! `task_done`. In Python:
//!
//! ```python
//! def worker(jobs, results, w):
//!     while (job := jobs.get()) is not None:
//!         results[job.id] = (count_primes_below(job.below), w)
//!         jobs.task_done()
//!     jobs.task_done()                 # the sentinel counts as a task too
//!
//! for job in all_jobs: jobs.put(job)
//! jobs.join()                          # every job done: all results are in
//! print(sorted(results.items()))
//! for _ in workers: jobs.put(None)     # now tell the workers to stop
//! ```
//!
//! Workers count primes by trial division; the coordinator checks every
//! result against a sieve of Eratosthenes, an independent way to the same
//! numbers, and exits non-zero if a job is missing or wrong.
//!
//! ```text
//! cargo run -p procshare-examples --bin work_queue -- --workers 4 --jobs 20
//! PROCSHARE_URL=http://127.0.0.1:50051 cargo run -p procshare-examples --bin work_queue
//! ```
//!
//! The workers are this same executable, re-run with a hidden `worker`
//! argument.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use procshare::blocking::Manager;
use procshare_examples::{server, Objects, Workers};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "work_queue",
    about = "W worker processes take jobs from a JoinableQueue; the coordinator joins it"
)]
struct Args {
    /// How many worker processes.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How many jobs.
    #[arg(long, default_value_t = 20)]
    jobs: u64,
    /// Job i counts the primes below (i + 1) × step.
    #[arg(long, default_value_t = 5_000)]
    step: u64,
    /// The queue's maxsize (0: unbounded); with a bound, putting the jobs
    /// waits for the workers to take some.
    #[arg(long, default_value_t = 0)]
    maxsize: u64,
    /// A safety net, in seconds: how long the coordinator waits with no job
    /// getting done, and a worker for its next job, before failing.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Internal: run as worker number `index` (the coordinator starts these).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        jobs: String,
        #[arg(long)]
        results: String,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        timeout: u64,
    },
}

/// One job: count the primes below `below`.
#[derive(Serialize, Deserialize)]
struct Job {
    id: u64,
    below: u64,
}

/// A queue item: a job, or `None`, the sentinel that tells a worker to stop.
type Item = Option<Job>;

/// What a worker stores under the job's id.
#[derive(Serialize, Deserialize)]
struct Done {
    primes: u64,
    /// Which worker did it.
    worker: usize,
}

/// The worker's way: trial division, one number at a time.
// `k % d != 0` rather than `!k.is_multiple_of(d)`, which needs Rust 1.87
// (the workspace's rust-version is 1.85).
#[allow(clippy::manual_is_multiple_of)]
fn count_primes_below(n: u64) -> u64 {
    let is_prime = |k: u64| k >= 2 && (2..).take_while(|d| d * d <= k).all(|d| k % d != 0);
    (0..n).filter(|&k| is_prime(k)).count() as u64
}

/// The coordinator's way: a sieve of Eratosthenes up to `n`, giving the
/// number of primes below every `m <= n` at once.
fn primes_below_each(n: u64) -> Vec<u64> {
    let n = usize::try_from(n).expect("a sieve that fits in memory");
    let mut prime = vec![true; n + 1];
    prime[0] = false;
    if n >= 1 {
        prime[1] = false;
    }
    for k in 2..=n {
        if prime[k] {
            for multiple in (k * k..=n).step_by(k) {
                prime[multiple] = false;
            }
        }
    }
    // below[m]: how many primes are < m.
    let mut below = vec![0u64; n + 1];
    for m in 1..=n {
        below[m] = below[m - 1] + u64::from(prime[m - 1]);
    }
    below
}

fn worker(jobs: &str, results: &str, index: usize, timeout: Duration) -> anyhow::Result<()> {
    let m = Manager::from_env()?;
    let jobs = m.joinable_queue::<Item>(jobs, 0)?;
    let results = m.dict::<u64, Done>(results)?;
    loop {
        let job = match jobs.get_timeout(timeout) {
            Ok(job) => job,
            Err(procshare::Error::Empty(_)) => {
                bail!("waited {timeout:?} for a job or a sentinel in vain: is the coordinator stuck or gone?")
            }
            Err(e) => return Err(e.into()),
        };
        let Some(job) = job else {
            // The sentinel was put too, so it counts for join as well.
            jobs.task_done()?;
            return Ok(());
        };
        let primes = count_primes_below(job.below);
        // The result first, then task_done: when join returns, it is there.
        results.insert(
            job.id,
            Done {
                primes,
                worker: index,
            },
        )?;
        jobs.task_done()?;
    }
}

fn main() -> ExitCode {
    procshare_examples::exit_code("work_queue", work_queue(Args::parse()))
}

fn work_queue(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    if let Some(Role::Worker {
        jobs,
        results,
        index,
        timeout,
    }) = args.role
    {
        worker(&jobs, &results, index, Duration::from_secs(timeout))
            .with_context(|| format!("worker {index}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.workers == 0 && args.jobs > 0 {
        bail!("--workers must be at least 1: someone has to do the jobs");
    }
    let below = |id: u64| {
        id.checked_add(1)
            .and_then(|n| n.checked_mul(args.step))
            .context("job sizes overflow")
    };
    let largest = below(args.jobs.saturating_sub(1))?;

    // Declared first so it is dropped last: an embedded server must outlive
    // the connections to it.
    let server = server()?;
    let m = Manager::connect(server.url())?;
    let mut objects = Objects::new(&m, "work_queue");
    let jobs_name = objects.name("jobs");
    let results_name = objects.name("results");
    let jobs = m.joinable_queue::<Item>(&jobs_name, args.maxsize)?;
    let results = m.dict::<u64, Done>(&results_name)?;
    println!(
        "work_queue: {} jobs (job i: primes below (i + 1) × {}), {} workers, server {server}",
        args.jobs, args.step, args.workers
    );

    let started = Instant::now();
    let workers = Workers::spawn(server.url(), args.workers, |i| {
        vec![
            "worker".to_owned(),
            "--jobs".to_owned(),
            jobs_name.clone(),
            "--results".to_owned(),
            results_name.clone(),
            "--index".to_owned(),
            i.to_string(),
            "--timeout".to_owned(),
            args.timeout.to_string(),
        ]
    })?;
    for id in 0..args.jobs {
        jobs.put_timeout(
            Some(Job {
                id,
                below: below(id)?,
            }),
            timeout,
        )
        .context("putting a job (are the workers still running?)")?;
    }
    // Python's plain `jobs.join()`, with a watchdog: keep joining while
    // jobs get done, fail if none was done for a whole timeout (a worker
    // that died holding a job never calls task_done for it).
    let mut results_before = 0;
    loop {
        match jobs.join_timeout(timeout) {
            Ok(()) => break,
            Err(procshare::Error::Timeout(_)) => {
                let results_now = results.len()?;
                if results_now == results_before {
                    bail!(
                        "no job was done for {timeout:?} ({results_now} of {} done): did a worker fail?",
                        args.jobs
                    );
                }
                results_before = results_now;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = started.elapsed();
    // join returned: every job is done, so every result is in the dict,
    // though the workers are still running. Read them now, then stop them.
    let done: BTreeMap<u64, Done> = results.snapshot()?;
    for _ in 0..args.workers {
        jobs.put_timeout(None, timeout)
            .context("putting a sentinel")?;
    }
    workers.wait_all()?;
    objects.delete_all()?;

    let truth = primes_below_each(largest);
    let mut per_worker = vec![0u64; args.workers];
    let mut correct = 0;
    let width = largest.to_string().len();
    for id in 0..args.jobs {
        let n = below(id)?;
        let expected = truth[usize::try_from(n)?];
        match done.get(&id) {
            Some(d) => {
                let verdict = if d.primes == expected {
                    correct += 1;
                    String::new()
                } else {
                    format!("  WRONG, expected {expected}")
                };
                if let Some(count) = per_worker.get_mut(d.worker) {
                    *count += 1;
                }
                println!(
                    "job {id:>3}: primes below {n:>width$} = {:>6} (worker {}){verdict}",
                    d.primes, d.worker
                );
            }
            None => println!("job {id:>3}: primes below {n:>width$}: NO RESULT"),
        }
    }
    let extra = done.keys().filter(|&&id| id >= args.jobs).count();
    println!("jobs per worker: {per_worker:?}");
    println!(
        "done: {correct} of {} jobs correct in {elapsed:.2?}",
        args.jobs
    );

    if correct == args.jobs && extra == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("work_queue: some jobs have no result or a wrong one");
        Ok(ExitCode::FAILURE)
    }
}
