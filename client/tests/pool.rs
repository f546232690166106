//! The task pool against a real `procshared`: map in order with errors and
//! panics per item, apply_async, imap_unordered, close and join, a worker
//! told to stop, the blocking facade, `procshare pool status`, and bad
//! input on the wire refused with typed errors that change nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{cli, cli_ok, Server};
use procshare::wire::{self as pb, op::Kind as Op, op_result::Kind as R};
use procshare::{Error, Manager, PoolStatus, TaskError, Worker};

async fn manager(server: &Server) -> Manager {
    Manager::connect(&server.url()).await.expect("connect")
}

/// A worker serving `square` (errors on 13, panics on 666) until the pool
/// is drained or stopped.
fn squares(m: &Manager, pool: &str) -> Worker {
    Worker::new(m, pool)
        .handle("square", |n: i64| -> Result<i64, String> {
            match n {
                13 => Err("unlucky number".into()),
                666 => panic!("the handler blew up on {n}"),
                n => Ok(n * n),
            }
        })
        .handle("len", |s: String| -> Result<usize, String> { Ok(s.len()) })
        .concurrency(3)
}

#[tokio::test(flavor = "multi_thread")]
async fn map_keeps_input_order_and_per_item_errors() {
    let server = Server::start();
    let m = manager(&server).await;
    let pool = m.pool("p").await.unwrap();
    let worker = tokio::spawn(squares(&manager(&server).await, "p").serve());

    let items: Vec<i64> = (0..40).chain([13, 666, 7]).collect();
    let out = pool.map::<_, i64>("square", items.clone()).await.unwrap();
    assert_eq!(out.len(), items.len());
    for (n, r) in items.iter().zip(&out) {
        match n {
            13 => assert_eq!(r.as_ref().unwrap_err().message, "unlucky number"),
            666 => {
                let e: &TaskError = r.as_ref().unwrap_err();
                assert!(e.message.contains("panicked"), "{e}");
                assert!(e.message.contains("blew up on 666"), "{e}");
            }
            n => assert_eq!(r, &Ok(n * n)),
        }
    }
    // The pool (and the worker that panicked once) carries on.
    let again = pool.map::<_, usize>("len", ["a", "bbb"]).await.unwrap();
    assert_eq!(again, [Ok(1), Ok(3)]);

    let status = pool.status().await.unwrap();
    assert_eq!(
        status,
        PoolStatus {
            queued: 0,
            running: 0,
            done: 42,
            failed: 3,
            unfetched: 0,
            closed: false,
            workers: 1,
        }
    );

    pool.close().await.unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!((report.done, report.failed, report.lost), (42, 3, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_async_imap_unordered_close_and_join() {
    let server = Server::start();
    let m = manager(&server).await;
    let pool = m.pool("p").await.unwrap();

    // No worker yet: get times out, and the task stays queued.
    let one = pool.apply_async::<_, i64>("square", &9).await.unwrap();
    let err = one.get(Some(Duration::from_millis(50))).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(!one.ready().await.unwrap());
    assert!(matches!(
        pool.join_timeout(Duration::from_millis(50)).await,
        Err(Error::Timeout(_))
    ));

    let worker = tokio::spawn(squares(&manager(&server).await, "p").serve());
    assert_eq!(one.get(None).await.unwrap(), Ok(81));
    assert_eq!(one.get(None).await.unwrap(), Ok(81), "kept by the handle");

    let mut unordered = pool
        .imap_unordered::<_, i64>("square", 0..25i64)
        .await
        .unwrap();
    assert_eq!(unordered.len(), 25);
    let mut seen = BTreeSet::new();
    while let Some(next) = unordered.next().await {
        let (i, r) = next.unwrap();
        if i == 13 {
            assert!(r.is_err());
        } else {
            assert_eq!(r, Ok((i * i) as i64));
        }
        assert!(seen.insert(i), "index {i} twice");
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(unordered.remaining(), 0);

    pool.submit("square", &3).await.unwrap();
    pool.close().await.unwrap();
    let refused = pool.submit("square", &4).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidArgument(_)), "{refused}");
    pool.join().await.unwrap();
    let status = pool.status().await.unwrap();
    assert_eq!(
        (status.queued, status.running, status.done, status.failed),
        (0, 0, 26, 1)
    );
    assert!(status.closed);
    // Closed and drained: the worker's serve returns by itself.
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_worker_returns_and_leaves_later_tasks_queued() {
    let server = Server::start();
    let m = manager(&server).await;
    let worker = squares(&manager(&server).await, "p");
    let stop = worker.stopper();
    let serving = tokio::spawn(worker.serve());
    let pool = m.pool("p").await.unwrap();
    // Wait until it is waiting for a task (the server counts it).
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while pool.status().await.unwrap().workers == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never claimed"
        );
        tokio::task::yield_now().await;
    }
    stop.stop();
    let report = serving.await.unwrap().unwrap();
    assert_eq!(report.done, 0);
    // A task submitted now waits for a worker: nobody took it.
    pool.submit("square", &2).await.unwrap();
    let status = pool.status().await.unwrap();
    assert_eq!((status.queued, status.running), (1, 0));
}

#[test]
fn the_blocking_facade_maps_and_serves() {
    let server = Server::start();
    let url = server.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let pool = m.pool("b").unwrap();
    let serving = std::thread::spawn({
        let w = procshare::blocking::Manager::connect(&url).unwrap();
        move || {
            w.worker("b")
                .handle("double", |n: u64| -> Result<u64, String> { Ok(2 * n) })
                .serve()
        }
    });
    let out = pool.map::<_, u64>("double", [1u64, 2, 3]).unwrap();
    assert_eq!(out, [Ok(2), Ok(4), Ok(6)]);
    let handle = pool.apply_async::<_, u64>("double", &21).unwrap();
    assert_eq!(handle.get(None).unwrap(), Ok(42));
    let mut indexes: Vec<usize> = pool
        .imap_unordered::<_, u64>("double", 0..5u64)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    pool.close().unwrap();
    pool.join().unwrap();
    let report = serving.join().unwrap().unwrap();
    assert_eq!(report.done, 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn procshare_pool_status_prints_the_counts() {
    let server = Server::start();
    let url = server.url();
    let m = manager(&server).await;
    let pool = m.pool("thumbs").await.unwrap();
    let worker = tokio::spawn(squares(&manager(&server).await, "thumbs").serve());
    let out = pool.map::<_, i64>("square", [1, 13, 3]).await.unwrap();
    assert!(out[1].is_err());
    pool.submit("nobody-serves-this", &0).await.unwrap();
    pool.close().await.unwrap();
    worker.await.unwrap().unwrap();

    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&url, &["pool", "status", "thumbs"])).unwrap();
    assert_eq!(status["queued"], 1);
    assert_eq!(status["running"], 0);
    assert_eq!(status["done"], 2);
    assert_eq!(status["failed"], 1);
    assert_eq!(status["closed"], true);

    // Asking about a pool that does not exist creates nothing.
    let missing = cli(&url, &["pool", "status", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    assert!(m
        .list_objects()
        .await
        .unwrap()
        .iter()
        .all(|o| o.name != "nope"));
}

/// Bad input on the wire: typed errors, and nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let server = Server::start();
    let owner = manager(&server).await;
    let other = manager(&server).await;
    let pool = owner.pool("p").await.unwrap();
    let id = pool.submit("f", &"x").await.unwrap();
    let task = pool
        .claim(&["f".to_owned()], Some(Duration::ZERO))
        .await
        .unwrap()
        .expect("a task");
    assert_eq!((task.id, task.deliveries), (id, 1));
    let before = pool.status().await.unwrap();

    let complete = |task_id: u64| {
        Op::PoolComplete(pb::PoolComplete {
            task_id,
            outcome: Some(pb::pool_complete::Outcome::Error("x".into())),
        })
    };
    // Completed by a client that did not claim it.
    let err = other.execute("p", complete(id)).await.unwrap_err();
    assert!(matches!(err, Error::NotOwner(_)), "{err}");
    // Unknown task ids.
    let err = owner.execute("p", complete(999)).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let result = Op::PoolResult(pb::PoolResult {
        task_ids: vec![999],
        timeout_secs: None,
    });
    let err = owner.execute("p", result).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // No outcome, no handler, no ids, a negative timeout.
    let bad = [
        Op::PoolComplete(pb::PoolComplete {
            task_id: id,
            outcome: None,
        }),
        Op::PoolSubmit(pb::PoolSubmit {
            handler: String::new(),
            arg: procshare::value::to_wire(&1).ok(),
        }),
        Op::PoolResult(pb::PoolResult {
            task_ids: vec![],
            timeout_secs: None,
        }),
        Op::PoolClaim(pb::PoolClaim {
            handlers: vec![],
            timeout_secs: Some(-1.0),
        }),
    ];
    for op in bad {
        let err = owner.execute("p", op.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{op:?}: {err}");
    }
    // A pool op on another kind of object.
    owner.dict::<String, i64>("d").await.unwrap();
    let err = owner
        .execute("d", Op::PoolStatus(pb::PoolStatus {}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongKind(_)), "{err}");
    // Submit after close.
    pool.close().await.unwrap();
    let err = pool.submit("f", &"y").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let after = pool.status().await.unwrap();
    assert_eq!(
        after,
        PoolStatus {
            closed: true,
            ..before
        }
    );

    // The owner's completion still counts; a second one keeps the first.
    assert!(pool.complete(id, Ok::<_, String>("done")).await.unwrap());
    assert!(!pool.complete(id, Ok::<_, String>("again")).await.unwrap());
    let r = owner
        .execute(
            "p",
            Op::PoolResult(pb::PoolResult {
                task_ids: vec![id],
                timeout_secs: None,
            }),
        )
        .await
        .unwrap();
    match r.kind {
        Some(R::PoolOutcome(o)) => assert_eq!(
            o.outcome,
            Some(pb::pool_outcome::Outcome::Ok(
                procshare::value::to_wire(&"done").unwrap()
            ))
        ),
        other => panic!("{other:?}"),
    }
    // Closed and drained: a claim says so at once.
    assert!(pool.claim(&[], None).await.unwrap().is_none());
}
