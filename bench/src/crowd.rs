//! 10,000 idle clients plus 10,000 blocked waiters (issue 7; SPEC §6:
//! "server RSS ≤ 200 MB, all served"), against a fresh in-memory
//! `procshared` of its own.
//!
//! * **Idle clients**: `idle` `Manager`s, each its own connection and
//!   session, kept alive by the client's background keep-alive (lease
//!   `lease_secs`), making no call once connected. They are spread evenly
//!   over `procs` worker processes, which connect at most 16 at a time each.
//! * **Waiters**: `waiters` calls blocked at once, even-numbered ones in
//!   `event.wait()` on one event, odd ones in `queue.get()` on one empty
//!   queue. They are carried by `conns` further `Manager`s (connections and
//!   sessions) spread over the same processes, `waiters / conns` calls in
//!   flight on each (HTTP/2 streams; servers commonly allow 100–200 per
//!   connection).
//!
//! The parent polls the server (`describe` of the event and the queue)
//! until every waiter is blocked there, then reads `procshared`'s
//! `/proc/PID/status`: `VmRSS` now, `Threads`, and the live sessions; then
//! sets the event and puts one item per queue waiter (`0..n`), and every
//! worker checks its waits came back (event: `true`; queue: the items, whose
//! sum must be the sum of `0..n`). `VmHWM` (the peak RSS over the server's
//! life) is read at the end.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::daemon::{Daemon, Spec};
use crate::fleet;
use crate::row::{mib, round, Row};
use crate::worker::{self, WorkerArgs};

pub struct Params {
    pub idle: usize,
    pub waiters: usize,
    pub procs: usize,
    pub conns: usize,
    pub lease_secs: u64,
    /// How long the waiters may take to be all blocked.
    pub deadline: Duration,
}

/// Worker `k`'s share of `total` spread over `parts`.
fn share(total: usize, parts: usize, k: usize) -> usize {
    total / parts + usize::from(k < total % parts)
}

