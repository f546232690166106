//! `procshare-bench`: procshare's side of the benchmark in SPEC §6.
//!
//! Runs the workloads of `shared/anchors/python_manager_bench.py` with the
//! same op counts and key patterns against a `procshared` (the one at
//! `--url`, or one it starts), and prints one JSON line per workload in the
//! anchor's format. `bench/run.sh` runs it beside the anchors.
//!
//! Beside them: the sequential workloads over a Unix socket (issue 5), the
//! 64-client mix against three fresh `procshared`s, in memory, with a data
//! dir and `--fsync every-second`, and with `--fsync always` (issue 6), and
//! the restart time of a data dir holding a million dict entries (issue 6).
//! The last two always start their own `procshared`s, with fresh data dirs
//! under `--tmp-dir`, removed after.
//!
//! And the rest of SPEC §6 (issue 7): many calls in flight and `Batch`
//! calls (`pipeline`), scaling curves against client count and value size
//! (`scaling`), 10,000 idle clients plus 10,000 blocked waiters (`crowd`)
//! and the RSS of 1,000,000 small dict entries (`memory`), the last two
//! against fresh `procshared`s of their own.

mod cpu;
mod crowd;
mod daemon;
mod fleet;
mod hist;
mod memory;
mod pipeline;
mod restart;
mod row;
mod scaling;
mod seq;
mod tmp;
mod worker;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::daemon::{Daemon, Spec};
use crate::row::Row;
use crate::seq::{SeqClient, Transport};
use crate::tmp::TempDir;
use crate::worker::{WorkerArgs, COUNTER_KEY};

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
    /// With --url: the same server's Unix socket (`unix:///path`), for the
    /// `_unix` sequential workloads. Without --url, the started procshared
    /// also listens on a Unix socket.
    #[arg(long, requires = "url")]
    unix_url: Option<String>,
    /// Skip the sequential workloads over a Unix socket.
    #[arg(long)]
    no_unix: bool,
    /// Skip the 64-client mix against fresh procshareds in memory, with
    /// `--fsync every-second` and with `--fsync always`.
    #[arg(long)]
    no_durable: bool,
    /// Rotate the order of those three by N (run.sh passes its run number
    /// minus one, so that over 3 runs each comes first, second and third
    /// once).
    #[arg(long, value_name = "N", default_value_t = 0)]
    durable_rotate: usize,
    /// Run the restart workloads only (= `--only restart`).
    #[arg(long)]
    restart_only: bool,
    /// Run only these groups of workloads (comma-separated). The `--no-*`
    /// flags and zero counts still apply within them.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// Dict entries of the restart workloads; 0 skips them. [default:
    /// 1000000, 100000 with --quick]
    #[arg(long, value_name = "N")]
    restart_entries: Option<u64>,
    /// Concurrent clients filling the restart data dir.
    #[arg(long, default_value_t = 8)]
    restart_writers: usize,
    /// Entries per `update` call when filling the restart data dir.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    restart_chunk: u64,
    /// Skip `pipelined_dict_mix` and `batched_dict_mix`.
    #[arg(long)]
    no_pipeline: bool,
    /// Client processes of the pipelined and batched workloads.
    #[arg(long, default_value_t = 4)]
    pipeline_procs: usize,
    /// Calls in flight per process in `pipelined_dict_mix`.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Ops of `pipelined_dict_mix`, over all processes. [default: 200000,
    /// 20000 with --quick]
    #[arg(long)]
    pipeline_ops: Option<u64>,
    /// Ops per `Batch` call in `batched_dict_mix`.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// `Batch` calls in flight per process.
    #[arg(long, default_value_t = 4)]
    batch_inflight: usize,
    /// Ops of `batched_dict_mix`, over all processes. [default: 1000000,
    /// 100000 with --quick]
    #[arg(long)]
    batch_ops: Option<u64>,
    /// Skip the scaling curves.
    #[arg(long)]
    no_scaling: bool,
    /// Calls per point of the scaling curves (at least 20 per process, 4
    /// with --quick). [default: 20000, 1000 with --quick]
    #[arg(long)]
    scaling_ops: Option<u64>,
    /// Idle clients of `idle_clients_waiters`; 0 skips it. [default: 10000,
    /// 200 with --quick]
    #[arg(long)]
    idle: Option<usize>,
    /// Blocked waiters of `idle_clients_waiters`. [default: 10000, 200 with
    /// --quick]
    #[arg(long)]
    waiters: Option<usize>,
    /// Worker processes of `idle_clients_waiters`. [default: 20, 4 with
    /// --quick]
    #[arg(long)]
    crowd_procs: Option<usize>,
    /// Connections carrying the waiters, over all processes. [default:
    /// 100, 4 with --quick]
    #[arg(long)]
    crowd_conns: Option<usize>,
    /// The session lease the idle clients ask for, in seconds (they send a
    /// keep-alive every third of it).
    #[arg(long, default_value_t = 30)]
    idle_lease_secs: u64,
    /// Entries of `dict_1m_entries`; 0 skips it. [default: 1000000, 100000
    /// with --quick]
    #[arg(long)]
    memory_entries: Option<u64>,
    /// Where the data dirs and the Unix socket go (in fresh directories,
    /// removed after). Not a tmpfs, or fsync costs nothing.
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    tmp_dir: PathBuf,
}

