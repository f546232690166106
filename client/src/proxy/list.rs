use std::marker::PhantomData;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::Handle;
use crate::error::Result;
use crate::value::to_wire;

/// A shared list, Python's `manager.list()`, of items `T`.
///
/// Indexes follow Python: `-1` is the last item; an index outside the list is
/// [`Error::OutOfRange`](crate::Error::OutOfRange).
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let log = m.list::<String>("log").await?;
/// log.push("started".into()).await?;
/// assert_eq!(log.get(-1).await?, "started");
/// # Ok(()) }
/// ```
pub struct ListProxy<T> {
    handle: Handle,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            handle: self.handle.clone(),
            item: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ListProxy {
            handle,
            item: PhantomData,
        }
    }

    /// The list's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Watches this list's changes from now on (see [`crate::Watch`]).
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
    /// let log = m.list::<String>("log").await?;
    /// let mut watch = log.watch().await?;
    /// while let Some(change) = watch.next().await? {
    ///     println!("{}", change.to_json()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), false).await
    }

    /// Like [`watch`](Self::watch), but the first event is a snapshot of
    /// the whole list, which the changes that follow apply to.
    pub async fn watch_from_snapshot(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), true).await
    }

    /// Appends `value` (Python's `append`).
    pub async fn push(&self, value: T) -> Result<()> {
        let op = Op::ListPush(pb::ListPush {
            value: super::wire(&value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Appends every item of `values`, in one atomic step.
    pub async fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values
            .into_iter()
            .map(|v| to_wire(&v))
            .collect::<Result<_>>()?;
        super::unit(
            self.handle
                .call(Op::ListExtend(pb::ListExtend { values }))
                .await?,
        )
    }

    /// The item at `index`.
    pub async fn get(&self, index: i64) -> Result<T> {
        super::value(self.handle.call(Op::ListGet(pb::ListGet { index })).await?)
    }

    /// Replaces the item at `index`.
    pub async fn set(&self, index: i64, value: T) -> Result<()> {
        let op = Op::ListSet(pb::ListSet {
            index,
            value: super::wire(&value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Inserts `value` before `index` (clamped to the list, as in Python).
    pub async fn insert(&self, index: i64, value: T) -> Result<()> {
        let op = Op::ListInsert(pb::ListInsert {
            index,
            value: super::wire(&value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Removes and returns the last item.
    pub async fn pop(&self) -> Result<T> {
        super::value(
            self.handle
                .call(Op::ListPop(pb::ListPop { index: None }))
                .await?,
        )
    }

    /// Removes and returns the item at `index`.
    pub async fn pop_at(&self, index: i64) -> Result<T> {
        let op = Op::ListPop(pb::ListPop { index: Some(index) });
        super::value(self.handle.call(op).await?)
    }

    /// Removes the first item equal to `value`, or fails with
    /// [`Error::NotFound`](crate::Error::NotFound).
    pub async fn remove(&self, value: &T) -> Result<()> {
        let op = Op::ListRemove(pb::ListRemove {
            value: super::wire(value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// The position of the first item equal to `value`.
    pub async fn index(&self, value: &T) -> Result<usize> {
        let op = Op::ListIndex(pb::ListIndex {
            value: super::wire(value)?,
        });
        super::count(self.handle.call(op).await?)
    }

    /// How many items equal `value`.
    pub async fn count(&self, value: &T) -> Result<usize> {
        let op = Op::ListCount(pb::ListCount {
            value: super::wire(value)?,
        });
        super::count(self.handle.call(op).await?)
    }

    /// The number of items.
    pub async fn len(&self) -> Result<usize> {
        super::count(self.handle.call(Op::ListLen(pb::ListLen {})).await?)
    }

    /// Whether the list has no items.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Python's slice `list[start:stop]` (`None` is the end on that side).
    pub async fn range(&self, start: Option<i64>, stop: Option<i64>) -> Result<Vec<T>> {
        super::values(
            self.handle
                .call(Op::ListRange(pb::ListRange { start, stop }))
                .await?,
        )
    }

    /// Removes every item.
    pub async fn clear(&self) -> Result<()> {
        super::unit(self.handle.call(Op::ListClear(pb::ListClear {})).await?)
    }

    /// Reverses the list in place.
    pub async fn reverse(&self) -> Result<()> {
        super::unit(
            self.handle
                .call(Op::ListReverse(pb::ListReverse {}))
                .await?,
        )
    }

    /// The whole list, as one consistent copy.
    pub async fn snapshot(&self) -> Result<Vec<T>> {
        super::values(
            self.handle
                .call(Op::ListSnapshot(pb::ListSnapshot {}))
                .await?,
        )
    }
}
