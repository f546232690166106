//! [`Manager`]: the connection to `procshared` and the factory of proxies.

use std::path::PathBuf;
use std::time::Duration;

use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R};
use serde::{de::DeserializeOwned, Serialize};

use crate::batch::Batch;
use crate::connection::{
    ConnectOptions, Connection, Deadline, DEFAULT_CALL_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT,
};
use crate::error::{Error, Result};
use crate::proxy::{
    ArrayElement, ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, Handle,
    ListProxy, LockProxy, NamespaceProxy, PipeProxy, PoolProxy, QueueProxy, RLockProxy,
    SemaphoreProxy, ValueProxy,
};

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
    Pool,
}

/// Every kind with its wire twin and its lowercase name.
const KINDS: [(Kind, pb::Kind, &str); 16] = [
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
    (Kind::Pool, pb::Kind::Pool, "pool"),
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
///
/// Every option left unset falls back to an environment variable, then to a
/// default: `PROCSHARE_URL` ([`DEFAULT_URL`]), `PROCSHARE_TOKEN` (no token),
/// `PROCSHARE_CA` (the system's roots, for `https://`), `PROCSHARE_CERT`
/// and `PROCSHARE_KEY` (no client certificate).
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// // Across hosts: TLS with a private CA, a client certificate (mTLS) and
/// // the shared token.
/// let m = procshare::Manager::builder()
///     .url("https://queue-host.example:50051")
///     .ca_file("certs/ca.pem")
///     .cert("certs/client.pem")
///     .key("certs/client.key")
///     .token(std::fs::read_to_string("token").unwrap_or_default())
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManagerBuilder {
    url: Option<String>,
    call_timeout: Duration,
    connect_timeout: Duration,
    token: Option<String>,
    ca_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Duration,
    lease: Duration,
    unary: Option<bool>,
    shared_stream_connection: Option<bool>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("url", &self.url)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("unary", &self.unary)
            .field("shared_stream_connection", &self.shared_stream_connection)
            .finish()
    }
}

