//! Scaling curves (issue 7, item 4): the dict get/set mix of
//! `concurrent_dict_mix` against the number of client processes (1, 4, 16,
//! 64, 256; 16-byte values) and against the value size (16 B, 1 KiB,
//! 64 KiB; 16 processes), every call timed in the workers.
//!
//! Each point runs about `ops` calls in all (a quarter of that with 64 KiB
//! values), shared among its processes (at least `min_per_client` each), against a dict holding 1,000 keys
//! with values of the point's size, so that gets return such values. A
//! row per point: `scaling_clients_N` or `scaling_value_N`, where
//! `seconds` and `ops_per_s` run from the start signal to the last exit
//! (process start left out: 256 processes take a while to start, which
//! says nothing of the server), with the p50 and p99 of every call's
//! latency. The point at 16 processes and 16 B belongs to both curves: it
//! runs once and is reported under both names.

use std::path::Path;

use anyhow::{Context, Result};

use crate::fleet;
use crate::hist::Hist;
use crate::row::{round, Row};
use crate::worker::{self, WorkerArgs};

pub const CLIENTS: [usize; 5] = [1, 4, 16, 64, 256];
pub const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
/// The value size of the client-count curve, and the client count of the
/// value-size curve.
const BASE_SIZE: usize = 16;
const BASE_CLIENTS: usize = 16;
/// Keys of the mix, as in the anchor's.
const KEYS: i64 = 1000;

pub struct Params {
    pub ops: u64,
    pub min_per_client: u64,
}

pub fn run(exe: &Path, url: &str, prefix: &str, p: &Params) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let m = rt.block_on(procshare::Manager::connect(url))?;
    for size in SIZES {
        rt.block_on(fill(&m, &dict_name(prefix, size), size))?;
    }
    let mut points: Vec<(usize, usize)> = CLIENTS.iter().map(|&c| (c, BASE_SIZE)).collect();
    points.extend(
        SIZES
            .iter()
            .filter(|&&s| s != BASE_SIZE)
            .map(|&s| (BASE_CLIENTS, s)),
    );
    for (clients, size) in points {
        let (hist, t, ops) = point(exe, url, &dict_name(prefix, size), clients, size, p)?;
        let mut names = Vec::new();
        if size == BASE_SIZE {
            names.push(format!("scaling_clients_{clients}"));
        }
        if clients == BASE_CLIENTS {
            names.push(format!("scaling_value_{size}"));
        }
        for name in names {
            let mut row = Row::new(leak(name), ops, t.work.as_secs_f64());
            row.clients = Some(clients);
            row.value_bytes = Some(size);
            row.startup_seconds = Some(round(t.startup.as_secs_f64(), 4));
            row.p50_us = hist.quantile_us(0.5).map(|v| round(v, 1));
            row.p99_us = hist.quantile_us(0.99).map(|v| round(v, 1));
            row.emit();
        }
    }
    for size in SIZES {
        rt.block_on(m.delete(&dict_name(prefix, size)))?;
    }
    Ok(())
}

fn dict_name(prefix: &str, size: usize) -> String {
    format!("{prefix}-scaling-{size}")
}

/// Workload names are `&'static str` in rows; a handful of these per run.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The 1,000 keys, with values of `size` bytes, in `update` calls of at
/// most about 512 KiB (a gRPC message may not exceed 4 MiB).
async fn fill(m: &procshare::Manager, name: &str, size: usize) -> Result<()> {
    let d = m.dict::<i64, String>(name).await?;
    let value = "x".repeat(size);
    let chunk = (512 * 1024 / size.max(1)).clamp(1, KEYS as usize) as i64;
    for lo in (0..KEYS).step_by(chunk as usize) {
        let hi = (lo + chunk).min(KEYS);
        d.update((lo..hi).map(|k| (k, value.clone())))
            .await
            .with_context(|| format!("filling {name:?}"))?;
    }
    Ok(())
}

fn point(
    exe: &Path,
    url: &str,
    dict: &str,
    clients: usize,
    size: usize,
    p: &Params,
) -> Result<(Hist, fleet::Timing, u64)> {
    // 64 KiB values: a quarter of the calls, for 16 times the bytes of 1 KiB.
    let ops = if size >= 64 * 1024 { p.ops / 4 } else { p.ops };
    let n = (ops / clients as u64).max(p.min_per_client);
    let t = fleet::run(exe, clients, |k| {
        let mut a = worker::args(url, "scale", n, k, dict);
        a.extend(["--value-size".into(), size.to_string()]);
        a
    })?;
    let mut hist = Hist::default();
    for (k, out) in t.outputs.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("scaling worker {k} printed {out:?}"))?;
        let h: Hist = serde_json::from_value(line["hist"].clone())
            .with_context(|| format!("scaling worker {k}: no histogram"))?;
        hist.merge(&h);
    }
    let ops = clients as u64 * n;
    anyhow::ensure!(
        hist.count() == ops,
        "scaling: {} calls timed, {ops} made",
        hist.count()
    );
    Ok((hist, t, ops))
}

/// One client process of a point: the mix, every call timed.
pub async fn worker(a: &WorkerArgs) -> Result<()> {
    let m = procshare::Manager::connect(&a.url)
        .await
        .with_context(|| format!("scaling worker {} cannot connect to {}", a.k, a.url))?;
    let d = m.dict::<i64, String>(&a.name).await?;
    let value = "x".repeat(a.value_size);
    let mut hist = Hist::default();
    worker::ready_then_wait_for_go()?;
    let k = a.k as i64;
    for i in 0..a.n as i64 {
        let key = (k * 7919 + i) % KEYS;
        let v = (i % 2 == 1).then(|| value.clone());
        let t = std::time::Instant::now();
        if let Some(v) = v {
            d.insert(key, v).await?;
        } else {
            let got = d.get(&key).await?;
            anyhow::ensure!(
                got.as_ref().map(String::len) == Some(a.value_size),
                "scaling: key {key} of {:?} holds {:?} bytes, not {}",
                a.name,
                got.map(|v| v.len()),
                a.value_size
            );
        }
        hist.record(t.elapsed());
    }
    worker::report(&serde_json::json!({ "hist": hist }))
}
