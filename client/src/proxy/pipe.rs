use std::marker::PhantomData;
use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::{wait_for, Handle};
use crate::error::Result;

/// One end of a shared pipe, Python's `Pipe()`: what one end sends, the
/// other receives, in order. [`Manager::pipe`](crate::Manager::pipe) returns
/// both ends; give each to one side.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let (parent, child) = m.pipe::<String>("chat").await?;
/// child.send("hello".into()).await?;
/// assert_eq!(parent.recv().await?, "hello");
/// # Ok(()) }
/// ```
pub struct PipeProxy<T> {
    handle: Handle,
    end: u32,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for PipeProxy<T> {
    fn clone(&self) -> Self {
        PipeProxy {
            handle: self.handle.clone(),
            end: self.end,
            item: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> PipeProxy<T> {
    pub(crate) fn new(handle: Handle, end: u32) -> Self {
        PipeProxy {
            handle,
            end,
            item: PhantomData,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Which end this is: 0 or 1.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// The other end of the same pipe.
    pub fn other_end(&self) -> PipeProxy<T> {
        PipeProxy::new(self.handle.clone(), 1 - self.end)
    }

    /// Sends `value` to the other end.
    pub async fn send(&self, value: T) -> Result<()> {
        let op = Op::PipeSend(pb::PipeSend {
            end: self.end,
            value: super::wire(&value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Receives the next value, waiting as long as it takes.
    pub async fn recv(&self) -> Result<T> {
        self.recv_with(None).await
    }

    /// Receives the next value, waiting at most `timeout`;
    /// [`Error::Timeout`](crate::Error::Timeout) if nothing came.
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_with(Some(timeout)).await
    }

    async fn recv_with(&self, timeout: Option<Duration>) -> Result<T> {
        let (timeout_secs, deadline) = wait_for(timeout);
        let op = Op::PipeRecv(pb::PipeRecv {
            end: self.end,
            timeout_secs,
        });
        super::value(self.handle.call_with(op, deadline).await?)
    }

    /// Whether something is waiting to be received, waiting up to `timeout`
    /// for it (`None`: answer at once).
    pub async fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let (timeout_secs, deadline) = match timeout {
            Some(t) => wait_for(Some(t)),
            None => (None, crate::connection::Deadline::Default),
        };
        let op = Op::PipePoll(pb::PipePoll {
            end: self.end,
            timeout_secs,
        });
        super::flag(self.handle.call_with(op, deadline).await?)
    }
}
