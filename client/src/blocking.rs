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
use crate::{ArrayElement, ObjectInfo, Swap};

#[path = "blocking_pool.rs"]
mod pool;
pub use pool::{AsyncResult, PoolProxy, Unordered, Worker};

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
    rt: Arc<ClientRuntime>,
}

/// The runtime every blocking handle of one manager shares. When the last
/// handle (manager or proxy) goes, it closes the session, so the server
/// gives back at once what this client held.
pub struct ClientRuntime {
    rt: Runtime,
    manager: std::sync::OnceLock<crate::Manager>,
}

impl std::ops::Deref for ClientRuntime {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.rt
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(m) = self.manager.take() {
            // The timer must be made inside the runtime.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(1), m.close()).await
            });
        }
    }
}

fn runtime() -> Result<Arc<ClientRuntime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map(|rt| {
            Arc::new(ClientRuntime {
                rt,
                manager: std::sync::OnceLock::new(),
            })
        })
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
        let _ = rt.manager.set(inner.clone());
        Ok(Manager { inner, rt })
    }

    /// The async manager underneath, sharing this one's connection.
    pub fn as_async(&self) -> &crate::Manager {
        &self.inner
    }

    /// This client's identity: the owner of the locks it acquires.
    pub fn client_id(&self) -> String {
        self.inner.client_id()
    }

    /// Ends the session now: the server gives back every lock and permit
    /// this client holds. (Dropping the last clone does the same.)
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
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
    fn wrap<P>(&self, inner: P) -> Blocking<P> {
        Blocking {
            inner,
            rt: self.rt.clone(),
        }
    }

    /// The reentrant lock called `name`.
    pub fn rlock(&self, name: &str) -> Result<RLockProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.rlock(name))?))
    }

    /// The semaphore called `name`, created with `value` permits if absent.
    pub fn semaphore(&self, name: &str, value: u64) -> Result<SemaphoreProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.semaphore(name, value))?))
    }

    /// The bounded semaphore called `name`.
    pub fn bounded_semaphore(&self, name: &str, value: u64) -> Result<SemaphoreProxy> {
        Ok(self.wrap(
            self.rt
                .block_on(self.inner.bounded_semaphore(name, value))?,
        ))
    }

    /// The condition called `name`, bound to the lock called `lock` or its own.
    pub fn condition(&self, name: &str, lock: Option<&str>) -> Result<ConditionProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.condition(name, lock))?))
    }

    /// The event called `name`.
    pub fn event(&self, name: &str) -> Result<EventProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.event(name))?))
    }

    /// The barrier called `name` for `parties` callers.
    pub fn barrier(
        &self,
        name: &str,
        parties: u64,
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy> {
        Ok(self.wrap(
            self.rt
                .block_on(self.inner.barrier(name, parties, timeout))?,
        ))
    }

    /// The queue called `name` (`maxsize` 0: unbounded).
    pub fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: u64,
    ) -> Result<QueueProxy<T>> {
        Ok(self.wrap(self.rt.block_on(self.inner.queue(name, maxsize))?))
    }

    /// The joinable queue called `name`.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: u64,
    ) -> Result<QueueProxy<T>> {
        Ok(self.wrap(self.rt.block_on(self.inner.joinable_queue(name, maxsize))?))
    }

    /// The namespace called `name`.
    pub fn namespace(&self, name: &str) -> Result<NamespaceProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.namespace(name))?))
    }

    /// The array called `name` of `len` elements of `T`.
    pub fn array<T: ArrayElement>(&self, name: &str, len: u64) -> Result<ArrayProxy<T>> {
        Ok(self.wrap(self.rt.block_on(self.inner.array(name, len))?))
    }

    /// Both ends of the pipe called `name`.
    pub fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<(PipeProxy<T>, PipeProxy<T>)> {
        let (a, b) = self.rt.block_on(self.inner.pipe(name))?;
        Ok((self.wrap(a), self.wrap(b)))
    }

    /// The kind, waiters and figures of the object called `name`, as JSON.
    pub fn describe(&self, name: &str) -> Result<serde_json::Value> {
        self.rt.block_on(self.inner.describe(name))
    }
}

/// The synchronous [`crate::DictProxy`].
pub struct DictProxy<K, V> {
    inner: crate::DictProxy<K, V>,
    rt: Arc<ClientRuntime>,
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

    /// Watches this dict's changes from now on: an iterator that blocks for
    /// each change (see [`crate::Watch`]).
    pub fn watch(&self) -> Result<Watch<V, K>> {
        Watch::start(&self.rt, self.inner.watch())
    }

