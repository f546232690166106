//! `pool.map` across processes and hosts: the thumbnail exercise.
//!
//! The caller maps a "thumbnail" function over a list of image files; the
//! work runs in worker processes that serve a procshare pool, some started
//! by the caller, others started by hand (on this host or another one). The
//! caller shows a progress bar and prints the results in input order. In
//! Python:
//!
//! ```python
//! with Pool(4) as pool:
//!     for i, thumb in enumerate(pool.imap_unordered(thumbnail, files)):
//!         progress(i + 1, len(files))
//!     print(pool.map(thumbnail, files))
//! ```
//!
//! ```text
//! # self-contained: an embedded server and 3 local workers
//! cargo run -p procshare-examples --bin pool_map -- run --workers 3 --items 40
//! # across hosts: a procshared somewhere, workers started by hand
//! procshared --listen 0.0.0.0:50051
//! pool_map worker --server http://queue-host:50051 --pool thumbs     # on any host, as often as you like
//! pool_map run --server http://queue-host:50051 --pool thumbs --workers 0 --items 40
//! procshare --url http://queue-host:50051 pool status thumbs
//! ```
//!
//! A "file" is a name and a size, both made up from its index, and a
//! thumbnail is computed from them (its size and a checksum), so the caller
//! can check every result by computing it itself. Files named `*.corrupt`
//! (`--corrupt 2,5`) make the handler fail: those items come back as
//! errors, the others succeed.
//!
//! Tasks live on the server: a worker killed mid-task has its task handed
//! to another worker once its lease runs out (`--lease`). Handlers may run
//! twice (at least once).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use procshare::blocking::Manager;
use procshare_examples::{server, unique_name, Server, Workers};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "pool_map",
    about = "Map a thumbnail function over files with a pool of worker processes on any host"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Args, Clone)]
struct Common {
    /// The server: http://host:port (default: PROCSHARE_URL, or an
    /// embedded server for `run`).
    #[arg(long)]
    server: Option<String>,
    /// The pool's name (`run` makes up a fresh one, deleted at the end,
    /// when not given).
    #[arg(long)]
    pool: Option<String>,
    /// The session lease to ask for, in seconds: how soon a killed worker's
    /// task goes to another worker.
    #[arg(long, default_value_t = 5.0)]
    lease: f64,
}

#[derive(Subcommand)]
enum Role {
    /// Serves the pool until it is closed and drained.
    Worker {
        #[command(flatten)]
        common: Common,
        /// Tasks run at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// The name printed with each result this worker computes.
        #[arg(long)]
        name: Option<String>,
        /// Testing: the first worker to get this file sets the event
        /// `<pool>.held` and then waits for `<pool>.release` forever (so it
        /// can be killed mid-task); later deliveries run normally.
        #[arg(long, hide = true)]
        hold: Option<String>,
    },
    /// Maps the thumbnail function over the files and prints the results.
    Run {
        #[command(flatten)]
        common: Common,
        /// Local worker processes to start (0: the workers run elsewhere).
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// How many files.
        #[arg(long, default_value_t = 24)]
        items: usize,
        /// Indexes of files that are corrupt (their thumbnail fails).
        #[arg(long, value_delimiter = ',')]
        corrupt: Vec<usize>,
        /// Passed on to the local workers (see `worker --hold`).
        #[arg(long, hide = true)]
        hold: Option<String>,
    },
}

/// An image file to make a thumbnail of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct File {
    name: String,
    width: u32,
    height: u32,
}

/// What the thumbnail handler returns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Thumb {
    width: u32,
    height: u32,
    /// Values travel as signed 64-bit integers: 32 bits keep it simple.
    checksum: u32,
    /// Which worker made it.
    worker: String,
}

const THUMB_EDGE: u32 = 128;

fn files(n: usize, corrupt: &[usize]) -> Vec<File> {
    (0..n)
        .map(|i| {
            let ext = if corrupt.contains(&i) {
                "corrupt"
            } else {
                "jpg"
            };
            // Made-up but fixed dimensions, different for each file.
            let k = i as u32;
            File {
                name: format!("photo-{i:03}.{ext}"),
                width: 640 + (k * 7919) % 3000,
                height: 480 + (k * 104_729) % 2000,
            }
        })
        .collect()
}