/// An environment variable, if set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ManagerBuilder {
    /// The server's URL: `http://host:port`, `https://host:port` (TLS) or
    /// `unix:///path/to/socket`. Without it, `PROCSHARE_URL`, else
    /// [`DEFAULT_URL`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The shared token (Python's `authkey`), sent with every call. Without
    /// it, `PROCSHARE_TOKEN`. Surrounding whitespace (a file's final newline)
    /// is ignored.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A PEM file with the CA certificate(s) that signed the server's
    /// certificate, for `https://` URLs. Without it, `PROCSHARE_CA`, else
    /// the system's trusted roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// This client's PEM certificate, for a server that requires one (mTLS).
    /// Without it, `PROCSHARE_CERT`. Goes with [`key`](Self::key).
    pub fn cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.cert = Some(path.into());
        self
    }

    /// The PEM private key of [`cert`](Self::cert). Without it,
    /// `PROCSHARE_KEY`.
    pub fn key(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(path.into());
        self
    }

    /// The deadline of a call that does not wait on purpose (default 30 s).
    /// A blocking call with a timeout gets its timeout plus this. On the
    /// session stream, deadlines are checked every eighth of this (at least
    /// 10 ms, at most 1 s), so a call fails with [`Error::Timeout`] up to
    /// that much after its deadline.
    ///
    /// ```no_run
    /// # async fn f() -> procshare::Result<()> {
    /// let m = procshare::Manager::builder()
    ///     .url("http://127.0.0.1:50051")
    ///     .call_timeout(std::time::Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long to try to connect (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often to send an HTTP/2 keepalive ping, idle or not (default
    /// 30 s; `None`: never). The pings keep NAT and firewall state alive and
    /// reveal a dead server.
    pub fn keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// The session lease to ask for (default 5 s; the server bounds it). If
    /// this process dies, its locks and permits are given back once the
    /// lease runs out; the client renews it in the background.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a keepalive ping may go unanswered before the connection is
    /// dropped (default 10 s); the next call reconnects.
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// With `true`, every call is its own unary gRPC `Execute` instead of
    /// a message on the connection's session stream (the default, which
    /// pipelines the calls of all tasks over one HTTP/2 stream and costs
    /// much less per call). Without it, `PROCSHARE_TRANSPORT=unary` asks for
    /// unary calls (`stream`, or unset: the stream). Unary calls are for
    /// comparing the two, and for proxies that dislike long-lived streams.
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::builder()
    ///     .url("http://127.0.0.1:50051")
    ///     .unary(true)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn unary(mut self, unary: bool) -> Self {
        self.unary = Some(unary);
        self
    }

    /// With `true`, the session stream shares tonic's HTTP/2 connection
    /// with the other calls, as it did before procshare spoke the stream's
    /// connection itself. By default, over `http://` and `unix:` URLs, the
    /// stream has a connection of its own that the client drives directly
    /// (half the client's instructions per call); over `https://` it always
    /// shares. Without it, `PROCSHARE_TRANSPORT=shared-stream` asks for the
    /// shared one. For comparing the two, and a way back should the own
    /// connection misbehave somewhere.
    ///
    /// ```no_run
    /// # async fn demo() -> procshare::Result<()> {
    /// let m = procshare::Manager::builder()
    ///     .url("http://127.0.0.1:50051")
    ///     .shared_stream_connection(true)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shared_stream_connection(mut self, shared: bool) -> Self {
        self.shared_stream_connection = Some(shared);
        self
    }

    /// Connects. Bad options (URL, files, token) are
    /// [`Error::InvalidArgument`]; an unreachable server is
    /// [`Error::Unavailable`].
    pub async fn connect(self) -> Result<Manager> {
        let options = ConnectOptions {
            url: self
                .url
                .or_else(|| env("PROCSHARE_URL"))
                .unwrap_or_else(|| DEFAULT_URL.to_owned()),
            call_timeout: self.call_timeout,
            connect_timeout: self.connect_timeout,
            token: self.token.or_else(|| env("PROCSHARE_TOKEN")),
            ca_file: self
                .ca_file
                .or_else(|| env("PROCSHARE_CA").map(PathBuf::from)),
            cert: self
                .cert
                .or_else(|| env("PROCSHARE_CERT").map(PathBuf::from)),
            key: self.key.or_else(|| env("PROCSHARE_KEY").map(PathBuf::from)),
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            lease: self.lease,
            unary: self
                .unary
                .unwrap_or_else(|| env("PROCSHARE_TRANSPORT").is_some_and(|t| t == "unary")),
            shared_stream_connection: self.shared_stream_connection.unwrap_or_else(|| {
                env("PROCSHARE_TRANSPORT").is_some_and(|t| t == "shared-stream")
            }),
        };
        let conn = Connection::connect(options).await?;
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
    /// Connects to `url` (`http://host:port`, `https://host:port` or
    /// `unix:///path`) with default options (and the token, CA and client
    /// certificate from the environment, if set).
    pub async fn connect(url: &str) -> Result<Manager> {
        Manager::builder().url(url).connect().await
    }

    /// Connects to `PROCSHARE_URL`, or [`DEFAULT_URL`] when it is not set.
    pub async fn from_env() -> Result<Manager> {
        Manager::builder().connect().await
    }

    /// Options: URL, token, TLS files, timeouts, keepalive.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            url: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            token: None,
            ca_file: None,
            cert: None,
            key: None,
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            lease: crate::session::DEFAULT_LEASE,
            unary: None,
            shared_stream_connection: None,
        }
    }

    /// This client's identity, its session id: the owner of the locks it
    /// acquires.
    pub fn client_id(&self) -> String {
        self.conn.client_id().to_string()
    }

    /// Ends the session now: the server gives back every lock and permit
    /// this client holds (dropping the last clone of the manager and its
    /// proxies does the same; a killed process's session ends when its
    /// lease runs out). Calls on it afterwards fail with
    /// [`Error::SessionExpired`].
    pub async fn close(&self) -> Result<()> {
        self.conn.close().await
    }

    /// Every live session, as JSON: id, name, peer, age, lease, and what
    /// each holds.
    pub async fn sessions(&self) -> Result<serde_json::Value> {
        let r = self
            .conn
            .execute("", "", Op::Sessions(pb::Sessions {}), Deadline::Default)
            .await?;
        match r.kind {
            Some(R::Value(v)) => crate::value::wire_to_json(v),
            other => Err(Error::Protocol(format!(
                "expected a list of sessions, got {other:?}"
            ))),
        }
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
        self.open_with(
            name,
            pb::Open {
                kind: kind.wire() as i32,
                initial,
                ..Default::default()
            },
        )
        .await
    }

    async fn open_with(&self, name: &str, open: pb::Open) -> Result<Handle> {
        self.conn
            .execute(name, "", Op::Open(open), Deadline::Default)
            .await?;
        Ok(Handle::new(self.conn.clone(), name))
    }

    fn sized(kind: Kind, size: u64) -> pb::Open {
        pb::Open {
            kind: kind.wire() as i32,
            size,
            ..Default::default()
        }
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

    /// The reentrant lock called `name`, created unlocked if absent.
    pub async fn rlock(&self, name: &str) -> Result<RLockProxy> {
        Ok(RLockProxy::new(self.open(name, Kind::RLock, None).await?))
    }

    /// The semaphore called `name`, created with `value` permits if absent.
    pub async fn semaphore(&self, name: &str, value: u64) -> Result<SemaphoreProxy> {
        let open = Self::sized(Kind::Semaphore, value);
        Ok(SemaphoreProxy::new(self.open_with(name, open).await?))
    }

    /// The bounded semaphore called `name`, created with `value` permits if
    /// absent; releasing above `value` is an error.
    pub async fn bounded_semaphore(&self, name: &str, value: u64) -> Result<SemaphoreProxy> {
        let open = Self::sized(Kind::BoundedSemaphore, value);
        Ok(SemaphoreProxy::new(self.open_with(name, open).await?))
    }

    /// The condition called `name`, bound to the Lock or RLock called `lock`
    /// (created as an RLock if absent), or to a lock of its own.
    pub async fn condition(&self, name: &str, lock: Option<&str>) -> Result<ConditionProxy> {
        let open = pb::Open {
            kind: Kind::Condition.wire() as i32,
            lock: lock.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        Ok(ConditionProxy::new(self.open_with(name, open).await?))
    }

    /// The event called `name`, created clear if absent.
    pub async fn event(&self, name: &str) -> Result<EventProxy> {
        Ok(EventProxy::new(self.open(name, Kind::Event, None).await?))
    }

    /// The barrier called `name` for `parties` callers, with a default
    /// `wait` timeout, created if absent (an existing barrier keeps its own
    /// parties and timeout).
    pub async fn barrier(
        &self,
        name: &str,
        parties: u64,
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy> {
        let open = pb::Open {
            timeout_secs: timeout.map(|t| t.as_secs_f64()),
            ..Self::sized(Kind::Barrier, parties)
        };
        Ok(BarrierProxy::new(self.open_with(name, open).await?))
    }

    /// The queue called `name`, created with `maxsize` (0: unbounded) if
    /// absent (an existing queue keeps its own).
    pub async fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: u64,
    ) -> Result<QueueProxy<T>> {
        let open = Self::sized(Kind::Queue, maxsize);
        Ok(QueueProxy::new(self.open_with(name, open).await?))
    }

    /// The joinable queue called `name` (a queue with `task_done` and
    /// `join`), created with `maxsize` if absent.
    pub async fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: u64,
    ) -> Result<QueueProxy<T>> {
        let open = Self::sized(Kind::JoinableQueue, maxsize);
        Ok(QueueProxy::new(self.open_with(name, open).await?))
    }

    /// The namespace called `name`, created empty if absent.
    pub async fn namespace(&self, name: &str) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::new(
            self.open(name, Kind::Namespace, None).await?,
        ))
    }

    /// The array called `name` of `len` elements of `T` (i64, f64 or u8),
    /// created zeroed if absent. An existing array of another type or
    /// length is [`Error::InvalidArgument`].
    pub async fn array<T: ArrayElement>(&self, name: &str, len: u64) -> Result<ArrayProxy<T>> {
        let open = pb::Open {
            array_type: T::WIRE as i32,
            ..Self::sized(Kind::Array, len)
        };
        Ok(ArrayProxy::new(self.open_with(name, open).await?))
    }

    /// Both ends of the pipe called `name`, created if absent.
    pub async fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<(PipeProxy<T>, PipeProxy<T>)> {
        let handle = self.open(name, Kind::Pipe, None).await?;
        Ok((PipeProxy::new(handle.clone(), 0), PipeProxy::new(handle, 1)))
    }

    /// The task pool called `name`, created empty if absent: submit tasks
    /// with [`PoolProxy::map`] and friends, serve them with a
    /// [`Worker`](crate::Worker) in any process.
    ///
    /// ```no_run
    /// # async fn demo(m: procshare::Manager) -> procshare::Result<()> {
    /// let pool = m.pool("thumbs").await?;
    /// let sizes = pool.map::<_, u64>("thumbnail", ["a.png", "b.png"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pool(&self, name: &str) -> Result<PoolProxy> {
        Ok(PoolProxy::new(self.open(name, Kind::Pool, None).await?))
    }

    /// How busy the object called `name` is: its kind, the calls waiting on
    /// it, and kind-specific figures (length, value, parties, …), as JSON.
    pub async fn describe(&self, name: &str) -> Result<serde_json::Value> {
        Handle::new(self.conn.clone(), name).describe().await
    }

    /// Deletes the object called `name`; [`Error::NotFound`] if there is none.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.conn
            .execute(name, "", Op::Delete(pb::Delete {}), Deadline::Default)
            .await?;
        Ok(())
    }

    /// Every object on the server, sorted by name.
    pub async fn list_objects(&self) -> Result<Vec<ObjectInfo>> {
        let r = self
            .conn
            .execute(
                "",
                "",
                Op::ListObjects(pb::ListObjects {}),
                Deadline::Default,
            )
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

    /// A batch of operations sent in one call, optionally applied as one
    /// atomic unit; see [`Batch`].
    ///
    /// ```no_run
    /// # async fn demo(m: procshare::Manager) -> procshare::Result<()> {
    /// let accounts = m.dict::<String, i64>("accounts").await?;
    /// let results = m
    ///     .batch()
    ///     .dict_fetch_add(&accounts, &"alice".to_owned(), &-10)?
    ///     .dict_fetch_add(&accounts, &"bob".to_owned(), &10)?
    ///     .atomic()
    ///     .run()
    ///     .await?;
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> Batch {
        Batch::new(self.conn.clone())
    }

    /// Applies one raw wire operation to `name`: the escape hatch used by the
    /// CLI for JSON values, and by clients that want the wire result.
    pub async fn execute(&self, name: &str, op: Op) -> Result<pb::OpResult> {
        self.conn.execute(name, "", op, Deadline::Default).await
    }
}