    /// Like `watch`, starting with a snapshot of the whole dict.
    pub fn watch_from_snapshot(&self) -> Result<Watch<V, K>> {
        Watch::start(&self.rt, self.inner.watch_from_snapshot())
    }
}

/// The synchronous [`crate::ListProxy`].
pub struct ListProxy<T> {
    inner: crate::ListProxy<T>,
    rt: Arc<ClientRuntime>,
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

    /// Watches this list's changes from now on: an iterator that blocks for
    /// each change (see [`crate::Watch`]).
    pub fn watch(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch())
    }

    /// Like `watch`, starting with a snapshot of the whole list.
    pub fn watch_from_snapshot(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch_from_snapshot())
    }
}

/// The synchronous [`crate::ValueProxy`].
pub struct ValueProxy<T> {
    inner: crate::ValueProxy<T>,
    rt: Arc<ClientRuntime>,
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

    /// Watches this value's changes from now on: an iterator that blocks for
    /// each change (see [`crate::Watch`]).
    pub fn watch(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch())
    }

    /// Like `watch`, starting with a snapshot of the whole value.
    pub fn watch_from_snapshot(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch_from_snapshot())
    }
}

/// The synchronous [`crate::LockProxy`].
#[derive(Clone)]
pub struct LockProxy {
    inner: crate::LockProxy,
    rt: Arc<ClientRuntime>,
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

    /// Releases now, reporting a failure (dropping the guard can only log it).
    pub fn release(self) -> Result<()> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lock.release() {
            tracing::warn!(lock = self.lock.name(), error = %e, "releasing a guarded lock failed");
        }
    }
}

/// A synchronous proxy: the async proxy `P` and the runtime that runs it.
pub struct Blocking<P> {
    inner: P,
    rt: Arc<ClientRuntime>,
}

impl<P: Clone> Clone for Blocking<P> {
    fn clone(&self) -> Self {
        Blocking {
            inner: self.inner.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<P> Blocking<P> {
    /// The async proxy underneath.
    pub fn as_async(&self) -> &P {
        &self.inner
    }
}

/// The synchronous [`crate::RLockProxy`].
pub type RLockProxy = Blocking<crate::RLockProxy>;
/// The synchronous [`crate::SemaphoreProxy`].
pub type SemaphoreProxy = Blocking<crate::SemaphoreProxy>;
/// The synchronous [`crate::ConditionProxy`].
pub type ConditionProxy = Blocking<crate::ConditionProxy>;
/// The synchronous [`crate::EventProxy`].
pub type EventProxy = Blocking<crate::EventProxy>;
/// The synchronous [`crate::BarrierProxy`].
pub type BarrierProxy = Blocking<crate::BarrierProxy>;
/// The synchronous [`crate::QueueProxy`].
pub type QueueProxy<T> = Blocking<crate::QueueProxy<T>>;
/// The synchronous [`crate::NamespaceProxy`].
pub type NamespaceProxy = Blocking<crate::NamespaceProxy>;
/// The synchronous [`crate::ArrayProxy`].
pub type ArrayProxy<T> = Blocking<crate::ArrayProxy<T>>;
/// The synchronous [`crate::PipeProxy`].
pub type PipeProxy<T> = Blocking<crate::PipeProxy<T>>;

impl Blocking<crate::RLockProxy> {
    /// The lock's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The same RLock, owned on behalf of `task` within this client.
    pub fn with_task(&self, task: &str) -> RLockProxy {
        Blocking {
            inner: self.inner.with_task(task),
            rt: self.rt.clone(),
        }
    }

    blocking! {
        /// Waits as long as it takes; returns the fencing token.
        fn acquire(&self) -> u64;
        /// Waits at most `timeout`.
        fn acquire_timeout(&self, timeout: Duration) -> u64;
        /// Takes the lock if free or already ours.
        fn try_acquire(&self) -> Option<u64>;
        /// Releases one level.
        fn release(&self) -> ();
        /// Whether anyone holds the lock.
        fn locked(&self) -> bool;
    }
}

impl Blocking<crate::SemaphoreProxy> {
    /// The semaphore's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Waits for a permit.
        fn acquire(&self) -> ();
        /// Waits for a permit at most `timeout`.
        fn acquire_timeout(&self, timeout: Duration) -> ();
        /// Takes a permit if one is free.
        fn try_acquire(&self) -> bool;
        /// Gives a permit back.
        fn release(&self) -> ();
        /// Gives `n` permits back.
        fn release_n(&self, n: u64) -> ();
        /// The permits available now.
        fn value(&self) -> u64;
    }
}

impl Blocking<crate::ConditionProxy> {
    /// The condition's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The same condition, on behalf of `task` within this client.
    pub fn with_task(&self, task: &str) -> ConditionProxy {
        Blocking {
            inner: self.inner.with_task(task),
            rt: self.rt.clone(),
        }
    }

    blocking! {
        /// Acquires the underlying lock.
        fn acquire(&self) -> u64;
        /// Acquires the underlying lock, waiting at most `timeout`.
        fn acquire_timeout(&self, timeout: Duration) -> u64;
        /// Releases the underlying lock.
        fn release(&self) -> ();
        /// Waits for a notify (the lock is released meanwhile).
        fn wait(&self, timeout: Option<Duration>) -> bool;
        /// Wakes up to `n` waiters.
        fn notify(&self, n: u64) -> u64;
        /// Wakes every waiter.
        fn notify_all(&self) -> u64;
        /// How many calls wait on the condition.
        fn n_waiting(&self) -> u64;
    }

    /// Waits until `predicate` is true, re-checking after each notify, at
    /// most `timeout` overall. Call it holding the lock.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> Result<bool>,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let end = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if predicate()? {
                return Ok(true);
            }
            let left = match end {
                Some(end) => match end.checked_duration_since(std::time::Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
                None => None,
            };
            self.wait(left)?;
        }
    }
}

