//! How the store reports what it changed, for a write-ahead log.
//!
//! An operation that changes state is encoded before it runs; the object
//! module calls [`Recorder::commit`] at the moment it mutates, *while the
//! object is still locked*, so the sequence numbers of one object's records
//! follow the order in which they were applied. The [`Sink`] behind it (the
//! log) knows nothing of objects; the store knows nothing of files.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use procshare_proto::{self as pb, fields, op::Kind as Op};

use super::Caller;

/// Where committed records go.
pub trait Sink: Send + Sync {
    /// Appends a record whose body (a `LogRecord` without its seq) is
    /// `body`; returns the seq it was given. Called with an object locked:
    /// must be quick and must not lock any object.
    fn append(&self, body: &[u8]) -> u64;

    /// The seq the next record will get. Read under an object's lock, it
    /// divides that object's records into "already applied" and "not yet".
    fn next_seq(&self) -> u64;
}

/// One operation's pending record.
pub struct Recorder<'a> {
    sink: Option<&'a dyn Sink>,
    body: Vec<u8>,
    /// 0 until committed.
    seq: AtomicU64,
}

impl<'a> Recorder<'a> {
    /// A recorder that records nothing (an in-memory store, or replay).
    pub fn none() -> Recorder<'static> {
        Recorder {
            sink: None,
            body: Vec::new(),
            seq: AtomicU64::new(0),
        }
    }

    /// A recorder for `op`, if `op` can change durable state.
    pub fn for_op(sink: &'a dyn Sink, caller: &Caller, name: &str, op: &Op) -> Recorder<'a> {
        let Some(replayable) = replayable(op) else {
            return Recorder {
                sink: None,
                ..Recorder::none()
            };
        };
        Recorder {
            sink: Some(sink),
            body: record_body(caller, name, &replayable),
            seq: AtomicU64::new(0),
        }
    }

    /// Whether the operation is one that is logged (it can change durable
    /// state).
    pub fn records(&self) -> bool {
        self.sink.is_some()
    }

    /// Records the operation as applied. Call it while the object is locked,
    /// right where the state changes.
    pub fn commit(&self) {
        if let Some(sink) = self.sink {
            self.seq.store(sink.append(&self.body), Ordering::Release);
        }
    }

    /// The seq of the committed record, if any.
    pub fn committed(&self) -> Option<u64> {
        match self.seq.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }
}

/// Field numbers of `LogRecord` and `Op` in `proto/procshare.proto`.
mod field {
    pub const CLIENT_ID: u32 = 2;
    pub const TASK_ID: u32 = 3;
    pub const OP: u32 = 4;
    pub const OP_NAME: u32 = 1;
}

/// A `LogRecord` without its seq (the log puts that in front), encoded
/// straight from the borrowed parts: building the message first copied the
/// client id, the task id, the name and the operation, a third of what a
/// durable write cost over an in-memory one in allocations.
fn record_body(caller: &Caller, name: &str, op: &Op) -> Vec<u8> {
    let op_len = fields::str_len(field::OP_NAME, name) + op.encoded_len();
    let len = fields::str_len(field::CLIENT_ID, &caller.client_id)
        + fields::str_len(field::TASK_ID, &caller.task_id)
        + fields::message_len(field::OP, op_len);
    let mut body = Vec::with_capacity(len);
    fields::put_str(field::CLIENT_ID, &caller.client_id, &mut body);
    fields::put_str(field::TASK_ID, &caller.task_id, &mut body);
    fields::put_message_header(field::OP, op_len, &mut body);
    fields::put_str(field::OP_NAME, name, &mut body);
    op.encode(&mut body);
    debug_assert_eq!(body.len(), len);
    body
}