/// The groups of workloads, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// The anchor's workloads (sequential, the 64-process mix and its
    /// durable variants, lock counter, queue).
    Anchor,
    /// `pipelined_dict_mix` and `batched_dict_mix`.
    Pipeline,
    /// The scaling curves.
    Scaling,
    /// `idle_clients_waiters`.
    Crowd,
    /// `dict_1m_entries`.
    Memory,
    /// The restart workloads.
    Restart,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One client process of a multi-process workload (internal).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

impl Cli {
    fn wants(&self, g: Group) -> bool {
        if self.restart_only {
            return g == Group::Restart;
        }
        self.only.is_empty() || self.only.contains(&g)
    }
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
    let procshared = match &cli.procshared {
        Some(p) => p.clone(),
        None => exe.with_file_name("procshared"),
    };
    let tmp = TempDir::new(&cli.tmp_dir, "run")?;
    let scale = if cli.quick { 10 } else { 1 };
    let quick = cli.quick;
    if [Group::Anchor, Group::Pipeline, Group::Scaling]
        .iter()
        .any(|&g| cli.wants(g))
    {
        workloads(cli, &exe, &procshared, tmp.path(), scale)?;
    }
    {
        let idle = cli.idle.unwrap_or(if quick { 200 } else { 10_000 });
        if idle > 0 && cli.wants(Group::Crowd) {
            let p = crowd::Params {
                idle,
                waiters: cli.waiters.unwrap_or(if quick { 200 } else { 10_000 }),
                procs: cli.crowd_procs.unwrap_or(if quick { 4 } else { 20 }),
                conns: cli.crowd_conns.unwrap_or(if quick { 4 } else { 100 }),
                lease_secs: cli.idle_lease_secs,
                deadline: std::time::Duration::from_secs(if quick { 60 } else { 240 }),
            };
            crowd::run(&exe, &procshared, &p)?;
        }
        let entries = cli.memory_entries.unwrap_or(1_000_000 / scale);
        if entries > 0 && cli.wants(Group::Memory) {
            memory::run(&procshared, entries)?;
        }
    }
    let entries = cli.restart_entries.unwrap_or(1_000_000 / scale);
    if entries > 0 && cli.wants(Group::Restart) {
        let params = restart::Params {
            entries,
            writers: cli.restart_writers.max(1),
            chunk: cli.restart_chunk,
        };
        restart::run(&procshared, tmp.path(), &params)?;
    }
    drop(tmp);
    Ok(())
}

