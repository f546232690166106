//! `soak`: the soak benchmark of issue 4 (not a test).
//!
//! Starts a `procshared` (in memory, `--listen 127.0.0.1:0`), then `--clients`
//! client processes (this binary re-run with the hidden `worker`
//! subcommand) that together run `--ops` mixed operations over a spread of
//! objects, while this process samples the daemon's resident set size
//! (`VmRSS` of `/proc/PID/status`) once a second.
//!
//! Each worker runs whole cycles of [`CYCLE`] calls, one call per op:
//!
//! * dict (one of [`DICTS`]): insert key `k{(w*7919 + c) % 10000}` with a
//!   32–255 byte value, get it, get the previous cycle's key, remove the key
//!   inserted [`LAG`] cycles before. The keys walk through the whole key
//!   space, so an entry (or anything kept per key) that the server failed to
//!   free would add up, while the live set stays small (about `LAG` keys per
//!   worker) from the first seconds on;
//! * list (one of [`LISTS`]): push, pop;
//! * value (one, shared): `fetch_add(1)` (checked at the end: it must equal
//!   the number of fetch_adds);
//! * queue (one of [`QUEUES`], unbounded): put, get (each worker puts before
//!   it gets, so a get never waits for long);
//! * lock (one of [`LOCKS`]): acquire, release;
//! * event (one of [`EVENTS`]): set, clear.
//!
//! Session churn: every `--churn-stride`-th worker drops its `Manager` and
//! proxies every `--reconnect-every` ops (at a cycle boundary, holding
//! nothing) and connects a new one, so that channels and sessions open and
//! close all through the run.
//!
//! Output, JSON lines on stdout: one sample a second, `{"t": secs since the
//! start signal, "rss_kb": N, "ops_done": approx}` (`t` 0 is taken with all
//! workers connected, just before the start; `ops_done` counts what the
//! workers reported, every 104 ops each), and one more right after the last
//! worker exited; then one summary line. Its RSS figures: `start`, the
//! baseline, is the first sample with at least 10 % of the ops done (so
//! that start-up, connection buffers and allocator warm-up are not counted
//! as growth); `middle` the first with at least 50 %; `end` the last sample
//! taken with every worker still running (the same load as at `start`);
//! `after` the one after the exits; `max` the highest. The verdict: `flat`
//! if `end` is within ±`--tolerance-pct` (10 %) of `start`, `grew` or
//! `shrank` otherwise. Beside it, the least-squares slope of RSS over ops
//! from `start` to `end`, in kB per 100,000 ops.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use procshare::{DictProxy, EventProxy, ListProxy, LockProxy, Manager, QueueProxy, ValueProxy};
use serde::Serialize;

