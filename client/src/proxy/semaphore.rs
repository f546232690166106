use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};

use super::{wait_for, Handle};
use crate::error::{Error, Result};

/// A shared semaphore: Python's `manager.Semaphore(value)` or, from
/// [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore),
/// `BoundedSemaphore(value)`, which refuses a release above its start value.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let slots = m.semaphore("downloads", 4).await?; // at most 4 at once
/// slots.acquire().await?;
/// // ... download ...
/// slots.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SemaphoreProxy {
    handle: Handle,
}

impl SemaphoreProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        SemaphoreProxy { handle }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    async fn take(&self, timeout: Option<Duration>) -> Result<()> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::SemaphoreAcquire(pb::SemaphoreAcquire {
            blocking: true,
            timeout_secs,
        });
        match super::acquired(self.handle.call_with(op, deadline).await?)? {
            Some(_) => Ok(()),
            None => Err(Error::Protocol(
                "blocking acquire returned without a permit".into(),
            )),
        }
    }

    /// Waits for a permit as long as it takes.
    pub async fn acquire(&self) -> Result<()> {
        self.take(None).await
    }

    /// Waits at most `timeout`; [`Error::Timeout`] if no permit came free.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.take(Some(timeout)).await
    }

    /// Takes a permit if one is free; returns whether it did.
    pub async fn try_acquire(&self) -> Result<bool> {
        let op = Op::SemaphoreAcquire(pb::SemaphoreAcquire {
            blocking: false,
            timeout_secs: None,
        });
        Ok(super::acquired(self.handle.call(op).await?)?.is_some())
    }

    /// Gives a permit back. A bounded semaphore answers
    /// [`Error::InvalidArgument`] if that would exceed its start value.
    pub async fn release(&self) -> Result<()> {
        self.release_n(1).await
    }

    /// Gives `n` permits back at once.
    /// [`Error::InvalidArgument`] for `n == 0`, as Python refuses `n < 1`.
    pub async fn release_n(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument(format!(
                "semaphore {:?}: release_n(0) releases nothing; n must be at least 1",
                self.name()
            )));
        }
        let op = Op::SemaphoreRelease(pb::SemaphoreRelease { n });
        super::unit(self.handle.call(op).await?)
    }

    /// The permits available now.
    pub async fn value(&self) -> Result<u64> {
        let n = super::count(
            self.handle
                .call(Op::SemaphoreValue(pb::SemaphoreValue {}))
                .await?,
        )?;
        Ok(n as u64)
    }
}
