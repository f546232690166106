//! 1,000,000 small dict entries (SPEC §6: "server RSS ≤ 2 × Redis for the
//! same data"): a fresh in-memory `procshared`, filled with `entries`
//! entries `"key:NNNNNNN" -> N` in one dict (as the restart workloads fill
//! theirs: 8 connections, `update` calls of 10,000 entries), every entry
//! counted after. Row `dict_1m_entries`: the server's `VmRSS` before and
//! after, and its `VmHWM`. `bench/redis_memory.sh` loads the same data into
//! Redis.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};

use crate::daemon::{Daemon, Spec};
use crate::restart::{self, Params};
use crate::row::{mib, Row};

pub fn run(procshared: &Path, entries: u64) -> Result<()> {
    let d = Daemon::start(procshared, &Spec::default())?;
    let before = d.rss_bytes()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let p = Params {
        entries,
        writers: 8,
        chunk: 10_000,
    };
    let t = Instant::now();
    rt.block_on(restart::fill(d.url(), &p))?;
    let fill_s = t.elapsed().as_secs_f64();
    let len = rt.block_on(async {
        let m = procshare::Manager::connect(d.url()).await?;
        let dict = m.dict::<String, i64>(restart::DICT).await?;
        anyhow::Ok(dict.len().await? as u64)
    })?;
    ensure!(
        len == entries,
        "the dict holds {len} entries, not {entries}"
    );
    let rss = d.rss_bytes()?;
    let hwm = d.status_kib("VmHWM")? * 1024;
    let mut row = Row::new("dict_1m_entries", entries, fill_s);
    row.entries = Some(entries);
    row.durability = Some("memory");
    row.baseline_rss_mib = Some(mib(before));
    row.rss_mib = Some(mib(rss));
    row.peak_rss_mib = Some(mib(hwm));
    row.emit();
    drop(rt);
    d.stop()
}
