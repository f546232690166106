//! The session stream: many calls in flight over one connection, against
//! the real `procshared`.

mod common;

use std::collections::HashSet;

use common::{signal, spawn_cli_child, wait_for_waiters, Server, DEADLINE};
use procshare::{Error, Manager};

/// A `get` on queue "q" over `m`'s stream, blocked on the server.
async fn blocked_get(
    m: &Manager,
) -> (
    procshare::QueueProxy<i64>,
    tokio::task::JoinHandle<procshare::Result<i64>>,
) {
    let q = m.queue::<i64>("q", 0).await.unwrap();
    let getter = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    wait_for_waiters(m, "q", 1).await;
    (q, getter)
}

/// Checks the blocked `get` is still waiting, then that it takes a put.
async fn unblock(
    q: &procshare::QueueProxy<i64>,
    getter: tokio::task::JoinHandle<procshare::Result<i64>>,
) {
    assert!(!getter.is_finished());
    q.put(7).await.unwrap();
    let got = tokio::time::timeout(DEADLINE, getter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_over_one_stream_each_get_their_own_answer() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, i64>("counts").await.unwrap();
    let (tasks, per_task) = (64, 200);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let d = d.clone();
        handles.push(tokio::spawn(async move {
            let own = format!("task-{t}");
            let mut shared_seen = Vec::with_capacity(per_task);
            for i in 0..per_task as i64 {
                // A key only this task touches: its answers must be exactly
                // its own sequence, in order.
                assert_eq!(d.add(&own, 1).await.unwrap(), (i, i + 1));
                shared_seen.push(d.add(&"shared".to_owned(), 1).await.unwrap().0);
            }
            shared_seen
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for prev in h.await.unwrap() {
            assert!(seen.insert(prev), "two calls got the same answer {prev}");
        }
    }
    let total = (tasks * per_task) as i64;
    assert_eq!(seen, (0..total).collect::<HashSet<_>>());
    assert_eq!(d.get(&"shared".to_owned()).await.unwrap(), Some(total));
}

#[tokio::test]
async fn a_blocked_call_does_not_hold_up_the_others_on_the_stream() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let (q, getter) = blocked_get(&m).await;
    // The same manager, so the same stream, while the get waits.
    let v = m.value::<i64>("v", &0).await.unwrap();
    for _ in 0..100 {
        v.fetch_add(1).await.unwrap();
    }
    assert_eq!(v.get().await.unwrap(), 100);
    unblock(&q, getter).await;
}

#[tokio::test]
async fn a_call_given_up_by_its_caller_is_cancelled_on_the_server_and_takes_nothing() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let q = m.queue::<i64>("q", 0).await.unwrap();
    let given_up = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    wait_for_waiters(&m, "q", 1).await;
    given_up.abort();
    // The stream tells the server; its waiter goes.
    wait_for_waiters(&m, "q", 0).await;
    q.put(1).await.unwrap();
    let other = Manager::connect(&s.url()).await.unwrap();
    let q2 = other.queue::<i64>("q", 0).await.unwrap();
    assert_eq!(q2.get_timeout(DEADLINE).await.unwrap(), 1);
}

#[tokio::test]
async fn a_killed_client_process_waiting_on_its_stream_takes_nothing() {
    let s = Server::start();
    let url = s.url();
    let m = Manager::connect(&url).await.unwrap();
    let q = m.queue::<i64>("jobs", 0).await.unwrap();
    let child = spawn_cli_child(&url, &["queue", "get", "jobs"]);
    wait_for_waiters(&m, "jobs", 1).await;
    signal(child.id(), "KILL");
    let mut child = child;
    let _ = child.wait();
    // The connection closes with the process: its waiter is cancelled
    // (long before the session's lease would run out).
    wait_for_waiters(&m, "jobs", 0).await;
    q.put(42).await.unwrap();
    let other = Manager::connect(&url).await.unwrap();
    let q2 = other.queue::<i64>("jobs", 0).await.unwrap();
    assert_eq!(q2.get_timeout(DEADLINE).await.unwrap(), 42);
}

#[tokio::test]
async fn unary_calls_still_work_and_agree_with_the_stream() {
    let s = Server::start();
    let unary = Manager::builder()
        .url(s.url())
        .unary(true)
        .connect()
        .await
        .unwrap();
    let streamed = Manager::connect(&s.url()).await.unwrap();
    let a = unary.dict::<String, i64>("d").await.unwrap();
    let b = streamed.dict::<String, i64>("d").await.unwrap();
    a.insert("k".into(), 1).await.unwrap();
    assert_eq!(b.add(&"k".into(), 2).await.unwrap(), (1, 3));
    assert_eq!(a.get(&"k".into()).await.unwrap(), Some(3));
    let err = a.pop(&"missing".into()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = b.pop(&"missing".into()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_server_restart_breaks_the_stream_and_calls_go_on_over_a_new_one() {
    let s = Server::start();
    let addr = s.addr.clone();
    let url = s.url();
    let m = Manager::builder()
        .url(&url)
        .call_timeout(DEADLINE)
        .connect()
        .await
        .unwrap();
    let v = m.value::<i64>("v", &0).await.unwrap();
    v.set(&5).await.unwrap();
    assert!(s.terminate());
    // A new daemon on the same port (state is in memory: it starts empty).
    let _s2 = Server::start_on(&addr, &[]);
    let v = m.value::<i64>("v", &1).await.unwrap();
    assert_eq!(v.get().await.unwrap(), 1);
}

/// A dict whose `items()` answer is about 6.7 MB encoded.
async fn fill_large(d: &procshare::DictProxy<i64, String>) {
    let v = "x".repeat(100);
    for chunk in 0..60 {
        let items: Vec<(i64, String)> = (0..1000).map(|i| (chunk * 1000 + i, v.clone())).collect();
        d.update(items).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_fails_alone_and_the_stream_goes_on() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let (q, getter) = blocked_get(&m).await;
    let d = m.dict::<i64, String>("big").await.unwrap();
    fill_large(&d).await;
    // An answer over the server's --max-message-bytes (4 MiB): refused on
    // its own, with the flag named (it used to break the stream, and the
    // call was retried until its deadline, then UNAVAILABLE).
    match d.items().await {
        Err(Error::ResourceExhausted(why)) => assert!(why.contains("--max-message-bytes"), "{why}"),
        other => panic!(
            "expected ResourceExhausted, got {:?}",
            other.map(|i| i.len())
        ),
    }
    // A request over it: refused on its own too, and nothing applied.
    let v = "y".repeat(100);
    let too_big: Vec<(i64, String)> = (100_000..150_000).map(|i| (i, v.clone())).collect();
    match d.update(too_big).await {
        Err(Error::OutOfRange(why)) => assert!(why.contains("too large"), "{why}"),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert_eq!(d.len().await.unwrap(), 60_000);
    unblock(&q, getter).await;

    // A server that sends larger messages: the client takes them.
    let roomy = Server::start_with(&["--max-message-bytes", "16777216"]);
    let m = Manager::connect(&roomy.url()).await.unwrap();
    let d = m.dict::<i64, String>("big").await.unwrap();
    fill_large(&d).await;
    assert_eq!(d.items().await.unwrap().len(), 60_000);
}

#[tokio::test]
async fn a_call_to_a_stopped_server_fails_at_its_deadline_and_the_stream_goes_on() {
    let s = Server::start();
    let limit = std::time::Duration::from_millis(800);
    let m = Manager::builder()
        .url(s.url())
        .call_timeout(limit)
        .connect()
        .await
        .unwrap();
    let v = m.value::<i64>("v", &0).await.unwrap();
    v.set(&7).await.unwrap();
    // Stopped, the server keeps its connections but answers nothing.
    signal(s.pid(), "STOP");
    wait_until_stopped(s.pid());
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(DEADLINE, v.get()).await;
    let took = started.elapsed();
    signal(s.pid(), "CONT");
    let err = r
        .expect("the call ended on its own, by its deadline")
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(took >= limit, "not before its deadline: {took:?}");
    // The same stream carries the next call (and the server took the
    // cancellation of the one that timed out).
    assert_eq!(v.get().await.unwrap(), 7);
    v.set(&8).await.unwrap();
    assert_eq!(v.get().await.unwrap(), 8);
}

/// Waits (at most `DEADLINE`) until every thread of process `pid` is
/// stopped: `kill -STOP` returns before a thread running on another CPU
/// has stopped, and it could still answer a call.
fn wait_until_stopped(pid: u32) {
    let stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command name, which is in parentheses.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        })
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    while !stopped() {
        assert!(
            std::time::Instant::now() < deadline,
            "procshared {pid} did not stop"
        );
        std::thread::yield_now();
    }
}

/// Many large requests and answers in flight at once: far more bytes than
/// the HTTP/2 flow-control windows hold (4 MiB a stream each way), so the
/// stream goes on only if both ends give window back as they take data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_calls_in_flight_at_once_pass_the_flow_control_windows_both_ways() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, String>("big").await.unwrap();
    let n = 24;
    // Just under the default --max-value-bytes (1 MiB), each its own.
    let value = |i: usize| char::from(b'a' + i as u8).to_string().repeat(1_000_000);
    let sets: Vec<_> = (0..n)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move { d.insert(format!("k{i}"), value(i)).await })
        })
        .collect();
    for h in sets {
        tokio::time::timeout(DEADLINE, h)
            .await
            .expect("sets in flight finish")
            .unwrap()
            .unwrap();
    }
    let gets: Vec<_> = (0..n)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move { (i, d.get(&format!("k{i}")).await) })
        })
        .collect();
    for h in gets {
        let (i, got) = tokio::time::timeout(DEADLINE, h)
            .await
            .expect("gets in flight finish")
            .unwrap();
        assert!(got.unwrap() == Some(value(i)), "key k{i}");
    }
}

/// Sockets procshared holds (its listener and its clients' connections).
fn server_sockets(s: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// The stream's own connection by default, tonic's shared one when asked:
/// the calls and their waits behave the same on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_has_a_connection_of_its_own_or_shares_tonics_when_asked() {
    for shared in [false, true] {
        let s = Server::start();
        let before = server_sockets(&s);
        let m = procshare::Manager::builder()
            .url(s.url())
            .shared_stream_connection(shared)
            .connect()
            .await
            .unwrap();
        let (q, getter) = blocked_get(&m).await;
        unblock(&q, getter).await;
        let d = m.dict::<String, i64>("d").await.unwrap();
        d.insert("k".into(), 1).await.unwrap();
        assert_eq!(d.get(&"k".into()).await.unwrap(), Some(1));
        let want = if shared { 1 } else { 2 };
        assert_eq!(
            server_sockets(&s) - before,
            want,
            "connections of one client (shared: {shared})"
        );
    }
}
