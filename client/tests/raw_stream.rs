//! The session stream as a client in another language drives it: the
//! generated gRPC client, requests and answers by hand, against the real
//! `procshared`.

mod common;

use common::{wait_for_waiters, Server, DEADLINE};
use procshare::wire::{
    self as pb, op::Kind as Op, procshare_client::ProcshareClient, response::Outcome,
};
use procshare::Manager;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn request(id: u64, name: &str, op: Op) -> pb::Request {
    pb::Request {
        client_id: "raw-stream".into(),
        request_id: id,
        op: Some(pb::Op {
            name: name.into(),
            kind: Some(op),
        }),
        ..Default::default()
    }
}

fn open(id: u64, name: &str, kind: pb::Kind) -> pb::Request {
    request(
        id,
        name,
        Op::Open(pb::Open {
            kind: kind as i32,
            ..Default::default()
        }),
    )
}

fn int(i: i64) -> Option<pb::Value> {
    Some(pb::Value {
        kind: Some(pb::value::Kind::Int(i)),
    })
}

/// A session stream: its request sender and its answers.
async fn stream(s: &Server) -> (mpsc::Sender<pb::Request>, tonic::Streaming<pb::Response>) {
    let mut client = ProcshareClient::connect(s.url()).await.expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let answers = client
        .session(ReceiverStream::new(rx))
        .await
        .expect("session stream")
        .into_inner();
    (tx, answers)
}

async fn next(answers: &mut tonic::Streaming<pb::Response>) -> Option<pb::Response> {
    tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("an answer (or the end) in time")
        .expect("no stream error")
}

#[tokio::test]
async fn a_client_that_sends_without_reading_holds_up_no_one_and_gets_every_answer_in_order() {
    let s = Server::start();
    let (tx, mut answers) = stream(&s).await;
    let n = 20_000u64;
    // Requests written by a task of their own, none of the answers read
    // yet: the server must not stall on this stream, nor lose answers.
    let writer = tokio::spawn(async move {
        tx.send(open(1, "flood", pb::Kind::Dict)).await.ok()?;
        for i in 2..=n {
            let set = Op::DictSet(pb::DictSet {
                key: int(i as i64),
                value: Some(pb::Value {
                    kind: Some(pb::value::Kind::Bytes(vec![7; 1024])),
                }),
            });
            tx.send(request(i, "flood", set)).await.ok()?;
        }
        Some(tx)
    });
    // Someone else is served meanwhile.
    let m = Manager::connect(&s.url()).await.unwrap();
    let v = m.value::<i64>("other", &0).await.unwrap();
    for _ in 0..50 {
        v.fetch_add(1).await.unwrap();
    }
    assert_eq!(v.get().await.unwrap(), 50);
    // Now read: one answer per request, in the order sent, all applied.
    for want in 1..=n {
        let got = next(&mut answers).await.expect("an answer");
        assert_eq!(got.request_id, want);
        assert!(matches!(got.outcome, Some(Outcome::Ok(_))), "{got:?}");
    }
    let tx = tokio::time::timeout(DEADLINE, writer)
        .await
        .expect("the writer ends")
        .expect("the writer did not panic")
        .expect("every request was taken");
    let d = m.dict::<i64, Vec<u8>>("flood").await.unwrap();
    assert_eq!(d.len().await.unwrap(), n as usize - 1);
    // Closing our side ends the stream.
    drop(tx);
    assert!(next(&mut answers).await.is_none());
}

#[tokio::test]
async fn closing_the_send_side_answers_the_running_waits_then_ends_and_a_cancelled_one_takes_nothing(
) {
    let s = Server::start();
    let (tx, mut answers) = stream(&s).await;
    tx.send(open(1, "q", pb::Kind::Queue)).await.unwrap();
    assert_eq!(next(&mut answers).await.unwrap().request_id, 1);
    let get = |id| {
        request(
            id,
            "q",
            Op::QueueGet(pb::QueueGet {
                blocking: true,
                timeout_secs: None,
            }),
        )
    };
    tx.send(get(2)).await.unwrap();
    tx.send(get(3)).await.unwrap();
    let m = Manager::connect(&s.url()).await.unwrap();
    wait_for_waiters(&m, "q", 2).await;
    // Give up on 2, then close our side with 3 still waiting.
    tx.send(pb::Request {
        request_id: 2,
        cancel: true,
        ..Default::default()
    })
    .await
    .unwrap();
    wait_for_waiters(&m, "q", 1).await;
    drop(tx);
    let q = m.queue::<i64>("q", 0).await.unwrap();
    q.put(10).await.unwrap();
    q.put(20).await.unwrap();
    // 3 got the first item; 2 got nothing and no answer; then the end.
    let got = next(&mut answers).await.expect("the answer to 3");
    assert_eq!(got.request_id, 3);
    assert!(
        matches!(
            &got.outcome,
            Some(Outcome::Ok(pb::OpResult {
                kind: Some(pb::op_result::Kind::Value(v))
            })) if v.kind == Some(pb::value::Kind::Int(10))
        ),
        "{got:?}"
    );
    assert!(next(&mut answers).await.is_none());
    assert_eq!(q.get().await.unwrap(), 20);
}

#[tokio::test]
async fn with_a_data_dir_writes_are_answered_once_logged_and_survive_a_kill() {
    let dir = std::env::temp_dir().join(format!("procshare-raw-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = [
        "--data-dir",
        dir.to_str().unwrap(),
        "--fsync",
        "every-second",
    ];
    let s = Server::start_with(&args);
    let addr = s.addr.clone();
    let (tx, mut answers) = stream(&s).await;
    let n = 2_000u64;
    // Each write followed by a read of its key: the reads are answered at
    // once, the writes when their log record is written, so the answers
    // come in any order; each exactly once.
    let writer = tokio::spawn(async move {
        tx.send(open(1, "durable", pb::Kind::Dict)).await.ok()?;
        for i in 0..n {
            let key = int(i as i64);
            let set = Op::DictSet(pb::DictSet {
                key: key.clone(),
                value: int(-(i as i64)),
            });
            tx.send(request(2 + 2 * i, "durable", set)).await.ok()?;
            let get = Op::DictGet(pb::DictGet { key });
            tx.send(request(3 + 2 * i, "durable", get)).await.ok()?;
        }
        Some(tx)
    });
    let mut seen = std::collections::HashSet::new();
    for _ in 0..(1 + 2 * n) {
        let got = next(&mut answers).await.expect("an answer");
        assert!(matches!(got.outcome, Some(Outcome::Ok(_))), "{got:?}");
        assert!(
            seen.insert(got.request_id),
            "{} answered twice",
            got.request_id
        );
    }
    assert_eq!(seen, (1..=1 + 2 * n).collect());
    let tx = writer.await.unwrap().expect("every request was taken");
    drop(tx);
    assert!(next(&mut answers).await.is_none());
    drop(s); // SIGKILL: every answered write must be back.
    let s = Server::start_on(&addr, &args);
    let m = Manager::connect(&s.url()).await.unwrap();
    let d = m.dict::<i64, i64>("durable").await.unwrap();
    assert_eq!(d.len().await.unwrap(), n as usize);
    assert_eq!(d.get(&(n as i64 - 1)).await.unwrap(), Some(1 - n as i64));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
