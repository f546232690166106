//! A thousand clients blocked at once cost no thread each: the server parks
//! them as futures, and one set / notify_all / round of puts releases them
//! all. The thread count of the real `procshared` process is read from
//! /proc while they wait.

mod common;

use std::time::{Duration, Instant};

use common::{Server, DEADLINE};
use procshare::Manager;

const WAITERS: usize = 1000;
/// Connections the waiters are spread over (HTTP/2 streams per connection
/// are limited, as they would be for real clients).
const CONNECTIONS: usize = 10;

async fn managers(server: &Server) -> Vec<Manager> {
    let mut ms = Vec::new();
    for _ in 0..CONNECTIONS {
        ms.push(Manager::connect(&server.url()).await.unwrap());
    }
    ms
}

/// Waits until `name` has `n` calls blocked on it.
async fn until_waiting(m: &Manager, name: &str, n: u64) {
    let end = Instant::now() + DEADLINE;
    loop {
        let d = m.describe(name).await.unwrap();
        if d["waiters"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < end, "never saw {n} waiters on {name}: {d}");
        tokio::task::yield_now().await;
    }
}

/// The number of threads of process `pid`.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

fn assert_few_threads(server: &Server) {
    let n = threads(server.pid());
    assert!(
        n < 64,
        "{WAITERS} blocked waiters should not cost a thread each; procshared has {n} threads"
    );
}

async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<procshare::Result<T>>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("released in time")
                .unwrap()
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_set_releases_a_thousand_waiters() {
    let server = Server::start();
    let ms = managers(&server).await;
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        let e = ms[i % CONNECTIONS].event("go").await.unwrap();
        tasks.push(tokio::spawn(async move {
            e.wait(Some(Duration::from_secs(60))).await
        }));
    }
    until_waiting(&ms[0], "go", WAITERS as u64).await;
    assert_few_threads(&server);
    ms[0].event("go").await.unwrap().set().await.unwrap();
    let results = join_all(tasks).await;
    assert!(
        results.iter().all(|set| *set),
        "every waiter saw the event set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_notify_all_releases_a_thousand_waiters() {
    let server = Server::start();
    let ms = managers(&server).await;
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        // Each waiter is its own owner of the condition's RLock.
        let c = ms[i % CONNECTIONS]
            .condition("cv", None)
            .await
            .unwrap()
            .with_task(&format!("t{i}"));
        tasks.push(tokio::spawn(async move {
            c.acquire().await?;
            let notified = c.wait(Some(Duration::from_secs(60))).await?;
            c.release().await?;
            Ok(notified)
        }));
    }
    until_waiting(&ms[0], "cv", WAITERS as u64).await;
    assert_few_threads(&server);
    let c = ms[0].condition("cv", None).await.unwrap();
    c.acquire().await.unwrap();
    assert_eq!(c.notify_all().await.unwrap(), WAITERS as u64);
    c.release().await.unwrap();
    let results = join_all(tasks).await;
    assert!(results.iter().all(|n| *n), "every waiter was notified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_blocked_getters_each_get_one_put() {
    let server = Server::start();
    let ms = managers(&server).await;
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        let q = ms[i % CONNECTIONS].queue::<u64>("jobs", 0).await.unwrap();
        tasks.push(tokio::spawn(async move {
            q.get_timeout(Duration::from_secs(60)).await
        }));
    }
    until_waiting(&ms[0], "jobs", WAITERS as u64).await;
    assert_few_threads(&server);
    let q = ms[0].queue::<u64>("jobs", 0).await.unwrap();
    for i in 0..WAITERS as u64 {
        q.put(i).await.unwrap();
    }
    let mut got = join_all(tasks).await;
    got.sort();
    assert_eq!(
        got,
        (0..WAITERS as u64).collect::<Vec<_>>(),
        "each item went to exactly one getter"
    );
    assert_eq!(q.qsize().await.unwrap(), 0);
}
