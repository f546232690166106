use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};

use super::{wait_for, Handle};
use crate::error::{Error, Result};

/// The acquire/release protocol shared by locks, RLocks and conditions.
pub(crate) async fn acquire(handle: &Handle, timeout: Option<Duration>) -> Result<u64> {
    let (timeout_secs, deadline) = wait_for(timeout);
    let op = Op::LockAcquire(pb::LockAcquire {
        blocking: true,
        timeout_secs,
    });
    super::acquired(handle.call_with(op, deadline).await?)?.ok_or_else(|| {
        Error::Protocol(format!(
            "{:?}: blocking acquire returned without the lock",
            handle.name()
        ))
    })
}

pub(crate) async fn try_acquire(handle: &Handle) -> Result<Option<u64>> {
    let op = Op::LockAcquire(pb::LockAcquire {
        blocking: false,
        timeout_secs: None,
    });
    super::acquired(handle.call(op).await?)
}

pub(crate) async fn release(handle: &Handle) -> Result<()> {
    super::unit(handle.call(Op::LockRelease(pb::LockRelease {})).await?)
}

pub(crate) async fn locked(handle: &Handle) -> Result<bool> {
    super::flag(handle.call(Op::LockLocked(pb::LockLocked {})).await?)
}

/// A shared lock, Python's `manager.Lock()`, owned by the client (the
/// [`Manager`](crate::Manager)) that acquired it.
///
/// Each successful acquire returns a **fencing token**, a number that grows
/// with every acquire of this lock: a resource guarded by the lock can
/// refuse writes carrying a token older than the newest it has seen.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let lock = m.lock("printer").await?;
/// let token = lock.acquire().await?;
/// println!("printing with token {token}");
/// lock.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockProxy {
    handle: Handle,
}

impl LockProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        LockProxy { handle }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Waits as long as it takes; returns the fencing token.
    pub async fn acquire(&self) -> Result<u64> {
        acquire(&self.handle, None).await
    }

    /// Waits at most `timeout`; [`Error::Timeout`] if the lock stayed taken.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<u64> {
        acquire(&self.handle, Some(timeout)).await
    }

    /// Takes the lock if it is free, without waiting.
    pub async fn try_acquire(&self) -> Result<Option<u64>> {
        try_acquire(&self.handle).await
    }

    /// Releases the lock; [`Error::NotOwner`] if this client does not hold it.
    pub async fn release(&self) -> Result<()> {
        release(&self.handle).await
    }

    /// Whether anyone holds the lock.
    pub async fn locked(&self) -> Result<bool> {
        locked(&self.handle).await
    }
}

/// A shared reentrant lock, Python's `manager.RLock()`.
///
/// Its owner is this client *and* a task id: the proxy from
/// [`Manager::rlock`](crate::Manager::rlock) acts for the default task (""),
/// and [`RLockProxy::with_task`] gives a proxy for another task, so that two
/// tasks (threads, coroutines) of one process exclude each other as two
/// Python threads do. The owner may acquire again; it must release as many
/// times.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let r = m.rlock("tree").await?;
/// r.acquire().await?;
/// r.acquire().await?; // re-entry by the same owner
/// r.release().await?;
/// r.release().await?;
/// let worker = r.with_task("worker-1"); // another owner
/// assert!(worker.try_acquire().await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RLockProxy {
    handle: Handle,
}

impl RLockProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        RLockProxy { handle }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The same RLock, owned on behalf of `task` within this client.
    pub fn with_task(&self, task: &str) -> RLockProxy {
        RLockProxy::new(self.handle.with_task(task))
    }

    /// The task this proxy acts for.
    pub fn task(&self) -> &str {
        self.handle.task()
    }

    /// Waits as long as it takes; returns the fencing token (the same token
    /// on a re-entry).
    pub async fn acquire(&self) -> Result<u64> {
        acquire(&self.handle, None).await
    }

    /// Waits at most `timeout`; [`Error::Timeout`] if another owner kept it.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<u64> {
        acquire(&self.handle, Some(timeout)).await
    }

    /// Takes the lock if it is free or already ours, without waiting.
    pub async fn try_acquire(&self) -> Result<Option<u64>> {
        try_acquire(&self.handle).await
    }

    /// Releases one level; [`Error::NotOwner`] if this owner does not hold it.
    pub async fn release(&self) -> Result<()> {
        release(&self.handle).await
    }

    /// Whether anyone holds the lock.
    pub async fn locked(&self) -> Result<bool> {
        locked(&self.handle).await
    }
}