/// The workloads on one long-lived `procshared`: the anchor's, then the
/// pipelined and batched ones and the scaling curves.
fn workloads(cli: &Cli, exe: &Path, procshared: &Path, tmp: &Path, scale: u64) -> Result<()> {
    let daemon = match &cli.url {
        Some(_) => None,
        None => {
            let spec = Spec {
                unix: (!cli.no_unix).then(|| tmp.join("procshared.sock")),
                ..Spec::default()
            };
            Some(Daemon::start(procshared, &spec)?)
        }
    };
    let (url, unix_url) = match (&cli.url, &daemon) {
        (Some(u), _) => (u.clone(), cli.unix_url.clone()),
        (None, Some(d)) => (d.url().to_owned(), d.unix_url().map(str::to_owned)),
        (None, None) => unreachable!("a daemon is started when there is no --url"),
    };
    let unix_url = unix_url.filter(|_| !cli.no_unix);
    let names = Names::new();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let m = rt.block_on(procshare::Manager::connect(&url))?;
    if cli.wants(Group::Anchor) {
        anchor(
            cli,
            exe,
            procshared,
            tmp,
            scale,
            (&url, unix_url.as_deref()),
            &names,
        )?;
    }

    if !cli.no_pipeline && cli.wants(Group::Pipeline) {
        let procs = cli.pipeline_procs.max(1);
        let p = pipeline::Params {
            procs,
            inflight: cli.inflight.max(1),
            ops: cli.pipeline_ops.unwrap_or(200_000 / scale),
            batch: cli.batch,
        };
        pipeline::pipelined(exe, &url, &names.dict, &p)?;
        let p = pipeline::Params {
            procs,
            inflight: cli.batch_inflight.max(1),
            ops: cli.batch_ops.unwrap_or(1_000_000 / scale),
            batch: cli.batch.max(1),
        };
        pipeline::batched(exe, &url, &names.dict, &p)?;
    }
    if !cli.no_scaling && cli.wants(Group::Scaling) {
        let p = scaling::Params {
            ops: cli
                .scaling_ops
                .unwrap_or(if cli.quick { 1_000 } else { 20_000 }),
            min_per_client: if cli.quick { 4 } else { 20 },
        };
        scaling::run(exe, &url, &names.dict, &p)?;
    }

    for name in [&names.dict, &names.lock, &names.counter, &names.queue] {
        match rt.block_on(m.delete(name)) {
            // Not every group makes every object.
            Ok(()) | Err(procshare::Error::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {name:?}")),
        }
    }
    drop((m, rt));
    if let Some(d) = daemon {
        d.stop()?;
    }
    Ok(())
}

/// The anchor's workloads, in its order: seq_dict, concurrent_dict,
/// lock_handoff, queue_pipe; each with its variants right after it.
fn anchor(
    cli: &Cli,
    exe: &Path,
    procshared: &Path,
    tmp: &Path,
    scale: u64,
    (url, unix_url): (&str, Option<&str>),
    names: &Names,
) -> Result<()> {
    let seq_n = 20_000 / scale;
    seq::run(cli.seq_client, Transport::Tcp, url, &names.dict, seq_n)?;
    if let Some(unix_url) = unix_url {
        seq::run(
            cli.seq_client,
            Transport::Unix,
            unix_url,
            &names.dict,
            seq_n,
        )?;
    }
    let mix = Mix {
        exe,
        clients: cli.clients,
        n: 2_000 / scale,
        dict: &names.dict,
    };
    mix.run(url, "concurrent_dict_mix", "memory")?;
    if !cli.no_durable {
        let mut modes = [None, Some("every-second"), Some("always")];
        let by = cli.durable_rotate % modes.len();
        modes.rotate_left(by);
        for fsync in modes {
            durable_mix(&mix, procshared, tmp, fsync)?;
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let m = rt.block_on(procshare::Manager::connect(url))?;
    let counter = rt.block_on(m.dict::<String, i64>(&names.counter))?;
    rt.block_on(counter.insert(COUNTER_KEY.to_owned(), 0))?;
    lock_counter(exe, url, names, cli.contenders, 2_000 / scale, || {
        rt.block_on(counter.get(&COUNTER_KEY.to_owned()))
            .map_err(Into::into)
    })?;

    queue_pipe(exe, url, names, 20_000 / scale)?;
    let left = rt.block_on(m.queue::<i64>(&names.queue, 0))?;
    let left = rt.block_on(left.qsize())?;
    if left != 0 {
        bail!("queue_producer_consumer left {left} items in the queue");
    }

    Ok(())
}

/// `concurrent_dict_mix`: `clients` processes, `n` ops each, on `dict`.
struct Mix<'a> {
    exe: &'a Path,
    clients: usize,
    n: u64,
    dict: &'a str,
}

impl Mix<'_> {
    fn run(&self, url: &str, workload: &'static str, durability: &'static str) -> Result<()> {
        let t = fleet::run(self.exe, self.clients, |k| {
            worker_args(url, "mix", self.n, k, self.dict, None)
        })?;
        let ops = self.clients as u64 * self.n;
        let mut row = Row::new(workload, ops, t.total.as_secs_f64()).fleet(&t);
        row.clients = Some(self.clients);
        row.durability = Some(durability);
        row.emit();
        Ok(())
    }
}

/// The same mix against a fresh `procshared`: in memory (`fsync` None), or
/// with a fresh data dir and `--fsync fsync`. Its dict is first given the
/// 1,000 keys the main run finds (left there by the sequential workloads),
/// so that gets hit.
fn durable_mix(
    mix: &Mix,
    procshared: &Path,
    tmp: &Path,
    fsync: Option<&'static str>,
) -> Result<()> {
    let dir = match fsync {
        Some(f) => Some(TempDir::new(tmp, &format!("fsync-{f}"))?),
        None => None,
    };
    let spec = Spec {
        data_dir: dir.as_ref().map(|d| d.path().join("data")),
        fsync,
        ..Spec::default()
    };
    let d = Daemon::start(procshared, &spec)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let m = procshare::Manager::connect(d.url()).await?;
        let dict = m.dict::<i64, i64>(mix.dict).await?;
        dict.update((0..1000).map(|k| (k, k))).await?;
        anyhow::Ok(())
    })?;
    let (workload, durability) = match fsync {
        None => ("concurrent_dict_mix_memory", "memory"),
        Some("always") => ("concurrent_dict_mix_fsync_always", "always"),
        Some(_) => ("concurrent_dict_mix_fsync_every_second", "every-second"),
    };
    mix.run(d.url(), workload, durability)?;
    drop(rt);
    d.stop()?;
    drop(dir);
    Ok(())
}

