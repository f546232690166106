use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{wait_for, Handle};
use crate::error::{Error, Result};
use crate::value::{from_wire, to_wire};

/// Items queued per round trip by [`PoolProxy::map`] and
/// [`PoolProxy::imap_unordered`].
const SUBMIT_BATCH: usize = 256;

/// How many unfinished tasks one wait of [`Unordered::next`] names: the
/// server scans them on every completion, so the window stays small; tasks
/// are claimed in order, so the oldest are the likeliest to finish first.
const RESULT_WINDOW: usize = 256;

/// A task's handler failed: it returned an error or panicked (the message
/// says which). The pool and the other tasks carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} failed: {message}")]
pub struct TaskError {
    /// The task's id in its pool.
    pub task: u64,
    pub message: String,
}

/// A task's outcome: the handler's value, or its error.
pub type TaskResult<R> = std::result::Result<R, TaskError>;

/// A pool's counts, from [`PoolProxy::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Tasks a worker is running.
    pub running: u64,
    /// Tasks finished with a value, since the pool was made.
    pub done: u64,
    /// Tasks finished with an error, since the pool was made.
    pub failed: u64,
    /// Finished tasks whose outcome no caller has fetched yet.
    pub unfetched: u64,
    /// Whether [`PoolProxy::close`] was called.
    pub closed: bool,
    /// Clients running a task or waiting to claim one.
    pub workers: u64,
}

/// A task handed to a worker by [`PoolProxy::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: u64,
    pub handler: String,
    /// The argument as submitted; decode it with [`crate::value::from_wire`].
    pub arg: pb::Value,
    /// How many times the task was handed out, this time included: above 1,
    /// a worker went away while running it.
    pub deliveries: u32,
}

/// A task pool whose tasks live on the server: Python's
/// `multiprocessing.Pool`, with the workers in any process on any host (see
/// [`Worker`](crate::Worker)).
///
/// A caller submits tasks (a handler name and a serde argument); workers
/// serving that handler claim them in order and send back each outcome: a
/// value or the handler's error. A task's error is that task's
/// [`TaskError`], never the pool's.
///
/// **At least once**: when a worker's session ends while it runs a task (it
/// was killed, or cut off until its lease ran out) the task goes back to the
/// front of the queue and another worker runs it. Handlers should be safe to
/// run twice; the first outcome sent is the one kept.
///
/// The server forgets an outcome once it has handed it to the caller.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let pool = m.pool("thumbs").await?;
/// let sizes: Vec<procshare::TaskResult<u64>> =
///     pool.map("thumbnail", vec!["a.png", "b.png"]).await?;
/// let one = pool.apply_async::<_, u64>("thumbnail", &"c.png").await?;
/// println!("{:?}", one.get(None).await?);
/// pool.close().await?;
/// pool.join().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PoolProxy {
    handle: Handle,
}

