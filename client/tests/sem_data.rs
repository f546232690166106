//! Namespace, Array and Pipe semantics against a real `procshared`, after
//! CPython's `_TestNamespace` / test_namespace, `_TestArray` and
//! `_TestConnection`. The far end of a pipe is a real process: this test
//! binary, run again as a child.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{finish_child, wait_for_waiters, Server, DEADLINE};
use procshare::wire::{self as pb, op::Kind as Op};
use procshare::{Error, Manager};
use serde::{Deserialize, Serialize};

const SHORT: Duration = Duration::from_millis(200);

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

// ------------------------------------------------------------ Namespace

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    name: String,
    job: String,
    level: i64,
    tags: Vec<String>,
    boss: Option<String>,
}

/// test_namespace: attributes set, read, deleted; a missing one is an error
/// (AttributeError); a whole struct stored and loaded.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_attributes_and_structs() {
    let s = Server::start();
    let m = manager(&s).await;
    let ns = m.namespace("ns").await.unwrap();
    ns.set("name", "Bob").await.unwrap();
    ns.set("job", "Builder").await.unwrap();
    ns.set("_hidden", &"hidden").await.unwrap();
    assert_eq!(ns.get::<String>("name").await.unwrap(), "Bob");
    assert_eq!(ns.get::<String>("_hidden").await.unwrap(), "hidden");
    assert!(matches!(
        ns.get::<String>("nope").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(ns.try_get::<String>("nope").await.unwrap(), None);
    // A value of the wrong type for the caller is a serde error, not a panic.
    assert!(matches!(ns.get::<i64>("name").await, Err(Error::Serde(_))));

    ns.delete("name").await.unwrap();
    assert!(matches!(
        ns.get::<String>("name").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(ns.delete("name").await, Err(Error::NotFound(_))));
    let attrs = ns.attributes().await.unwrap();
    assert_eq!(
        attrs.keys().collect::<Vec<_>>(),
        ["_hidden", "job"],
        "{attrs:?}"
    );

    // store replaces every attribute; load reads them back as the struct.
    let bob = Job {
        name: "Bob".into(),
        job: "Builder".into(),
        level: 3,
        tags: vec!["can".into(), "fix".into()],
        boss: None,
    };
    ns.store(&bob).await.unwrap();
    assert_eq!(ns.load::<Job>().await.unwrap(), bob);
    assert!(matches!(
        ns.get::<String>("_hidden").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(ns.get::<i64>("level").await.unwrap(), 3);

    // update sets the given fields and keeps the others.
    #[derive(Serialize)]
    struct Promotion {
        level: i64,
        boss: Option<String>,
    }
    ns.set("extra", &true).await.unwrap();
    ns.update(&Promotion {
        level: 4,
        boss: Some("Wendy".into()),
    })
    .await
    .unwrap();
    let loaded: Job = ns.load().await.unwrap();
    assert_eq!(loaded.level, 4);
    assert_eq!(loaded.boss.as_deref(), Some("Wendy"));
    assert_eq!(loaded.tags, bob.tags);
    assert!(ns.get::<bool>("extra").await.unwrap());

    // A struct whose fields are missing does not load; a non-struct does
    // not store; neither changes anything.
    ns.delete("job").await.unwrap();
    assert!(matches!(ns.load::<Job>().await, Err(Error::Serde(_))));
    assert!(matches!(
        ns.store(&vec![1, 2]).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(ns.get::<i64>("level").await.unwrap(), 4);

    // Another client sees the same namespace.
    let other = manager(&s).await.namespace("ns").await.unwrap();
    let all: BTreeMap<String, serde_json::Value> = other.load().await.unwrap();
    assert_eq!(all["level"], 4);
    assert_eq!(all["boss"], "Wendy");
}

/// The blocking facade of a namespace.
#[test]
fn blocking_namespace() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let ns = m.namespace("config").unwrap();
    ns.set("workers", &8).unwrap();
    assert_eq!(ns.get::<u32>("workers").unwrap(), 8);
    assert_eq!(ns.try_get::<u32>("verbose").unwrap(), None);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config {
        workers: u32,
        verbose: bool,
    }
    ns.store(&Config {
        workers: 2,
        verbose: true,
    })
    .unwrap();
    assert_eq!(
        ns.load::<Config>().unwrap(),
        Config {
            workers: 2,
            verbose: true
        }
    );
    ns.delete("verbose").unwrap();
    assert!(matches!(ns.delete("verbose"), Err(Error::NotFound(_))));
    assert!(matches!(ns.load::<Config>(), Err(Error::Serde(_))));
}

// ---------------------------------------------------------------- Array

/// test_array / test_array_from_size: zeros to start, Python indexes and
/// slices, all-or-nothing range writes, atomic fetch_add, bounds errors.
#[tokio::test(flavor = "multi_thread")]
async fn array_of_i64() {
    let s = Server::start();
    let m = manager(&s).await;
    let a = m.array::<i64>("a", 10).await.unwrap();
    assert_eq!(a.len().await.unwrap(), 10);
    assert!(!a.is_empty().await.unwrap());
    assert_eq!(a.snapshot().await.unwrap(), vec![0; 10]);

    let seq: Vec<i64> = (0..10).map(|i| i * i).collect();
    a.set_range(0, &seq).await.unwrap();
    assert_eq!(a.snapshot().await.unwrap(), seq);
    assert_eq!(a.get(3).await.unwrap(), 9);
    assert_eq!(a.get(-1).await.unwrap(), 81);
    assert_eq!(a.get(-10).await.unwrap(), 0);
    a.set(-2, -64).await.unwrap();
    assert_eq!(a.get(8).await.unwrap(), -64);

    // Slices as in Python.
    assert_eq!(a.get_range(Some(2), Some(5)).await.unwrap(), [4, 9, 16]);
    assert_eq!(a.get_range(Some(-3), None).await.unwrap(), [49, -64, 81]);
    assert_eq!(a.get_range(None, Some(2)).await.unwrap(), [0, 1]);
    assert_eq!(
        a.get_range(Some(5), Some(2)).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(a.get_range(Some(8), Some(100)).await.unwrap(), [-64, 81]);

    // Out of range: an error, and nothing written.
    let before = a.snapshot().await.unwrap();
    for i in [10, -11, i64::MAX, i64::MIN] {
        assert!(matches!(a.get(i).await, Err(Error::OutOfRange(_))), "{i}");
        assert!(
            matches!(a.set(i, 1).await, Err(Error::OutOfRange(_))),
            "{i}"
        );
        assert!(
            matches!(a.fetch_add(i, 1).await, Err(Error::OutOfRange(_))),
            "{i}"
        );
    }
    assert!(matches!(
        a.set_range(8, &[1, 2, 3]).await,
        Err(Error::OutOfRange(_))
    ));
    assert!(matches!(
        a.set_range(11, &[1]).await,
        Err(Error::OutOfRange(_))
    ));
    assert_eq!(a.snapshot().await.unwrap(), before);
    a.set_range(8, &[7, 7]).await.unwrap();
    assert_eq!(a.get_range(Some(7), None).await.unwrap(), [49, 7, 7]);

    // fetch_add returns the previous value; overflow is refused.
    assert_eq!(a.fetch_add(0, 5).await.unwrap(), 0);
    assert_eq!(a.fetch_add(0, -7).await.unwrap(), 5);
    assert_eq!(a.get(0).await.unwrap(), -2);
    a.set(1, i64::MAX).await.unwrap();
    assert!(a.fetch_add(1, 1).await.is_err());
    assert_eq!(a.get(1).await.unwrap(), i64::MAX);

    // Same name with another type or length: refused.
    assert!(matches!(
        m.array::<f64>("a", 10).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        m.array::<i64>("a", 11).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        m.array::<i64>("a", 10).await.unwrap().get(1).await.unwrap(),
        i64::MAX
    );
}

/// Values of the wrong type for the array, sent raw: refused, nothing
/// written (a set_range is all or nothing).
#[tokio::test(flavor = "multi_thread")]
async fn array_refuses_values_of_the_wrong_type() {
    let s = Server::start();
    let m = manager(&s).await;
    let a = m.array::<i64>("a", 3).await.unwrap();
    let text = procshare::value::to_wire(&"seven").unwrap();
    let float = procshare::value::to_wire(&1.5f64).unwrap();
    let one = procshare::value::to_wire(&1i64).unwrap();
    for v in [text.clone(), float] {
        let set = Op::ArraySet(pb::ArraySet {
            index: 0,
            value: Some(v.clone()),
        });
        assert!(matches!(
            m.execute("a", set).await,
            Err(Error::InvalidArgument(_))
        ));
        let add = Op::ArrayFetchAdd(pb::ArrayFetchAdd {
            index: 0,
            delta: Some(v),
        });
        assert!(matches!(
            m.execute("a", add).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    let mixed = Op::ArraySetRange(pb::ArraySetRange {
        start: 0,
        values: vec![one.clone(), one, text],
    });
    assert!(matches!(
        m.execute("a", mixed).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(a.snapshot().await.unwrap(), [0, 0, 0]);

    // An f64 array takes ints as floats, but not strings.
    let f = m.array::<f64>("f", 2).await.unwrap();
    let int = Op::ArraySet(pb::ArraySet {
        index: 1,
        value: Some(procshare::value::to_wire(&2i64).unwrap()),
    });
    m.execute("f", int).await.unwrap();
    assert_eq!(f.snapshot().await.unwrap(), [0.0, 2.0]);
}

/// f64 and u8 arrays through the blocking facade; u8 refuses to overflow.
#[test]
fn blocking_arrays_of_f64_and_u8() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let f = m.array::<f64>("f", 3).unwrap();
    assert_eq!(f.snapshot().unwrap(), [0.0, 0.0, 0.0]);
    f.set(0, 1.5).unwrap();
    assert_eq!(f.fetch_add(0, 0.25).unwrap(), 1.5);
    assert_eq!(f.get(0).unwrap(), 1.75);
    f.set_range(1, &[-2.5, 1e300]).unwrap();
    assert_eq!(f.get_range(Some(-2), None).unwrap(), [-2.5, 1e300]);
    assert!(matches!(f.get(3), Err(Error::OutOfRange(_))));

    let b = m.array::<u8>("bytes", 4).unwrap();
    assert_eq!(b.len().unwrap(), 4);
    b.set(0, 250).unwrap();
    assert_eq!(b.fetch_add(0, 5).unwrap(), 250);
    assert_eq!(b.get(0).unwrap(), 255);
    assert!(b.fetch_add(0, 1).is_err(), "255 + 1 overflows a u8");
    assert_eq!(b.get(0).unwrap(), 255);
    b.set_range(1, &[1, 2, 3]).unwrap();
    assert_eq!(b.snapshot().unwrap(), [255, 1, 2, 3]);
    // 256 is not a u8: refused by the server, sent raw.
    let big = Op::ArraySet(pb::ArraySet {
        index: 1,
        value: Some(procshare::value::to_wire(&256i64).unwrap()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(async {
        let am = Manager::connect(&s.url()).await.unwrap();
        am.execute("bytes", big).await
    });
    assert!(matches!(raw, Err(Error::InvalidArgument(_))), "{raw:?}");
    assert_eq!(b.get(1).unwrap(), 1);
}

// ----------------------------------------------------------------- Pipe

/// test_connection (in one process): each end receives what the other
/// sent, in order; recv_timeout and poll on an empty end.
#[tokio::test(flavor = "multi_thread")]
async fn pipe_both_directions_in_order() {
    let s = Server::start();
    let m = manager(&s).await;
    let (a, b) = m.pipe::<serde_json::Value>("p").await.unwrap();
    assert_eq!((a.end(), b.end()), (0, 1));
    assert_eq!(a.other_end().end(), 1);

    assert!(!a.poll(None).await.unwrap());
    assert!(!b.poll(Some(SHORT)).await.unwrap());
    assert!(matches!(
        a.recv_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));

    let msgs = [
        serde_json::json!(1),
        serde_json::json!("two"),
        serde_json::json!([3, {"four": 4.5}]),
        serde_json::json!(null),
    ];
    for v in &msgs {
        a.send(v.clone()).await.unwrap();
    }
    b.send(serde_json::json!("reply")).await.unwrap();
    // What a sent is at b, not at a.
    assert!(b.poll(None).await.unwrap());
    assert!(a.poll(Some(SHORT)).await.unwrap());
    assert_eq!(a.recv().await.unwrap(), "reply");
    assert!(!a.poll(None).await.unwrap());
    for v in &msgs {
        assert_eq!(&b.recv_timeout(SHORT).await.unwrap(), v);
    }
    assert!(!b.poll(None).await.unwrap());
    assert!(matches!(
        b.recv_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));

    // A recv that waits is answered by a later send.
    let receiver = tokio::spawn({
        let b = b.clone();
        async move { b.recv().await }
    });
    wait_for_waiters(&m, "p", 1).await;
    a.send(serde_json::json!("late")).await.unwrap();
    assert_eq!(receiver.await.unwrap().unwrap(), "late");
    // A poll that waits is answered by a send too, and consumes nothing.
    let poller = tokio::spawn({
        let a = a.clone();
        async move { a.poll(Some(DEADLINE)).await }
    });
    wait_for_waiters(&m, "p", 1).await;
    b.send(serde_json::json!(7)).await.unwrap();
    assert!(poller.await.unwrap().unwrap());
    assert_eq!(a.recv().await.unwrap(), 7);
}

const PIPE_CHILD_URL: &str = "PROCSHARE_TEST_PIPE_CHILD_URL";

/// Not a test on its own: the far end of `pipe_across_processes`, run as a
/// child process of this test binary (without the variable it does
/// nothing). It echoes every number times ten until a negative one.
#[test]
fn pipe_child_end() {
    let Ok(url) = std::env::var(PIPE_CHILD_URL) else {
        return;
    };
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let (_, end1) = m.pipe::<i64>("duplex").unwrap();
    assert!(!end1.poll(None).unwrap());
    loop {
        let v = end1.recv().unwrap();
        if v < 0 {
            break;
        }
        end1.send(v * 10).unwrap();
    }
    end1.send(-1).unwrap();
}

/// test_connection across processes: the child waits in recv on its end
/// until this process sends; replies come back in order.
#[tokio::test(flavor = "multi_thread")]
async fn pipe_across_processes() {
    let s = Server::start();
    let m = manager(&s).await;
    let (end0, _) = m.pipe::<i64>("duplex").await.unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "pipe_child_end",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(PIPE_CHILD_URL, s.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run this test binary as the child end");
    // The child is blocked in recv on its end.
    wait_for_waiters(&m, "duplex", 1).await;
    for v in 1..=5 {
        end0.send(v).await.unwrap();
    }
    end0.send(-1).await.unwrap();
    let mut got = Vec::new();
    loop {
        let v = end0.recv_timeout(DEADLINE).await.unwrap();
        if v < 0 {
            break;
        }
        got.push(v);
    }
    assert_eq!(got, [10, 20, 30, 40, 50]);
    let out = finish_child(child);
    assert!(
        out.status.success(),
        "child end failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran the child end"
    );
    assert!(!end0.poll(None).await.unwrap());
}

/// The blocking facade of a pipe.
#[test]
fn blocking_pipe() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let (a, b) = m.pipe::<String>("bp").unwrap();
    assert_eq!((a.end(), b.end()), (0, 1));
    assert!(!b.poll(None).unwrap());
    a.send("x".into()).unwrap();
    a.send("y".into()).unwrap();
    assert!(b.poll(Some(SHORT)).unwrap());
    assert_eq!(b.recv().unwrap(), "x");
    assert_eq!(b.recv_timeout(SHORT).unwrap(), "y");
    assert!(matches!(b.recv_timeout(SHORT), Err(Error::Timeout(_))));
    assert!(matches!(a.recv_timeout(SHORT), Err(Error::Timeout(_))));
}
