//! Property tests in place of a fuzzer (cargo-fuzz needs a nightly
//! toolchain): arbitrary sequences of operations against the store, and
//! arbitrary bytes into the request decoder. Nothing may panic, and the
//! invariants hold after every step: a queue's length stays within its
//! maxsize, a lock has at most one owner (and a held lock a depth ≥ 1), a
//! bounded semaphore never exceeds its bound.
//!
//! Run longer with `PROPTEST_CASES=20000 cargo test -p procshare-server --test fuzz_store`.

use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op, value::Kind as V, Kind};
use procshare_server::store::{Caller, Store};
use proptest::prelude::*;
use prost::Message;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn value() -> impl Strategy<Value = pb::Value> {
    let leaf = prop_oneof![
        Just(V::Null(pb::Null {})),
        any::<bool>().prop_map(V::Bool),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), -3i64..300].prop_map(V::Int),
        prop_oneof![Just(f64::NAN), Just(-0.0), any::<f64>()].prop_map(V::Float),
        "[a-c]{0,3}".prop_map(V::Str),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(V::Bytes),
    ]
    .prop_map(|k| pb::Value { kind: Some(k) });
    let leaf = prop_oneof![9 => leaf, 1 => Just(pb::Value { kind: None })];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop::collection::vec(inner, 0..3).prop_map(|items| pb::Value {
            kind: Some(V::List(pb::ValueList { items })),
        })
    })
}

fn opt_value() -> impl Strategy<Value = Option<pb::Value>> {
    prop_oneof![9 => value().prop_map(Some), 1 => Just(None)]
}

fn index() -> impl Strategy<Value = i64> {
    prop_oneof![Just(i64::MIN), Just(i64::MAX), -5i64..5]
}

fn timeout() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        Just(Some(0.0)),
        Just(Some(0.002)),
        Just(Some(-1.0)),
        Just(Some(f64::NAN)),
        Just(Some(f64::INFINITY)),
    ]
}

fn kind() -> impl Strategy<Value = i32> {
    prop_oneof![1i32..=15, Just(0), Just(99)]
}

