//! [`Manager`]: the connection to `procshared` and the factory of proxies.

use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R};
use serde::{de::DeserializeOwned, Serialize};

use crate::connection::{Connection, Deadline, DEFAULT_CALL_TIMEOUT};
use crate::error::{Error, Result};
use crate::proxy::{DictProxy, Handle, ListProxy, LockProxy, ValueProxy};

/// Where to connect when neither an URL nor `PROCSHARE_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:50051";

/// The kind of a shared object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Dict,
    List,
    Value,
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Condition,
    Event,
    Barrier,
    Queue,
    JoinableQueue,
    Namespace,
    Array,
    Pipe,
}

/// Every kind with its wire twin and its lowercase name.
const KINDS: [(Kind, pb::Kind, &str); 15] = [
    (Kind::Dict, pb::Kind::Dict, "dict"),
    (Kind::List, pb::Kind::List, "list"),
    (Kind::Value, pb::Kind::Value, "value"),
    (Kind::Lock, pb::Kind::Lock, "lock"),
    (Kind::RLock, pb::Kind::Rlock, "rlock"),
    (Kind::Semaphore, pb::Kind::Semaphore, "semaphore"),
    (
        Kind::BoundedSemaphore,
        pb::Kind::BoundedSemaphore,
        "bounded_semaphore",
    ),
    (Kind::Condition, pb::Kind::Condition, "condition"),
    (Kind::Event, pb::Kind::Event, "event"),
    (Kind::Barrier, pb::Kind::Barrier, "barrier"),
    (Kind::Queue, pb::Kind::Queue, "queue"),
    (
        Kind::JoinableQueue,
        pb::Kind::JoinableQueue,
        "joinable_queue",
    ),
    (Kind::Namespace, pb::Kind::Namespace, "namespace"),
    (Kind::Array, pb::Kind::Array, "array"),
    (Kind::Pipe, pb::Kind::Pipe, "pipe"),
];

impl Kind {
    /// The lowercase name used by the CLI and in error messages
    /// (`dict`, `rlock`, `joinable_queue`, …).
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or("unknown", |e| e.2)
    }

    /// Parses a kind's lowercase name.
    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.iter().find(|e| e.2 == s).map(|e| e.0)
    }

    /// The wire enum.
    pub fn wire(self) -> pb::Kind {
        KINDS
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or(pb::Kind::Unspecified, |e| e.1)
    }

    pub(crate) fn from_wire(k: i32) -> Option<Kind> {
        KINDS.iter().find(|e| e.1 as i32 == k).map(|e| e.0)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of [`Manager::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    /// `None` for a kind this client does not know (a newer server).
    pub kind: Option<Kind>,
}

/// Options for [`Manager`]; start with [`Manager::builder`].
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    url: Option<String>,
    call_timeout: Duration,
    connect_timeout: Duration,
}

impl ManagerBuilder {
    /// The server's URL, `http://host:port`. Without it, `PROCSHARE_URL`,
    /// else [`DEFAULT_URL`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The deadline of a call that does not wait on purpose (default 30 s).
    /// A blocking call with a timeout gets its timeout plus this.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long to try to connect (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<Manager> {
        let url = match self.url {
            Some(u) => u,
            None => std::env::var("PROCSHARE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned()),
        };
        let conn = Connection::connect(&url, self.call_timeout, self.connect_timeout).await?;
        Ok(Manager { conn })
    }
}

/// A connection to `procshared`, and the way to get shared objects:
/// Python's `SyncManager`.
///
/// Each object has a name; asking for a name gets the object, creating it if
/// absent. Asking for an existing name with another kind is
/// [`Error::WrongKind`]. A `Manager` is cheap to clone; clones share the
/// connection and the identity that owns locks.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let results = m.dict::<u32, String>("results").await?;
/// results.insert(1, "done".into()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    conn: Connection,
}

impl Manager {
    /// Connects to `url` (`http://host:port`) with default options.
    pub async fn connect(url: &str) -> Result<Manager> {
        Manager::builder().url(url).connect().await
    }

    /// Connects to `PROCSHARE_URL`, or [`DEFAULT_URL`] when it is not set.
    pub async fn from_env() -> Result<Manager> {
        Manager::builder().connect().await
    }

    /// Options: URL, call and connect timeouts.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            url: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// This client's identity: the owner of the locks it acquires.
    pub fn client_id(&self) -> &str {
        self.conn.client_id()
    }

    /// The URL this manager is connected to.
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// Checks the server answers; returns its version.
    pub async fn ping(&self) -> Result<String> {
        self.conn.ping().await
    }

    async fn open(&self, name: &str, kind: Kind, initial: Option<pb::Value>) -> Result<Handle> {
        let op = Op::Open(pb::Open {
            kind: kind.wire() as i32,
            initial,
            ..Default::default()
        });
        self.conn.execute(name, op, Deadline::Default).await?;
        Ok(Handle::new(self.conn.clone(), name))
    }

    /// The dict called `name`, created empty if absent.
    pub async fn dict<K, V>(&self, name: &str) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        Ok(DictProxy::new(self.open(name, Kind::Dict, None).await?))
    }

    /// The list called `name`, created empty if absent.
    pub async fn list<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.open(name, Kind::List, None).await?))
    }

    /// The value called `name`, created holding `initial` if absent (an
    /// existing value keeps what it holds).
    pub async fn value<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        initial: &T,
    ) -> Result<ValueProxy<T>> {
        let initial = crate::value::to_wire(initial)?;
        Ok(ValueProxy::new(
            self.open(name, Kind::Value, Some(initial)).await?,
        ))
    }

    /// The lock called `name`, created unlocked if absent.
    pub async fn lock(&self, name: &str) -> Result<LockProxy> {
        Ok(LockProxy::new(self.open(name, Kind::Lock, None).await?))
    }

    /// Deletes the object called `name`; [`Error::NotFound`] if there is none.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.conn
            .execute(name, Op::Delete(pb::Delete {}), Deadline::Default)
            .await?;
        Ok(())
    }

    /// Every object on the server, sorted by name.
    pub async fn list_objects(&self) -> Result<Vec<ObjectInfo>> {
        let r = self
            .conn
            .execute("", Op::ListObjects(pb::ListObjects {}), Deadline::Default)
            .await?;
        match r.kind {
            Some(R::Objects(list)) => Ok(list
                .objects
                .into_iter()
                .map(|o| ObjectInfo {
                    kind: Kind::from_wire(o.kind),
                    name: o.name,
                })
                .collect()),
            other => Err(Error::Protocol(format!(
                "expected an object list, got {other:?}"
            ))),
        }
    }

    /// Applies one raw wire operation to `name`: the escape hatch used by the
    /// CLI for JSON values, and by clients that want the wire result.
    pub async fn execute(&self, name: &str, op: Op) -> Result<pb::OpResult> {
        self.conn.execute(name, op, Deadline::Default).await
    }
}
