//! Sessions and leases with real processes: a client killed with SIGKILL
//! frees what it held when its lease runs out; a clean close frees it at
//! once; a server restarted under a running client is carried on from; a
//! mutation whose reply was lost is applied once, and one whose large answer
//! was not kept is refused rather than applied twice; a session keeps its
//! answers within a bound; limits refuse with a clear error and change
//! nothing.

mod common;

use std::time::Duration;

use common::{cli_ok, read_line_within, signal, wait_within, Server, DEADLINE};
use procshare::{Error, Manager};

fn spawn_cli(url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(common::cli_bin())
        .arg("--url")
        .arg(url)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn procshare")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_by_a_killed_process_comes_free_within_the_lease() {
    let s = Server::start();
    let url = s.url();
    let mut holder = spawn_cli(&url, &["lock", "acquire", "printer", "--hold", "600"]);
    let token = read_line_within(holder.stdout.take().unwrap(), DEADLINE).expect("token");
    assert_eq!(token.trim(), "1");
    // `procshare sessions` shows who holds what.
    let listed = cli_ok(&url, &["sessions"]);
    assert!(listed.contains("lock printer"), "{listed}");

    signal(holder.id(), "KILL");
    wait_within(&mut holder, DEADLINE).expect("killed");
    // The killed process never released it; its lease (5 s) frees it, and
    // a waiter blocked on the server gets it.
    let m = Manager::connect(&url).await.unwrap();
    let lock = m.lock("printer").await.unwrap();
    assert!(
        lock.locked().await.unwrap(),
        "still held right after the kill"
    );
    let t = lock
        .acquire_timeout(Duration::from_secs(5 + 10))
        .await
        .unwrap();
    assert_eq!(
        t, 2,
        "the next fencing token: a stale holder can be refused"
    );
    let listed = cli_ok(&url, &["sessions"]);
    assert!(
        !listed.contains("lock printer") || listed.contains(&m.client_id()),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn semaphore_permits_of_a_killed_process_come_back() {
    let s = Server::start();
    let url = s.url();
    let mut holder = spawn_cli(
        &url,
        &[
            "semaphore",
            "acquire",
            "slots",
            "--value",
            "1",
            "--hold",
            "600",
        ],
    );
    read_line_within(holder.stdout.take().unwrap(), DEADLINE).expect("acquired");
    let m = Manager::connect(&url).await.unwrap();
    let sem = m.semaphore("slots", 1).await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 0);
    signal(holder.id(), "KILL");
    wait_within(&mut holder, DEADLINE).expect("killed");
    sem.acquire_timeout(Duration::from_secs(15)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_close_frees_at_once() {
    let s = Server::start();
    let a = Manager::connect(&s.url()).await.unwrap();
    let b = Manager::connect(&s.url()).await.unwrap();
    a.lock("l").await.unwrap().acquire().await.unwrap();
    let lb = b.lock("l").await.unwrap();
    assert!(lb.try_acquire().await.unwrap().is_none());
    a.close().await.unwrap();
    // No lease to wait for: the close gave it back.
    assert!(lb.try_acquire().await.unwrap().is_some());
    let err = a.lock("l").await.err().expect("a closed manager");
    assert!(matches!(err, Error::SessionExpired(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_carries_on_across_a_server_restart() {
    // A port that is free now, for both lives of the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start_on(&addr, &[]);
    let m = Manager::builder()
        .url(format!("http://{addr}"))
        .call_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let d = m.dict::<String, i64>("d").await.unwrap();
    d.insert("before".into(), 1).await.unwrap();
    let old_session = m.client_id();
    drop(s);
    // Restart while the client is between calls; its next call waits for
    // the server, finds its session gone, opens a new one and goes on.
    let restarted = std::thread::spawn(move || Server::start_on(&addr, &[]));
    let r = m.dict::<String, i64>("d").await;
    let s = restarted.join().unwrap();
    let d = r.unwrap();
    d.insert("after".into(), 2).await.unwrap();
    assert_eq!(d.get(&"after".into()).await.unwrap(), Some(2));
    assert_ne!(m.client_id(), old_session, "a new session");
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mutation_whose_reply_was_lost_is_applied_once() {
    // Every 3rd mutation's reply is dropped after it was applied.
    let s = Server::start_with(&["--fault-drop-replies", "3"]);
    let m = Manager::connect(&s.url()).await.unwrap();
    let v = m.value::<i64>("n", &0).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(v.fetch_add(1).await.unwrap());
    }
    assert_eq!(
        seen,
        (0..30).collect::<Vec<i64>>(),
        "each retry got the first attempt's answer"
    );
    assert_eq!(v.get().await.unwrap(), 30, "applied exactly once each");
    let l = m.list::<i64>("l").await.unwrap();
    for i in 0..10 {
        l.push(i).await.unwrap();
    }
    assert_eq!(l.snapshot().await.unwrap(), (0..10).collect::<Vec<i64>>());
}

/// The server's `kept_answer_bytes`, from `procshare stats`.
fn kept_answer_bytes(url: &str) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&cli_ok(url, &["stats"])).expect("stats is JSON");
    stats["kept_answer_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no kept_answer_bytes in {stats}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_get_whose_item_was_too_large_to_keep_fails_and_takes_nothing_more() {
    retried_gets_of_items_too_large_to_keep("--session-answer-bytes").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_sessions_together_keep_answers_within_their_bound() {
    // The session's own budget (2 MiB) would keep the 200 kB items; the
    // bound of all sessions together does not.
    retried_gets_of_items_too_large_to_keep("--max-kept-answer-bytes").await;
}

/// With answers over 100,000 bytes not kept (by `limit`), gets of a
/// 200 kB item whose first reply was lost fail, and take nothing more.
async fn retried_gets_of_items_too_large_to_keep(limit: &str) {
    // Every 2nd mutation's reply is dropped after it was applied: from the
    // second mutation on, every call's first reply is lost and it is retried.
    let s = Server::start_with(&["--fault-drop-replies", "2", limit, "100000"]);
    let m = Manager::connect(&s.url()).await.unwrap();
    let q = m.queue::<String>("jobs", 0).await.unwrap();
    let big = |c: &str| c.repeat(200_000);
    let medium = "m".repeat(50_000);
    let items = [
        "w".to_owned(),
        big("a"),
        medium.clone(),
        big("b"),
        "s".into(),
    ];
    for item in &items {
        q.put(item.clone()).await.unwrap();
    }
    assert_eq!(q.get().await.unwrap(), "w");
    for expected_lost in [true, false, true, false] {
        match q.get().await {
            Err(Error::AnswerLost(why)) if expected_lost => assert!(why.contains(limit), "{why}"),
            Ok(item) if !expected_lost => assert!(item == medium || item == "s"),
            other => panic!(
                "expected {}, got {:?}",
                if expected_lost {
                    "AnswerLost"
                } else {
                    "the item"
                },
                other.map(|i| i.len())
            ),
        }
    }
    assert_eq!(q.qsize().await.unwrap(), 0, "each get took one item, once");
    assert!(kept_answer_bytes(&s.url()) <= 100_000 + 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_taking_large_items_does_not_leave_them_on_the_server() {
    let s = Server::start();
    let url = s.url();
    let item = "x".repeat(512 * 1024);
    let producer = Manager::connect(&url).await.unwrap();
    let consumer = Manager::connect(&url).await.unwrap();
    let put = producer.queue::<String>("blobs", 0).await.unwrap();
    let get = consumer.queue::<String>("blobs", 0).await.unwrap();
    for _ in 0..200 {
        put.put(item.clone()).await.unwrap();
        assert_eq!(get.get().await.unwrap().len(), item.len());
    }
    // Both sessions are still open. Each request says which answers its
    // client has, so the consumer's session keeps its last item only: not
    // 200 items (100 MiB), nor the 2 MiB budget's worth.
    let kept = kept_answer_bytes(&url);
    assert!(kept < item.len() as u64 + 64 * 1024, "kept {kept} bytes");
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    assert!(rss_kib < 64 * 1024, "procshared holds {rss_kib} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_clearly_and_change_nothing() {
    let s = Server::start_with(&[
        "--max-objects",
        "2",
        "--max-queue-len",
        "2",
        "--max-value-bytes",
        "200",
        "--max-waiters",
        "1",
        "--max-name-bytes",
        "8",
    ]);
    let m = Manager::connect(&s.url()).await.unwrap();
    let err = m
        .dict::<i64, i64>("name-too-long")
        .await
        .err()
        .expect("a long name");
    assert!(
        matches!(err, Error::InvalidArgument(ref msg) if msg.contains("limit is 8")),
        "{err}"
    );
    let q = m.queue::<String>("q", 0).await.unwrap();
    m.event("e").await.unwrap();
    let err = m
        .dict::<i64, i64>("third")
        .await
        .err()
        .expect("too many objects");
    assert!(
        matches!(err, Error::ResourceExhausted(ref msg) if msg.contains("--max-objects")),
        "{err}"
    );
    assert_eq!(m.list_objects().await.unwrap().len(), 2);

    q.put("a".into()).await.unwrap();
    q.put("b".into()).await.unwrap();
    let err = q.put("c".into()).await.unwrap_err();
    assert!(
        matches!(err, Error::ResourceExhausted(ref msg) if msg.contains("--max-queue-len")),
        "{err}"
    );
    assert_eq!(q.qsize().await.unwrap(), 2);
    q.get().await.unwrap();
    let err = q.put("x".repeat(500)).await.unwrap_err();
    assert!(
        matches!(err, Error::ResourceExhausted(ref msg) if msg.contains("--max-value-bytes")),
        "{err}"
    );
    assert_eq!(q.qsize().await.unwrap(), 1);

    let e = m.event("e").await.unwrap();
    let waiting = tokio::spawn({
        let e = e.clone();
        async move { e.wait(Some(Duration::from_secs(30))).await }
    });
    loop {
        if m.describe("e").await.unwrap()["waiters"] == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let err = e.wait(Some(Duration::from_secs(30))).await.unwrap_err();
    assert!(
        matches!(err, Error::ResourceExhausted(ref msg) if msg.contains("--max-waiters")),
        "{err}"
    );
    e.set().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_few_sessions_refuses_more() {
    let s = Server::start_with(&["--max-sessions", "1"]);
    let first = Manager::connect(&s.url()).await.unwrap();
    let err = Manager::connect(&s.url())
        .await
        .err()
        .expect("one session only");
    assert!(
        matches!(err, Error::ResourceExhausted(ref msg) if msg.contains("--max-sessions")),
        "{err}"
    );
    first.close().await.unwrap();
    Manager::connect(&s.url()).await.expect("room again");
}
