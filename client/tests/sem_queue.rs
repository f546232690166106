//! Queue and JoinableQueue semantics against a real `procshared`, after
//! CPython's `_TestQueue` (test_put, test_get, test_fork, test_qsize,
//! test_task_done, test_timeout). Producers or consumers on the other side
//! are real `procshare` processes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    cli_bin, finish_child, spawn_cli_child, stdout_of, wait_for_field, wait_for_waiters, CliGroup,
    Server, DEADLINE,
};
use procshare::{Error, Manager};

const SHORT: Duration = Duration::from_millis(200);

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

/// test_put / test_get / test_qsize: every way to put and get, Full and
/// Empty, and the sizes along the way.
#[tokio::test(flavor = "multi_thread")]
async fn put_get_full_empty_and_sizes() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<i64>("q", 6).await.unwrap();
    assert_eq!(q.maxsize().await.unwrap(), 6);
    assert!(q.empty().await.unwrap());
    assert!(!q.full().await.unwrap());
    assert_eq!(q.qsize().await.unwrap(), 0);

    q.put(1).await.unwrap();
    q.put_timeout(2, SHORT).await.unwrap();
    q.put_nowait(3).await.unwrap();
    assert_eq!(q.qsize().await.unwrap(), 3);
    assert!(!q.empty().await.unwrap());
    q.put(4).await.unwrap();
    q.put_timeout(5, DEADLINE).await.unwrap();
    q.put_nowait(6).await.unwrap();
    assert_eq!(q.qsize().await.unwrap(), 6);
    assert!(q.full().await.unwrap());

    // No room: Full at once, or after the timeout; nothing was added.
    assert!(matches!(q.put_nowait(7).await, Err(Error::Full(_))));
    assert!(matches!(q.put_timeout(7, SHORT).await, Err(Error::Full(_))));
    assert_eq!(q.qsize().await.unwrap(), 6);

    // FIFO, whichever way an item is taken.
    assert_eq!(q.get().await.unwrap(), 1);
    assert_eq!(q.get_timeout(SHORT).await.unwrap(), 2);
    assert_eq!(q.get_nowait().await.unwrap(), 3);
    assert!(!q.full().await.unwrap());
    assert_eq!(q.qsize().await.unwrap(), 3);
    assert_eq!(q.get().await.unwrap(), 4);
    assert_eq!(q.get_timeout(DEADLINE).await.unwrap(), 5);
    assert_eq!(q.get_nowait().await.unwrap(), 6);
    assert!(q.empty().await.unwrap());

    // Nothing left: Empty at once, or after the timeout.
    assert!(matches!(q.get_nowait().await, Err(Error::Empty(_))));
    assert!(matches!(q.get_timeout(SHORT).await, Err(Error::Empty(_))));
    assert_eq!(q.qsize().await.unwrap(), 0);
    assert_eq!(wait_for_waiters(&m, "q", 0).await["len"], 0);

    // An unbounded queue is never full.
    let u = m.queue::<String>("unbounded", 0).await.unwrap();
    assert_eq!(u.maxsize().await.unwrap(), 0);
    for i in 0..100 {
        u.put_nowait(i.to_string()).await.unwrap();
    }
    assert!(!u.full().await.unwrap());
    assert_eq!(u.qsize().await.unwrap(), 100);

    // An existing queue keeps its maxsize; another kind is refused.
    let again = m.queue::<i64>("q", 1).await.unwrap();
    assert_eq!(again.maxsize().await.unwrap(), 6);
    assert!(matches!(
        m.joinable_queue::<i64>("q", 6).await,
        Err(Error::WrongKind(_))
    ));
}

