//! The synchronous facade: the same manager and proxies, for programs that
//! are not async. Each method runs the async call to completion on a small
//! runtime owned by the [`Manager`].
//!
//! Do not call these from inside an async runtime (tokio refuses to block
//! a runtime thread); use the async API there.
//!
//! ```no_run
//! let m = procshare::blocking::Manager::connect("http://127.0.0.1:50051")?;
//! let counter = m.value::<i64>("counter", &0)?;
//! counter.fetch_add(1)?;
//! {
//!     let lock = m.lock("resource")?;
//!     let guard = lock.guard()?; // released when dropped
//!     println!("fencing token {}", guard.token());
//! }
//! # Ok::<(), procshare::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::{ObjectInfo, Swap};

/// Generates methods that block on the async proxy's method of the same name.
macro_rules! blocking {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret> {
                self.rt.block_on(self.inner.$name($($arg),*))
            }
        )*
    };
}

/// The synchronous [`crate::Manager`].
#[derive(Clone)]
pub struct Manager {
    inner: crate::Manager,
    rt: Arc<Runtime>,
}

fn runtime() -> Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Internal(format!("cannot start the client runtime: {e}")))
}

impl Manager {
    /// Connects to `url` (`http://host:port`).
    pub fn connect(url: &str) -> Result<Manager> {
        Self::from_builder(crate::Manager::builder().url(url))
    }

    /// Connects to `PROCSHARE_URL`, or [`crate::DEFAULT_URL`].
    pub fn from_env() -> Result<Manager> {
        Self::from_builder(crate::Manager::builder())
    }

    /// Connects with the options of an async builder.
    pub fn from_builder(builder: crate::ManagerBuilder) -> Result<Manager> {
        let rt = runtime()?;
        let inner = rt.block_on(builder.connect())?;
        Ok(Manager { inner, rt })
    }

    /// The async manager underneath, sharing this one's connection.
    pub fn as_async(&self) -> &crate::Manager {
        &self.inner
    }

    /// This client's identity: the owner of the locks it acquires.
    pub fn client_id(&self) -> &str {
        self.inner.client_id()
    }

    blocking! {
        /// Checks the server answers; returns its version.
        fn ping(&self) -> String;
        /// Deletes the object called `name`.
        fn delete(&self, name: &str) -> ();
        /// Every object on the server, sorted by name.
        fn list_objects(&self) -> Vec<ObjectInfo>;
    }

