//! Malformed and hostile requests, sent with a raw gRPC client the way a
//! buggy client in another language might: clear errors, no change, no panic.

mod common;

use common::Server;
use procshare::wire::{
    self as pb, op::Kind as Op, procshare_client::ProcshareClient, response::Outcome,
};
use tonic::Code;

async fn raw(server: &Server) -> ProcshareClient<tonic::transport::Channel> {
    ProcshareClient::connect(server.url())
        .await
        .expect("connect")
}

fn request(name: &str, op: Option<Op>) -> pb::Request {
    pb::Request {
        client_id: "raw".into(),
        request_id: 1,
        op: Some(pb::Op {
            name: name.into(),
            kind: op,
        }),
        ..Default::default()
    }
}

fn open_dict() -> Option<Op> {
    Some(Op::Open(pb::Open {
        kind: pb::Kind::Dict as i32,
        ..Default::default()
    }))
}

fn dict_len(status_or: Result<tonic::Response<pb::Response>, tonic::Status>) -> u64 {
    match status_or.expect("dict_len succeeds").into_inner().outcome {
        Some(Outcome::Ok(pb::OpResult {
            kind: Some(pb::op_result::Kind::Count(n)),
        })) => n,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument() {
    let server = Server::start();
    let mut c = raw(&server).await;
    c.execute(request("d", open_dict())).await.unwrap();

    // No op at all, an op without a kind, a value without a kind, a missing key.
    let no_op = pb::Request {
        client_id: "raw".into(),
        request_id: 1,
        op: None,
        ..Default::default()
    };
    let cases = vec![
        no_op,
        request("d", None),
        request(
            "d",
            Some(Op::DictSet(pb::DictSet {
                key: Some(pb::Value { kind: None }),
                value: None,
            })),
        ),
        request(
            "d",
            Some(Op::DictSet(pb::DictSet {
                key: None,
                value: None,
            })),
        ),
        request(
            "d",
            Some(Op::Open(pb::Open {
                kind: 999,
                ..Default::default()
            })),
        ),
        request(
            "d",
            Some(Op::LockAcquire(pb::LockAcquire {
                blocking: true,
                timeout_secs: Some(f64::NAN),
            })),
        ),
        request("bad\0name", open_dict()),
        pb::Request {
            client_id: "x".repeat(1000),
            request_id: 1,
            op: None,
            ..Default::default()
        },
    ];
    for (i, r) in cases.into_iter().enumerate() {
        let status = c.execute(r).await.expect_err("refused");
        // The lock op on a dict is WRONG_KIND (checked before its arguments).
        let expected = if i == 5 {
            Code::FailedPrecondition
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), expected, "case {i}: {status:?}");
        assert!(!status.message().is_empty());
    }
    let len = c
        .execute(request("d", Some(Op::DictLen(pb::DictLen {}))))
        .await;
    assert_eq!(dict_len(len), 0, "nothing was stored");
}

#[tokio::test]
async fn negative_or_nan_lock_timeouts_are_refused() {
    let server = Server::start();
    let mut c = raw(&server).await;
    c.execute(request(
        "l",
        Some(Op::Open(pb::Open {
            kind: pb::Kind::Lock as i32,
            ..Default::default()
        })),
    ))
    .await
    .unwrap();
    for t in [-1.0, f64::NAN, f64::INFINITY] {
        let acquire = Op::LockAcquire(pb::LockAcquire {
            blocking: true,
            timeout_secs: Some(t),
        });
        let status = c
            .execute(request("l", Some(acquire)))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "timeout {t}");
        assert_eq!(
            status.metadata().get("procshare-error").unwrap(),
            "INVALID_ARGUMENT"
        );
    }
    let locked = c
        .execute(request("l", Some(Op::LockLocked(pb::LockLocked {}))))
        .await
        .unwrap();
    assert!(matches!(
        locked.into_inner().outcome,
        Some(Outcome::Ok(pb::OpResult {
            kind: Some(pb::op_result::Kind::Flag(false))
        }))
    ));
}

