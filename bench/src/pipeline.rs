//! Many calls in flight at once (issue 7, item 2; SPEC §6 "batched /
//! pipelined ops ≥ 1 million ops/s"), two ways, each the dict get/set mix
//! of `concurrent_dict_mix` on its 1,000 keys:
//!
//! * `pipelined_dict_mix`: `procs` client processes, each with one
//!   `Manager` (one connection) shared by `inflight` tasks, each task one
//!   call at a time: up to `procs × inflight` calls in flight. The client
//!   carries them as it carries any concurrent calls (HTTP/2 streams over
//!   the one connection today; its session stream when it has one, or
//!   unary calls with `PROCSHARE_TRANSPORT=unary`).
//! * `batched_dict_mix`: `procs` processes, each with one connection making
//!   `Batch` calls of `batch` ops (non-atomic, one outcome per op, every
//!   outcome checked), `inflight` calls at once. This uses the generated
//!   gRPC client (in the session of a `Manager` opened beside it), not the
//!   client crate's `Batch`, to number the requests itself and check each
//!   raw outcome; the figures of earlier sessions were measured this way.
//!
//! Times as the other multi-process workloads (see `fleet`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use procshare::wire::{self as pb, procshare_client::ProcshareClient};

use crate::fleet;
use crate::row::Row;
use crate::worker::{self, WorkerArgs};

const KEYS: i64 = 1000;

pub struct Params {
    pub procs: usize,
    pub inflight: usize,
    /// Ops in all, over all processes.
    pub ops: u64,
    /// Ops per `Batch` call (batched only).
    pub batch: usize,
}

/// `pipelined_dict_mix`.
pub fn pipelined(exe: &Path, url: &str, dict: &str, p: &Params) -> Result<()> {
    let n = (p.ops / p.procs as u64).max(p.inflight as u64);
    let t = fleet::run(exe, p.procs, |k| {
        let mut a = worker::args(url, "pipeline", n, k, dict);
        a.extend(["--inflight".into(), p.inflight.to_string()]);
        a
    })?;
    let ops = n * p.procs as u64;
    check_counts(&t, ops, p.procs)?;
    let mut row = Row::new("pipelined_dict_mix", ops, t.total.as_secs_f64()).fleet(&t);
    row.clients = Some(p.procs);
    row.inflight = Some(p.inflight);
    row.emit();
    Ok(())
}

/// `batched_dict_mix`.
pub fn batched(exe: &Path, url: &str, dict: &str, p: &Params) -> Result<()> {
    let per_call = p.batch.max(1) as u64;
    let calls = (p.ops / p.procs as u64 / per_call).max(p.inflight as u64);
    let n = calls * per_call;
    let t = fleet::run(exe, p.procs, |k| {
        let mut a = worker::args(url, "batch", n, k, dict);
        a.extend([
            "--inflight".into(),
            p.inflight.to_string(),
            "--batch".into(),
            per_call.to_string(),
        ]);
        a
    })?;
    let ops = n * p.procs as u64;
    check_counts(&t, ops, p.procs)?;
    let mut row = Row::new("batched_dict_mix", ops, t.total.as_secs_f64()).fleet(&t);
    row.clients = Some(p.procs);
    row.inflight = Some(p.inflight);
    row.batch = Some(p.batch);
    row.emit();
    Ok(())
}

/// Every worker says how many ops it saw succeed; they must add up.
fn check_counts(t: &fleet::Timing, want: u64, procs: usize) -> Result<()> {
    let mut done = 0;
    for (k, out) in t.outputs.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("worker {k} printed {out:?}"))?;
        done += line["ok"].as_u64().unwrap_or(0);
    }
    ensure!(
        done == want,
        "{procs} workers report {done} ops done, {want} were due"
    );
    Ok(())
}

/// The `i`-th op of the mix for worker `k`, lane `lane`: (key, set?).
fn op_of(k: u64, lane: u64, i: u64) -> (i64, bool) {
    (((k * 7919 + lane * 131 + i) as i64) % KEYS, i % 2 == 1)
}