/// The work: scale to fit 128×128 and checksum the "pixels" (FNV-1a over
/// the name and every output row), deterministic so the caller can check.
fn thumbnail(file: &File, worker: &str) -> Result<Thumb, String> {
    if file.name.ends_with(".corrupt") {
        return Err(format!("cannot decode {}: not an image", file.name));
    }
    if file.width == 0 || file.height == 0 {
        return Err(format!("{} has no pixels", file.name));
    }
    let scale = f64::from(THUMB_EDGE) / f64::from(file.width.max(file.height));
    let width = ((f64::from(file.width) * scale).round() as u32).max(1);
    let height = ((f64::from(file.height) * scale).round() as u32).max(1);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    file.name.bytes().for_each(&mut feed);
    for row in 0..height {
        for b in (row ^ file.width ^ file.height).to_le_bytes() {
            feed(b);
        }
    }
    Ok(Thumb {
        width,
        height,
        checksum: (hash ^ (hash >> 32)) as u32,
        worker: worker.to_owned(),
    })
}

fn connect(common: &Common, url: &str) -> anyhow::Result<Manager> {
    let lease = Duration::try_from_secs_f64(common.lease)
        .map_err(|_| anyhow::anyhow!("--lease must be a number of seconds > 0"))?;
    let builder = procshare::Manager::builder().url(url).lease(lease);
    Manager::from_builder(builder).with_context(|| format!("cannot connect to {url}"))
}

/// `http://` in front of a bare `host:port`.
fn url_of(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

fn worker(
    common: Common,
    concurrency: usize,
    name: Option<String>,
    hold: Option<String>,
) -> anyhow::Result<()> {
    let url = match &common.server {
        Some(s) => url_of(s),
        None => std::env::var(procshare_examples::URL_VAR)
            .context("give --server ADDR (or set PROCSHARE_URL)")?,
    };
    let pool = common.pool.clone().unwrap_or_else(|| "thumbs".to_owned());
    let me = name.unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let m = connect(&common, &url)?;
    let held = (pool.clone() + ".held", pool.clone() + ".release");
    let holder = m.clone();
    let who = me.clone();
    let report = m
        .worker(&pool)
        .handle("thumbnail", move |file: File| {
            if hold.as_deref() == Some(file.name.as_str()) {
                let held_event = holder.event(&held.0).map_err(|e| e.to_string())?;
                if !held_event.is_set().map_err(|e| e.to_string())? {
                    held_event.set().map_err(|e| e.to_string())?;
                    // Until killed: nobody sets it.
                    let release = holder.event(&held.1).map_err(|e| e.to_string())?;
                    release.wait(None).map_err(|e| e.to_string())?;
                }
            }
            thumbnail(&file, &who)
        })
        .concurrency(concurrency)
        .serve()
        .with_context(|| format!("worker {me} on pool {pool}"))?;
    eprintln!(
        "worker {me}: {} done, {} failed, {} lost",
        report.done, report.failed, report.lost
    );
    Ok(())
}

/// Progress on stderr: a redrawn bar on a terminal, else a line per tenth.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    last_tenth: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    fn step(&mut self) {
        self.done += 1;
        let mut err = std::io::stderr().lock();
        if self.tty {
            const WIDTH: usize = 30;
            let filled = WIDTH * self.done / self.total.max(1);
            let _ = write!(
                err,
                "\r[{}{}] {}/{}",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                self.done,
                self.total
            );
            if self.done == self.total {
                let _ = writeln!(err);
            }
        } else {
            let tenth = 10 * self.done / self.total.max(1);
            if tenth > self.last_tenth || self.done == self.total {
                self.last_tenth = tenth;
                let _ = writeln!(err, "progress: {}/{}", self.done, self.total);
            }
        }
        let _ = err.flush();
    }
}

