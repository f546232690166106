use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};

use super::{wait_for, Handle};
use crate::error::{Error, Result};

/// A shared barrier, Python's `manager.Barrier(parties, timeout)`.
///
/// `wait` returns once `parties` callers have arrived, each with a distinct
/// arrival index `0..parties`. A timeout, [`abort`](BarrierProxy::abort), a
/// [`reset`](BarrierProxy::reset) during a round, or a waiter whose client
/// went away breaks the round: every waiter gets [`Error::BrokenBarrier`].
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let phase = m.barrier("phase", 4, None).await?;
/// let index = phase.wait().await?; // 0..4
/// if index == 0 { println!("everyone is here"); }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BarrierProxy {
    handle: Handle,
}

impl BarrierProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        BarrierProxy { handle }
    }

    /// The barrier's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<u64> {
        let (timeout_secs, mut deadline) = wait_for(timeout);
        if timeout.is_none() {
            // The barrier may have a default timeout of its own; no client
            // deadline either way.
            deadline = crate::connection::Deadline::Never;
        }
        let op = Op::BarrierWait(pb::BarrierWait { timeout_secs });
        Ok(super::count(self.handle.call_with(op, deadline).await?)? as u64)
    }

    /// Waits for all parties, with the barrier's default timeout if it has
    /// one; returns this caller's arrival index.
    pub async fn wait(&self) -> Result<u64> {
        self.wait_inner(None).await
    }

    /// Waits for all parties at most `timeout`; running out breaks the barrier.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_inner(Some(timeout)).await
    }

    /// Returns the barrier to its empty state; current waiters get
    /// [`Error::BrokenBarrier`].
    pub async fn reset(&self) -> Result<()> {
        super::unit(
            self.handle
                .call(Op::BarrierReset(pb::BarrierReset {}))
                .await?,
        )
    }

    /// Breaks the barrier: current and future waiters get
    /// [`Error::BrokenBarrier`] until a reset.
    pub async fn abort(&self) -> Result<()> {
        super::unit(
            self.handle
                .call(Op::BarrierAbort(pb::BarrierAbort {}))
                .await?,
        )
    }

    /// How many parties the barrier waits for.
    pub async fn parties(&self) -> Result<u64> {
        self.handle.describe_u64("parties").await
    }

    /// How many callers are waiting in the current round.
    pub async fn n_waiting(&self) -> Result<u64> {
        self.handle.describe_u64("n_waiting").await
    }

    /// Whether the barrier is broken.
    pub async fn broken(&self) -> Result<bool> {
        self.handle.describe().await?["broken"]
            .as_bool()
            .ok_or_else(|| Error::Protocol("describe: no \"broken\"".into()))
    }
}