impl PoolProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        PoolProxy { handle }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Queues one task for a worker serving `handler`; returns its id.
    /// A closed pool refuses it ([`Error::InvalidArgument`]).
    pub async fn submit<A: Serialize + ?Sized>(&self, handler: &str, arg: &A) -> Result<u64> {
        let op = Op::PoolSubmit(pb::PoolSubmit {
            handler: handler.to_owned(),
            arg: Some(to_wire(arg)?),
        });
        match self.handle.call(op).await? {
            R::Count(id) => Ok(id),
            other => Err(super::unexpected("a task id", &other)),
        }
    }

    /// Python's `apply_async`: queues one task and returns a handle to its
    /// outcome.
    ///
    /// ```no_run
    /// # async fn demo(pool: procshare::PoolProxy) -> anyhow::Result<()> {
    /// let size = pool.apply_async::<_, u64>("thumbnail", &"a.png").await?;
    /// let size = size.get(Some(std::time::Duration::from_secs(30))).await??;
    /// # Ok(()) }
    /// ```
    pub async fn apply_async<A: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        handler: &str,
        arg: &A,
    ) -> Result<AsyncResult<T>> {
        let id = self.submit(handler, arg).await?;
        Ok(AsyncResult {
            pool: self.clone(),
            id,
            outcome: tokio::sync::OnceCell::new(),
            item: PhantomData,
        })
    }

    /// Python's `map`: runs `handler` over `items` on the pool's workers and
    /// returns the outcomes in input order, each a value or that item's
    /// [`TaskError`]. The outer error is a failed call (the server gone).
    ///
    /// ```no_run
    /// # async fn demo(pool: procshare::PoolProxy) -> procshare::Result<()> {
    /// let out = pool.map::<_, u64>("square", [1u64, 2, 3]).await?;
    /// for r in out {
    ///     match r {
    ///         Ok(v) => println!("{v}"),
    ///         Err(e) => eprintln!("{e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn map<A: Serialize, T: DeserializeOwned>(
        &self,
        handler: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<TaskResult<T>>> {
        let mut results = self.imap_unordered(handler, items).await?;
        let mut slots: Vec<Option<TaskResult<T>>> = (0..results.len()).map(|_| None).collect();
        while let Some(next) = results.next().await {
            let (index, outcome) = next?;
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(outcome);
            }
        }
        slots
            .into_iter()
            .map(|s| s.ok_or_else(|| Error::Protocol("a task's outcome never came".into())))
            .collect()
    }

    /// Python's `imap_unordered`: queues every item, then yields
    /// `(index in items, outcome)` as tasks finish.
    ///
    /// ```no_run
    /// # async fn demo(pool: procshare::PoolProxy) -> procshare::Result<()> {
    /// let mut done = pool.imap_unordered::<_, u64>("square", 0..100u64).await?;
    /// while let Some(r) = done.next().await {
    ///     let (i, outcome) = r?;
    ///     println!("item {i}: {outcome:?} ({} left)", done.remaining());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn imap_unordered<A: Serialize, T: DeserializeOwned>(
        &self,
        handler: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Unordered<T>> {
        let mut pending = VecDeque::new();
        let mut items = items.into_iter().enumerate().peekable();
        // Queued in batches: one round trip per SUBMIT_BATCH items.
        while items.peek().is_some() {
            let mut batch = crate::Batch::new(self.handle.conn.clone());
            let mut indexes = Vec::with_capacity(SUBMIT_BATCH);
            for (index, item) in items.by_ref().take(SUBMIT_BATCH) {
                let op = Op::PoolSubmit(pb::PoolSubmit {
                    handler: handler.to_owned(),
                    arg: Some(to_wire(&item)?),
                });
                batch = batch.op(self.name(), op);
                indexes.push(index);
            }
            for (index, outcome) in indexes.into_iter().zip(batch.run().await?) {
                match outcome?.kind {
                    Some(R::Count(id)) => pending.push_back((id, index)),
                    other => {
                        let other = other.ok_or_else(|| Error::Protocol("no result".into()))?;
                        return Err(super::unexpected("a task id", &other));
                    }
                }
            }
        }
        Ok(Unordered {
            pool: self.clone(),
            len: pending.len(),
            index: pending.iter().copied().collect(),
            pending,
            item: PhantomData,
        })
    }

    /// Waits for the first finished of `ids` and takes its outcome.
    async fn take(
        &self,
        ids: Vec<u64>,
        timeout: Option<Duration>,
    ) -> Result<(u64, pb::PoolOutcome)> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::PoolResult(pb::PoolResult {
            task_ids: ids,
            timeout_secs,
        });
        match self.handle.call_with(op, deadline).await? {
            R::PoolOutcome(o) => Ok((o.task_id, o)),
            other => Err(super::unexpected("a task outcome", &other)),
        }
    }

    /// No more tasks: later submits fail, and workers exit once every queued
    /// task has run.
    pub async fn close(&self) -> Result<()> {
        super::unit(self.handle.call(Op::PoolClose(pb::PoolClose {})).await?)
    }

    /// Waits until nothing is queued or running.
    pub async fn join(&self) -> Result<()> {
        self.join_with(None).await
    }

    /// Like [`join`](PoolProxy::join), at most `timeout`;
    /// [`Error::Timeout`] if work remains.
    pub async fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_with(Some(timeout)).await
    }

    async fn join_with(&self, timeout: Option<Duration>) -> Result<()> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::PoolJoin(pb::PoolJoin { timeout_secs });
        super::unit(self.handle.call_with(op, deadline).await?)
    }

    /// Queued, running, done and failed counts, and whether it is closed.
    pub async fn status(&self) -> Result<PoolStatus> {
        super::value(self.handle.call(Op::PoolStatus(pb::PoolStatus {})).await?)
    }

    /// For workers: takes the first queued task for one of `handlers` (any
    /// handler when empty), waiting at most `timeout` (`None`: as long as it
    /// takes) — [`Error::Empty`] if none came. `Ok(None)`: the pool is closed
    /// and drained, the worker may exit. [`Worker`](crate::Worker) does this
    /// for you.
    pub async fn claim(
        &self,
        handlers: &[String],
        timeout: Option<Duration>,
    ) -> Result<Option<Task>> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::PoolClaim(pb::PoolClaim {
            handlers: handlers.to_vec(),
            timeout_secs,
        });
        match self.handle.call_with(op, deadline).await? {
            R::PoolTask(t) if t.drained => Ok(None),
            R::PoolTask(t) => Ok(Some(Task {
                id: t.id,
                handler: t.handler,
                arg: t.arg.unwrap_or_default(),
                deliveries: t.deliveries,
            })),
            other => Err(super::unexpected("a task", &other)),
        }
    }

    /// For workers: sends the outcome of a claimed task. `Ok(false)`: it was
    /// already finished (a re-delivered task; the first outcome stays).
    /// [`Error::NotOwner`]: this client no longer runs it (its session
    /// ended and the task went to another worker).
    pub async fn complete<T: Serialize>(
        &self,
        task: u64,
        outcome: std::result::Result<T, String>,
    ) -> Result<bool> {
        let outcome = match outcome {
            Ok(v) => Ok(to_wire(&v)?),
            Err(e) => Err(e),
        };
        self.complete_raw(task, outcome).await
    }

    pub(crate) async fn complete_raw(
        &self,
        task: u64,
        outcome: std::result::Result<pb::Value, String>,
    ) -> Result<bool> {
        let outcome = match outcome {
            Ok(v) => pb::pool_complete::Outcome::Ok(v),
            Err(e) => pb::pool_complete::Outcome::Error(e),
        };
        let op = Op::PoolComplete(pb::PoolComplete {
            task_id: task,
            outcome: Some(outcome),
        });
        super::flag(self.handle.call(op).await?)
    }

    /// For workers: gives every task this client runs back to the front of
    /// the queue (a worker stopping early); returns how many.
    pub async fn release(&self) -> Result<usize> {
        super::count(
            self.handle
                .call(Op::PoolRelease(pb::PoolRelease {}))
                .await?,
        )
    }
}