impl Blocking<crate::EventProxy> {
    /// The event's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Sets the flag and wakes every waiter.
        fn set(&self) -> ();
        /// Clears the flag.
        fn clear(&self) -> ();
        /// Whether the flag is set.
        fn is_set(&self) -> bool;
        /// Waits until set (false on timeout).
        fn wait(&self, timeout: Option<Duration>) -> bool;
    }

    /// Watches this event's changes from now on: an iterator that blocks for
    /// each change (see [`crate::Watch`]).
    pub fn watch(&self) -> Result<Watch<()>> {
        Watch::start(&self.rt, self.inner.watch())
    }

    /// Like `watch`, starting with a snapshot of the whole event.
    pub fn watch_from_snapshot(&self) -> Result<Watch<()>> {
        Watch::start(&self.rt, self.inner.watch_from_snapshot())
    }
}

impl Blocking<crate::BarrierProxy> {
    /// The barrier's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Waits for all parties; returns the arrival index.
        fn wait(&self) -> u64;
        /// Waits for all parties at most `timeout`.
        fn wait_timeout(&self, timeout: Duration) -> u64;
        /// Returns the barrier to its empty state.
        fn reset(&self) -> ();
        /// Breaks the barrier.
        fn abort(&self) -> ();
        /// How many parties it waits for.
        fn parties(&self) -> u64;
        /// How many are waiting now.
        fn n_waiting(&self) -> u64;
        /// Whether it is broken.
        fn broken(&self) -> bool;
    }
}

impl<T: Serialize + DeserializeOwned> Blocking<crate::QueueProxy<T>> {
    /// The queue's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// Puts `item`, waiting for room.
        fn put(&self, item: T) -> ();
        /// Puts `item`, waiting at most `timeout` (`Full`).
        fn put_timeout(&self, item: T, timeout: Duration) -> ();
        /// Puts `item` if there is room now (`Full`).
        fn put_nowait(&self, item: T) -> ();
        /// Takes the first item, waiting for one.
        fn get(&self) -> T;
        /// Takes the first item, waiting at most `timeout` (`Empty`).
        fn get_timeout(&self, timeout: Duration) -> T;
        /// Takes the first item if there is one (`Empty`).
        fn get_nowait(&self) -> T;
        /// The number of items.
        fn qsize(&self) -> u64;
        /// Whether there are no items.
        fn empty(&self) -> bool;
        /// Whether the queue is at its maxsize.
        fn full(&self) -> bool;
        /// The maxsize (0: unbounded).
        fn maxsize(&self) -> u64;
        /// Marks one item done (JoinableQueue).
        fn task_done(&self) -> ();
        /// Waits until every item is done (JoinableQueue).
        fn join(&self) -> ();
        /// Like `join`, at most `timeout`.
        fn join_timeout(&self, timeout: Duration) -> ();
    }

    /// Watches this queue's changes from now on: an iterator that blocks for
    /// each change (see [`crate::Watch`]).
    pub fn watch(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch())
    }

    /// Like `watch`, starting with a snapshot of the whole queue.
    pub fn watch_from_snapshot(&self) -> Result<Watch<T>> {
        Watch::start(&self.rt, self.inner.watch_from_snapshot())
    }
}

