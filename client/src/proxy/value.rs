use std::marker::PhantomData;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::{Handle, Swap};
use crate::error::{Error, Result};

/// A shared value, Python's `manager.Value`, holding a `T`.
///
/// `fetch_add` and `compare_and_swap` are atomic on the server: the fix for
/// the classic race of `v.value += 1` from several processes.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let hits = m.value::<i64>("hits", &0).await?;
/// let before = hits.fetch_add(1).await?;
/// println!("I was visitor {}", before + 1);
/// # Ok(()) }
/// ```
pub struct ValueProxy<T> {
    handle: Handle,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for ValueProxy<T> {
    fn clone(&self) -> Self {
        ValueProxy {
            handle: self.handle.clone(),
            item: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ValueProxy {
            handle,
            item: PhantomData,
        }
    }

    /// The value's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Watches this value's changes from now on (see [`crate::Watch`]).
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
    /// let counter = m.value::<i64>("counter", &0).await?;
    /// let mut watch = counter.watch().await?;
    /// while let Some(change) = watch.next().await? {
    ///     println!("{}", change.to_json()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), false).await
    }

    /// Like [`watch`](Self::watch), but the first event is a snapshot of
    /// the whole value, which the changes that follow apply to.
    pub async fn watch_from_snapshot(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), true).await
    }

    /// The current value.
    pub async fn get(&self) -> Result<T> {
        super::value(self.handle.call(Op::ValueGet(pb::ValueGet {})).await?)
    }

    /// Replaces the value.
    pub async fn set(&self, value: &T) -> Result<()> {
        let op = Op::ValueSet(pb::ValueSet {
            value: super::wire(value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Replaces the value and returns the previous one.
    pub async fn swap(&self, value: &T) -> Result<T> {
        let op = Op::ValueSwap(pb::ValueSwap {
            value: super::wire(value)?,
        });
        super::value(self.handle.call(op).await?)
    }

    /// Atomically replaces the value with `new` if it equals `expected`.
    pub async fn compare_and_swap(&self, expected: &T, new: &T) -> Result<Swap<T>> {
        let op = Op::ValueCompareAndSwap(pb::ValueCompareAndSwap {
            expected: super::wire(expected)?,
            new: super::wire(new)?,
        });
        let s: Swap<T> = super::swap(self.handle.call(op).await?)?;
        if s.current.is_none() {
            return Err(Error::Protocol("compare_and_swap: no current value".into()));
        }
        Ok(s)
    }

    /// Atomically adds `delta` and returns the previous value.
    pub async fn fetch_add(&self, delta: T) -> Result<T> {
        Ok(self.add(delta).await?.0)
    }

    /// Atomically adds `delta`; returns `(previous, new)`.
    pub async fn add(&self, delta: T) -> Result<(T, T)> {
        let op = Op::ValueFetchAdd(pb::ValueFetchAdd {
            delta: super::wire(&delta)?,
        });
        super::pair(self.handle.call(op).await?)
    }
}