/// Calls per cycle (see the module doc).
const CYCLE: u64 = 13;
/// Objects of each kind, spread over the workers by their index.
const DICTS: u64 = 4;
const LISTS: u64 = 4;
const QUEUES: u64 = 4;
const LOCKS: u64 = 8;
const EVENTS: u64 = 4;
/// Distinct dict keys.
const KEYS: u64 = 10_000;
/// A worker removes the key it inserted this many cycles before.
const LAG: u64 = 8;
/// A worker reports its progress every this many ops (rounded up to whole
/// cycles: 104).
const REPORT_EVERY: u64 = 100;
/// Name of the shared counter.
const VALUE: &str = "soak:value";
/// The baseline and middle samples: the first with this share of the ops
/// done.
const BASELINE_SHARE: f64 = 0.10;
const MIDDLE_SHARE: f64 = 0.50;

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "procshare's soak benchmark: many client processes, a million mixed ops, \
             procshared's RSS sampled every second"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The procshared to start [default: next to this executable].
    #[arg(long)]
    procshared: Option<PathBuf>,
    /// Client processes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,
    /// Operations in all (rounded up to whole cycles of 13 per client).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    /// A churning worker reconnects every this many of its ops (0: never).
    #[arg(long, default_value_t = 500)]
    reconnect_every: u64,
    /// Every this many-th worker churns (1: all of them).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    churn_stride: u64,
    /// The verdict is `flat` if the end RSS is within this many percent of
    /// the baseline.
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One client process (internal).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    #[arg(long)]
    url: String,
    /// This worker's index.
    #[arg(long)]
    k: u64,
    /// Cycles to run.
    #[arg(long)]
    cycles: u64,
    /// Reconnect every this many ops (0: never).
    #[arg(long, default_value_t = 0)]
    reconnect_every: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Worker(a)) => worker(a),
        None => soak(&cli),
    };
    if let Err(e) = result {
        eprintln!("soak: error: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- worker --

/// One connection and the worker's objects on it.
struct Objects {
    m: Manager,
    dict: DictProxy<String, String>,
    list: ListProxy<String>,
    value: ValueProxy<i64>,
    queue: QueueProxy<String>,
    lock: LockProxy,
    event: EventProxy,
}

impl Objects {
    async fn open(url: &str, k: u64) -> Result<Objects> {
        let m = Manager::connect(url)
            .await
            .with_context(|| format!("worker {k} cannot connect to {url}"))?;
        Ok(Objects {
            dict: m.dict(&format!("soak:dict{}", k % DICTS)).await?,
            list: m.list(&format!("soak:list{}", k % LISTS)).await?,
            value: m.value(VALUE, &0i64).await?,
            queue: m.queue(&format!("soak:queue{}", k % QUEUES), 0).await?,
            lock: m.lock(&format!("soak:lock{}", k % LOCKS)).await?,
            event: m.event(&format!("soak:event{}", k % EVENTS)).await?,
            m,
        })
    }
}

fn key(k: u64, cycle: u64) -> String {
    format!("k{}", (k * 7919 + cycle) % KEYS)
}

/// A value of 32 to 255 bytes, so that the allocator sees varied sizes.
fn payload(k: u64, cycle: u64) -> String {
    let len = 32 + (k * 31 + cycle * 37) % 224;
    let mut s = format!("{k}:{cycle}:");
    while s.len() < len as usize {
        s.push('x');
    }
    s
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn worker(a: WorkerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(work(a))
}

async fn work(a: WorkerArgs) -> Result<()> {
    let k = a.k;
    let mut o = Objects::open(&a.url, k).await?;
    // Barrier: connected; wait for the start byte on stdin.
    say("ready")?;
    let mut go = [0u8; 1];
    if std::io::stdin().read(&mut go)? == 0 {
        bail!("the parent closed stdin before the start signal");
    }
    let mut unreported = 0u64;
    let mut since_connect = 0u64;
    let mut reconnects = 0u64;
    for c in 0..a.cycles {
        if a.reconnect_every > 0 && since_connect >= a.reconnect_every {
            // Drop the manager and every proxy: the last handle closes the
            // session (sent on this runtime while the next connect runs).
            drop(o);
            o = Objects::open(&a.url, k).await?;
            since_connect = 0;
            reconnects += 1;
        }
        let key_now = key(k, c);
        o.dict.insert(key_now.clone(), payload(k, c)).await?;
        o.dict.get(&key_now).await?;
        o.dict.get(&key(k, c.saturating_sub(1))).await?;
        if c >= LAG {
            o.dict.remove(&key(k, c - LAG)).await?;
        } else {
            o.dict.remove(&format!("absent{k}")).await?;
        }
        o.list.push(payload(k, c)).await?;
        o.list.pop().await?;
        o.value.fetch_add(1).await?;
        o.queue.put(payload(k, c)).await?;
        o.queue.get().await?;
        o.lock.acquire().await?;
        o.lock.release().await?;
        o.event.set().await?;
        o.event.clear().await?;
        since_connect += CYCLE;
        unreported += CYCLE;
        if unreported >= REPORT_EVERY {
            say(&format!("p {unreported}"))?;
            unreported = 0;
        }
    }
    if unreported > 0 {
        say(&format!("p {unreported}"))?;
    }
    say(&format!("r {reconnects}"))?;
    // End the session now rather than by a close spawned at drop, which a
    // runtime shut down at exit might never send.
    o.m.close().await?;
    Ok(())
}

// ---------------------------------------------------------------- parent --

fn soak(cli: &Cli) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let procshared = match &cli.procshared {
        Some(p) => p.clone(),
        None => exe.with_file_name("procshared"),
    };
    let cycles = cli.ops.div_ceil(cli.clients * CYCLE);
    let ops = cycles * CYCLE * cli.clients;
    let daemon = Daemon::start(&procshared)?;
    let url = daemon.url.clone();

    let mut fleet = Fleet::default();
    let (exit_tx, exit_rx) = mpsc::channel::<(usize, std::io::Result<ExitStatus>)>();
    let mut pipes: Vec<(ChildStdin, BufReader<ChildStdout>)> = Vec::new();
    for k in 0..cli.clients {
        let churns = cli.reconnect_every > 0 && k % cli.churn_stride == 0;
        let mut child = Command::new(&exe)
            .arg("worker")
            .args(["--url", &url])
            .args(["--k", &k.to_string()])
            .args(["--cycles", &cycles.to_string()])
            .args([
                "--reconnect-every",
                &if churns { cli.reconnect_every } else { 0 }.to_string(),
            ])
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
        let tx = exit_tx.clone();
        let idx = k as usize;
        std::thread::spawn(move || {
            let _ = tx.send((idx, child.wait()));
        });
    }
    drop(exit_tx);

    // Barrier: every worker connected and waiting on its stdin (one that
    // failed first closes its stdout: an empty line).
    for (k, (_, stdout)) in pipes.iter_mut().enumerate() {
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .with_context(|| format!("reading worker {k}'s stdout"))?;
        if line != "ready\n" {
            bail!("worker {k} did not get ready (it said {line:?}; see its error above)");
        }
    }

    let ops_done = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let mut stdins = Vec::with_capacity(pipes.len());
    let mut readers: Vec<JoinHandle<()>> = Vec::with_capacity(pipes.len());
    for (stdin, stdout) in pipes {
        stdins.push(stdin);
        let ops_done = ops_done.clone();
        let reconnects = reconnects.clone();
        readers.push(std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                let (tag, n) = line.split_once(' ').unwrap_or((&line, ""));
                let Ok(n) = n.parse::<u64>() else { continue };
                match tag {
                    "p" => ops_done.fetch_add(n, Ordering::Relaxed),
                    "r" => reconnects.fetch_add(n, Ordering::Relaxed),
                    _ => continue,
                };
            }
        }));
    }

    let mut samples: Vec<Sample> = Vec::new();
    let sample = |t: f64, running: usize, samples: &mut Vec<Sample>| -> Result<()> {
        let s = Sample {
            t,
            rss_kb: daemon.rss_kb()?,
            ops_done: ops_done.load(Ordering::Relaxed),
            running,
        };
        println!(
            "{{\"t\": {}, \"rss_kb\": {}, \"ops_done\": {}}}",
            round3(s.t),
            s.rss_kb,
            s.ops_done
        );
        std::io::stdout().flush()?;
        samples.push(s);
        Ok(())
    };

    sample(0.0, cli.clients as usize, &mut samples)?;
    let t_go = Instant::now();
    for (k, stdin) in stdins.iter_mut().enumerate() {
        stdin
            .write_all(b"g")
            .with_context(|| format!("starting worker {k}"))?;
    }
    drop(stdins);

    // Sample on the second; wait for exits in between (a worker that fails
    // ends the run at once).
    let mut left = cli.clients as usize;
    let mut tick = 1u64;
    while left > 0 {
        let next = t_go + Duration::from_secs(tick);
        let now = Instant::now();
        if now >= next {
            sample(t_go.elapsed().as_secs_f64(), left, &mut samples)?;
            tick += 1;
            continue;
        }
        match exit_rx.recv_timeout(next - now) {
            Ok((k, status)) => {
                fleet.exited[k] = true;
                left -= 1;
                let status = status.with_context(|| format!("waiting for worker {k}"))?;
                if !status.success() {
                    fleet.kill_rest();
                    bail!("worker {k} failed: {status}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("lost a worker's waiter thread"),
        }
    }
    let seconds = t_go.elapsed().as_secs_f64();
    for r in readers {
        let _ = r.join();
    }
    // The end: right after the last exit, every worker's count in.
    sample(seconds, 0, &mut samples)?;

    let check = check_server(&url, cycles * cli.clients)?;
    let reported = ops_done.load(Ordering::Relaxed);
    if reported != ops {
        bail!("the workers reported {reported} ops, {ops} were due");
    }
    daemon.stop()?;

    let rss = rss_figures(&samples, ops, cli.clients as usize, cli.tolerance_pct);
    let line = Summary {
        summary: "soak",
        clients: cli.clients,
        ops,
        seconds: round3(seconds),
        ops_per_s: (ops as f64 / seconds).round(),
        reconnects: reconnects.load(Ordering::Relaxed),
        samples: samples.len(),
        rss_kb_idle: samples[0].rss_kb,
        rss,
        sessions_left: check.sessions_left,
        value: check.value,
        value_ok: check.value_ok,
    };
    println!("{}", serde_json::to_string(&line)?);
    if !check.value_ok {
        bail!(
            "{VALUE} is {} where {} fetch_adds were made",
            check.value,
            cycles * cli.clients
        );
    }
    Ok(())
}

/// The last line, in this order.
#[derive(Serialize)]
struct Summary {
    summary: &'static str,
    clients: u64,
    ops: u64,
    seconds: f64,
    ops_per_s: f64,
    /// Reconnects made by the churning workers (sessions opened and closed
    /// besides each worker's first).
    reconnects: u64,
    samples: usize,
    /// At t 0: the daemon with every worker connected, before any op.
    rss_kb_idle: u64,
    #[serde(flatten)]
    rss: Rss,
    /// Sessions still open after the last worker exited (besides the
    /// check's own): should be 0.
    sessions_left: usize,
    /// The shared counter, and whether it equals the fetch_adds made.
    value: i64,
    value_ok: bool,
}

#[derive(Serialize)]
struct Rss {
    /// The baseline: the first sample with ≥ 10 % of the ops done.
    rss_kb_start: u64,
    rss_kb_start_t: f64,
    /// The first sample with ≥ 50 % of the ops done.
    rss_kb_middle: u64,
    rss_kb_middle_t: f64,
    /// The last sample with every worker still running (under the same
    /// load as the start).
    rss_kb_end: u64,
    rss_kb_end_t: f64,
    /// Right after the last worker exited (its connections closed).
    rss_kb_after: u64,
    rss_kb_max: u64,
    /// End against start.
    growth_pct: f64,
    slope_kb_per_100k_ops: Option<f64>,
    rule: String,
    verdict: &'static str,
}

struct Sample {
    t: f64,
    rss_kb: u64,
    ops_done: u64,
    /// Workers not yet exited.
    running: usize,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The RSS figures and the verdict.
fn rss_figures(samples: &[Sample], ops: u64, clients: usize, tolerance_pct: f64) -> Rss {
    let after = samples.last().expect("there is a final sample");
    // Periodic samples only (not t 0, not the one after the exits).
    let periodic = &samples[1..samples.len() - 1];
    let at = |share: f64| {
        periodic
            .iter()
            .find(|s| s.ops_done as f64 >= share * ops as f64)
            .unwrap_or(after)
    };
    let base = at(BASELINE_SHARE);
    let middle = at(MIDDLE_SHARE);
    // A run too short for a sample under full load falls back to the
    // last one taken at all.
    let end = periodic
        .iter()
        .rev()
        .find(|s| s.running == clients)
        .or(periodic.last())
        .unwrap_or(after);
    let max = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let growth_pct = (end.rss_kb as f64 - base.rss_kb as f64) / base.rss_kb as f64 * 100.0;
    let verdict = if growth_pct.abs() <= tolerance_pct {
        "flat"
    } else if growth_pct > 0.0 {
        "grew"
    } else {
        "shrank"
    };
    // Least-squares slope of RSS over ops done, from the baseline to the
    // end: a slow leak shows here before it crosses the tolerance.
    let tail: Vec<&Sample> = periodic
        .iter()
        .filter(|s| s.t >= base.t && s.t <= end.t)
        .collect();
    let slope = slope_kb_per_100k_ops(&tail);
    Rss {
        rss_kb_start: base.rss_kb,
        rss_kb_start_t: round3(base.t),
        rss_kb_middle: middle.rss_kb,
        rss_kb_middle_t: round3(middle.t),
        rss_kb_end: end.rss_kb,
        rss_kb_end_t: round3(end.t),
        rss_kb_after: after.rss_kb,
        rss_kb_max: max,
        growth_pct: (growth_pct * 100.0).round() / 100.0,
        slope_kb_per_100k_ops: slope.map(|s| (s * 10.0).round() / 10.0),
        rule: format!(
            "flat if rss_kb_end is within ±{tolerance_pct}% of rss_kb_start, \
             the first sample with ≥{:.0}% of the ops done",
            BASELINE_SHARE * 100.0
        ),
        verdict,
    }
}

fn slope_kb_per_100k_ops(samples: &[&Sample]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.ops_done as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.rss_kb as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in samples {
        let dx = s.ops_done as f64 - mx;
        sxy += dx * (s.rss_kb as f64 - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx * 100_000.0)
}

struct Check {
    sessions_left: usize,
    value: i64,
    value_ok: bool,
}

/// After the run: the sessions still open on the server (besides this
/// check's own), and the shared counter against the fetch_adds made.
fn check_server(url: &str, fetch_adds: u64) -> Result<Check> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let m = Manager::connect(url).await?;
        let sessions = m.sessions().await?;
        let sessions_left = sessions.as_array().map_or(0, |a| a.len().saturating_sub(1));
        let value = m.value(VALUE, &0i64).await?.get().await?;
        m.close().await?;
        Ok(Check {
            sessions_left,
            value,
            value_ok: u64::try_from(value).ok() == Some(fetch_adds),
        })
    })
}

// ---------------------------------------------------------------- daemon --

/// The `procshared` of the run (in memory, TCP on a free port), stopped
/// with SIGTERM at the end (killed on an error path).
struct Daemon {
    child: Child,
    url: String,
    // Held open so that the daemon never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    fn start(path: &Path) -> Result<Daemon> {
        let mut child = Command::new(path)
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with `cargo build --release -p procshare-server`, \
                     or pass --procshared PATH)",
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

    /// `VmRSS` now, in kB.
    fn rss_kb(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .with_context(|| format!("no VmRSS in {path}"))
    }

    fn stop(mut self) -> Result<()> {
        self.terminate();
        let status = self.child.wait()?;
        if !status.success() {
            bail!("procshared exited with {status} after SIGTERM");
        }
        Ok(())
    }

    fn terminate(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let _ = self.child.wait();
        }
    }
}

// ----------------------------------------------------------------- fleet --

/// The live workers; kills whatever is still running when dropped, so that
/// an error never leaves processes behind.
#[derive(Default)]
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