/// The form of `op` to log, or `None` if it changes nothing that survives a
/// restart. Waits become non-blocking: the log records an operation only
/// once it succeeded, so on replay it succeeds at once.
pub fn replayable(op: &Op) -> Option<Cow<'_, Op>> {
    let changed = match op {
        Op::SemaphoreAcquire(_) => Op::SemaphoreAcquire(pb::SemaphoreAcquire {
            blocking: false,
            timeout_secs: None,
        }),
        Op::QueuePut(o) if o.blocking || o.timeout_secs.is_some() => Op::QueuePut(pb::QueuePut {
            value: o.value.clone(),
            blocking: false,
            timeout_secs: None,
        }),
        Op::QueueGet(o) if o.blocking || o.timeout_secs.is_some() => Op::QueueGet(pb::QueueGet {
            blocking: false,
            timeout_secs: None,
        }),
        // A claim and a result take what they find at once on replay: the
        // log holds them in the order they were applied.
        Op::PoolClaim(o) => Op::PoolClaim(pb::PoolClaim {
            handlers: o.handlers.clone(),
            timeout_secs: Some(0.0),
        }),
        Op::PoolResult(o) => Op::PoolResult(pb::PoolResult {
            task_ids: o.task_ids.clone(),
            timeout_secs: Some(0.0),
        }),
        Op::Open(_)
        | Op::Delete(_)
        | Op::DictSet(_)
        | Op::DictRemove(_)
        | Op::DictUpdate(_)
        | Op::DictClear(_)
        | Op::DictSetDefault(_)
        | Op::DictPopItem(_)
        | Op::DictCompareAndSwap(_)
        | Op::DictFetchAdd(_)
        | Op::ListPush(_)
        | Op::ListExtend(_)
        | Op::ListSet(_)
        | Op::ListInsert(_)
        | Op::ListPop(_)
        | Op::ListRemove(_)
        | Op::ListClear(_)
        | Op::ListReverse(_)
        | Op::ValueSet(_)
        | Op::ValueSwap(_)
        | Op::ValueCompareAndSwap(_)
        | Op::ValueFetchAdd(_)
        | Op::SemaphoreRelease(_)
        | Op::EventSet(_)
        | Op::EventClear(_)
        | Op::QueuePut(_)
        | Op::QueueGet(_)
        | Op::QueueTaskDone(_)
        | Op::NamespaceSet(_)
        | Op::NamespaceDelete(_)
        | Op::NamespaceStore(_)
        | Op::ArraySet(_)
        | Op::ArraySetRange(_)
        | Op::ArrayFetchAdd(_)
        | Op::PoolSubmit(_)
        | Op::PoolComplete(_)
        | Op::PoolClose(_)
        | Op::PoolRelease(_) => return Some(Cow::Borrowed(op)),
        _ => return None,
    };
    Some(Cow::Owned(changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn int(i: i64) -> Option<pb::Value> {
        Some(pb::Value {
            kind: Some(pb::value::Kind::Int(i)),
        })
    }

    fn text(s: &str) -> Option<pb::Value> {
        Some(pb::Value {
            kind: Some(pb::value::Kind::Str(s.to_owned())),
        })
    }

    #[test]
    fn the_body_is_prosts_encoding_of_the_record_without_its_seq() {
        let ops = [
            Op::DictSet(pb::DictSet {
                key: int(7),
                value: text(&"é".repeat(70_000)),
            }),
            Op::DictClear(pb::DictClear {}),
            Op::QueuePut(pb::QueuePut {
                value: int(-1),
                blocking: true,
                timeout_secs: Some(2.5),
            }),
            Op::QueueGet(pb::QueueGet {
                blocking: false,
                timeout_secs: None,
            }),
        ];
        let callers = [Caller::new("", ""), Caller::new("client-1", "task/7")];
        for op in &ops {
            for caller in &callers {
                for name in ["", "results", "ü"] {
                    let logged = replayable(op).expect("a mutation").into_owned();
                    let expected = pb::LogRecord {
                        seq: 0,
                        client_id: caller.client_id.clone(),
                        task_id: caller.task_id.clone(),
                        op: Some(pb::Op {
                            name: name.to_owned(),
                            kind: Some(logged.clone()),
                        }),
                        batch: Vec::new(),
                    }
                    .encode_to_vec();
                    assert_eq!(record_body(caller, name, &logged), expected, "{op:?}");
                }
            }
        }
    }

    #[test]
    fn waits_are_logged_as_non_blocking_and_the_rest_as_they_are() {
        let put = Op::QueuePut(pb::QueuePut {
            value: int(3),
            blocking: true,
            timeout_secs: Some(1.0),
        });
        let logged = replayable(&put).unwrap();
        assert!(matches!(logged, Cow::Owned(_)));
        let Op::QueuePut(p) = logged.as_ref() else {
            panic!("{logged:?}")
        };
        assert!(!p.blocking && p.timeout_secs.is_none() && p.value == int(3));

        let put_nowait = Op::QueuePut(pb::QueuePut {
            value: int(3),
            blocking: false,
            timeout_secs: None,
        });
        assert!(matches!(replayable(&put_nowait), Some(Cow::Borrowed(o)) if *o == put_nowait));
        let set = Op::DictSet(pb::DictSet {
            key: int(1),
            value: int(2),
        });
        assert!(matches!(replayable(&set), Some(Cow::Borrowed(o)) if *o == set));
        assert!(replayable(&Op::DictGet(pb::DictGet { key: int(1) })).is_none());
    }
}