/// One process of `pipelined_dict_mix`.
pub async fn pipelined_worker(a: &WorkerArgs) -> Result<()> {
    let m = procshare::Manager::connect(&a.url)
        .await
        .with_context(|| format!("pipelined worker {} cannot connect to {}", a.k, a.url))?;
    let d = m.dict::<i64, i64>(&a.name).await?;
    let lanes = a.inflight.max(1) as u64;
    worker::ready_then_wait_for_go()?;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        // Lane `lane` makes ops lane, lane + lanes, ...: n in all.
        let count = a.n / lanes + u64::from(lane < a.n % lanes);
        let (d, k) = (d.clone(), a.k);
        tasks.spawn(async move {
            for i in 0..count {
                let (key, set) = op_of(k, lane, i);
                if set {
                    d.insert(key, i as i64).await?;
                } else {
                    d.get(&key).await?;
                }
            }
            anyhow::Ok(count)
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        ok += done??;
    }
    worker::report(&serde_json::json!({ "ok": ok }))
}

fn int(i: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Int(i)),
    }
}

/// One process of `batched_dict_mix`.
pub async fn batched_worker(a: &WorkerArgs) -> Result<()> {
    // The Manager gives the session the batches run in.
    let m = procshare::Manager::connect(&a.url)
        .await
        .with_context(|| format!("batched worker {} cannot connect to {}", a.k, a.url))?;
    m.dict::<i64, i64>(&a.name).await?;
    let channel = tonic::transport::Endpoint::from_shared(a.url.clone())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("batched worker {}: gRPC channel to {}", a.k, a.url))?;
    let client = ProcshareClient::new(channel);
    let per_call = a.batch.max(1) as u64;
    let calls = a.n / per_call;
    let lanes = (a.inflight.max(1) as u64).min(calls.max(1));
    // Request ids well above the Manager's own, unique in the session: the
    // server remembers mutations' outcomes by id.
    let ids = Arc::new(AtomicU64::new(1 << 40));
    let client_id = m.client_id();
    worker::ready_then_wait_for_go()?;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let count = calls / lanes + u64::from(lane < calls % lanes);
        let (mut client, ids, k) = (client.clone(), ids.clone(), a.k);
        let (client_id, name) = (client_id.clone(), a.name.clone());
        tasks.spawn(async move {
            let mut ok = 0u64;
            for c in 0..count {
                let requests = (0..per_call)
                    .map(|j| {
                        let (key, set) = op_of(k, lane, c * per_call + j);
                        let kind = if set {
                            pb::op::Kind::DictSet(pb::DictSet {
                                key: Some(int(key)),
                                value: Some(int(j as i64)),
                            })
                        } else {
                            pb::op::Kind::DictGet(pb::DictGet {
                                key: Some(int(key)),
                            })
                        };
                        pb::Request {
                            client_id: String::new(),
                            request_id: ids.fetch_add(1, Ordering::Relaxed),
                            op: Some(pb::Op {
                                name: name.clone(),
                                kind: Some(kind),
                            }),
                            task_id: String::new(),
                            ..Default::default()
                        }
                    })
                    .collect();
                let reply = client
                    .batch(pb::BatchRequest {
                        client_id: client_id.to_string(),
                        requests,
                        atomic: false,
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("Batch call failed: {s}"))?
                    .into_inner();
                ensure!(
                    reply.responses.len() as u64 == per_call,
                    "a Batch of {per_call} ops came back with {} outcomes",
                    reply.responses.len()
                );
                for r in reply.responses {
                    match r.outcome {
                        Some(pb::response::Outcome::Ok(_)) => ok += 1,
                        Some(pb::response::Outcome::Error(e)) => {
                            bail!("an op of a Batch failed: {e:?}")
                        }
                        None => bail!("an op of a Batch came back without an outcome"),
                    }
                }
            }
            anyhow::Ok(ok)
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        ok += done??;
    }
    drop(m);
    worker::report(&serde_json::json!({ "ok": ok }))
}
