use std::marker::PhantomData;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::{Handle, Swap};
use crate::error::{Error, Result};
use crate::value::to_wire;

/// A shared dict, Python's `manager.dict()`, with keys `K` and values `V`.
///
/// Every method is one round trip and atomic on the server.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let scores = m.dict::<String, i64>("scores").await?;
/// scores.insert("ada".into(), 3).await?;
/// scores.fetch_add(&"ada".into(), 1).await?; // atomic, unlike d[k] += 1
/// assert_eq!(scores.get(&"ada".into()).await?, Some(4));
/// # Ok(()) }
/// ```
pub struct DictProxy<K, V> {
    handle: Handle,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            handle: self.handle.clone(),
            types: PhantomData,
        }
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub(crate) fn new(handle: Handle) -> Self {
        DictProxy {
            handle,
            types: PhantomData,
        }
    }

    /// The dict's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Watches this dict's changes from now on (see [`crate::Watch`]).
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
    /// let scores = m.dict::<String, i64>("scores").await?;
    /// let mut watch = scores.watch().await?;
    /// while let Some(change) = watch.next().await? {
    ///     println!("{}", change.to_json()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self) -> Result<crate::Watch<V, K>> {
        crate::Watch::start(&self.handle.conn, self.name(), false).await
    }

    /// Like [`watch`](Self::watch), but the first event is a snapshot of
    /// the whole dict, which the changes that follow apply to.
    pub async fn watch_from_snapshot(&self) -> Result<crate::Watch<V, K>> {
        crate::Watch::start(&self.handle.conn, self.name(), true).await
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        let key = super::wire(key)?;
        super::maybe(self.handle.call(Op::DictGet(pb::DictGet { key })).await?)
    }

    /// Stores `value` under `key`; returns the value it replaced.
    pub async fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let op = Op::DictSet(pb::DictSet {
            key: super::wire(&key)?,
            value: super::wire(&value)?,
        });
        super::maybe(self.handle.call(op).await?)
    }

    /// Removes `key`; returns its value if it was there.
    pub async fn remove(&self, key: &K) -> Result<Option<V>> {
        let key = super::wire(key)?;
        super::maybe(
            self.handle
                .call(Op::DictRemove(pb::DictRemove { key }))
                .await?,
        )
    }

    /// Python's `d.pop(key)`: removes `key` and returns its value, or
    /// [`Error::NotFound`] if it is missing.
    pub async fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key not in dict {:?}", self.name())))
    }

    /// Whether `key` is present.
    pub async fn contains_key(&self, key: &K) -> Result<bool> {
        let key = super::wire(key)?;
        super::flag(
            self.handle
                .call(Op::DictContains(pb::DictContains { key }))
                .await?,
        )
    }

    /// The number of entries.
    pub async fn len(&self) -> Result<usize> {
        super::count(self.handle.call(Op::DictLen(pb::DictLen {})).await?)
    }

    /// Whether the dict has no entries.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// All keys.
    pub async fn keys(&self) -> Result<Vec<K>> {
        super::values(self.handle.call(Op::DictKeys(pb::DictKeys {})).await?)
    }

    /// All values.
    pub async fn values(&self) -> Result<Vec<V>> {
        super::values(self.handle.call(Op::DictValues(pb::DictValues {})).await?)
    }

    /// All entries, as one consistent copy.
    pub async fn items(&self) -> Result<Vec<(K, V)>> {
        super::pairs(self.handle.call(Op::DictItems(pb::DictItems {})).await?)
    }

    /// The whole dict, as one consistent copy, in any collection:
    /// `let m: HashMap<K, V> = d.snapshot().await?;`
    pub async fn snapshot<C: FromIterator<(K, V)>>(&self) -> Result<C> {
        Ok(self.items().await?.into_iter().collect())
    }

    /// Stores every entry of `entries`, in one atomic step.
    pub async fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let entries = entries
            .into_iter()
            .map(|(k, v)| {
                Ok(pb::Pair {
                    first: Some(to_wire(&k)?),
                    second: Some(to_wire(&v)?),
                })
            })
            .collect::<Result<_>>()?;
        super::unit(
            self.handle
                .call(Op::DictUpdate(pb::DictUpdate { entries }))
                .await?,
        )
    }

    /// Removes every entry.
    pub async fn clear(&self) -> Result<()> {
        super::unit(self.handle.call(Op::DictClear(pb::DictClear {})).await?)
    }

    /// Python's `setdefault`: stores `default` if `key` is missing, and
    /// returns the value now under `key`.
    pub async fn setdefault(&self, key: K, default: V) -> Result<V> {
        let op = Op::DictSetDefault(pb::DictSetDefault {
            key: super::wire(&key)?,
            default: super::wire(&default)?,
        });
        super::value(self.handle.call(op).await?)
    }

    /// Removes and returns the most recently inserted entry, or
    /// [`Error::NotFound`] if the dict is empty.
    pub async fn popitem(&self) -> Result<(K, V)> {
        super::pair(
            self.handle
                .call(Op::DictPopItem(pb::DictPopItem {}))
                .await?,
        )
    }

    /// Atomically sets `key` to `new` if its value is `expected`
    /// (`None`: if it is missing).
    pub async fn compare_and_swap(
        &self,
        key: &K,
        expected: Option<&V>,
        new: &V,
    ) -> Result<Swap<V>> {
        let op = Op::DictCompareAndSwap(pb::DictCompareAndSwap {
            key: super::wire(key)?,
            expected: Some(pb::Maybe {
                value: expected.map(to_wire).transpose()?,
            }),
            new: super::wire(new)?,
        });
        super::swap(self.handle.call(op).await?)
    }

    /// Atomically adds `delta` to the number under `key` (a missing key
    /// counts as 0) and returns the previous value.
    pub async fn fetch_add(&self, key: &K, delta: V) -> Result<V> {
        Ok(self.add(key, delta).await?.0)
    }

    /// Atomically adds `delta` to the number under `key`; returns
    /// `(previous, new)`.
    pub async fn add(&self, key: &K, delta: V) -> Result<(V, V)> {
        let op = Op::DictFetchAdd(pb::DictFetchAdd {
            key: super::wire(key)?,
            delta: super::wire(&delta)?,
        });
        super::pair(self.handle.call(op).await?)
    }
}