fn decode<T: DeserializeOwned>(o: pb::PoolOutcome) -> TaskResult<T> {
    let task = o.task_id;
    let fail = |message: String| TaskError { task, message };
    match o.outcome {
        Some(pb::pool_outcome::Outcome::Ok(v)) => {
            from_wire(v).map_err(|e| fail(format!("its value does not decode: {e}")))
        }
        Some(pb::pool_outcome::Outcome::Error(e)) => Err(fail(e)),
        None => Err(fail("the server sent no outcome".into())),
    }
}

/// The outcome of one task to come, from [`PoolProxy::apply_async`].
pub struct AsyncResult<T> {
    pool: PoolProxy,
    id: u64,
    /// Fetched once (the server then forgets it), kept here.
    outcome: tokio::sync::OnceCell<TaskResult<T>>,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Clone> AsyncResult<T> {
    /// The task's id in its pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the outcome, at most `timeout` (`None`: as long as it
    /// takes; [`Error::Timeout`] when it runs out). Can be called again.
    pub async fn get(&self, timeout: Option<Duration>) -> Result<TaskResult<T>> {
        self.outcome
            .get_or_try_init(|| async {
                let (_, o) = self.pool.take(vec![self.id], timeout).await?;
                Ok(decode(o))
            })
            .await
            .cloned()
    }

    /// Whether the outcome is here, without waiting.
    pub async fn ready(&self) -> Result<bool> {
        match self.get(Some(Duration::ZERO)).await {
            Ok(_) => Ok(true),
            Err(Error::Timeout(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Outcomes as tasks finish, from [`PoolProxy::imap_unordered`].
pub struct Unordered<T> {
    pool: PoolProxy,
    len: usize,
    /// Unfinished tasks, oldest first: (task id, index in the input).
    pending: VecDeque<(u64, usize)>,
    index: HashMap<u64, usize>,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Unordered<T> {
    /// How many items were submitted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item was submitted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many outcomes are still to come.
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }

    /// The next outcome to finish, with its item's index; `None` when all
    /// have come.
    pub async fn next(&mut self) -> Option<Result<(usize, TaskResult<T>)>> {
        if self.pending.is_empty() {
            return None;
        }
        let window = self
            .pending
            .iter()
            .take(RESULT_WINDOW)
            .map(|(id, _)| *id)
            .collect();
        let (id, o) = match self.pool.take(window, None).await {
            Ok(got) => got,
            Err(e) => return Some(Err(e)),
        };
        let Some(index) = self.index.remove(&id) else {
            return Some(Err(Error::Protocol(format!(
                "the server sent the outcome of task {id}, which was not asked for"
            ))));
        };
        self.pending.retain(|(p, _)| *p != id);
        Some(Ok((index, decode(o))))
    }
}