/// test_fork: producers in other processes, the consumer here. Several
/// producer processes run at once; each one's items arrive in its order.
#[tokio::test(flavor = "multi_thread")]
async fn fifo_across_concurrent_producer_processes() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let q = m.queue::<(u32, u32)>("work", 0).await.unwrap();
    const PRODUCERS: u32 = 4;
    const ITEMS: u32 = 10;
    // Each producer is one shell process putting its items one after the
    // other, each put a `procshare` process of its own.
    let script = r#"bin=$1; url=$2; p=$3; n=$4; i=0
        while [ "$i" -lt "$n" ]; do
            "$bin" --url "$url" queue put work "[$p,$i]" || exit 1
            i=$((i + 1))
        done"#;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(cli_bin())
                .arg(&url)
                .arg(p.to_string())
                .arg(ITEMS.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sh")
        })
        .collect();

    let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for _ in 0..PRODUCERS * ITEMS {
        let (p, i) = q.get_timeout(DEADLINE).await.unwrap();
        seen.entry(p).or_default().push(i);
    }
    for child in producers {
        let out = finish_child(child);
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(seen.len(), PRODUCERS as usize);
    for (p, items) in seen {
        assert_eq!(
            items,
            (0..ITEMS).collect::<Vec<_>>(),
            "producer {p}'s items out of order"
        );
    }
    assert!(matches!(q.get_nowait().await, Err(Error::Empty(_))));
}

/// The other way round: the producer here, consumer processes there, and
/// order kept across them.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_processes_take_items_in_order() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let q = m.queue::<serde_json::Value>("jobs", 0).await.unwrap();
    let items = [
        serde_json::json!(1),
        serde_json::json!("two"),
        serde_json::json!([3, 3.5]),
        serde_json::json!({"four": null}),
    ];
    for it in &items {
        q.put(it.clone()).await.unwrap();
    }
    for it in &items {
        let out = finish_child(spawn_cli_child(&url, &["queue", "get", "jobs"]));
        assert!(out.status.success(), "{out:?}");
        let got: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
        assert_eq!(&got, it);
    }
    assert!(q.empty().await.unwrap());
}

/// Consumer processes blocked on an empty queue each get exactly one of the
/// items put afterwards; none is lost or duplicated.
#[tokio::test(flavor = "multi_thread")]
async fn blocked_consumer_processes_each_get_one_item() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<i64>("q", 0).await.unwrap();
    let mut consumers = CliGroup::new(&s.url());
    consumers.spawn_n(3, &["queue", "get", "q"]);
    wait_for_waiters(&m, "q", 3).await;
    assert!(consumers.exited_now().is_none());

    for i in [10, 20, 30] {
        q.put(i).await.unwrap();
    }
    let mut got = BTreeSet::new();
    for (_, out) in consumers.exits(3) {
        assert!(out.status.success(), "{out:?}");
        got.insert(stdout_of(&out).parse::<i64>().unwrap());
    }
    assert_eq!(got, BTreeSet::from([10, 20, 30]));
    assert_eq!(wait_for_waiters(&m, "q", 0).await["len"], 0);
}

/// A bounded queue makes a producer process wait until a get makes room;
/// its item then goes in behind the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_blocks_a_producer_process_until_a_get() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<i64>("bq", 2).await.unwrap();
    q.put(1).await.unwrap();
    q.put(2).await.unwrap();

    let mut producer = CliGroup::new(&s.url());
    producer.spawn(&["queue", "put", "bq", "3"]);
    let d = wait_for_waiters(&m, "bq", 1).await;
    assert_eq!(d["len"], 2);
    assert!(producer.exited_now().is_none(), "the put waits for room");

    assert_eq!(q.get().await.unwrap(), 1);
    let (_, out) = producer.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(q.qsize().await.unwrap(), 2);
    assert!(q.full().await.unwrap());
    assert_eq!(q.get().await.unwrap(), 2);
    assert_eq!(q.get().await.unwrap(), 3);
    assert!(q.empty().await.unwrap());
}

