use std::marker::PhantomData;
use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::{wait_for, Handle};
use crate::connection::Deadline;
use crate::error::Result;

/// A shared FIFO queue of `T`: Python's `manager.Queue(maxsize)` or, from
/// [`Manager::joinable_queue`](crate::Manager::joinable_queue),
/// `JoinableQueue(maxsize)`.
///
/// Blocking `get` and `put` wait on the server; a `get` whose caller gives up
/// takes nothing from the queue. The errors follow Python's `queue` module:
/// [`Error::Empty`](crate::Error::Empty) when there is nothing to get (no
/// waiting, or the timeout ran out), [`Error::Full`](crate::Error::Full) when
/// there is no room.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let jobs = m.joinable_queue::<String>("jobs", 100).await?;
/// jobs.put("resize a.png".into()).await?;
/// // in a worker:
/// let job = jobs.get().await?;
/// println!("doing {job}");
/// jobs.task_done().await?;
/// // in the producer:
/// jobs.join().await?; // every job done
/// # Ok(()) }
/// ```
pub struct QueueProxy<T> {
    handle: Handle,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy {
            handle: self.handle.clone(),
            item: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        QueueProxy {
            handle,
            item: PhantomData,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Watches this queue's changes from now on (see [`crate::Watch`]).
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
    /// let jobs = m.queue::<String>("jobs", 0).await?;
    /// let mut watch = jobs.watch().await?;
    /// while let Some(change) = watch.next().await? {
    ///     println!("{}", change.to_json()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), false).await
    }

    /// Like [`watch`](Self::watch), but the first event is a snapshot of
    /// the whole queue, which the changes that follow apply to.
    pub async fn watch_from_snapshot(&self) -> Result<crate::Watch<T>> {
        crate::Watch::start(&self.handle.conn, self.name(), true).await
    }

    async fn put_with(&self, item: &T, blocking: bool, timeout: Option<Duration>) -> Result<()> {
        let (timeout_secs, deadline) = if blocking {
            wait_for(timeout)
        } else {
            (None, Deadline::Default)
        };
        let op = Op::QueuePut(pb::QueuePut {
            value: super::wire(item)?,
            blocking,
            timeout_secs,
        });
        super::unit(self.handle.call_with(op, deadline).await?)
    }

    async fn get_with(&self, blocking: bool, timeout: Option<Duration>) -> Result<T> {
        let (timeout_secs, deadline) = if blocking {
            wait_for(timeout)
        } else {
            (None, Deadline::Default)
        };
        let op = Op::QueueGet(pb::QueueGet {
            blocking,
            timeout_secs,
        });
        super::value(self.handle.call_with(op, deadline).await?)
    }

    /// Puts `item` at the end, waiting for room as long as it takes.
    pub async fn put(&self, item: T) -> Result<()> {
        self.put_with(&item, true, None).await
    }

    /// Puts `item`, waiting for room at most `timeout`; `Full` if none came.
    pub async fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_with(&item, true, Some(timeout)).await
    }

    /// Puts `item` if there is room now; `Full` otherwise.
    pub async fn put_nowait(&self, item: T) -> Result<()> {
        self.put_with(&item, false, None).await
    }

    /// Takes the first item, waiting as long as it takes.
    pub async fn get(&self) -> Result<T> {
        self.get_with(true, None).await
    }

    /// Takes the first item, waiting at most `timeout`; `Empty` if none came.
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(true, Some(timeout)).await
    }

    /// Takes the first item if there is one now; `Empty` otherwise.
    pub async fn get_nowait(&self) -> Result<T> {
        self.get_with(false, None).await
    }

    /// The number of items in the queue.
    pub async fn qsize(&self) -> Result<u64> {
        self.handle.describe_u64("len").await
    }

    /// Whether the queue has no items.
    pub async fn empty(&self) -> Result<bool> {
        Ok(self.qsize().await? == 0)
    }

    /// Whether the queue is at its maxsize (never, for an unbounded queue).
    pub async fn full(&self) -> Result<bool> {
        let d = self.handle.describe().await?;
        let (len, max) = (d["len"].as_u64(), d["maxsize"].as_u64());
        Ok(matches!((len, max), (Some(len), Some(max)) if max > 0 && len >= max))
    }

    /// The queue's maxsize; 0 for unbounded.
    pub async fn maxsize(&self) -> Result<u64> {
        self.handle.describe_u64("maxsize").await
    }

    /// JoinableQueue: marks one item taken with `get` as done. Calling it
    /// more often than items were put is [`Error::InvalidArgument`](crate::Error::InvalidArgument);
    /// on a plain queue it is [`Error::WrongKind`](crate::Error::WrongKind).
    pub async fn task_done(&self) -> Result<()> {
        super::unit(
            self.handle
                .call(Op::QueueTaskDone(pb::QueueTaskDone {}))
                .await?,
        )
    }

    /// JoinableQueue: waits until every item put has been marked done.
    pub async fn join(&self) -> Result<()> {
        self.join_with(None).await
    }

    /// JoinableQueue: like [`join`](QueueProxy::join), at most `timeout`;
    /// [`Error::Timeout`](crate::Error::Timeout) if work remains.
    pub async fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_with(Some(timeout)).await
    }

    async fn join_with(&self, timeout: Option<Duration>) -> Result<()> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::QueueJoin(pb::QueueJoin { timeout_secs });
        super::unit(self.handle.call_with(op, deadline).await?)
    }
}
