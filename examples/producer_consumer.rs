//! Producers and consumers around one bounded queue, with sentinels.
//!
//! P producer processes put numbered items into a shared `Queue(maxsize)`;
//! C consumer processes take them until they get a sentinel, one each, put
//! by the coordinator once every producer is done. In Python:
//!
//! ```python
//! def producer(q, p, n):
//!     for j in range(n):
//!         q.put(p * n + j + 1)         # blocks while the queue is full
//!
//! def consumer(q, tallies, c):
//!     count = total = 0
//!     while (item := q.get()) is not None:
//!         count += 1
//!         total += item
//!     tallies[c] = (count, total)
//!
//! for p in producers: p.join()
//! for _ in consumers: q.put(None)      # one sentinel per consumer
//! for c in consumers: c.join()
//! ```
//!
//! The items are 1..=P×N, each put once, so the consumers together must
//! count P×N items summing to P×N×(P×N+1)/2, however the items were split
//! among them; the program checks both and exits non-zero if either is off.
//! The bounded queue is what keeps fast producers from running ahead of slow
//! consumers: a `put` on a full queue waits, on the server, for a `get`.
//!
//! The sentinel is `None`: the queue carries `Option<u64>`, which travels
//! as an int or as null, exactly what Python's `None` sentinel is.
//!
//! ```text
//! cargo run -p procshare-examples --bin producer_consumer -- --producers 2 --consumers 3 --items 500 --maxsize 16
//! PROCSHARE_URL=http://127.0.0.1:50051 cargo run -p procshare-examples --bin producer_consumer
//! ```
//!
//! The producers and consumers are this same executable, re-run with a
//! hidden `producer` or `consumer` argument.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use procshare::blocking::Manager;
use procshare_examples::{server, Objects, Workers};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "producer_consumer",
    about = "P producer processes feed C consumer processes through one bounded queue"
)]
struct Args {
    /// How many producer processes.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// How many consumer processes.
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// How many items each producer puts.
    #[arg(long, default_value_t = 500)]
    items: u64,
    /// The queue's maxsize: how far producers may run ahead (0: unbounded).
    #[arg(long, default_value_t = 16)]
    maxsize: u64,
    /// A safety net, in seconds: the longest any process waits on the queue
    /// before deciding the run is stuck (a crashed peer) and failing.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Internal: run as producer number `index` (the coordinator starts these).
    #[command(hide = true)]
    Producer {
        #[arg(long)]
        queue: String,
        #[arg(long)]
        index: u64,
        #[arg(long)]
        items: u64,
        #[arg(long)]
        timeout: u64,
    },
    /// Internal: run as consumer number `index`.
    #[command(hide = true)]
    Consumer {
        #[arg(long)]
        queue: String,
        /// The dict the consumer reports its tally in.
        #[arg(long)]
        tallies: String,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        timeout: u64,
    },
}

/// What one consumer took: how many items, and their sum.
#[derive(Serialize, Deserialize, Clone, Copy, Default)]
struct Tally {
    items: u64,
    sum: u64,
}

/// A queue item: `Some(item)`, or `None`, the sentinel that says "stop".
type Item = Option<u64>;