/// test_timeout: waits that run out report Empty / Full and change nothing;
/// a wait with a timeout that is answered in time returns the item.
#[tokio::test(flavor = "multi_thread")]
async fn get_and_put_with_timeouts() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<String>("t", 1).await.unwrap();
    assert!(matches!(
        q.get_timeout(Duration::ZERO).await,
        Err(Error::Empty(_))
    ));
    assert!(matches!(q.get_timeout(SHORT).await, Err(Error::Empty(_))));
    q.put_timeout("a".into(), SHORT).await.unwrap();
    assert!(matches!(
        q.put_timeout("b".into(), SHORT).await,
        Err(Error::Full(_))
    ));
    assert_eq!(q.get_timeout(SHORT).await.unwrap(), "a");
    // A zero timeout still takes what is there, and puts where there is room.
    q.put_timeout("z".into(), Duration::ZERO).await.unwrap();
    assert!(matches!(
        q.put_timeout("y".into(), Duration::ZERO).await,
        Err(Error::Full(_))
    ));
    assert_eq!(q.get_timeout(Duration::ZERO).await.unwrap(), "z");

    // A get with a (long) timeout, answered by a producer process.
    let getter = tokio::spawn({
        let q = q.clone();
        async move { q.get_timeout(DEADLINE).await }
    });
    wait_for_waiters(&m, "t", 1).await;
    let out = finish_child(spawn_cli_child(
        &s.url(),
        &["queue", "put", "t", "\"late\""],
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(getter.await.unwrap().unwrap(), "late");
    wait_for_waiters(&m, "t", 0).await;
}

/// test_task_done: task_done past the count is an error; join waits until
/// every item put was marked done, while consumer processes take them.
#[tokio::test(flavor = "multi_thread")]
async fn joinable_queue_task_done_and_join() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let jq = m.joinable_queue::<i64>("jq", 0).await.unwrap();
    assert!(matches!(
        jq.task_done().await,
        Err(Error::InvalidArgument(_))
    ));
    // Nothing unfinished: join returns at once.
    jq.join_timeout(SHORT).await.unwrap();
    jq.join().await.unwrap();

    for i in 0..3 {
        jq.put(i).await.unwrap();
    }
    assert_eq!(m.describe("jq").await.unwrap()["unfinished"], 3);
    assert!(matches!(
        jq.join_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));

    let joiner = tokio::spawn({
        let jq = jq.clone();
        async move { jq.join().await }
    });
    wait_for_waiters(&m, "jq", 1).await;

    // Three consumer processes take the items (a get is not a task_done).
    for i in 0..3 {
        let out = finish_child(spawn_cli_child(&url, &["queue", "get", "jq"]));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), i.to_string());
    }
    let d = wait_for_waiters(&m, "jq", 1).await;
    assert_eq!(d["len"], 0);
    assert_eq!(d["unfinished"], 3);
    assert!(!joiner.is_finished());

    jq.task_done().await.unwrap();
    jq.task_done().await.unwrap();
    let d = wait_for_field(&m, "jq", "unfinished", 1).await;
    assert_eq!(d["waiters"], 1, "join still waits: {d}");
    assert!(!joiner.is_finished());

    jq.task_done().await.unwrap();
    joiner.await.unwrap().unwrap();
    assert!(matches!(
        jq.task_done().await,
        Err(Error::InvalidArgument(_))
    ));
    jq.join_timeout(SHORT).await.unwrap();
    assert_eq!(wait_for_waiters(&m, "jq", 0).await["unfinished"], 0);

    // A plain queue has neither.
    let plain = m.queue::<i64>("plain", 0).await.unwrap();
    plain.put(1).await.unwrap();
    assert!(matches!(plain.task_done().await, Err(Error::WrongKind(_))));
    assert!(matches!(
        plain.join_timeout(SHORT).await,
        Err(Error::WrongKind(_))
    ));
}

/// The blocking facade: a consumer thread here, a producer process there.
#[test]
fn blocking_queue_with_a_producer_process() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let q = m.queue::<Vec<i64>>("bq", 1).unwrap();
    let mut producers = CliGroup::new(&s.url());
    producers.spawn(&["queue", "put", "bq", "[1,2]"]);
    assert_eq!(q.get_timeout(DEADLINE).unwrap(), vec![1, 2]);
    let (_, out) = producers.next_exit();
    assert!(out.status.success(), "{out:?}");
    q.put_nowait(vec![3]).unwrap();
    assert!(q.full().unwrap());
    assert!(matches!(q.put_nowait(vec![4]), Err(Error::Full(_))));
    assert_eq!(q.get().unwrap(), vec![3]);
    assert!(matches!(q.get_nowait(), Err(Error::Empty(_))));
    assert!(matches!(q.get_timeout(SHORT), Err(Error::Empty(_))));
}
