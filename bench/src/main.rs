//! `procshare-bench`: procshare's side of the benchmark in SPEC §6.
//!
//! Runs the workloads of `shared/anchors/python_manager_bench.py` with the
//! same op counts and key patterns against a `procshared` (the one at
//! `--url`, or one it starts), and prints one JSON line per workload in the
//! anchor's format. `bench/run.sh` runs it beside the anchors.

mod daemon;
mod fleet;
mod row;
mod seq;
mod worker;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::row::Row;
use crate::seq::SeqClient;
use crate::worker::{Job, WorkerArgs, COUNTER_KEY};

#[derive(Debug, Parser)]
#[command(
    name = "procshare-bench",
    about = "procshare's benchmark: the workloads of python_manager_bench.py, as JSON lines"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// A running procshared; without it, one is started for the run.
    #[arg(long)]
    url: Option<String>,
    /// The procshared to start [default: next to this executable].
    #[arg(long)]
    procshared: Option<PathBuf>,
    /// Counts divided by 10, like the anchor's --quick.
    #[arg(long)]
    quick: bool,
    /// Client processes of concurrent_dict_mix.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Contending processes of lock_counter.
    #[arg(long, default_value_t = 8)]
    contenders: usize,
    /// The client of the sequential workloads.
    #[arg(long, value_enum, default_value_t = SeqClient::CurrentThread)]
    seq_client: SeqClient,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One client process of a multi-process workload (internal).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Worker(a)) => worker::main(a),
        None => bench(&cli),
    };
    if let Err(e) = result {
        eprintln!("procshare-bench: error: {e:#}");
        std::process::exit(1);
    }
}

/// Object names unique to this run, so that runs against one server (or a
/// server used by others) do not meet.
struct Names {
    dict: String,
    lock: String,
    counter: String,
    queue: String,
}

impl Names {
    fn new() -> Names {
        let tag = format!("procshare-bench-{}", std::process::id());
        Names {
            dict: format!("{tag}-dict"),
            lock: format!("{tag}-lock"),
            counter: format!("{tag}-counter"),
            queue: format!("{tag}-queue"),
        }
    }
}

fn bench(cli: &Cli) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let daemon = match &cli.url {
        Some(_) => None,
        None => {
            let path = match &cli.procshared {
                Some(p) => p.clone(),
                None => exe.with_file_name("procshared"),
            };
            Some(daemon::Daemon::start(&path)?)
        }
    };
    let url = match (&cli.url, &daemon) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => d.url().to_owned(),
        (None, None) => unreachable!("a daemon is started when there is no --url"),
    };
    let scale = if cli.quick { 10 } else { 1 };
    let names = Names::new();

    // The anchor's order: seq_dict, concurrent_dict, lock_handoff, queue_pipe.
    seq::run(cli.seq_client, &url, &names.dict, 20_000 / scale)?;
    concurrent_dict(&exe, &url, &names, cli.clients, 2_000 / scale)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let m = rt.block_on(procshare::Manager::connect(&url))?;
    let counter = rt.block_on(m.dict::<String, i64>(&names.counter))?;
    rt.block_on(counter.insert(COUNTER_KEY.to_owned(), 0))?;
    lock_counter(&exe, &url, &names, cli.contenders, 2_000 / scale, || {
        rt.block_on(counter.get(&COUNTER_KEY.to_owned()))
            .map_err(Into::into)
    })?;

    queue_pipe(&exe, &url, &names, 20_000 / scale)?;
    let left = rt.block_on(m.queue::<i64>(&names.queue, 0))?;
    let left = rt.block_on(left.qsize())?;
    if left != 0 {
        bail!("queue_producer_consumer left {left} items in the queue");
    }

    for name in [&names.dict, &names.lock, &names.counter, &names.queue] {
        rt.block_on(m.delete(name))
            .with_context(|| format!("deleting {name:?}"))?;
    }
    drop((counter, m, rt));
    if let Some(d) = daemon {
        d.stop()?;
    }
    Ok(())
}

fn concurrent_dict(
    exe: &std::path::Path,
    url: &str,
    names: &Names,
    clients: usize,
    n: u64,
) -> Result<()> {
    let t = fleet::run(exe, clients, |k| {
        worker_args(url, Job::Mix, n, k, &names.dict, None)
    })?;
    let ops = clients as u64 * n;
    let mut row = Row::new("concurrent_dict_mix", ops, t.total.as_secs_f64())
        .split(t.startup.as_secs_f64(), t.work.as_secs_f64());
    row.clients = Some(clients);
    row.emit();
    Ok(())
}

fn lock_counter(
    exe: &std::path::Path,
    url: &str,
    names: &Names,
    contenders: usize,
    n: u64,
    read_counter: impl FnOnce() -> Result<Option<i64>>,
) -> Result<()> {
    let t = fleet::run(exe, contenders, |k| {
        worker_args(url, Job::Lock, n, k, &names.counter, Some(&names.lock))
    })?;
    let ops = contenders as u64 * n;
    let final_count = read_counter()?;
    if final_count != Some(ops as i64) {
        bail!(
            "lock_counter LOST INCREMENTS: the counter is {final_count:?}, expected {ops} \
             ({contenders} contenders x {n}): the lock did not exclude"
        );
    }
    let mut row = Row::new("lock_counter", ops, t.total.as_secs_f64())
        .split(t.startup.as_secs_f64(), t.work.as_secs_f64());
    row.contenders = Some(contenders);
    row.emit();
    Ok(())
}

fn queue_pipe(exe: &std::path::Path, url: &str, names: &Names, n: u64) -> Result<()> {
    // Worker 0 consumes, worker 1 produces: the anchor starts the consumer
    // first too.
    let t = fleet::run(exe, 2, |k| {
        worker_args(url, Job::Queue, n, k, &names.queue, None)
    })?;
    Row::new("queue_producer_consumer", n, t.total.as_secs_f64())
        .split(t.startup.as_secs_f64(), t.work.as_secs_f64())
        .emit();
    Ok(())
}

fn worker_args(
    url: &str,
    job: Job,
    n: u64,
    k: usize,
    name: &str,
    lock: Option<&str>,
) -> Vec<String> {
    let job = match job {
        Job::Mix => "mix",
        Job::Lock => "lock",
        Job::Queue => "queue",
    };
    let mut args = vec![
        "--url".into(),
        url.into(),
        "--job".into(),
        job.into(),
        "--n".into(),
        n.to_string(),
        "--k".into(),
        k.to_string(),
        "--name".into(),
        name.into(),
    ];
    if let Some(lock) = lock {
        args.extend(["--lock".into(), lock.into()]);
    }
    args
}
