//! Batches, plain and atomic, against the real `procshared`.

mod common;

use common::{Server, DEADLINE};
use procshare::wire::{self as pb, op::Kind as Op, op_result::Kind as R};
use procshare::{Error, Manager};

fn open_queue() -> Op {
    Op::Open(pb::Open {
        kind: pb::Kind::Queue as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn an_atomic_batch_with_a_failing_operation_changes_nothing() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, i64>("d").await.unwrap();
    let log = m.list::<String>("log").await.unwrap();
    d.insert("a".into(), 1).await.unwrap();

    let results = m
        .batch()
        .dict_insert(&d, &"a".into(), &2)
        .unwrap()
        .list_push(&log, &"changed a".into())
        .unwrap()
        .op("fresh", open_queue())
        // Fails in the middle: there is no list called "missing".
        .op("missing", Op::ListLen(pb::ListLen {}))
        .dict_insert(&d, &"b".into(), &3)
        .unwrap()
        .atomic()
        .run()
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    let Err(Error::NotFound(own)) = &results[3] else {
        panic!("{:?}", results[3])
    };
    assert!(own.contains("missing"), "{own}");
    let Err(Error::NotFound(other)) = &results[0] else {
        panic!("{:?}", results[0])
    };
    assert!(other.contains("not applied"), "{other}");

    assert_eq!(d.get(&"a".into()).await.unwrap(), Some(1));
    assert_eq!(d.get(&"b".into()).await.unwrap(), None);
    assert_eq!(log.len().await.unwrap(), 0);
    let names: Vec<_> = m
        .list_objects()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["d", "log"], "the queue opened by the batch is gone");

    // The same batch without the failing operation applies whole.
    let results = m
        .batch()
        .dict_insert(&d, &"a".into(), &2)
        .unwrap()
        .list_push(&log, &"changed a".into())
        .unwrap()
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(d.get(&"a".into()).await.unwrap(), Some(2));
    assert_eq!(log.len().await.unwrap(), 1);
}

#[tokio::test]
async fn a_plain_batch_applies_each_operation_on_its_own() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, i64>("d").await.unwrap();
    let results = m
        .batch()
        .dict_insert(&d, &"a".into(), &1)
        .unwrap()
        .op("missing", Op::ListLen(pb::ListLen {}))
        .dict_fetch_add(&d, &"a".into(), &5)
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Error::NotFound(_))));
    let Ok(pb::OpResult {
        kind: Some(R::Pair(p)),
    }) = &results[2]
    else {
        panic!("{:?}", results[2])
    };
    let after: i64 = procshare::value::from_wire(p.second.clone().unwrap()).unwrap();
    assert_eq!(after, 6);
    assert_eq!(d.get(&"a".into()).await.unwrap(), Some(6));
}

#[tokio::test]
async fn waits_and_lock_changes_are_refused_in_an_atomic_batch() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, i64>("d").await.unwrap();
    m.queue::<i64>("q", 0).await.unwrap();
    m.lock("l").await.unwrap();
    for (name, op) in [
        (
            "q",
            Op::QueueGet(pb::QueueGet {
                blocking: true,
                timeout_secs: Some(1.0),
            }),
        ),
        (
            "l",
            Op::LockAcquire(pb::LockAcquire {
                blocking: false,
                timeout_secs: None,
            }),
        ),
    ] {
        let err = m
            .batch()
            .dict_insert(&d, &"a".into(), &1)
            .unwrap()
            .op(name, op)
            .atomic()
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(d.is_empty().await.unwrap(), "nothing applied");
    }
}

