use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};

use super::{wait_for, Handle};
use crate::error::Result;

/// A shared event, Python's `manager.Event()`: a flag that others wait for.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let go = m.event("start").await?;
/// // in the workers:
/// if go.wait(Some(std::time::Duration::from_secs(10))).await? {
///     println!("started");
/// }
/// // in the coordinator:
/// go.set().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventProxy {
    handle: Handle,
}

impl EventProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        EventProxy { handle }
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Watches this event's changes from now on (see [`crate::Watch`]).
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
    /// let go = m.event("start").await?;
    /// let mut watch = go.watch().await?;
    /// while let Some(change) = watch.next().await? {
    ///     println!("{}", change.to_json()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self) -> Result<crate::Watch<()>> {
        crate::Watch::start(&self.handle.conn, self.name(), false).await
    }

    /// Like [`watch`](Self::watch), but the first event is a snapshot of
    /// the whole event, which the changes that follow apply to.
    pub async fn watch_from_snapshot(&self) -> Result<crate::Watch<()>> {
        crate::Watch::start(&self.handle.conn, self.name(), true).await
    }

    /// Sets the flag and wakes every waiter.
    pub async fn set(&self) -> Result<()> {
        super::unit(self.handle.call(Op::EventSet(pb::EventSet {})).await?)
    }

    /// Clears the flag.
    pub async fn clear(&self) -> Result<()> {
        super::unit(self.handle.call(Op::EventClear(pb::EventClear {})).await?)
    }

    /// Whether the flag is set.
    pub async fn is_set(&self) -> Result<bool> {
        super::flag(self.handle.call(Op::EventIsSet(pb::EventIsSet {})).await?)
    }

    /// Waits until the flag is set, at most `timeout` (`None`: no limit).
    /// Returns whether it was set (false on timeout), as Python does.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::EventWait(pb::EventWait { timeout_secs });
        super::flag(self.handle.call_with(op, deadline).await?)
    }
}