pub fn run(exe: &Path, procshared: &Path, p: &Params) -> Result<()> {
    let procs = p.procs.max(1);
    let conns = p.conns.max(procs).min(p.waiters.max(procs));
    let d = Daemon::start(procshared, &Spec::default())?;
    let url = d.url().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let names = format!("procshare-bench-{}-crowd", std::process::id());
    let (ev_name, q_name) = (format!("{names}-event"), format!("{names}-queue"));
    let m = rt.block_on(procshare::Manager::connect(&url))?;
    let event = rt.block_on(m.event(&ev_name))?;
    let queue = rt.block_on(m.queue::<i64>(&q_name, 0))?;
    let rss_before = d.status_kib("VmRSS")? * 1024;
    let n_event = p.waiters.div_ceil(2);
    let n_queue = p.waiters / 2;

    let blocked_after = Cell::new(Duration::ZERO);
    let released_at = Cell::new(None::<Instant>);
    let at_peak = Cell::new((0u64, 0u64, None::<usize>));
    let t = fleet::run_during(
        exe,
        procs,
        |k| {
            let first = (0..k).map(|j| share(p.waiters, procs, j)).sum::<usize>();
            let mut a = worker::args(&url, "crowd", 0, k, &names);
            a.extend([
                "--idle".into(),
                share(p.idle, procs, k).to_string(),
                "--waiters".into(),
                share(p.waiters, procs, k).to_string(),
                "--first-waiter".into(),
                first.to_string(),
                "--conns".into(),
                share(conns, procs, k).max(1).to_string(),
                "--lease-secs".into(),
                p.lease_secs.to_string(),
            ]);
            a
        },
        || {
            let go = Instant::now();
            rt.block_on(async {
                loop {
                    let ev = waiters(&m.describe(&ev_name).await?);
                    let q = waiters(&m.describe(&q_name).await?);
                    if ev == n_event && q == n_queue {
                        break;
                    }
                    if go.elapsed() > p.deadline {
                        bail!(
                            "after {:?}, {ev} of {n_event} event waiters and {q} of {n_queue} \
                             queue waiters are blocked",
                            p.deadline
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                anyhow::Ok(())
            })?;
            blocked_after.set(go.elapsed());
            let sessions = rt
                .block_on(m.sessions())
                .ok()
                .and_then(|s| s.as_array().map(Vec::len));
            at_peak.set((
                d.status_kib("VmRSS")? * 1024,
                d.status_kib("Threads")?,
                sessions,
            ));
            released_at.set(Some(Instant::now()));
            rt.block_on(async {
                event.set().await?;
                for i in 0..n_queue as i64 {
                    queue.put(i).await?;
                }
                anyhow::Ok(())
            })
        },
    )?;
    let release = released_at.get().map(|r| r.elapsed());
    let hwm = d.status_kib("VmHWM")? * 1024;

    let (mut ev_ok, mut q_got, mut q_sum) = (0u64, 0u64, 0i64);
    for (k, out) in t.outputs.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("crowd worker {k} printed {out:?}"))?;
        ev_ok += line["event"].as_u64().unwrap_or(0);
        q_got += line["queue"].as_u64().unwrap_or(0);
        q_sum += line["sum"].as_i64().unwrap_or(0);
    }
    let want_sum = (0..n_queue as i64).sum::<i64>();
    ensure!(
        ev_ok == n_event as u64 && q_got == n_queue as u64 && q_sum == want_sum,
        "waiters not all served: event {ev_ok} of {n_event}, queue {q_got} of {n_queue} \
         (item sum {q_sum}, want {want_sum})"
    );
    let left = rt.block_on(queue.qsize())?;
    ensure!(left == 0, "{left} items left in the queue");

    let (rss, threads, sessions) = at_peak.get();
    let mut row = Row::new(
        "idle_clients_waiters",
        p.waiters as u64,
        t.total.as_secs_f64(),
    );
    row.clients = Some(p.idle);
    row.waiters = Some(p.waiters);
    row.processes = Some(procs);
    row.connections = Some(p.idle + conns + 1);
    row.sessions = sessions;
    row.startup_seconds = Some(round(t.startup.as_secs_f64(), 4));
    row.blocked_seconds = Some(round(blocked_after.get().as_secs_f64(), 4));
    row.release_seconds = release.map(|r| round(r.as_secs_f64(), 4));
    row.baseline_rss_mib = Some(mib(rss_before));
    row.rss_mib = Some(mib(rss));
    row.peak_rss_mib = Some(mib(hwm));
    row.threads = Some(threads);
    row.served = Some(ev_ok + q_got);
    row.emit();
    drop((event, queue, m, rt));
    d.stop()
}

fn waiters(describe: &serde_json::Value) -> usize {
    describe["waiters"].as_u64().unwrap_or(0) as usize
}

/// One worker process: its idle clients, its waiters' connections, then
/// (after the start signal) its waits.
pub async fn worker(a: &WorkerArgs) -> Result<()> {
    let lease = Duration::from_secs(a.lease_secs.max(1));
    let connect = {
        let url = a.url.clone();
        move || {
            procshare::Manager::builder()
                .url(url.clone())
                .lease(lease)
                .connect()
        }
    };
    // At most 16 connects at a time, so that the server's accept backlog
    // does not overflow (which would stall connects in SYN retries).
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..a.idle + a.conns {
        let (gate, connect) = (gate.clone(), connect.clone());
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            anyhow::Ok(connect().await?)
        });
    }
    let mut managers = Vec::with_capacity(a.idle + a.conns);
    while let Some(m) = opening.join_next().await {
        managers.push(m?.with_context(|| format!("crowd worker {} cannot connect", a.k))?);
    }
    let (ev_name, q_name) = (format!("{}-event", a.name), format!("{}-queue", a.name));
    let mut proxies = Vec::with_capacity(a.conns);
    for m in managers.iter().take(a.conns.min(managers.len())) {
        proxies.push((m.event(&ev_name).await?, m.queue::<i64>(&q_name, 0).await?));
    }
    worker::ready_then_wait_for_go()?;

    let mut waits = tokio::task::JoinSet::new();
    for j in 0..a.waiters {
        let Some((ev, q)) = proxies.get(j % proxies.len().max(1)).cloned() else {
            bail!(
                "crowd worker {} has waiters but no connection for them",
                a.k
            );
        };
        let on_event = (a.first_waiter + j) & 1 == 0;
        waits.spawn(async move {
            if on_event {
                let set = ev.wait(None).await?;
                anyhow::Ok((u64::from(set), 0u64, 0i64))
            } else {
                let item = q.get().await?;
                anyhow::Ok((0, 1, item))
            }
        });
    }
    let (mut event, mut queue, mut sum) = (0u64, 0u64, 0i64);
    while let Some(done) = waits.join_next().await {
        let (e, q, s) = done??;
        event += e;
        queue += q;
        sum += s;
    }
    worker::report(&serde_json::json!({ "event": event, "queue": queue, "sum": sum }))?;
    drop(managers);
    Ok(())
}
