//! Typed proxies: one per object kind, each a name plus the shared
//! connection. A proxy is cheap to clone and to send to another task.

mod dict;
mod list;
mod lock;
mod value;

pub use dict::DictProxy;
pub use list::ListProxy;
pub use lock::LockProxy;
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

/// What every proxy holds: the object's name and the connection.
#[derive(Clone)]
pub(crate) struct Handle {
    conn: Connection,
    name: Arc<str>,
}

impl Handle {
    pub fn new(conn: Connection, name: &str) -> Self {
        Handle {
            conn,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn call(&self, op: Op) -> Result<R> {
        self.call_with(op, Deadline::Default).await
    }

    pub async fn call_with(&self, op: Op, deadline: Deadline) -> Result<R> {
        self.conn
            .execute(&self.name, op, deadline)
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

pub(crate) fn acquired(r: R) -> Result<Option<u64>> {
    match r {
        R::Acquired(a) => Ok(a.acquired.then_some(a.fencing_token)),
        other => Err(unexpected("an acquire result", &other)),
    }
}
