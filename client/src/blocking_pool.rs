//! The synchronous pool and worker: [`PoolProxy`] and [`Worker`], for
//! programs that are not async.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::{Blocking, ClientRuntime, Manager};
use crate::error::Result;
use crate::{PoolStatus, TaskResult, WorkerReport, WorkerStop};

/// The synchronous [`crate::PoolProxy`].
///
/// ```no_run
/// let m = procshare::blocking::Manager::connect("http://127.0.0.1:50051")?;
/// let pool = m.pool("thumbs")?;
/// for (i, size) in pool.map::<_, u64>("thumbnail", ["a.png", "b.png"])?.iter().enumerate() {
///     println!("{i}: {size:?}");
/// }
/// pool.close()?;
/// pool.join()?;
/// # Ok::<(), procshare::Error>(())
/// ```
pub type PoolProxy = Blocking<crate::PoolProxy>;

impl Manager {
    /// The task pool called `name`, created empty if absent.
    pub fn pool(&self, name: &str) -> Result<PoolProxy> {
        Ok(self.wrap(self.rt.block_on(self.inner.pool(name))?))
    }

    /// A worker for the pool called `pool`; add handlers, then
    /// [`Worker::serve`].
    pub fn worker(&self, pool: &str) -> Worker {
        Worker {
            inner: crate::Worker::new(&self.inner, pool),
            rt: self.rt.clone(),
        }
    }
}

impl Blocking<crate::PoolProxy> {
    /// The pool's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Queues one task for `handler`; returns its id.
    pub fn submit<A: Serialize + ?Sized>(&self, handler: &str, arg: &A) -> Result<u64> {
        self.rt.block_on(self.inner.submit(handler, arg))
    }

    /// Queues one task; returns a handle to its outcome.
    pub fn apply_async<A: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        handler: &str,
        arg: &A,
    ) -> Result<AsyncResult<T>> {
        let inner = self.rt.block_on(self.inner.apply_async(handler, arg))?;
        Ok(AsyncResult {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// Runs `handler` over `items`; the outcomes in input order.
    pub fn map<A: Serialize, T: DeserializeOwned>(
        &self,
        handler: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<TaskResult<T>>> {
        self.rt.block_on(self.inner.map(handler, items))
    }

    /// Queues every item; the returned iterator yields `(index, outcome)`
    /// as tasks finish.
    pub fn imap_unordered<A: Serialize, T: DeserializeOwned>(
        &self,
        handler: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Unordered<T>> {
        let inner = self
            .rt
            .block_on(self.inner.imap_unordered(handler, items))?;
        Ok(Unordered {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// No more tasks; workers exit once the queue is drained.
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }

    /// Waits until nothing is queued or running.
    pub fn join(&self) -> Result<()> {
        self.rt.block_on(self.inner.join())
    }

    /// Like `join`, at most `timeout` (`Timeout`).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.inner.join_timeout(timeout))
    }

    /// Queued, running, done and failed counts.
    pub fn status(&self) -> Result<PoolStatus> {
        self.rt.block_on(self.inner.status())
    }
}

/// The synchronous [`crate::AsyncResult`].
pub struct AsyncResult<T> {
    inner: crate::AsyncResult<T>,
    rt: Arc<ClientRuntime>,
}

impl<T: DeserializeOwned + Clone> AsyncResult<T> {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// Waits for the outcome, at most `timeout` (`None`: as long as it takes).
    pub fn get(&self, timeout: Option<Duration>) -> Result<TaskResult<T>> {
        self.rt.block_on(self.inner.get(timeout))
    }

    /// Whether the outcome is here, without waiting.
    pub fn ready(&self) -> Result<bool> {
        self.rt.block_on(self.inner.ready())
    }
}

/// The synchronous [`crate::Unordered`]: an iterator of `(index, outcome)`.
pub struct Unordered<T> {
    inner: crate::Unordered<T>,
    rt: Arc<ClientRuntime>,
}

impl<T: DeserializeOwned> Unordered<T> {
    /// How many outcomes are still to come.
    pub fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    /// How many items were submitted.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no item was submitted.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<T: DeserializeOwned> Iterator for Unordered<T> {
    type Item = Result<(usize, TaskResult<T>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.block_on(self.inner.next())
    }
}

/// The synchronous [`crate::Worker`].
///
/// ```no_run
/// let m = procshare::blocking::Manager::connect("http://127.0.0.1:50051")?;
/// let report = m
///     .worker("thumbs")
///     .handle("thumbnail", |file: String| -> Result<u64, String> { Ok(file.len() as u64) })
///     .serve()?; // until the pool is closed and drained
/// println!("{} done", report.done);
/// # Ok::<(), procshare::Error>(())
/// ```
pub struct Worker {
    inner: crate::Worker,
    rt: Arc<ClientRuntime>,
}

impl Worker {
    /// Serves tasks submitted for `name` with `f`.
    pub fn handle<A, T, E, F>(mut self, name: &str, f: F) -> Worker
    where
        A: DeserializeOwned,
        T: Serialize,
        E: Display,
        F: Fn(A) -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        self.inner = self.inner.handle(name, f);
        self
    }

    /// How many tasks it runs at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.inner = self.inner.concurrency(n);
        self
    }

    /// A handle that stops `serve` from another thread.
    pub fn stopper(&self) -> WorkerStop {
        self.inner.stopper()
    }

    /// Runs tasks until the pool is closed and drained, or stopped.
    pub fn serve(self) -> Result<WorkerReport> {
        self.rt.block_on(self.inner.serve())
    }
}
