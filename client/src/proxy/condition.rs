use std::future::Future;
use std::time::{Duration, Instant};

use procshare_proto::{self as pb, op::Kind as Op};

use super::{lock, wait_for, Handle};
use crate::error::Result;

/// A shared condition variable, Python's `manager.Condition(lock)`.
///
/// It is bound to a Lock or RLock (its own RLock unless a lock name was given
/// to [`Manager::condition`](crate::Manager::condition)). `wait` must be
/// called holding that lock: the server releases it, waits for a notify, and
/// re-acquires it before answering. Like an RLock, the owner is this client
/// plus a task id ([`ConditionProxy::with_task`]).
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let ready = m.condition("ready", None).await?;
/// let items = m.list::<i64>("items").await?;
/// // consumer
/// ready.acquire().await?;
/// let ok = ready
///     .wait_for(|| async { Ok(!items.is_empty().await?) }, Some(std::time::Duration::from_secs(5)))
///     .await?;
/// ready.release().await?;
/// // producer: items.push(1); ready.acquire(); ready.notify(1); ready.release();
/// # let _ = ok; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConditionProxy {
    handle: Handle,
}

impl ConditionProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        ConditionProxy { handle }
    }

    /// The condition's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The same condition, on behalf of `task` within this client.
    pub fn with_task(&self, task: &str) -> ConditionProxy {
        ConditionProxy::new(self.handle.with_task(task))
    }

    /// Acquires the underlying lock; returns its fencing token.
    pub async fn acquire(&self) -> Result<u64> {
        lock::acquire(&self.handle, None).await
    }

    /// Acquires the underlying lock, waiting at most `timeout`.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<u64> {
        lock::acquire(&self.handle, Some(timeout)).await
    }

    /// Releases the underlying lock.
    pub async fn release(&self) -> Result<()> {
        lock::release(&self.handle).await
    }

    /// Releases the lock, waits for a notify (at most `timeout`), and
    /// re-acquires the lock. Returns false if the timeout ran out.
    /// [`Error::NotOwner`] unless the caller holds the lock.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let (timeout_secs, deadline) = wait_for(timeout);
        // The re-acquire after the wake-up has no limit on the server, so
        // the call as a whole has none either.
        let deadline = if timeout.is_some() {
            crate::connection::Deadline::Never
        } else {
            deadline
        };
        let op = Op::ConditionWait(pb::ConditionWait { timeout_secs });
        super::flag(self.handle.call_with(op, deadline).await?)
    }

    /// Python's `wait_for`: waits until `predicate` is true, re-checking after
    /// each notify, for at most `timeout` overall. Returns the last value of
    /// the predicate. Call it holding the lock; the predicate runs with the
    /// lock held.
    pub async fn wait_for<F, Fut>(
        &self,
        mut predicate: F,
        timeout: Option<Duration>,
    ) -> Result<bool>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let end = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate().await? {
                return Ok(true);
            }
            let left = match end {
                Some(end) => match end.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
                None => None,
            };
            self.wait(left).await?;
        }
    }

    /// Wakes up to `n` waiters; returns how many were woken.
    pub async fn notify(&self, n: u64) -> Result<u64> {
        let op = Op::ConditionNotify(pb::ConditionNotify { n, all: false });
        Ok(super::count(self.handle.call(op).await?)? as u64)
    }

    /// Wakes every waiter; returns how many were woken.
    pub async fn notify_all(&self) -> Result<u64> {
        let op = Op::ConditionNotify(pb::ConditionNotify { n: 0, all: true });
        Ok(super::count(self.handle.call(op).await?)? as u64)
    }

    /// How many calls wait on the condition right now.
    pub async fn n_waiting(&self) -> Result<u64> {
        self.handle.describe_u64("waiters").await
    }
}
