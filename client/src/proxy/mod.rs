//! Typed proxies: one per object kind, each a name plus the shared
//! connection. A proxy is cheap to clone and to send to another task.

mod array;
mod barrier;
mod condition;
mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod pipe;
mod pool;
mod queue;
mod semaphore;
mod value;

pub use array::{ArrayElement, ArrayProxy};
pub use barrier::BarrierProxy;
pub use condition::ConditionProxy;
pub use dict::DictProxy;
pub use event::EventProxy;
pub use list::ListProxy;
pub use lock::{LockProxy, RLockProxy};
pub use namespace::NamespaceProxy;
pub use pipe::PipeProxy;
pub use pool::{AsyncResult, PoolProxy, PoolStatus, Task, TaskError, TaskResult, Unordered};
pub use queue::QueueProxy;
pub use semaphore::SemaphoreProxy;
pub use value::ValueProxy;

use std::sync::Arc;

use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R};
use serde::{de::DeserializeOwned, Serialize};

use crate::connection::{Connection, Deadline};
use crate::error::{Error, Result};
use crate::value::{from_wire, required, to_wire};

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap<T> {
    /// Whether the new value was stored.
    pub swapped: bool,
    /// The value after the operation: the new one if swapped, else the one
    /// that did not match (`None` for a missing dict key).
    pub current: Option<T>,
}

/// What every proxy holds: the object's name, the connection, and the task
/// (within this client) that the proxy acts for.
#[derive(Clone)]
pub(crate) struct Handle {
    conn: Connection,
    name: Arc<str>,
    task: Arc<str>,
}

impl Handle {
    pub fn new(conn: Connection, name: &str) -> Self {
        Handle {
            conn,
            name: name.into(),
            task: "".into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn task(&self) -> &str {
        &self.task
    }

    /// The same object, acting for `task`.
    pub fn with_task(&self, task: &str) -> Self {
        Handle {
            task: task.into(),
            ..self.clone()
        }
    }

    /// The object's `Describe` map, as JSON.
    pub async fn describe(&self) -> Result<serde_json::Value> {
        let v: serde_json::Value = value(self.call(Op::Describe(pb::Describe {})).await?)?;
        Ok(v)
    }

    /// One numeric field of the `Describe` map.
    pub async fn describe_u64(&self, field: &str) -> Result<u64> {
        self.describe().await?[field]
            .as_u64()
            .ok_or_else(|| Error::Protocol(format!("describe: no number {field:?}")))
    }

    pub async fn call(&self, op: Op) -> Result<R> {
        self.call_with(op, Deadline::Default).await
    }

    pub async fn call_with(&self, op: Op, deadline: Deadline) -> Result<R> {
        self.conn
            .execute(&self.name, &self.task, op, deadline)
            .await?
            .kind
            .ok_or_else(|| Error::Protocol("result without a kind".into()))
    }
}

fn unexpected(what: &str, got: &R) -> Error {
    Error::Protocol(format!("expected {what} in the response, got {got:?}"))
}

pub(crate) fn wire<T: Serialize + ?Sized>(v: &T) -> Result<Option<pb::Value>> {
    to_wire(v).map(Some)
}

pub(crate) fn unit(r: R) -> Result<()> {
    match r {
        R::Unit(_) => Ok(()),
        other => Err(unexpected("unit", &other)),
    }
}

pub(crate) fn value<T: DeserializeOwned>(r: R) -> Result<T> {
    match r {
        R::Value(v) => from_wire(v),
        other => Err(unexpected("a value", &other)),
    }
}

pub(crate) fn maybe<T: DeserializeOwned>(r: R) -> Result<Option<T>> {
    match r {
        R::Maybe(m) => m.value.map(from_wire).transpose(),
        other => Err(unexpected("an optional value", &other)),
    }
}

pub(crate) fn flag(r: R) -> Result<bool> {
    match r {
        R::Flag(b) => Ok(b),
        other => Err(unexpected("a flag", &other)),
    }
}

pub(crate) fn count(r: R) -> Result<usize> {
    match r {
        R::Count(n) => {
            usize::try_from(n).map_err(|_| Error::Protocol(format!("count {n} too large")))
        }
        other => Err(unexpected("a count", &other)),
    }
}

pub(crate) fn values<T: DeserializeOwned>(r: R) -> Result<Vec<T>> {
    match r {
        R::Values(l) => l.items.into_iter().map(from_wire).collect(),
        other => Err(unexpected("a list of values", &other)),
    }
}

pub(crate) fn pair_of<A: DeserializeOwned, B: DeserializeOwned>(p: pb::Pair) -> Result<(A, B)> {
    Ok((
        from_wire(required(p.first)?)?,
        from_wire(required(p.second)?)?,
    ))
}

pub(crate) fn pair<A: DeserializeOwned, B: DeserializeOwned>(r: R) -> Result<(A, B)> {
    match r {
        R::Pair(p) => pair_of(p),
        other => Err(unexpected("a pair", &other)),
    }
}

pub(crate) fn pairs<A: DeserializeOwned, B: DeserializeOwned>(r: R) -> Result<Vec<(A, B)>> {
    match r {
        R::Pairs(m) => m.entries.into_iter().map(pair_of).collect(),
        other => Err(unexpected("a list of pairs", &other)),
    }
}

pub(crate) fn swap<T: DeserializeOwned>(r: R) -> Result<Swap<T>> {
    match r {
        R::Swap(s) => Ok(Swap {
            swapped: s.swapped,
            current: s.current.and_then(|m| m.value).map(from_wire).transpose()?,
        }),
        other => Err(unexpected("a swap result", &other)),
    }
}

/// A timeout as the wire wants it, and the matching call deadline.
pub(crate) fn wait_for(timeout: Option<std::time::Duration>) -> (Option<f64>, Deadline) {
    match timeout {
        Some(t) => (Some(t.as_secs_f64()), Deadline::Wait(t)),
        None => (None, Deadline::Never),
    }
}

pub(crate) fn acquired(r: R) -> Result<Option<u64>> {
    match r {
        R::Acquired(a) => Ok(a.acquired.then_some(a.fencing_token)),
        other => Err(unexpected("an acquire result", &other)),
    }
}
