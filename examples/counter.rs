//! The shared counter: the race every multiprocessing tutorial starts with.
//!
//! N worker processes each add 1 to one shared counter M times; the answer
//! should be N × M. In Python:
//!
//! ```python
//! def work(counter, lock, m):
//!     for _ in range(m):
//!         with lock:                 # without the lock, updates get lost
//!             counter.value += 1     # a read, then a write: two round trips
//! ```
//!
//! `counter.value += 1` is a get followed by a set. Between the two, another
//! process can do its own get, and one of the two increments vanishes. This
//! program runs the counting twice, both correct:
//!
//! 1. `fetch_add`: the server adds atomically, in one round trip, no lock.
//!    This is the fix Python's Manager does not have.
//! 2. `lock+get+set`: Python's fix, a shared lock around the read-modify-write.
//!    Correct, but three round trips plus a lock handoff per increment.
//!
//! and, with `--unsafe`, a third time without the lock, to watch updates get
//! lost (how many depends on timing; it is printed, never checked).
//!
//! Run it on its own (it embeds a server):
//!
//! ```text
//! cargo run -p procshare-examples --bin counter -- --workers 4 --increments 1000
//! ```
//!
//! or against a running `procshared`, possibly on another host:
//!
//! ```text
//! PROCSHARE_URL=http://127.0.0.1:50051 cargo run -p procshare-examples --bin counter
//! ```
//!
//! The workers are this same executable, re-run with a `worker` argument.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use procshare::blocking::Manager;
use procshare_examples::{server, unique_name, Workers};

#[derive(Parser)]
#[command(
    name = "counter",
    about = "N processes increment one shared counter: atomic fetch_add vs lock + get + set"
)]
struct Args {
    /// How many worker processes.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How many times each worker adds 1.
    #[arg(long, default_value_t = 1000)]
    increments: u64,
    /// Also count with a plain get + set and no lock, to see updates lost.
    #[arg(long = "unsafe")]
    unsafe_run: bool,
    #[command(subcommand)]
    worker: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Internal: run as one worker process (the coordinator starts these).
    #[command(hide = true)]
    Worker {
        #[arg(long, value_enum)]
        method: Method,
        /// The shared value to increment.
        #[arg(long)]
        counter: String,
        /// The lock guarding it (for `lock-get-set`).
        #[arg(long)]
        lock: String,
        #[arg(long)]
        increments: u64,
    },
}

/// How a worker adds 1.
#[derive(Clone, Copy, ValueEnum)]
enum Method {
    /// One atomic operation on the server.
    FetchAdd,
    /// Acquire the lock, read, write, release.
    LockGetSet,
    /// Read, then write, unprotected: the race.
    GetSet,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::FetchAdd => "fetch_add",
            Method::LockGetSet => "lock+get+set",
            Method::GetSet => "get+set without lock",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Method::FetchAdd => "fetch-add",
            Method::LockGetSet => "lock-get-set",
            Method::GetSet => "get-set",
        }
    }
}

/// One worker: connects to `PROCSHARE_URL` (set by the coordinator) and counts.
fn worker(method: Method, counter: &str, lock: &str, increments: u64) -> anyhow::Result<()> {
    let m = Manager::from_env()?;
    // The coordinator created the counter already; an existing value keeps
    // what it holds, so this initial 0 does not reset it.
    let counter = m.value::<i64>(counter, &0)?;
    let lock = m.lock(lock)?;
    for _ in 0..increments {
        match method {
            Method::FetchAdd => {
                counter.fetch_add(1)?;
            }
            Method::LockGetSet => {
                // Python's `with lock:` — the guard releases on every way out
                // of this block, including an error from get or set.
                let _guard = lock.guard()?;
                let v = counter.get()?;
                counter.set(&(v + 1))?;
            }
            Method::GetSet => {
                let v = counter.get()?;
                counter.set(&(v + 1))?;
            }
        }
    }
    Ok(())
}

/// The result of one counting run.
struct Count {
    got: i64,
    expected: i64,
}

/// Creates a fresh counter and lock, lets `workers` processes count with
/// `method`, and reads the total.
fn run(
    m: &Manager,
    url: &str,
    method: Method,
    workers: usize,
    increments: u64,
) -> anyhow::Result<Count> {
    // Fresh names per run: against a long-lived server, the previous run's
    // counter still exists and would not start at 0.
    let counter_name = unique_name(&format!("counter.{}", method.arg()));
    let lock_name = format!("{counter_name}.lock");
    let counter = m.value::<i64>(&counter_name, &0)?;
    m.lock(&lock_name)?;

    let started = Instant::now();
    Workers::spawn(url, workers, |_| {
        vec![
            "worker".to_owned(),
            "--method".to_owned(),
            method.arg().to_owned(),
            "--counter".to_owned(),
            counter_name.clone(),
            "--lock".to_owned(),
            lock_name.clone(),
            "--increments".to_owned(),
            increments.to_string(),
        ]
    })?
    .wait_all()
    .with_context(|| format!("{} run", method.label()))?;
    let elapsed = started.elapsed();

    let got = counter.get()?;
    // Leave a long-lived server as we found it.
    m.delete(&counter_name)?;
    m.delete(&lock_name)?;

    let expected = (workers as u64)
        .checked_mul(increments)
        .and_then(|n| i64::try_from(n).ok())
        .context("workers × increments does not fit in an i64")?;
    let lost = match expected - got {
        0 => String::new(),
        n if n > 0 => format!(", {n} updates lost"),
        n => format!(", {} too many", -n),
    };
    println!(
        "{}: {got} (expected {expected}) in {elapsed:.2?}{lost}",
        method.label()
    );
    Ok(Count { got, expected })
}

fn main() -> ExitCode {
    procshare_examples::exit_code("counter", counter(Args::parse()))
}

fn counter(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Role::Worker {
        method,
        counter,
        lock,
        increments,
    }) = args.worker
    {
        worker(method, &counter, &lock, increments).context("worker")?;
        return Ok(ExitCode::SUCCESS);
    }

    // Declared before the manager so it is dropped after it: an embedded
    // server must outlive the connections to it.
    let server = server()?;
    let m = Manager::connect(server.url())?;
    println!(
        "counter: {} workers × {} increments, server {server}",
        args.workers, args.increments
    );

    let mut ok = true;
    for method in [Method::FetchAdd, Method::LockGetSet] {
        let count = run(&m, server.url(), method, args.workers, args.increments)?;
        ok &= count.got == count.expected;
    }
    if args.unsafe_run {
        // Shown, not checked: whether updates get lost depends on timing.
        run(
            &m,
            server.url(),
            Method::GetSet,
            args.workers,
            args.increments,
        )?;
    }

    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("counter: a protected count is wrong");
        Ok(ExitCode::FAILURE)
    }
}