fn lock_counter(
    exe: &Path,
    url: &str,
    names: &Names,
    contenders: usize,
    n: u64,
    read_counter: impl FnOnce() -> Result<Option<i64>>,
) -> Result<()> {
    let t = fleet::run(exe, contenders, |k| {
        worker_args(url, "lock", n, k, &names.counter, Some(&names.lock))
    })?;
    let ops = contenders as u64 * n;
    let final_count = read_counter()?;
    if final_count != Some(ops as i64) {
        bail!(
            "lock_counter LOST INCREMENTS: the counter is {final_count:?}, expected {ops} \
             ({contenders} contenders x {n}): the lock did not exclude"
        );
    }
    let mut row = Row::new("lock_counter", ops, t.total.as_secs_f64()).fleet(&t);
    row.contenders = Some(contenders);
    row.emit();
    Ok(())
}

fn queue_pipe(exe: &Path, url: &str, names: &Names, n: u64) -> Result<()> {
    // Worker 0 consumes, worker 1 produces: the anchor starts the consumer
    // first too.
    let t = fleet::run(exe, 2, |k| {
        worker_args(url, "queue", n, k, &names.queue, None)
    })?;
    Row::new("queue_producer_consumer", n, t.total.as_secs_f64())
        .fleet(&t)
        .emit();
    Ok(())
}

fn worker_args(
    url: &str,
    job: &str,
    n: u64,
    k: usize,
    name: &str,
    lock: Option<&str>,
) -> Vec<String> {
    let mut args = worker::args(url, job, n, k, name);
    if let Some(lock) = lock {
        args.extend(["--lock".into(), lock.into()]);
    }
    args
}