/// The item an atomic batch's `queue_get` took.
fn taken(r: &procshare::Result<pb::OpResult>) -> i64 {
    match r {
        Ok(pb::OpResult {
            kind: Some(R::Value(v)),
        }) => procshare::value::from_wire(v.clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn queue_changes_in_an_atomic_batch_stand_or_fall_with_the_rest() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let jobs = m.joinable_queue::<i64>("jobs", 0).await.unwrap();
    let results = m.dict::<i64, String>("results").await.unwrap();
    let count = m.dict::<String, i64>("count").await.unwrap();
    for job in 0..3 {
        jobs.put(job).await.unwrap();
    }

    // A job taken and counted, the count failing: the job stays first in
    // line and is not counted.
    let out = m
        .batch()
        .queue_get(&jobs)
        .dict_fetch_add(&count, &"taken".into(), &1)
        .unwrap()
        .op("missing", Op::ListLen(pb::ListLen {}))
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(out.iter().all(|r| r.is_err()), "{out:?}");
    assert_eq!(jobs.qsize().await.unwrap(), 3);
    assert_eq!(count.get(&"taken".into()).await.unwrap(), None);

    // Taken and counted together.
    let out = m
        .batch()
        .queue_get(&jobs)
        .dict_fetch_add(&count, &"taken".into(), &1)
        .unwrap()
        .atomic()
        .run()
        .await
        .unwrap();
    assert_eq!(taken(&out[0]), 0, "the first job, still first");
    assert_eq!(count.get(&"taken".into()).await.unwrap(), Some(1));

    // A result recorded and its task marked done, both or neither: a
    // second task_done than the queue has tasks for fails both.
    let out = m
        .batch()
        .dict_insert(&results, &0, &"zero".into())
        .unwrap()
        .queue_task_done(&jobs)
        .queue_task_done(&jobs)
        .queue_task_done(&jobs)
        .queue_task_done(&jobs)
        .atomic()
        .run()
        .await
        .unwrap();
    let Err(Error::InvalidArgument(why)) = &out[4] else {
        panic!("{out:?}")
    };
    assert!(why.contains("task_done"), "{why}");
    assert!(results.is_empty().await.unwrap());
    let joined = jobs.join_timeout(std::time::Duration::from_millis(1)).await;
    assert!(matches!(joined, Err(Error::Timeout(_))), "{joined:?}");

    // An empty queue fails the batch with Empty, a full one with Full.
    let small = m.queue::<i64>("small", 1).await.unwrap();
    let out = m
        .batch()
        .queue_put(&small, &1)
        .unwrap()
        .queue_put(&small, &2)
        .unwrap()
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(matches!(out[1], Err(Error::Full(_))), "{out:?}");
    assert_eq!(small.qsize().await.unwrap(), 0);
    let out = m.batch().queue_get(&small).atomic().run().await.unwrap();
    assert!(matches!(out[0], Err(Error::Empty(_))), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_woken_by_an_atomic_batch_sees_the_rest_of_it() {
    let s = Server::start();
    let url = s.url();
    let m = Manager::connect(&url).await.unwrap();
    let results = m.dict::<String, i64>("results").await.unwrap();
    let ready = m.event("ready").await.unwrap();
    // Another client waits for the event, then reads the results.
    let waiter = tokio::spawn({
        let url = url.clone();
        async move {
            let m = Manager::connect(&url).await.unwrap();
            let ready = m.event("ready").await.unwrap();
            let results = m.dict::<String, i64>("results").await.unwrap();
            assert!(ready.wait(Some(DEADLINE)).await.unwrap(), "woken by a set");
            results.items().await.unwrap()
        }
    });
    let end = std::time::Instant::now() + DEADLINE;
    while m.describe("ready").await.unwrap()["waiters"] != 1 {
        assert!(std::time::Instant::now() < end, "the waiter never waited");
        tokio::task::yield_now().await;
    }

    // Published and raised, the publishing failing: neither.
    let out = m
        .batch()
        .dict_insert(&results, &"a".into(), &1)
        .unwrap()
        .event_set(&ready)
        .op("missing", Op::ListLen(pb::ListLen {}))
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(out.iter().all(|r| r.is_err()), "{out:?}");
    assert!(!ready.is_set().await.unwrap());
    assert!(results.is_empty().await.unwrap());

    // Both: the waiter wakes and finds every result in place.
    let out = m
        .batch()
        .dict_insert(&results, &"a".into(), &1)
        .unwrap()
        .dict_insert(&results, &"b".into(), &2)
        .unwrap()
        .event_set(&ready)
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
    let seen = waiter.await.unwrap();
    assert_eq!(seen, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_claiming_jobs_atomically_count_each_exactly_once() {
    let s = Server::start();
    let url = s.url();
    let m = Manager::connect(&url).await.unwrap();
    let jobs = m.queue::<i64>("jobs", 0).await.unwrap();
    let n = 200;
    for job in 0..n {
        jobs.put(job).await.unwrap();
    }
    // Each worker, its own client, takes a job and adds it to its tally in
    // one atomic batch, and every other batch fails on purpose after the
    // take: a failed one must leave its job for someone.
    let mut workers = Vec::new();
    for w in 0..4 {
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let m = Manager::connect(&url).await.unwrap();
            let jobs = m.queue::<i64>("jobs", 0).await.unwrap();
            let tally = m.dict::<String, i64>("tally").await.unwrap();
            let mut mine = Vec::new();
            for attempt in 0.. {
                let mut b = m
                    .batch()
                    .queue_get(&jobs)
                    .dict_fetch_add(&tally, &format!("w{w}"), &1)
                    .unwrap();
                if attempt % 2 == 1 {
                    b = b.op("missing", Op::ListLen(pb::ListLen {}));
                }
                let out = b.atomic().run().await.unwrap();
                match &out[0] {
                    Err(Error::Empty(_)) => break,
                    Ok(_) => mine.push(taken(&out[0])),
                    Err(Error::NotFound(_)) => assert_eq!(attempt % 2, 1, "{out:?}"),
                    other => panic!("{other:?}"),
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "each job taken once");
    let tally = m.dict::<String, i64>("tally").await.unwrap();
    let counted: i64 = tally.values().await.unwrap().into_iter().sum();
    assert_eq!(counted, n, "and counted once");
    assert!(jobs.empty().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_reader_never_sees_half_a_batch() {
    let s = Server::start();
    let url = s.url();
    let writer = Manager::connect(&url).await.unwrap();
    let reader = Manager::connect(&url).await.unwrap();
    let a = writer.dict::<String, i64>("a").await.unwrap();
    let b = writer.dict::<String, i64>("b").await.unwrap();
    let total = 1000;
    a.insert("n".into(), total).await.unwrap();
    b.insert("n".into(), 0).await.unwrap();
    // Moves one unit at a time from a to b, and from key x to key y of b.
    let moves = 300;
    let w = tokio::spawn(async move {
        for _ in 0..moves {
            let r = writer
                .batch()
                .dict_fetch_add(&a, &"n".into(), &-1)
                .unwrap()
                .dict_fetch_add(&b, &"x".into(), &-1)
                .unwrap()
                .dict_fetch_add(&b, &"y".into(), &1)
                .unwrap()
                .dict_fetch_add(&b, &"n".into(), &1)
                .unwrap()
                .atomic()
                .run()
                .await
                .unwrap();
            assert!(r.iter().all(|r| r.is_ok()));
        }
    });
    let ra = reader.dict::<String, i64>("a").await.unwrap();
    let rb = reader.dict::<String, i64>("b").await.unwrap();
    let mut reads = 0;
    let end = std::time::Instant::now() + DEADLINE;
    while !w.is_finished() || reads == 0 {
        // One object in one operation: x + y stays 0.
        let items: Vec<(String, i64)> = rb.items().await.unwrap();
        let get = |k: &str| items.iter().find(|(key, _)| key == k).map_or(0, |e| e.1);
        assert_eq!(get("x") + get("y"), 0, "{items:?}");
        // Two objects read in one atomic batch: a + b stays the total.
        let r = reader
            .batch()
            .dict_get(&ra, &"n".into())
            .unwrap()
            .dict_get(&rb, &"n".into())
            .unwrap()
            .atomic()
            .run()
            .await
            .unwrap();
        let n: Vec<i64> = r
            .into_iter()
            .map(|r| match r.unwrap().kind {
                Some(R::Maybe(m)) => procshare::value::from_wire(m.value.unwrap()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(n[0] + n[1], total, "{n:?}");
        reads += 1;
        assert!(std::time::Instant::now() < end, "the writer never finished");
    }
    w.await.unwrap();
    assert_eq!(ra.get(&"n".into()).await.unwrap(), Some(total - moves));
}

#[test]
fn atomic_batches_are_replayed_whole_after_a_kill() {
    let dir = std::env::temp_dir().join(format!("procshare-atomic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = ["--data-dir", dir.to_str().unwrap(), "--fsync", "always"];
    let s = Server::start_with(&args);
    let addr = s.addr.clone();
    {
        let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
        let d = m.dict::<String, i64>("d").unwrap();
        let l = m.list::<i64>("l").unwrap();
        let jobs = m.queue::<i64>("jobs", 0).unwrap();
        for job in 0..12 {
            jobs.put(job).unwrap();
        }
        for i in 0..10 {
            let r = m
                .batch()
                .dict_fetch_add(&d, &"n".into(), &1)
                .unwrap()
                .list_push(&l, &i)
                .unwrap()
                .queue_get(&jobs)
                .op("created", open_queue())
                .atomic()
                .run()
                .unwrap();
            assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
        }
        // A failed atomic batch leaves nothing in the log either.
        let r = m
            .batch()
            .dict_fetch_add(&d, &"n".into(), &100)
            .unwrap()
            .list_push(&l, &100)
            .unwrap()
            .queue_get(&jobs)
            .op("nope", Op::ListLen(pb::ListLen {}))
            .atomic()
            .run()
            .unwrap();
        assert!(r.iter().all(|r| r.is_err()));
    }
    drop(s); // SIGKILL
    let s = Server::start_on(&addr, &args);
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let d = m.dict::<String, i64>("d").unwrap();
    let l = m.list::<i64>("l").unwrap();
    assert_eq!(d.get(&"n".into()).unwrap(), Some(10));
    assert_eq!(l.snapshot().unwrap(), (0..10).collect::<Vec<_>>());
    let jobs = m.queue::<i64>("jobs", 0).unwrap();
    assert_eq!(
        jobs.qsize().unwrap(),
        2,
        "ten taken by the batches that stood"
    );
    assert_eq!(jobs.get_nowait().unwrap(), 10);
    let names: Vec<_> = m
        .list_objects()
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["created", "d", "jobs", "l"]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dict "big" holding keys 0..5, each a value of about 900 kB: any four
/// of them are over the server's default `--max-message-bytes` (4 MiB).
async fn big_values(m: &Manager) -> procshare::DictProxy<i64, String> {
    let d = m.dict::<i64, String>("big").await.unwrap();
    for k in 0..5 {
        d.insert(k, k.to_string().repeat(900_000)).await.unwrap();
    }
    d
}

fn is_resource_exhausted(r: &procshare::Result<pb::OpResult>) -> bool {
    matches!(r, Err(Error::ResourceExhausted(why)) if why.contains("--max-message-bytes"))
}

#[tokio::test]
async fn a_plain_batch_whose_answers_are_over_the_message_limit_answers_what_fits() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = big_values(&m).await;
    let log = m.list::<i64>("log").await.unwrap();
    let mut batch = m.batch();
    for k in 0..5 {
        batch = batch.dict_get(&d, &k).unwrap();
    }
    let results = batch
        .list_push(&log, &1)
        .unwrap()
        .dict_insert(&d, &9, &"nine".into())
        .unwrap()
        .run()
        .await
        .expect("the call itself succeeds (it used to fail after applying its mutations)");
    assert_eq!(results.len(), 7);
    assert!(
        results[..4].iter().all(|r| r.is_ok()),
        "{:?}",
        &results[..4].iter().map(|r| r.is_ok()).collect::<Vec<_>>()
    );
    assert!(
        is_resource_exhausted(&results[4]),
        "{:?}",
        results[4].as_ref().err()
    );
    // No room left for a mutation's answer: not applied, and it says so.
    assert!(
        is_resource_exhausted(&results[5]),
        "{:?}",
        results[5].as_ref().err()
    );
    assert!(
        is_resource_exhausted(&results[6]),
        "{:?}",
        results[6].as_ref().err()
    );
    assert_eq!(
        log.len().await.unwrap(),
        0,
        "the refused push was not applied"
    );
    assert_eq!(
        d.get(&9).await.unwrap(),
        None,
        "the refused insert was not applied"
    );
}

#[tokio::test]
async fn an_atomic_batch_whose_answers_are_over_the_message_limit_is_not_applied() {
    let s = Server::start();
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = big_values(&m).await;
    let log = m.list::<i64>("log").await.unwrap();
    let mut batch = m.batch().list_push(&log, &1).unwrap();
    for k in 0..5 {
        batch = batch.dict_get(&d, &k).unwrap();
    }
    let results = batch
        .atomic()
        .run()
        .await
        .expect("the call itself succeeds");
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| r.is_err()), "all or nothing");
    assert!(
        results.iter().any(is_resource_exhausted),
        "{:?}",
        results[5].as_ref().err()
    );
    assert_eq!(log.len().await.unwrap(), 0, "the push was undone");
    // Within the limit, the same kind of batch goes through.
    let results = m
        .batch()
        .list_push(&log, &1)
        .unwrap()
        .dict_get(&d, &0)
        .unwrap()
        .atomic()
        .run()
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(log.len().await.unwrap(), 1);
}

#[tokio::test]
async fn a_batch_of_more_operations_than_a_reply_can_answer_is_refused_whole() {
    let s = Server::start_with(&["--max-message-bytes", "65536"]);
    let m = Manager::connect(&s.url()).await.unwrap();
    let log = m.list::<i64>("log").await.unwrap();
    let mut batch = m.batch();
    for i in 0..600 {
        batch = batch.list_push(&log, &i).unwrap();
    }
    match batch.run().await {
        Err(Error::ResourceExhausted(why)) => {
            assert!(why.contains("at most 510 per batch"), "{why}")
        }
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    assert_eq!(log.len().await.unwrap(), 0, "nothing applied");
}

/// A plain batch whose reply is lost after it was applied (the server drops
/// every second one here) is sent again, the same bytes under the same
/// request ids, and the server answers the retry from what it remembers:
/// each increment counts once. An atomic batch is not retried (whether it
/// was applied is unknown to the client): the caller gets UNAVAILABLE.
#[tokio::test]
async fn a_plain_batch_whose_reply_was_lost_is_retried_and_applied_once() {
    let s = Server::start_with(&["--fault-drop-replies", "2"]);
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<String, i64>("d").await.unwrap();
    let key = "n".to_owned();
    for _ in 0..10 {
        let results = m
            .batch()
            .dict_fetch_add(&d, &key, &1)
            .unwrap()
            .dict_fetch_add(&d, &key, &10)
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
    assert_eq!(d.get(&key).await.unwrap(), Some(110), "each batch once");

    let mut unavailable = 0;
    for _ in 0..2 {
        let r = m
            .batch()
            .dict_fetch_add(&d, &key, &1)
            .unwrap()
            .atomic()
            .run()
            .await;
        match r {
            Ok(results) => assert!(results.iter().all(|r| r.is_ok()), "{results:?}"),
            Err(Error::Unavailable(_)) => unavailable += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(unavailable, 1, "one of two atomic batches lost its reply");
    assert_eq!(
        d.get(&key).await.unwrap(),
        Some(112),
        "applied, reply lost or not"
    );
}