#[tokio::test]
async fn garbage_bytes_are_refused_and_the_server_lives_on() {
    let server = Server::start();
    // A gRPC frame whose protobuf payload is garbage.
    let mut c = raw(&server).await;
    let codec_err = {
        use tonic::codegen::http::uri::PathAndQuery;
        let channel = tonic::transport::Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = PathAndQuery::from_static("/procshare.v1.Procshare/Execute");
        // A varint that never ends, then a field with wire type 7 (invalid).
        let bytes = RawBytes(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
        grpc.unary::<RawBytes, pb::Response, _>(tonic::Request::new(bytes), path, RawCodec)
            .await
    };
    let status = codec_err.expect_err("garbage refused");
    assert!(
        matches!(status.code(), Code::Internal | Code::InvalidArgument),
        "{status:?}"
    );
    // Still serving.
    c.ping(pb::PingRequest {}).await.expect("still alive");
}

#[tokio::test]
async fn batches_apply_in_order_with_one_outcome_each() {
    let server = Server::start();
    let mut c = raw(&server).await;
    let set = |k: i64| {
        Some(Op::DictSet(pb::DictSet {
            key: Some(pb::Value {
                kind: Some(pb::value::Kind::Int(k)),
            }),
            value: Some(pb::Value {
                kind: Some(pb::value::Kind::Int(k)),
            }),
        }))
    };
    let batch = pb::BatchRequest {
        client_id: "raw".into(),
        requests: vec![
            request("b", open_dict()),
            request("b", set(1)),
            request("b", Some(Op::ListLen(pb::ListLen {}))),
            request("b", set(2)),
        ],
        atomic: false,
    };
    let responses = c.batch(batch).await.unwrap().into_inner().responses;
    assert_eq!(responses.len(), 4);
    assert!(matches!(responses[1].outcome, Some(Outcome::Ok(_))));
    match &responses[2].outcome {
        Some(Outcome::Error(e)) => assert_eq!(e.kind, pb::ErrorKind::WrongKind as i32),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(responses[3].outcome, Some(Outcome::Ok(_))));
    let len = c
        .execute(request("b", Some(Op::DictLen(pb::DictLen {}))))
        .await;
    assert_eq!(dict_len(len), 2);

    // An atomic batch with an operation that may wait: refused whole,
    // nothing applied.
    let wait = Some(Op::LockAcquire(pb::LockAcquire {
        blocking: true,
        timeout_secs: None,
    }));
    let atomic = pb::BatchRequest {
        client_id: "raw".into(),
        requests: vec![request("b", set(3)), request("l", wait)],
        atomic: true,
    };
    assert_eq!(
        c.batch(atomic).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let len = c
        .execute(request("b", Some(Op::DictLen(pb::DictLen {}))))
        .await;
    assert_eq!(dict_len(len), 2);
    // One that can apply does, whole.
    let atomic = pb::BatchRequest {
        client_id: "raw".into(),
        requests: vec![request("b", set(3)), request("b", set(4))],
        atomic: true,
    };
    let responses = c.batch(atomic).await.unwrap().into_inner().responses;
    assert!(responses
        .iter()
        .all(|r| matches!(r.outcome, Some(Outcome::Ok(_)))));
    let len = c
        .execute(request("b", Some(Op::DictLen(pb::DictLen {}))))
        .await;
    assert_eq!(dict_len(len), 4);
}

/// Raw bytes through tonic's codec machinery.
struct RawBytes(Vec<u8>);

#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: RawBytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item.0);
        Ok(())
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = pb::Response;
    type Encoder = RawEncoder;
    type Decoder =
        <tonic_prost::ProstCodec<pb::Response, pb::Response> as tonic::codec::Codec>::Decoder;
    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<pb::Response, pb::Response>::default().decoder()
    }
}

#[tokio::test]
async fn a_batch_member_without_ids_acts_as_the_batch_and_one_with_ids_as_itself() {
    let server = Server::start();
    let mut c = raw(&server).await;
    let as_client = |client: &str, name: &str, op: Option<Op>| pb::Request {
        client_id: client.into(),
        ..request(name, op)
    };
    let open_lock = Some(Op::Open(pb::Open {
        kind: pb::Kind::Lock as i32,
        ..Default::default()
    }));
    let try_acquire = || {
        Some(Op::LockAcquire(pb::LockAcquire {
            blocking: false,
            timeout_secs: None,
        }))
    };
    let release = || Some(Op::LockRelease(pb::LockRelease {}));
    // Members 0, 1 and 3 name no client: they are the batch's client
    // "holder", which takes the lock and gives it back. Member 2 names
    // "other": its release is refused.
    let batch = pb::BatchRequest {
        client_id: "holder".into(),
        requests: vec![
            as_client("", "m", open_lock),
            as_client("", "m", try_acquire()),
            as_client("other", "m", release()),
            as_client("", "m", release()),
        ],
        atomic: false,
    };
    let responses = c.batch(batch).await.unwrap().into_inner().responses;
    assert_eq!(responses.len(), 4);
    assert!(
        matches!(responses[1].outcome, Some(Outcome::Ok(_))),
        "{responses:?}"
    );
    match &responses[2].outcome {
        Some(Outcome::Error(e)) => assert_eq!(e.kind, pb::ErrorKind::NotOwner as i32),
        other => panic!("another client's release must be refused, got {other:?}"),
    }
    assert!(
        matches!(responses[3].outcome, Some(Outcome::Ok(_))),
        "the batch's own client releases: {responses:?}"
    );

    // A batch id too long is refused when a member relies on it, and not
    // when every member names its own.
    let long = "x".repeat(300);
    let relies = pb::BatchRequest {
        client_id: long.clone(),
        requests: vec![
            as_client("raw", "m", release()),
            as_client("", "m", release()),
        ],
        atomic: false,
    };
    assert_eq!(
        c.batch(relies).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let own_ids = pb::BatchRequest {
        client_id: long,
        requests: vec![as_client("raw", "m", try_acquire())],
        atomic: false,
    };
    let responses = c.batch(own_ids).await.unwrap().into_inner().responses;
    assert!(
        matches!(responses[0].outcome, Some(Outcome::Ok(_))),
        "{responses:?}"
    );
}
