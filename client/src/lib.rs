//! # procshare
//!
//! Python's `multiprocessing.Manager`, as a network service. A daemon,
//! `procshared`, owns shared dicts, lists, values and locks; any process on
//! any host connects a [`Manager`] and gets typed proxies whose every method
//! is one atomic operation on the server.
//!
//! ```no_run
//! # async fn demo() -> procshare::Result<()> {
//! let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
//! let counter = m.value::<i64>("counter", &0).await?;
//! counter.fetch_add(1).await?;
//!
//! let lock = m.lock("resource").await?;
//! let token = lock.acquire().await?;
//! // ... use the resource, passing `token` along as a fence ...
//! lock.release().await?;
//! # Ok(()) }
//! ```
//!
//! Synchronous programs use [`blocking::Manager`], which has the same
//! methods without `async`.
//!
//! Values are any serde type; they travel as a structured protobuf value
//! (null, bool, int, float, string, bytes, list, map), so clients in other
//! languages read the same data. See [`value`].

mod batch;
pub mod blocking;
mod connection;
mod encode;
mod error;
mod lane;
mod manager;
mod proxy;
mod request_ids;
mod session;
mod stream;
pub mod value;
mod watch;
mod worker;

pub use batch::Batch;
pub use connection::DEFAULT_CALL_TIMEOUT;
pub use error::{Error, Result};
pub use manager::{Kind, Manager, ManagerBuilder, ObjectInfo, DEFAULT_URL};
pub use proxy::{
    ArrayElement, ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy,
    LockProxy, NamespaceProxy, PipeProxy, QueueProxy, RLockProxy, SemaphoreProxy, Swap, ValueProxy,
};
pub use proxy::{AsyncResult, PoolProxy, PoolStatus, Task, TaskError, TaskResult, Unordered};
pub use session::DEFAULT_LEASE;
pub use watch::{Change, ChangeKind, Watch, WatchState};
pub use worker::{Worker, WorkerReport, WorkerStop};

/// The wire types, for raw [`Manager::execute`] calls.
pub use procshare_proto as wire;
