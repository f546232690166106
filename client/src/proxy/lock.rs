use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};

use super::Handle;
use crate::connection::Deadline;
use crate::error::{Error, Result};

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
        let op = Op::LockAcquire(pb::LockAcquire {
            blocking: true,
            timeout_secs: None,
        });
        self.token(self.handle.call_with(op, Deadline::Never).await?)
    }

    /// Waits at most `timeout`; [`Error::Timeout`] if the lock stayed taken.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<u64> {
        let op = Op::LockAcquire(pb::LockAcquire {
            blocking: true,
            timeout_secs: Some(timeout.as_secs_f64()),
        });
        self.token(self.handle.call_with(op, Deadline::Wait(timeout)).await?)
    }

    /// Takes the lock if it is free, without waiting.
    pub async fn try_acquire(&self) -> Result<Option<u64>> {
        let op = Op::LockAcquire(pb::LockAcquire {
            blocking: false,
            timeout_secs: None,
        });
        super::acquired(self.handle.call(op).await?)
    }

    fn token(&self, r: pb::op_result::Kind) -> Result<u64> {
        super::acquired(r)?.ok_or_else(|| {
            Error::Protocol(format!(
                "lock {:?}: blocking acquire returned without the lock",
                self.name()
            ))
        })
    }

    /// Releases the lock; [`Error::NotOwner`] if this client does not hold it.
    pub async fn release(&self) -> Result<()> {
        super::unit(
            self.handle
                .call(Op::LockRelease(pb::LockRelease {}))
                .await?,
        )
    }

    /// Whether anyone holds the lock.
    pub async fn locked(&self) -> Result<bool> {
        super::flag(self.handle.call(Op::LockLocked(pb::LockLocked {})).await?)
    }
}