fn run(
    common: Common,
    workers: usize,
    items: usize,
    corrupt: Vec<usize>,
    hold: Option<String>,
) -> anyhow::Result<ExitCode> {
    // Declared first so it is dropped last: an embedded server must outlive
    // the connections to it.
    let server: Server = match &common.server {
        Some(s) => {
            std::env::set_var(procshare_examples::URL_VAR, url_of(s));
            server()?
        }
        None => server()?,
    };
    let m = connect(&common, server.url())?;
    let own_pool = common.pool.is_none();
    let pool_name = common
        .pool
        .clone()
        .unwrap_or_else(|| unique_name("pool_map"));
    let pool = m.pool(&pool_name)?;
    println!("pool_map: {items} files, {workers} local workers, pool {pool_name}, server {server}");
    if workers == 0 {
        println!(
            "start workers elsewhere: pool_map worker --server {} --pool {pool_name}",
            server.url()
        );
    }
    let started = Instant::now();
    let local = Workers::spawn(server.url(), workers, |i| {
        let mut args = vec![
            "worker".to_owned(),
            "--pool".to_owned(),
            pool_name.clone(),
            "--name".to_owned(),
            format!("local-{i}"),
            "--lease".to_owned(),
            common.lease.to_string(),
        ];
        if let Some(h) = &hold {
            args.extend(["--hold".to_owned(), h.clone()]);
        }
        args
    })?;

    let files = files(items, &corrupt);
    // imap_unordered for the progress bar, then the outcomes put back in
    // input order: what `pool.map` does.
    let mut progress = Progress::new(files.len());
    let mut outcomes: Vec<Option<procshare::TaskResult<Thumb>>> = vec![None; files.len()];
    for next in pool.imap_unordered::<_, Thumb>("thumbnail", files.iter().cloned())? {
        let (i, outcome) = next?;
        if let Some(slot) = outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
        progress.step();
    }
    let elapsed = started.elapsed();
    // Every result is in: the local workers may go.
    pool.close()?;
    local.wait_all()?;

    let (mut ok, mut failed, mut wrong) = (0, 0, 0);
    for (file, outcome) in files.iter().zip(&outcomes) {
        match outcome {
            Some(Ok(t)) => {
                let expected = thumbnail(file, &t.worker);
                let verdict = if expected.as_ref() == Ok(t) {
                    ok += 1;
                    ""
                } else {
                    wrong += 1;
                    "  WRONG"
                };
                println!(
                    "{}: {}x{} checksum {:08x} (worker {}){verdict}",
                    file.name, t.width, t.height, t.checksum, t.worker
                );
            }
            Some(Err(e)) => {
                failed += 1;
                println!("{}: error: {}", file.name, e.message);
            }
            None => {
                wrong += 1;
                println!("{}: NO RESULT", file.name);
            }
        }
    }
    println!("done: {ok} ok, {failed} failed, {wrong} wrong in {elapsed:.2?}");
    if own_pool {
        m.delete(&pool_name)?;
    }
    let expected_failures = corrupt.iter().filter(|&&i| i < items).count();
    if wrong == 0 && failed == expected_failures {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("pool_map: some results are missing, wrong or failed unexpectedly");
        Ok(ExitCode::FAILURE)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.role {
        Role::Worker {
            common,
            concurrency,
            name,
            hold,
        } => worker(common, concurrency, name, hold).map(|()| ExitCode::SUCCESS),
        Role::Run {
            common,
            workers,
            items,
            corrupt,
            hold,
        } => run(common, workers, items, corrupt, hold),
    };
    procshare_examples::exit_code("pool_map", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_fit_and_corrupt_files_fail() {
        let fs = files(5, &[3]);
        for (i, f) in fs.iter().enumerate() {
            match thumbnail(f, "w") {
                Ok(t) => {
                    assert!(t.width <= THUMB_EDGE && t.height <= THUMB_EDGE);
                    assert_eq!(t.width.max(t.height), THUMB_EDGE);
                    assert_eq!(thumbnail(f, "w"), Ok(t), "deterministic");
                }
                Err(e) => {
                    assert_eq!(i, 3);
                    assert!(e.contains("cannot decode"), "{e}");
                }
            }
        }
    }
}