/// Producer `index`: puts its items `index × items + 1 ..= (index + 1) × items`.
fn producer(queue: &str, index: u64, items: u64, timeout: Duration) -> anyhow::Result<()> {
    let m = Manager::from_env()?;
    // The coordinator created the queue; its maxsize here is ignored.
    let queue = m.queue::<Item>(queue, 0)?;
    let first = index
        .checked_mul(items)
        .and_then(|n| n.checked_add(1))
        .context("item numbers overflow")?;
    for item in first..first + items {
        match queue.put_timeout(Some(item), timeout) {
            Ok(()) => {}
            Err(procshare::Error::Full(_)) => {
                bail!("the queue stayed full for {timeout:?}: are the consumers still running?")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Consumer `index`: takes items until the sentinel, then reports its tally.
fn consumer(queue: &str, tallies: &str, index: usize, timeout: Duration) -> anyhow::Result<()> {
    let m = Manager::from_env()?;
    let queue = m.queue::<Item>(queue, 0)?;
    let tallies = m.dict::<usize, Tally>(tallies)?;
    let mut tally = Tally::default();
    loop {
        match queue.get_timeout(timeout) {
            Ok(Some(item)) => {
                tally.items += 1;
                tally.sum = tally.sum.checked_add(item).context("sum overflows")?;
            }
            Ok(None) => break,
            Err(procshare::Error::Empty(_)) => {
                bail!("waited {timeout:?} for an item or a sentinel in vain: are the producers and the coordinator still running?")
            }
            Err(e) => return Err(e.into()),
        }
    }
    tallies.insert(index, tally)?;
    Ok(())
}

fn main() -> ExitCode {
    procshare_examples::exit_code("producer_consumer", producer_consumer(Args::parse()))
}

fn producer_consumer(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    match args.role {
        Some(Role::Producer {
            queue,
            index,
            items,
            timeout,
        }) => {
            producer(&queue, index, items, Duration::from_secs(timeout))
                .with_context(|| format!("producer {index}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Role::Consumer {
            queue,
            tallies,
            index,
            timeout,
        }) => {
            consumer(&queue, &tallies, index, Duration::from_secs(timeout))
                .with_context(|| format!("consumer {index}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if args.consumers == 0 {
        bail!("--consumers must be at least 1: someone has to empty the queue");
    }
    let total_items = (args.producers as u64)
        .checked_mul(args.items)
        .context("producers × items overflows")?;
    // 1 + 2 + … + n, computed wide: the items are 1..=n.
    let expected_sum = u64::try_from(u128::from(total_items) * (u128::from(total_items) + 1) / 2)
        .ok()
        .filter(|&s| i64::try_from(s).is_ok())
        .context("the sum of the items does not fit in an i64")?;

    // Declared first so it is dropped last: an embedded server must outlive
    // the connections to it.
    let server = server()?;
    let m = Manager::connect(server.url())?;
    let mut objects = Objects::new(&m, "producer_consumer");
    let queue_name = objects.name("queue");
    let tallies_name = objects.name("tallies");
    let queue = m.queue::<Item>(&queue_name, args.maxsize)?;
    let tallies = m.dict::<usize, Tally>(&tallies_name)?;
    println!(
        "producer_consumer: {} producers × {} items, {} consumers, Queue(maxsize={}), server {server}",
        args.producers, args.items, args.consumers, args.maxsize
    );

    let started = Instant::now();
    let timeout_arg = args.timeout.to_string();
    let consumers = Workers::spawn(server.url(), args.consumers, |i| {
        vec![
            "consumer".to_owned(),
            "--queue".to_owned(),
            queue_name.clone(),
            "--tallies".to_owned(),
            tallies_name.clone(),
            "--index".to_owned(),
            i.to_string(),
            "--timeout".to_owned(),
            timeout_arg.clone(),
        ]
    })?;
    let producers = Workers::spawn(server.url(), args.producers, |i| {
        vec![
            "producer".to_owned(),
            "--queue".to_owned(),
            queue_name.clone(),
            "--index".to_owned(),
            i.to_string(),
            "--items".to_owned(),
            args.items.to_string(),
            "--timeout".to_owned(),
            timeout_arg.clone(),
        ]
    })?;

    producers.wait_all().context("producers")?;
    // Every item is in the queue or taken: now one sentinel per consumer.
    // Each consumer stops at the first it gets, so each gets exactly one.
    for _ in 0..args.consumers {
        queue
            .put_timeout(None, timeout)
            .context("putting a sentinel (are the consumers still running?)")?;
    }
    consumers.wait_all().context("consumers")?;
    let elapsed = started.elapsed();

    let tallies: BTreeMap<usize, Tally> = tallies.snapshot()?;
    let left_in_queue = queue.qsize()?;
    objects.delete_all()?;

    let mut ok = true;
    let mut total = Tally::default();
    for c in 0..args.consumers {
        match tallies.get(&c) {
            Some(t) => {
                println!("consumer {c}: {} items, sum {}", t.items, t.sum);
                total.items += t.items;
                total.sum += t.sum;
            }
            None => {
                println!("consumer {c}: no tally");
                ok = false;
            }
        }
    }
    println!(
        "total: {} items (expected {total_items}), sum {} (expected {expected_sum}) in {elapsed:.2?}",
        total.items, total.sum
    );
    ok &= total.items == total_items && total.sum == expected_sum;
    if left_in_queue != 0 {
        println!("{left_in_queue} items left in the queue");
        ok = false;
    }

    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("producer_consumer: the consumers did not get every item exactly once");
        Ok(ExitCode::FAILURE)
    }
}
