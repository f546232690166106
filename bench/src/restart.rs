//! Restart time of a data dir holding `entries` small dict entries (issue
//! 6): fill it, restart `procshared` on it with the whole log to replay,
//! snapshot, and restart again from the snapshot.
//!
//! Rows:
//! * `restart_fill`: `writers` clients, each its own connection, insert
//!   their share of `key:NNNNNNN -> N` with `update` calls of `chunk`
//!   entries, against a server with `--fsync every-second` and automatic
//!   snapshots off (so that the whole fill stays in the log). Also the
//!   live server's RSS, the log's size and the data dir's.
//! * `restart_log_replay`: spawn to `listening on`, with no snapshot and
//!   the whole log to replay; `recovered_seconds` is the server's own
//!   figure; RSS just after.
//! * `restart_snapshot`: the same after `snapshot` (an empty log);
//!   `snapshot_seconds` is how long the `snapshot` call took.
//!
//! Both restarts read a data dir that was just written, so from the page
//! cache: the figures are of a warm restart.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use procshare::wire::{self as pb, op::Kind as Op, op_result::Kind as R};

use crate::daemon::{Daemon, Spec};
use crate::row::{mib, Row};
use crate::tmp::{dir_bytes, TempDir};

pub const DICT: &str = "procshare-bench-restart";

pub struct Params {
    pub entries: u64,
    pub writers: usize,
    pub chunk: u64,
}

pub fn run(procshared: &Path, tmp: &Path, p: &Params) -> Result<()> {
    let dir = TempDir::new(tmp, "restart")?;
    let data = dir.path().join("data");
    let spec = || Spec {
        data_dir: Some(data.clone()),
        fsync: Some("every-second"),
        // No automatic snapshot: the first restart replays the whole log.
        extra: vec!["--snapshot-log-bytes".into(), (1u64 << 62).to_string()],
        ..Spec::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Fill.
    let d = Daemon::start(procshared, &spec())?;
    let url = d.url().to_owned();
    let t = Instant::now();
    rt.block_on(fill(&url, p))?;
    let fill_s = t.elapsed().as_secs_f64();
    let stats = rt.block_on(stats(&url))?;
    let rss = d.rss_bytes()?;
    d.stop()?;
    let filled_bytes = dir_bytes(&data)?;
    let mut row = Row::new("restart_fill", p.entries, fill_s);
    row.clients = Some(p.writers);
    row.durability = Some("every-second");
    row.entries = Some(p.entries);
    row.rss_mib = Some(mib(rss));
    row.log_bytes = stats["log_bytes"].as_u64();
    row.data_dir_bytes = Some(filled_bytes);
    row.emit();

    // Restart with the whole log to replay, then snapshot.
    let d = Daemon::start(procshared, &spec())?;
    let (ready, rec, rss) = (d.ready(), d.recovery()?, d.rss_bytes()?);
    let url = d.url().to_owned();
    rt.block_on(check(&url, p.entries))?;
    let t = Instant::now();
    rt.block_on(snapshot(&url))?;
    let snapshot_s = t.elapsed().as_secs_f64();
    d.stop()?;
    let snapshot_bytes = dir_bytes(&data)?;
    let mut row = restart_row("restart_log_replay", p.entries, ready.as_secs_f64(), &rec);
    row.rss_mib = Some(mib(rss));
    row.data_dir_bytes = Some(filled_bytes);
    row.emit();

    // Restart from the snapshot.
    let d = Daemon::start(procshared, &spec())?;
    let (ready, rec, rss) = (d.ready(), d.recovery()?, d.rss_bytes()?);
    let url = d.url().to_owned();
    rt.block_on(check(&url, p.entries))?;
    d.stop()?;
    let mut row = restart_row("restart_snapshot", p.entries, ready.as_secs_f64(), &rec);
    row.rss_mib = Some(mib(rss));
    row.data_dir_bytes = Some(snapshot_bytes);
    row.snapshot_seconds = Some(crate::row::round(snapshot_s, 4));
    row.emit();
    drop(rt);
    drop(dir);
    Ok(())
}

fn restart_row(
    workload: &'static str,
    entries: u64,
    seconds: f64,
    rec: &crate::daemon::Recovery,
) -> Row {
    let mut row = Row::new(workload, entries, seconds);
    row.durability = Some("every-second");
    row.entries = Some(entries);
    row.replayed = rec.replayed;
    row.recovered_seconds = rec.elapsed_ms.map(|ms| ms as f64 / 1000.0);
    row
}

/// `writers` connections insert their share of the entries
/// `key:NNNNNNN -> N` into the dict `DICT`, `chunk` per call.
pub async fn fill(url: &str, p: &Params) -> Result<()> {
    let chunks = p.entries.div_ceil(p.chunk);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..p.writers as u64 {
        let (url, entries, chunk, writers) = (url.to_owned(), p.entries, p.chunk, p.writers as u64);
        tasks.spawn(async move {
            let m = procshare::Manager::connect(&url).await?;
            let d = m.dict::<String, i64>(DICT).await?;
            for c in (w..chunks).step_by(writers as usize) {
                let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(entries));
                d.update((lo..hi).map(|i| (format!("key:{i:07}"), i as i64)))
                    .await
                    .with_context(|| format!("writer {w}: update of entries {lo}..{hi}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Every entry came back (checked outside the timings).
async fn check(url: &str, entries: u64) -> Result<()> {
    let m = procshare::Manager::connect(url).await?;
    let d = m.dict::<String, i64>(DICT).await?;
    let len = d.len().await? as u64;
    ensure!(
        len == entries,
        "after the restart the dict holds {len} entries, not {entries}"
    );
    let last = format!("key:{:07}", entries - 1);
    let got = d.get(&last).await?;
    ensure!(
        got == Some(entries as i64 - 1),
        "after the restart {last:?} is {got:?}"
    );
    Ok(())
}

async fn server_op(url: &str, op: Op) -> Result<serde_json::Value> {
    let m = procshare::Manager::connect(url).await?;
    match m.execute("", op).await?.kind {
        Some(R::Value(v)) => Ok(procshare::value::wire_to_json(v)?),
        other => anyhow::bail!("unexpected result {other:?}"),
    }
}

pub async fn stats(url: &str) -> Result<serde_json::Value> {
    server_op(url, Op::Stats(pb::Stats {})).await
}

async fn snapshot(url: &str) -> Result<serde_json::Value> {
    server_op(url, Op::Snapshot(pb::Snapshot {})).await
}