fn open() -> impl Strategy<Value = Op> {
    (
        kind(),
        opt_value(),
        0u64..4,
        timeout(),
        prop::sample::select(vec!["", "a", "d", "zz"]),
        0i32..5,
    )
        .prop_map(|(kind, initial, size, timeout_secs, lock, array_type)| {
            Op::Open(pb::Open {
                kind,
                initial,
                size,
                timeout_secs,
                lock: lock.into(),
                array_type,
            })
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        open(),
        open(),
        open(),
        Just(Op::Delete(pb::Delete {})),
        Just(Op::Describe(pb::Describe {})),
        (opt_value(), opt_value()).prop_map(|(key, value)| Op::DictSet(pb::DictSet { key, value })),
        opt_value().prop_map(|key| Op::DictRemove(pb::DictRemove { key })),
        (opt_value(), opt_value())
            .prop_map(|(key, delta)| Op::DictFetchAdd(pb::DictFetchAdd { key, delta })),
        Just(Op::DictPopItem(pb::DictPopItem {})),
        opt_value().prop_map(|value| Op::ListPush(pb::ListPush { value })),
        index().prop_map(|index| Op::ListGet(pb::ListGet { index })),
        (index(), opt_value())
            .prop_map(|(index, value)| Op::ListInsert(pb::ListInsert { index, value })),
        prop::option::of(index()).prop_map(|index| Op::ListPop(pb::ListPop { index })),
        (prop::option::of(index()), prop::option::of(index()))
            .prop_map(|(start, stop)| Op::ListRange(pb::ListRange { start, stop })),
        opt_value().prop_map(|value| Op::ValueSet(pb::ValueSet { value })),
        opt_value().prop_map(|delta| Op::ValueFetchAdd(pb::ValueFetchAdd { delta })),
        (any::<bool>(), timeout()).prop_map(|(blocking, timeout_secs)| Op::LockAcquire(
            pb::LockAcquire {
                blocking,
                timeout_secs
            }
        )),
        Just(Op::LockRelease(pb::LockRelease {})),
        (any::<bool>(), timeout()).prop_map(|(blocking, timeout_secs)| {
            Op::SemaphoreAcquire(pb::SemaphoreAcquire {
                blocking,
                timeout_secs,
            })
        }),
        (0u64..3).prop_map(|n| Op::SemaphoreRelease(pb::SemaphoreRelease { n })),
        timeout().prop_map(|timeout_secs| Op::ConditionWait(pb::ConditionWait { timeout_secs })),
        (0u64..3, any::<bool>())
            .prop_map(|(n, all)| Op::ConditionNotify(pb::ConditionNotify { n, all })),
        Just(Op::EventSet(pb::EventSet {})),
        timeout().prop_map(|timeout_secs| Op::EventWait(pb::EventWait { timeout_secs })),
        timeout().prop_map(|timeout_secs| Op::BarrierWait(pb::BarrierWait { timeout_secs })),
        Just(Op::BarrierAbort(pb::BarrierAbort {})),
        Just(Op::BarrierReset(pb::BarrierReset {})),
        (opt_value(), any::<bool>(), timeout()).prop_map(|(value, blocking, timeout_secs)| {
            Op::QueuePut(pb::QueuePut {
                value,
                blocking,
                timeout_secs,
            })
        }),
        (any::<bool>(), timeout()).prop_map(|(blocking, timeout_secs)| Op::QueueGet(
            pb::QueueGet {
                blocking,
                timeout_secs
            }
        )),
        Just(Op::QueueTaskDone(pb::QueueTaskDone {})),
        timeout().prop_map(|timeout_secs| Op::QueueJoin(pb::QueueJoin { timeout_secs })),
        ("[a-b]{0,2}", opt_value())
            .prop_map(|(attr, value)| Op::NamespaceSet(pb::NamespaceSet { attr, value })),
        (index(), opt_value())
            .prop_map(|(index, value)| Op::ArraySet(pb::ArraySet { index, value })),
        (index(), prop::collection::vec(value(), 0..4))
            .prop_map(|(start, values)| Op::ArraySetRange(pb::ArraySetRange { start, values })),
        (index(), opt_value())
            .prop_map(|(index, delta)| Op::ArrayFetchAdd(pb::ArrayFetchAdd { index, delta })),
        (0u32..3, opt_value()).prop_map(|(end, value)| Op::PipeSend(pb::PipeSend { end, value })),
        (0u32..3, timeout())
            .prop_map(|(end, timeout_secs)| Op::PipeRecv(pb::PipeRecv { end, timeout_secs })),
    ]
}

fn step() -> impl Strategy<Value = (usize, usize, Op)> {
    (0..NAMES.len(), 0usize..3, op())
}

/// Checks the invariants of every object through `Describe`.
async fn check(store: &Store) {
    for name in NAMES {
        let d = store
            .apply(
                &Caller::new("checker", ""),
                pb::Op {
                    name: name.into(),
                    kind: Some(Op::Describe(pb::Describe {})),
                },
            )
            .await;
        let Ok(d) = d else { continue };
        let Some(pb::op_result::Kind::Value(v)) = d.kind else {
            panic!("describe of {name} is not a value")
        };
        let fields = match v.kind {
            Some(V::Map(m)) => m.entries,
            other => panic!("describe of {name} is not a map: {other:?}"),
        };
        let get = |k: &str| {
            fields.iter().find_map(|p| match (&p.first, &p.second) {
                (
                    Some(pb::Value {
                        kind: Some(V::Str(key)),
                    }),
                    Some(v),
                ) if key == k => v.kind.clone(),
                _ => None,
            })
        };
        if let (Some(V::Int(len)), Some(V::Int(max))) = (get("len"), get("maxsize")) {
            assert!(len >= 0);
            assert!(
                max == 0 || len <= max,
                "{name}: queue of {len} items over maxsize {max}"
            );
        }
        if let (Some(V::Int(value)), Some(V::Int(bound))) = (get("value"), get("bound")) {
            assert!(
                value <= bound,
                "{name}: bounded semaphore at {value} over {bound}"
            );
        }
        if let (Some(V::Bool(locked)), Some(V::Int(depth))) = (get("locked"), get("depth")) {
            assert_eq!(
                locked,
                depth >= 1,
                "{name}: locked {locked} with depth {depth}"
            );
        }
    }
}

proptest! {
    // 256 cases by default (seconds in CI); PROPTEST_CASES for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_operation_sequences_keep_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::new();
            let callers = [Caller::new("x", ""), Caller::new("y", "t"), Caller::new("y", "u")];
            for (name, who, op) in steps {
                let request = pb::Op { name: NAMES[name].into(), kind: Some(op) };
                // A wait without a timeout would wait for ever: bound it here,
                // dropping the call as a vanished client would.
                let _ = tokio::time::timeout(Duration::from_millis(20), store.apply(&callers[who], request)).await;
                check(&store).await;
            }
            // Whatever was held, a client's end gives it back.
            for c in &callers {
                store.release_client(&c.client_id);
            }
            for c in &callers {
                assert!(store.held_by(&c.client_id).is_empty());
            }
        });
    }

    #[test]
    fn arbitrary_bytes_into_the_request_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if let Ok(request) = pb::Request::decode(bytes.as_slice()) {
            rt.block_on(async {
                let store = Store::new();
                if let Some(op) = request.op {
                    let caller = Caller::new(&request.client_id, &request.task_id);
                    let _ = tokio::time::timeout(Duration::from_millis(20), store.apply(&caller, op)).await;
                    check(&store).await;
                }
            });
        }
    }

    #[test]
    fn mutated_valid_requests_into_the_decoder(
        name in 0..NAMES.len(),
        op in op(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let request = pb::Request {
            client_id: "f".into(),
            request_id: 1,
            op: Some(pb::Op { name: NAMES[name].into(), kind: Some(op) }),
            task_id: String::new(),
            ..Default::default()
        };
        let mut bytes = request.encode_to_vec();
        for (at, x) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if let Ok(request) = pb::Request::decode(bytes.as_slice()) {
            rt.block_on(async {
                let store = Store::new();
                let open = pb::Op {
                    name: NAMES[name].into(),
                    kind: Some(Op::Open(pb::Open { kind: Kind::Queue as i32, size: 1, ..Default::default() })),
                };
                let _ = store.apply(&Caller::new("f", ""), open).await;
                if let Some(op) = request.op {
                    let _ = tokio::time::timeout(Duration::from_millis(20), store.apply(&Caller::new("f", ""), op)).await;
                }
                check(&store).await;
            });
        }
    }
}
