//! The hidden `worker` subcommand: one client process of a multi-process
//! workload. It connects and opens its objects, prints `ready`, waits for
//! one byte on stdin (the start signal), runs its `n` ops and exits 0.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Job {
    /// `concurrent_dict_mix`: alternate get/set on key `(k*7919+i) % 1000`.
    Mix,
    /// `lock_counter`: acquire, read the counter, write counter+1, release.
    Lock,
    /// `queue_producer_consumer`: worker 0 gets `n` items, worker 1 puts
    /// `0..n`.
    Queue,
    /// `scaling_*`: the mix with `--value-size`-byte string values, each
    /// call timed; prints its latency histogram.
    Scale,
    /// `pipelined_dict_mix`: the mix from `--inflight` tasks at once over
    /// this process's one connection.
    Pipeline,
    /// `batched_dict_mix`: the mix in `Batch` calls of `--batch` ops,
    /// `--inflight` calls at once over one connection.
    Batch,
    /// `idle_clients_waiters`: `--idle` idle clients and `--waiters` calls
    /// blocked on an event and a queue.
    Crowd,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum)]
    pub job: Job,
    /// Operations (loop iterations) to run.
    #[arg(long)]
    pub n: u64,
    /// This worker's index.
    #[arg(long, default_value_t = 0)]
    pub k: u64,
    /// The object: the shared dict (mix), the counter's dict (lock), or the
    /// queue (queue).
    #[arg(long)]
    pub name: String,
    /// The lock (lock job only).
    #[arg(long)]
    pub lock: Option<String>,
    /// Bytes of each value (scale job).
    #[arg(long, default_value_t = 16)]
    pub value_size: usize,
    /// Calls in flight at once (pipeline and batch jobs).
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Ops per `Batch` call (batch job).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Idle clients to open (crowd job).
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// Blocked calls to make (crowd job).
    #[arg(long, default_value_t = 0)]
    pub waiters: usize,
    /// This worker's first waiter's index among all workers' (crowd job):
    /// even indexes wait on the event, odd ones on the queue.
    #[arg(long, default_value_t = 0)]
    pub first_waiter: usize,
    /// Connections that carry the waiters (crowd job).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// The session lease of the idle clients, in seconds (crowd job).
    #[arg(long, default_value_t = 30)]
    pub lease_secs: u64,
}

/// The key under which `lock_counter` keeps its counter.
pub const COUNTER_KEY: &str = "n";

/// Prints `line` (the worker's result) on stdout for the parent.
pub fn report(line: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

pub fn main(a: WorkerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(a))
}

pub fn ready_then_wait_for_go() -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    drop(out);
    let mut go = [0u8; 1];
    // A blocking read: the process has nothing else to do until the start.
    let got = std::io::stdin().read(&mut go)?;
    if got == 0 {
        bail!("the parent closed stdin before the start signal");
    }
    Ok(())
}

async fn run(a: WorkerArgs) -> Result<()> {
    match a.job {
        Job::Scale => return crate::scaling::worker(&a).await,
        Job::Pipeline => return crate::pipeline::pipelined_worker(&a).await,
        Job::Batch => return crate::pipeline::batched_worker(&a).await,
        Job::Crowd => return crate::crowd::worker(&a).await,
        Job::Mix | Job::Lock | Job::Queue => {}
    }
    let m = procshare::Manager::connect(&a.url)
        .await
        .with_context(|| format!("worker {} cannot connect to {}", a.k, a.url))?;
    match a.job {
        Job::Mix => {
            let d = m.dict::<i64, i64>(&a.name).await?;
            ready_then_wait_for_go()?;
            let k = a.k as i64;
            for i in 0..a.n as i64 {
                let key = (k * 7919 + i) % 1000;
                if i % 2 == 1 {
                    d.insert(key, i).await?;
                } else {
                    d.get(&key).await?;
                }
            }
        }
        Job::Lock => {
            let Some(lock_name) = a.lock.as_deref() else {
                bail!("the lock job needs --lock");
            };
            let lock = m.lock(lock_name).await?;
            let counter = m.dict::<String, i64>(&a.name).await?;
            let key = COUNTER_KEY.to_owned();
            ready_then_wait_for_go()?;
            for _ in 0..a.n {
                lock.acquire().await?;
                let Some(v) = counter.get(&key).await? else {
                    bail!("counter {:?}[{key:?}] is missing", a.name);
                };
                counter.insert(key.clone(), v + 1).await?;
                lock.release().await?;
            }
        }
        Job::Queue => {
            // Unbounded, like the anchor's `queue.Queue()`.
            let q = m.queue::<i64>(&a.name, 0).await?;
            ready_then_wait_for_go()?;
            if a.k == 0 {
                for i in 0..a.n as i64 {
                    let got = q.get().await?;
                    if got != i {
                        bail!(
                            "queue {:?}: got {got} where {i} was due (FIFO order)",
                            a.name
                        );
                    }
                }
            } else {
                for i in 0..a.n as i64 {
                    q.put(i).await?;
                }
            }
        }
        Job::Scale | Job::Pipeline | Job::Batch | Job::Crowd => bail!("job handled above"),
    }
    Ok(())
}

/// The arguments after `worker` for worker `k` of a `job`, `n` ops on the
/// object `name`.
pub fn args(url: &str, job: &str, n: u64, k: usize, name: &str) -> Vec<String> {
    vec![
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
    ]
}
