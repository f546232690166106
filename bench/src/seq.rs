//! One client, one call at a time: `seq_dict_set` then `seq_dict_get`,
//! `n` ops each on key `i % 1000`, as in the anchor's `seq_dict`; over TCP
//! (loopback) or, as `seq_dict_set_unix` and `seq_dict_get_unix`, over a
//! Unix socket.

use std::time::Instant;

use anyhow::{ensure, Result};

use crate::row::Row;

/// Which client runs the sequential workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeqClient {
    /// The async API on a current-thread tokio runtime.
    CurrentThread,
    /// The async API on a default multi-thread runtime, as `#[tokio::main]`.
    MultiThread,
    /// `procshare::blocking`, the sync facade.
    Blocking,
}

/// How the sequential client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
        }
    }

    /// The workload names of set and get.
    fn workloads(self) -> (&'static str, &'static str) {
        match self {
            Transport::Tcp => ("seq_dict_set", "seq_dict_get"),
            Transport::Unix => ("seq_dict_set_unix", "seq_dict_get_unix"),
        }
    }
}

fn emit(transport: Transport, set_s: f64, get_s: f64, n: u64) {
    let (set, get) = transport.workloads();
    for (workload, s) in [(set, set_s), (get, get_s)] {
        let mut row = Row::new(workload, n, s).sequential(s);
        row.transport = Some(transport.label());
        row.emit();
    }
}

pub fn run(client: SeqClient, transport: Transport, url: &str, dict: &str, n: u64) -> Result<()> {
    match client {
        SeqClient::CurrentThread => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_async(transport, url, dict, n))
        }
        SeqClient::MultiThread => {
            tokio::runtime::Runtime::new()?.block_on(run_async(transport, url, dict, n))
        }
        SeqClient::Blocking => run_blocking(transport, url, dict, n),
    }
}

async fn run_async(transport: Transport, url: &str, dict: &str, n: u64) -> Result<()> {
    let m = procshare::Manager::connect(url).await?;
    let d = m.dict::<i64, i64>(dict).await?;
    let t = Instant::now();
    for i in 0..n as i64 {
        d.insert(i % 1000, i).await?;
    }
    let set_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut found = 0u64;
    for i in 0..n as i64 {
        found += u64::from(d.get(&(i % 1000)).await?.is_some());
    }
    let get_s = t.elapsed().as_secs_f64();
    ensure!(found == n, "seq_dict_get found {found} of {n} keys");
    emit(transport, set_s, get_s, n);
    Ok(())
}

fn run_blocking(transport: Transport, url: &str, dict: &str, n: u64) -> Result<()> {
    let m = procshare::blocking::Manager::connect(url)?;
    let d = m.dict::<i64, i64>(dict)?;
    let t = Instant::now();
    for i in 0..n as i64 {
        d.insert(i % 1000, i)?;
    }
    let set_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut found = 0u64;
    for i in 0..n as i64 {
        found += u64::from(d.get(&(i % 1000))?.is_some());
    }
    let get_s = t.elapsed().as_secs_f64();
    ensure!(found == n, "seq_dict_get found {found} of {n} keys");
    emit(transport, set_s, get_s, n);
    Ok(())
}