    /// The dict called `name`, created empty if absent.
    pub fn dict<K, V>(&self, name: &str) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let inner = self.rt.block_on(self.inner.dict(name))?;
        Ok(DictProxy {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// The list called `name`, created empty if absent.
    pub fn list<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<ListProxy<T>> {
        let inner = self.rt.block_on(self.inner.list(name))?;
        Ok(ListProxy {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// The value called `name`, created holding `initial` if absent.
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        initial: &T,
    ) -> Result<ValueProxy<T>> {
        let inner = self.rt.block_on(self.inner.value(name, initial))?;
        Ok(ValueProxy {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// The lock called `name`, created unlocked if absent.
    pub fn lock(&self, name: &str) -> Result<LockProxy> {
        let inner = self.rt.block_on(self.inner.lock(name))?;
        Ok(LockProxy {
            inner,
            rt: self.rt.clone(),
        })
    }
}

/// The synchronous [`crate::DictProxy`].
pub struct DictProxy<K, V> {
    inner: crate::DictProxy<K, V>,
    rt: Arc<Runtime>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            inner: self.inner.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The dict's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// The value under `key`, if any.
        fn get(&self, key: &K) -> Option<V>;
        /// Stores `value` under `key`; returns the value it replaced.
        fn insert(&self, key: K, value: V) -> Option<V>;
        /// Removes `key`; returns its value if it was there.
        fn remove(&self, key: &K) -> Option<V>;
        /// Removes `key` and returns its value, or [`Error::NotFound`].
        fn pop(&self, key: &K) -> V;
        /// Whether `key` is present.
        fn contains_key(&self, key: &K) -> bool;
        /// The number of entries.
        fn len(&self) -> usize;
        /// Whether the dict has no entries.
        fn is_empty(&self) -> bool;
        /// All keys.
        fn keys(&self) -> Vec<K>;
        /// All values.
        fn values(&self) -> Vec<V>;
        /// All entries.
        fn items(&self) -> Vec<(K, V)>;
        /// Removes every entry.
        fn clear(&self) -> ();
        /// Stores `default` if `key` is missing; returns the value under `key`.
        fn setdefault(&self, key: K, default: V) -> V;
        /// Removes and returns the most recently inserted entry.
        fn popitem(&self) -> (K, V);
        /// Atomically sets `key` to `new` if its value is `expected`.
        fn compare_and_swap(&self, key: &K, expected: Option<&V>, new: &V) -> Swap<V>;
        /// Atomically adds `delta`; returns the previous value.
        fn fetch_add(&self, key: &K, delta: V) -> V;
        /// Atomically adds `delta`; returns `(previous, new)`.
        fn add(&self, key: &K, delta: V) -> (V, V);
    }

    /// Stores every entry of `entries` in one atomic step.
    pub fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        self.rt.block_on(self.inner.update(entries))
    }

    /// The whole dict in any collection.
    pub fn snapshot<C: FromIterator<(K, V)>>(&self) -> Result<C> {
        self.rt.block_on(self.inner.snapshot())
    }
}

/// The synchronous [`crate::ListProxy`].
pub struct ListProxy<T> {
    inner: crate::ListProxy<T>,
    rt: Arc<Runtime>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            inner: self.inner.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// The list's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Appends `value`.
        fn push(&self, value: T) -> ();
        /// The item at `index` (negative counts from the end).
        fn get(&self, index: i64) -> T;
        /// Replaces the item at `index`.
        fn set(&self, index: i64, value: T) -> ();
        /// Inserts `value` before `index`.
        fn insert(&self, index: i64, value: T) -> ();
        /// Removes and returns the last item.
        fn pop(&self) -> T;
        /// Removes and returns the item at `index`.
        fn pop_at(&self, index: i64) -> T;
        /// Removes the first item equal to `value`.
        fn remove(&self, value: &T) -> ();
        /// The position of the first item equal to `value`.
        fn index(&self, value: &T) -> usize;
        /// How many items equal `value`.
        fn count(&self, value: &T) -> usize;
        /// The number of items.
        fn len(&self) -> usize;
        /// Whether the list has no items.
        fn is_empty(&self) -> bool;
        /// Python's slice `list[start:stop]`.
        fn range(&self, start: Option<i64>, stop: Option<i64>) -> Vec<T>;
        /// Removes every item.
        fn clear(&self) -> ();
        /// Reverses the list in place.
        fn reverse(&self) -> ();
        /// The whole list.
        fn snapshot(&self) -> Vec<T>;
    }

    /// Appends every item of `values` in one atomic step.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        self.rt.block_on(self.inner.extend(values))
    }
}

/// The synchronous [`crate::ValueProxy`].
pub struct ValueProxy<T> {
    inner: crate::ValueProxy<T>,
    rt: Arc<Runtime>,
}

impl<T> Clone for ValueProxy<T> {
    fn clone(&self) -> Self {
        ValueProxy {
            inner: self.inner.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// The current value.
        fn get(&self) -> T;
        /// Replaces the value.
        fn set(&self, value: &T) -> ();
        /// Replaces the value; returns the previous one.
        fn swap(&self, value: &T) -> T;
        /// Atomically replaces the value with `new` if it equals `expected`.
        fn compare_and_swap(&self, expected: &T, new: &T) -> Swap<T>;
        /// Atomically adds `delta`; returns the previous value.
        fn fetch_add(&self, delta: T) -> T;
        /// Atomically adds `delta`; returns `(previous, new)`.
        fn add(&self, delta: T) -> (T, T);
    }
}

/// The synchronous [`crate::LockProxy`].
#[derive(Clone)]
pub struct LockProxy {
    inner: crate::LockProxy,
    rt: Arc<Runtime>,
}

impl LockProxy {
    /// The lock's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Waits as long as it takes; returns the fencing token.
        fn acquire(&self) -> u64;
        /// Waits at most `timeout`; [`Error::Timeout`] if the lock stayed taken.
        fn acquire_timeout(&self, timeout: Duration) -> u64;
        /// Takes the lock if it is free, without waiting.
        fn try_acquire(&self) -> Option<u64>;
        /// Releases the lock; [`Error::NotOwner`] if this client does not hold it.
        fn release(&self) -> ();
        /// Whether anyone holds the lock.
        fn locked(&self) -> bool;
    }

    /// Acquires the lock and returns a guard that releases it when dropped
    /// (Python's `with lock:`).
    pub fn guard(&self) -> Result<LockGuard<'_>> {
        let token = self.acquire()?;
        Ok(LockGuard { lock: self, token })
    }
}

/// Holds a [`LockProxy`]'s lock until dropped.
pub struct LockGuard<'a> {
    lock: &'a LockProxy,
    token: u64,
}

impl LockGuard<'_> {
    /// The fencing token of this acquire.
    pub fn token(&self) -> u64 {
        self.token
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lock.release() {
            tracing::warn!(lock = self.lock.name(), error = %e, "releasing a guarded lock failed");
        }
    }
}
