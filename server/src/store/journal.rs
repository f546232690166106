//! How the store reports what it changed, for a write-ahead log.
//!
//! An operation that changes state is encoded before it runs; the object
//! module calls [`Recorder::commit`] at the moment it mutates, *while the
//! object is still locked*, so the sequence numbers of one object's records
//! follow the order in which they were applied. The [`Sink`] behind it (the
//! log) knows nothing of objects; the store knows nothing of files.

use std::sync::atomic::{AtomicU64, Ordering};

use procshare_proto::{self as pb, op::Kind as Op};
use prost::Message;

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
        let record = pb::LogRecord {
            seq: 0,
            client_id: caller.client_id.clone(),
            task_id: caller.task_id.clone(),
            op: Some(pb::Op {
                name: name.to_owned(),
                kind: Some(replayable),
            }),
            batch: Vec::new(),
        };
        Recorder {
            sink: Some(sink),
            body: record.encode_to_vec(),
            seq: AtomicU64::new(0),
        }
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

/// The form of `op` to log, or `None` if it changes nothing that survives a
/// restart. Waits become non-blocking: the log records an operation only
/// once it succeeded, so on replay it succeeds at once.
pub fn replayable(op: &Op) -> Option<Op> {
    Some(match op {
        Op::Open(_) | Op::Delete(_) => op.clone(),
        Op::DictSet(_)
        | Op::DictRemove(_)
        | Op::DictUpdate(_)
        | Op::DictClear(_)
        | Op::DictSetDefault(_)
        | Op::DictPopItem(_)
        | Op::DictCompareAndSwap(_)
        | Op::DictFetchAdd(_) => op.clone(),
        Op::ListPush(_)
        | Op::ListExtend(_)
        | Op::ListSet(_)
        | Op::ListInsert(_)
        | Op::ListPop(_)
        | Op::ListRemove(_)
        | Op::ListClear(_)
        | Op::ListReverse(_) => op.clone(),
        Op::ValueSet(_) | Op::ValueSwap(_) | Op::ValueCompareAndSwap(_) | Op::ValueFetchAdd(_) => {
            op.clone()
        }
        Op::SemaphoreAcquire(_) => Op::SemaphoreAcquire(pb::SemaphoreAcquire {
            blocking: false,
            timeout_secs: None,
        }),
        Op::SemaphoreRelease(_) => op.clone(),
        Op::EventSet(_) | Op::EventClear(_) => op.clone(),
        Op::QueuePut(o) => Op::QueuePut(pb::QueuePut {
            value: o.value.clone(),
            blocking: false,
            timeout_secs: None,
        }),
        Op::QueueGet(_) => Op::QueueGet(pb::QueueGet {
            blocking: false,
            timeout_secs: None,
        }),
        Op::QueueTaskDone(_) => op.clone(),
        Op::NamespaceSet(_) | Op::NamespaceDelete(_) | Op::NamespaceStore(_) => op.clone(),
        Op::ArraySet(_) | Op::ArraySetRange(_) | Op::ArrayFetchAdd(_) => op.clone(),
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
        Op::PoolSubmit(_) | Op::PoolComplete(_) | Op::PoolClose(_) | Op::PoolRelease(_) => {
            op.clone()
        }
        _ => return None,
    })
}