impl Blocking<crate::NamespaceProxy> {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The attribute `attr` (`NotFound` if unset).
    pub fn get<T: DeserializeOwned>(&self, attr: &str) -> Result<T> {
        self.rt.block_on(self.inner.get(attr))
    }

    /// The attribute `attr`, if set.
    pub fn try_get<T: DeserializeOwned>(&self, attr: &str) -> Result<Option<T>> {
        self.rt.block_on(self.inner.try_get(attr))
    }

    /// Sets the attribute `attr`.
    pub fn set<T: Serialize + ?Sized>(&self, attr: &str, value: &T) -> Result<()> {
        self.rt.block_on(self.inner.set(attr, value))
    }

    /// Removes the attribute `attr`.
    pub fn delete(&self, attr: &str) -> Result<()> {
        self.rt.block_on(self.inner.delete(attr))
    }

    /// Loads every attribute into a serde struct.
    pub fn load<T: DeserializeOwned>(&self) -> Result<T> {
        self.rt.block_on(self.inner.load())
    }

    /// Stores a serde struct as the attributes (others are removed).
    pub fn store<T: Serialize>(&self, value: &T) -> Result<()> {
        self.rt.block_on(self.inner.store(value))
    }

    /// Sets the struct's fields as attributes, keeping the others.
    pub fn update<T: Serialize>(&self, value: &T) -> Result<()> {
        self.rt.block_on(self.inner.update(value))
    }
}

impl<T: ArrayElement> Blocking<crate::ArrayProxy<T>> {
    /// The array's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    blocking! {
        /// The number of elements.
        fn len(&self) -> usize;
        /// Whether the array has no elements.
        fn is_empty(&self) -> bool;
        /// The element at `index`.
        fn get(&self, index: i64) -> T;
        /// Sets the element at `index`.
        fn set(&self, index: i64, value: T) -> ();
        /// Python's slice `a[start:stop]`.
        fn get_range(&self, start: Option<i64>, stop: Option<i64>) -> Vec<T>;
        /// Writes `values` from `start` on, all or nothing.
        fn set_range(&self, start: i64, values: &[T]) -> ();
        /// Atomically adds `delta`; returns the previous value.
        fn fetch_add(&self, index: i64, delta: T) -> T;
        /// The whole array.
        fn snapshot(&self) -> Vec<T>;
    }
}

impl<T: Serialize + DeserializeOwned> Blocking<crate::PipeProxy<T>> {
    /// The pipe's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Which end this is: 0 or 1.
    pub fn end(&self) -> u32 {
        self.inner.end()
    }

    blocking! {
        /// Sends `value` to the other end.
        fn send(&self, value: T) -> ();
        /// Receives the next value, waiting for one.
        fn recv(&self) -> T;
        /// Receives the next value, waiting at most `timeout` (`Timeout`).
        fn recv_timeout(&self, timeout: Duration) -> T;
        /// Whether something is waiting, waiting up to `timeout` for it.
        fn poll(&self, timeout: Option<Duration>) -> bool;
    }
}

/// The synchronous [`crate::Watch`]: an iterator over an object's changes
/// that blocks until the next one. It ends after
/// [`ChangeKind::Deleted`](crate::ChangeKind::Deleted); an error (the
/// server shut down) is its last item.
///
/// ```no_run
/// let m = procshare::blocking::Manager::connect("http://127.0.0.1:50051")?;
/// let log = m.list::<String>("log")?;
/// for change in log.watch()?.take(10) {
///     println!("{}", change?.to_json()?);
/// }
/// # Ok::<(), procshare::Error>(())
/// ```
pub struct Watch<V, K = ()> {
    inner: crate::Watch<V, K>,
    rt: Arc<ClientRuntime>,
}

impl<V, K> Watch<V, K> {
    /// Starts the watch `start` opens, on `rt`.
    fn start(
        rt: &Arc<ClientRuntime>,
        start: impl std::future::Future<Output = Result<crate::Watch<V, K>>>,
    ) -> Result<Self> {
        Ok(Watch {
            inner: rt.block_on(start)?,
            rt: rt.clone(),
        })
    }
}

impl<V: DeserializeOwned, K: DeserializeOwned> Iterator for Watch<V, K> {
    type Item = Result<crate::Change<V, K>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.block_on(self.inner.next()).transpose()
    }
}

/// The synchronous [`crate::Batch`]: operations sent in one call,
/// optionally as one atomic unit. Made by [`Manager::batch`].
///
/// ```no_run
/// let m = procshare::blocking::Manager::connect("http://127.0.0.1:50051")?;
/// let stock = m.dict::<String, i64>("stock")?;
/// let results = m
///     .batch()
///     .dict_fetch_add(&stock, &"apples".into(), &-1)?
///     .dict_fetch_add(&stock, &"pears".into(), &1)?
///     .atomic()
///     .run()?;
/// assert!(results.iter().all(|r| r.is_ok()));
/// # Ok::<(), procshare::Error>(())
/// ```
#[must_use = "a batch does nothing until run"]
pub struct Batch {
    inner: crate::Batch,
    rt: Arc<ClientRuntime>,
}

impl Manager {
    /// A new, empty batch; see [`crate::Batch`].
    pub fn batch(&self) -> Batch {
        Batch {
            inner: self.inner.batch(),
            rt: self.rt.clone(),
        }
    }
}

impl Batch {
    fn map(self, f: impl FnOnce(crate::Batch) -> Result<crate::Batch>) -> Result<Self> {
        Ok(Batch {
            inner: f(self.inner)?,
            rt: self.rt,
        })
    }

    /// Adds a raw operation on the object called `name`.
    pub fn op(self, name: &str, op: crate::wire::op::Kind) -> Self {
        Batch {
            inner: self.inner.op(name, op),
            rt: self.rt,
        }
    }

    /// Applies the operations as one unit (all or none).
    pub fn atomic(self) -> Self {
        Batch {
            inner: self.inner.atomic(),
            rt: self.rt,
        }
    }

    /// `dict[key] = value`.
    pub fn dict_insert<K, V>(self, dict: &DictProxy<K, V>, key: &K, value: &V) -> Result<Self>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.map(|b| b.dict_insert(&dict.inner, key, value))
    }

    /// Adds `delta` to `dict[key]`.
    pub fn dict_fetch_add<K, V>(self, dict: &DictProxy<K, V>, key: &K, delta: &V) -> Result<Self>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.map(|b| b.dict_fetch_add(&dict.inner, key, delta))
    }

    /// Reads `dict[key]`.
    pub fn dict_get<K, V>(self, dict: &DictProxy<K, V>, key: &K) -> Result<Self>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.map(|b| b.dict_get(&dict.inner, key))
    }

    /// Appends `item` to the list.
    pub fn list_push<T: Serialize + DeserializeOwned>(
        self,
        list: &ListProxy<T>,
        item: &T,
    ) -> Result<Self> {
        self.map(|b| b.list_push(&list.inner, item))
    }

    /// Stores `value` in the value object.
    pub fn value_set<T: Serialize + DeserializeOwned>(
        self,
        cell: &ValueProxy<T>,
        value: &T,
    ) -> Result<Self> {
        self.map(|b| b.value_set(&cell.inner, value))
    }

    /// `queue.put_nowait(item)`; see [`crate::Batch::queue_put`].
    pub fn queue_put<T: Serialize + DeserializeOwned>(
        self,
        queue: &QueueProxy<T>,
        item: &T,
    ) -> Result<Self> {
        self.map(|b| b.queue_put(&queue.inner, item))
    }

    /// `queue.get_nowait()`; see [`crate::Batch::queue_get`].
    pub fn queue_get<T: Serialize + DeserializeOwned>(self, queue: &QueueProxy<T>) -> Self {
        Batch {
            inner: self.inner.queue_get(&queue.inner),
            rt: self.rt,
        }
    }

    /// `queue.task_done()`; see [`crate::Batch::queue_task_done`].
    pub fn queue_task_done<T: Serialize + DeserializeOwned>(self, queue: &QueueProxy<T>) -> Self {
        Batch {
            inner: self.inner.queue_task_done(&queue.inner),
            rt: self.rt,
        }
    }

    /// Sets the event; see [`crate::Batch::event_set`].
    pub fn event_set(self, event: &EventProxy) -> Self {
        Batch {
            inner: self.inner.event_set(&event.inner),
            rt: self.rt,
        }
    }

    /// Clears the event; see [`crate::Batch::event_clear`].
    pub fn event_clear(self, event: &EventProxy) -> Self {
        Batch {
            inner: self.inner.event_clear(&event.inner),
            rt: self.rt,
        }
    }

    /// Sends the batch: one result per operation, in order.
    pub fn run(self) -> Result<Vec<Result<crate::wire::OpResult>>> {
        self.rt.block_on(self.inner.run())
    }
}
