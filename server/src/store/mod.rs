//! The object store: every shared object by name, and the one path,
//! [`Store::apply`], that applies an operation to one of them.
//!
//! The store knows nothing about gRPC. It takes the wire's operation messages
//! as plain data (so a log or a replica can replay exactly what live traffic
//! did) and returns [`OpResult`]s or a [`StoreError`].
//!
//! Each object kind lives in its own module with its own unit tests and its
//! own mutex; the registry itself is a [`DashMap`], so operations on
//! different objects never contend.

mod array;
mod barrier;
mod batch;
mod cell;
mod condition;
mod dict;
pub mod error;
mod event;
mod index;
pub mod journal;
mod list;
mod lock;
mod namespace;
pub mod persist;
mod pipe;
mod pool;
mod queue;
mod reply;
mod restore;
mod semaphore;
pub mod val;
mod wait;
pub mod watch;

use std::sync::Arc;

use dashmap::{mapref::entry::Entry, DashMap};
use procshare_proto::{self as pb, op::Kind as Op, ArrayType, Kind, OpResult};

pub use error::{kind_name, Result, StoreError};
use val::Val;

/// Longest object name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Who is asking: a client, and optionally a task within it. Locks are owned
/// by the client; RLocks by the client and task together.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub client_id: String,
    pub task_id: String,
}

impl Caller {
    pub fn new(client_id: &str, task_id: &str) -> Self {
        Caller {
            client_id: client_id.to_owned(),
            task_id: task_id.to_owned(),
        }
    }
}

enum Object {
    Dict(dict::Dict),
    List(list::List),
    Value(cell::Cell),
    /// A Lock or an RLock; shared with the conditions bound to it.
    Lock(Arc<lock::Lock>),
    /// A Semaphore or a BoundedSemaphore.
    Semaphore(semaphore::Semaphore),
    Condition(condition::Condition),
    Event(event::Event),
    Barrier(barrier::Barrier),
    /// A Queue or a JoinableQueue.
    Queue(queue::Queue),
    Namespace(namespace::Namespace),
    Array(array::Array),
    Pipe(pipe::Pipe),
    Pool(pool::Pool),
}

/// The group of operations an op belongs to; an object accepts some groups.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Family {
    /// Open, Delete, ListObjects: the manager's own.
    Manager,
    /// Describe: every object.
    Any,
    Dict,
    List,
    Value,
    Lock,
    Semaphore,
    Condition,
    Event,
    Barrier,
    Queue,
    Namespace,
    Array,
    Pipe,
    Pool,
}

impl Family {
    fn of(op: &Op) -> Family {
        match op {
            Op::Open(_)
            | Op::Delete(_)
            | Op::ListObjects(_)
            | Op::Snapshot(_)
            | Op::Stats(_)
            | Op::Sessions(_) => Family::Manager,
            Op::Describe(_) => Family::Any,
            Op::DictGet(_)
            | Op::DictSet(_)
            | Op::DictRemove(_)
            | Op::DictContains(_)
            | Op::DictLen(_)
            | Op::DictKeys(_)
            | Op::DictValues(_)
            | Op::DictItems(_)
            | Op::DictUpdate(_)
            | Op::DictClear(_)
            | Op::DictSetDefault(_)
            | Op::DictPopItem(_)
            | Op::DictCompareAndSwap(_)
            | Op::DictFetchAdd(_) => Family::Dict,
            Op::ListPush(_)
            | Op::ListExtend(_)
            | Op::ListGet(_)
            | Op::ListSet(_)
            | Op::ListInsert(_)
            | Op::ListPop(_)
            | Op::ListRemove(_)
            | Op::ListIndex(_)
            | Op::ListCount(_)
            | Op::ListLen(_)
            | Op::ListRange(_)
            | Op::ListClear(_)
            | Op::ListReverse(_)
            | Op::ListSnapshot(_) => Family::List,
            Op::ValueGet(_)
            | Op::ValueSet(_)
            | Op::ValueSwap(_)
            | Op::ValueCompareAndSwap(_)
            | Op::ValueFetchAdd(_) => Family::Value,
            Op::LockAcquire(_) | Op::LockRelease(_) | Op::LockLocked(_) => Family::Lock,
            Op::SemaphoreAcquire(_) | Op::SemaphoreRelease(_) | Op::SemaphoreValue(_) => {
                Family::Semaphore
            }
            Op::ConditionWait(_) | Op::ConditionNotify(_) => Family::Condition,
            Op::EventSet(_) | Op::EventClear(_) | Op::EventIsSet(_) | Op::EventWait(_) => {
                Family::Event
            }
            Op::BarrierWait(_) | Op::BarrierReset(_) | Op::BarrierAbort(_) => Family::Barrier,
            Op::QueuePut(_) | Op::QueueGet(_) | Op::QueueTaskDone(_) | Op::QueueJoin(_) => {
                Family::Queue
            }
            Op::NamespaceGet(_)
            | Op::NamespaceSet(_)
            | Op::NamespaceDelete(_)
            | Op::NamespaceLoad(_)
            | Op::NamespaceStore(_) => Family::Namespace,
            Op::ArrayGet(_)
            | Op::ArraySet(_)
            | Op::ArrayGetRange(_)
            | Op::ArraySetRange(_)
            | Op::ArrayFetchAdd(_) => Family::Array,
            Op::PipeSend(_) | Op::PipeRecv(_) | Op::PipePoll(_) => Family::Pipe,
            Op::PoolSubmit(_)
            | Op::PoolClaim(_)
            | Op::PoolComplete(_)
            | Op::PoolResult(_)
            | Op::PoolStatus(_)
            | Op::PoolClose(_)
            | Op::PoolJoin(_)
            | Op::PoolRelease(_) => Family::Pool,
        }
    }

    /// The kind named in a WRONG_KIND error for this family.
    fn kind_name(self) -> &'static str {
        match self {
            Family::Manager | Family::Any => "object",
            Family::Dict => "dict",
            Family::List => "list",
            Family::Value => "value",
            Family::Lock => "lock",
            Family::Semaphore => "semaphore",
            Family::Condition => "condition",
            Family::Event => "event",
            Family::Barrier => "barrier",
            Family::Queue => "queue",
            Family::Namespace => "namespace",
            Family::Array => "array",
            Family::Pipe => "pipe",
            Family::Pool => "pool",
        }
    }
}

impl Object {
    fn kind(&self) -> Kind {
        match self {
            Object::Dict(_) => Kind::Dict,
            Object::List(_) => Kind::List,
            Object::Value(_) => Kind::Value,
            Object::Lock(l) if l.kind_name() == "rlock" => Kind::Rlock,
            Object::Lock(_) => Kind::Lock,
            Object::Semaphore(s) if s.is_bounded() => Kind::BoundedSemaphore,
            Object::Semaphore(_) => Kind::Semaphore,
            Object::Condition(_) => Kind::Condition,
            Object::Event(_) => Kind::Event,
            Object::Barrier(_) => Kind::Barrier,
            Object::Queue(q) if q.is_joinable() => Kind::JoinableQueue,
            Object::Queue(_) => Kind::Queue,
            Object::Namespace(_) => Kind::Namespace,
            Object::Array(_) => Kind::Array,
            Object::Pipe(_) => Kind::Pipe,
            Object::Pool(_) => Kind::Pool,
        }
    }

    /// Whether this object takes operations of `family`.
    fn accepts(&self, family: Family) -> bool {
        matches!(
            (self, family),
            (_, Family::Any)
                | (Object::Dict(_), Family::Dict)
                | (Object::List(_), Family::List)
                | (Object::Value(_), Family::Value)
                | (Object::Lock(_), Family::Lock)
                | (Object::Semaphore(_), Family::Semaphore)
                | (Object::Condition(_), Family::Condition | Family::Lock)
                | (Object::Event(_), Family::Event)
                | (Object::Barrier(_), Family::Barrier)
                | (Object::Queue(_), Family::Queue)
                | (Object::Namespace(_), Family::Namespace)
                | (Object::Array(_), Family::Array)
                | (Object::Pipe(_), Family::Pipe)
                | (Object::Pool(_), Family::Pool)
        )
    }

    /// A new object of `kind`; `lock` is the lock a condition binds to.
    fn new(
        kind: Kind,
        open: pb::Open,
        lock: Option<Arc<lock::Lock>>,
        limits: &StoreLimits,
    ) -> Result<Object> {
        Ok(match kind {
            Kind::Dict => Object::Dict(Default::default()),
            Kind::List => Object::List(Default::default()),
            Kind::Value => Object::Value(cell::Cell::new(match open.initial {
                Some(v) => Val::from_wire(v)?,
                None => Val::Null,
            })),
            Kind::Lock => Object::Lock(Arc::new(lock::Lock::new(false))),
            Kind::Rlock => Object::Lock(Arc::new(lock::Lock::new(true))),
            Kind::Semaphore => Object::Semaphore(semaphore::Semaphore::new(open.size, false)),
            Kind::BoundedSemaphore => Object::Semaphore(semaphore::Semaphore::new(open.size, true)),
            Kind::Condition => Object::Condition(condition::Condition::new(
                lock.unwrap_or_else(|| Arc::new(lock::Lock::new(true))),
                open.lock,
            )),
            Kind::Event => Object::Event(Default::default()),
            Kind::Barrier => Object::Barrier(barrier::Barrier::new(
                open.size,
                wait::timeout_from_secs(open.timeout_secs)?,
            )?),
            Kind::Queue => {
                Object::Queue(queue::Queue::new(open.size, false).limited(limits.max_queue_len))
            }
            Kind::JoinableQueue => {
                Object::Queue(queue::Queue::new(open.size, true).limited(limits.max_queue_len))
            }
            Kind::Namespace => Object::Namespace(Default::default()),
            Kind::Array => {
                Object::Array(array::Array::new(array_type(open.array_type)?, open.size)?)
            }
            Kind::Pipe => Object::Pipe(Default::default()),
            Kind::Pool => Object::Pool(pool::Pool::new(limits.max_queue_len)),
            Kind::Unspecified => {
                return Err(StoreError::InvalidArgument(
                    "open: an object kind is required".into(),
                ))
            }
        })
    }

    async fn apply(
        &self,
        name: &str,
        caller: &Caller,
        op: Op,
        rec: &journal::Recorder<'_>,
    ) -> Result<OpResult> {
        if let Op::Describe(_) = op {
            return Ok(self.describe());
        }
        // The futures of the kinds that can wait are boxed. Unboxed, every
        // layer above (`Store::apply`, `Core::run`, the session stream's
        // boxed `answer`) had room for the largest of them several times
        // over: 4 KiB per call, kept by every call blocked in a wait.
        // Boxed: 1.9 KiB, plus this kind's own 0.5-0.9 KiB for the calls
        // that reach one (nothing more for dict, list, value, namespace or
        // array).
        match self {
            Object::Dict(d) => d.apply(name, op, rec),
            Object::List(l) => l.apply(name, op, rec),
            Object::Value(c) => c.apply(name, op, rec),
            Object::Lock(l) => Box::pin(l.apply(name, caller, op)).await,
            Object::Semaphore(s) => Box::pin(s.apply(name, caller, op, rec)).await,
            Object::Condition(c) => Box::pin(c.apply(name, caller, op)).await,
            Object::Event(e) => Box::pin(e.apply(name, op, rec)).await,
            Object::Barrier(b) => Box::pin(b.apply(name, op)).await,
            Object::Queue(q) => Box::pin(q.apply(name, op, rec)).await,
            Object::Namespace(n) => n.apply(name, op, rec),
            Object::Array(a) => a.apply(name, op, rec),
            Object::Pipe(p) => Box::pin(p.apply(name, op)).await,
            Object::Pool(p) => Box::pin(p.apply(name, &caller.client_id, op, rec)).await,
        }
    }

    /// `Describe`: the kind, how many calls wait on it, and kind-specific
    /// figures, as a map.
    fn describe(&self) -> OpResult {
        let mut fields = match self {
            Object::Dict(d) => d.describe(),
            Object::List(l) => l.describe(),
            Object::Value(_) => vec![],
            Object::Lock(l) => l.describe(),
            Object::Semaphore(s) => s.describe(),
            Object::Condition(c) => c.describe(),
            Object::Event(e) => e.describe(),
            Object::Barrier(b) => b.describe(),
            Object::Queue(q) => q.describe(),
            Object::Namespace(n) => n.describe(),
            Object::Array(a) => a.describe(),
            Object::Pipe(p) => p.describe(),
            Object::Pool(p) => p.describe(),
        };
        if !fields.iter().any(|(k, _)| *k == "waiters") {
            fields.push(("waiters", Val::Int(0)));
        }
        fields.insert(0, ("kind", Val::Str(kind_name(self.kind()).into())));
        let map = fields
            .into_iter()
            .map(|(k, v)| (Val::Str(k.into()), v))
            .collect();
        reply::value(&Val::Map(map))
    }
}

fn array_type(t: i32) -> Result<ArrayType> {
    ArrayType::try_from(t)
        .map_err(|_| StoreError::InvalidArgument(format!("unknown array type {t}")))
}

/// Whether `op` only reads: its retry needs no de-duplication.
pub fn is_read_only(op: &Op) -> bool {
    matches!(
        op,
        Op::ListObjects(_)
            | Op::Describe(_)
            | Op::Stats(_)
            | Op::Sessions(_)
            | Op::DictGet(_)
            | Op::DictContains(_)
            | Op::DictLen(_)
            | Op::DictKeys(_)
            | Op::DictValues(_)
            | Op::DictItems(_)
            | Op::ListGet(_)
            | Op::ListIndex(_)
            | Op::ListCount(_)
            | Op::ListLen(_)
            | Op::ListRange(_)
            | Op::ListSnapshot(_)
            | Op::ValueGet(_)
            | Op::LockLocked(_)
            | Op::SemaphoreValue(_)
            | Op::EventIsSet(_)
            | Op::EventWait(_)
            | Op::QueueJoin(_)
            | Op::NamespaceGet(_)
            | Op::NamespaceLoad(_)
            | Op::ArrayGet(_)
            | Op::ArrayGetRange(_)
            | Op::PipePoll(_)
            | Op::PoolStatus(_)
            | Op::PoolJoin(_)
    )
}

/// Whether `op` may wait (a blocked call counts against the waiter limit).
pub fn may_wait(op: &Op) -> bool {
    match op {
        Op::LockAcquire(o) => o.blocking,
        Op::SemaphoreAcquire(o) => o.blocking,
        Op::QueuePut(o) => o.blocking,
        Op::QueueGet(o) => o.blocking,
        Op::PipePoll(o) => o.timeout_secs.is_some(),
        Op::PoolClaim(o) => o.timeout_secs != Some(0.0),
        Op::PoolResult(o) => o.timeout_secs != Some(0.0),
        Op::PoolJoin(_) => true,
        Op::ConditionWait(_)
        | Op::EventWait(_)
        | Op::BarrierWait(_)
        | Op::QueueJoin(_)
        | Op::PipeRecv(_) => true,
        _ => false,
    }
}

/// What an object module answers when dispatch hands it a foreign operation.
/// Dispatch checks kinds first, so this is a server bug, reported as such.
fn misrouted(name: &str, op: &Op) -> StoreError {
    StoreError::Internal(format!("operation {op:?} routed to object {name:?}"))
}

/// Checks an object name: 1–255 bytes of UTF-8 without control characters.
pub fn validate_name(name: &str) -> Result<()> {
    validate_name_within(name, MAX_NAME_LEN)
}

/// Checks an object name against a server limit of `max` bytes (at most
/// [`MAX_NAME_LEN`]).
pub fn validate_name_within(name: &str, max: usize) -> Result<()> {
    let max = max.min(MAX_NAME_LEN);
    if name.is_empty() {
        return Err(StoreError::InvalidArgument(
            "object name must not be empty".into(),
        ));
    }
    if name.len() > max {
        return Err(StoreError::InvalidArgument(format!(
            "object name is {} bytes long; the limit is {max}",
            name.len()
        )));
    }
    // Control characters are C0 and DEL (one byte each) and C1 (0xC2 then
    // 0x80..=0x9F): a byte scan settles the usual name, without decoding.
    let suspect = name.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
    if suspect && name.chars().any(char::is_control) {
        return Err(StoreError::InvalidArgument(format!(
            "object name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// An object and how it was created (what a snapshot needs to make it again).
struct Stored {
    open: pb::Open,
    object: Object,
}

/// The watchable kinds; `watch::Watcher` needs nothing else of an object.
impl watch::Watched for Stored {
    fn feed(&self) -> &watch::Feed {
        match &self.object {
            Object::Dict(d) => d.feed(),
            Object::List(l) => l.feed(),
            Object::Value(c) => c.feed(),
            Object::Queue(q) => q.feed(),
            Object::Event(e) => e.feed(),
            // Store::watch lets no other kind in; a feed nobody publishes
            // to is the harmless answer.
            _ => {
                static NONE: std::sync::OnceLock<watch::Feed> = std::sync::OnceLock::new();
                NONE.get_or_init(watch::Feed::default)
            }
        }
    }

    fn locked(&self, f: &mut dyn FnMut(&watch::Feed, &dyn Fn() -> watch::Snapshot)) {
        match &self.object {
            Object::Dict(d) => d.locked(f),
            Object::List(l) => l.locked(f),
            Object::Value(c) => c.locked(f),
            Object::Queue(q) => q.locked(f),
            Object::Event(e) => e.locked(f),
            _ => {}
        }
    }
}

impl Stored {
    fn watchable(&self) -> bool {
        matches!(
            self.object,
            Object::Dict(_)
                | Object::List(_)
                | Object::Value(_)
                | Object::Queue(_)
                | Object::Event(_)
        )
    }
}

impl std::ops::Deref for Stored {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.object
    }
}

/// Server limits the store enforces.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    pub max_objects: usize,
    /// Items in one queue, whatever its maxsize.
    pub max_queue_len: usize,
    /// Bytes in an object's name (at most 255).
    pub max_name_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_objects: 1_000_000,
            max_queue_len: 1_000_000,
            max_name_bytes: MAX_NAME_LEN,
        }
    }
}

/// Every shared object, by name.
pub struct Store {
    objects: DashMap<String, Arc<Stored>>,
    /// The data dir's log and snapshots; `None` for the in-memory store.
    durable: Option<Arc<persist::Durability>>,
    limits: StoreLimits,
    /// Shared by every application attempt, exclusive for an atomic batch.
    gate: batch::Gate,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: DashMap::new(),
            durable: None,
            limits: StoreLimits::default(),
            gate: Default::default(),
        }
    }
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// An in-memory store with these limits.
    pub fn with_limits(limits: StoreLimits) -> Self {
        Store {
            limits,
            ..Self::default()
        }
    }

    /// Whether changes wait for the write-ahead log before they are
    /// answered (with `--data-dir`).
    pub fn is_durable(&self) -> bool {
        self.durable.is_some()
    }

    /// Applies one operation on behalf of `caller`. This is the only way in:
    /// unary calls, batches and streams all come through here. With a data
    /// dir, an operation that changed durable state is in the log (written,
    /// or fsynced under `--fsync always`) before this returns.
    pub async fn apply(&self, caller: &Caller, op: pb::Op) -> Result<OpResult> {
        let Some(durable) = &self.durable else {
            return self
                .gate
                .around(self.apply_with(caller, op, &journal::Recorder::none()))
                .await;
        };
        let Some(kind) = &op.kind else {
            return Err(StoreError::missing_field("op.kind"));
        };
        match kind {
            Op::Snapshot(_) => return durable.snapshot(self).await,
            Op::Stats(_) => return Ok(self.stats()),
            _ => {}
        }
        let rec = journal::Recorder::for_op(durable.as_ref(), caller, &op.name, kind);
        if rec.records() {
            durable.check_writable()?;
        }
        let result = self.gate.around(self.apply_with(caller, op, &rec)).await?;
        if let Some(seq) = rec.committed() {
            durable.wait_logged(seq).await?;
        }
        Ok(result)
    }

    /// The one dispatch path, for live traffic (`rec` logs) and for replay
    /// (`rec` logs nothing).
    async fn apply_with(
        &self,
        caller: &Caller,
        op: pb::Op,
        rec: &journal::Recorder<'_>,
    ) -> Result<OpResult> {
        let pb::Op { name, kind } = op;
        let op = kind.ok_or_else(|| StoreError::missing_field("op.kind"))?;
        match op {
            Op::ListObjects(_) => return Ok(self.list_objects()),
            Op::Stats(_) => return Ok(self.stats()),
            Op::Sessions(_) => {
                return Err(StoreError::Unimplemented(
                    "sessions are listed by the service, not the store".into(),
                ))
            }
            Op::Snapshot(_) => return Err(StoreError::InvalidArgument(
                "snapshot: this server keeps its state in memory only (start it with --data-dir)"
                    .into(),
            )),
            _ => {}
        }
        let family = Family::of(&op);
        if family == Family::Manager {
            validate_name_within(&name, self.limits.max_name_bytes)?;
            return match op {
                Op::Open(o) => self.open(name, o, rec),
                Op::Delete(_) => self.delete(&name, rec),
                other => Err(misrouted(&name, &other)),
            };
        }
        let object = self.get(&name)?;
        if !object.accepts(family) {
            return Err(StoreError::WrongKind {
                name,
                wanted: family.kind_name(),
                actual: kind_name(object.kind()),
            });
        }
        object.apply(&name, caller, op, rec).await
    }

    /// Watches the object called `name` (a dict, list, value, queue or
    /// event) from now on; see [`watch`].
    pub fn watch(&self, name: &str, snapshot: bool) -> Result<watch::Watcher> {
        let object = self.get(name)?;
        if !object.watchable() {
            return Err(StoreError::WrongKind {
                name: name.to_owned(),
                wanted: "dict, list, value, queue or event",
                actual: kind_name(object.kind()),
            });
        }
        // Not in the middle of an atomic batch: its changes are held back
        // until it stands, so the state read here must not include them.
        let _gate = self.gate.read();
        watch::Watcher::start(object, name, snapshot)
    }

    /// Server figures: objects, and the data dir's if there is one.
    fn stats(&self) -> OpResult {
        let mut fields = vec![
            (
                Val::Str("objects".into()),
                Val::Int(self.objects.len() as i64),
            ),
            (
                Val::Str("version".into()),
                Val::Str(env!("CARGO_PKG_VERSION").into()),
            ),
        ];
        match &self.durable {
            Some(d) => fields.extend(d.stats()),
            None => fields.push((Val::Str("data_dir".into()), Val::Null)),
        }
        reply::value(&Val::Map(fields))
    }

    /// The object called `name`. A name found was checked when its object
    /// was made: only a miss needs the check (an invalid name is refused as
    /// such, not as unknown).
    fn get(&self, name: &str) -> Result<Arc<Stored>> {
        if let Some(o) = self.objects.get(name) {
            return Ok(o.value().clone());
        }
        validate_name_within(name, self.limits.max_name_bytes)?;
        Err(StoreError::NotFound(format!(
            "no object named {name:?} (open it first)"
        )))
    }

    fn open(&self, name: String, open: pb::Open, rec: &journal::Recorder) -> Result<OpResult> {
        let kind = Kind::try_from(open.kind)
            .map_err(|_| StoreError::InvalidArgument(format!("unknown kind {}", open.kind)))?;
        // A condition bound to a named lock: get or create that lock first,
        // outside the entry below (two entries of one map at once could
        // deadlock on a shard).
        let lock = if kind == Kind::Condition && !open.lock.is_empty() {
            if open.lock == name {
                return Err(StoreError::InvalidArgument(format!(
                    "condition {name:?} cannot be its own lock"
                )));
            }
            Some(self.lock_for_condition(&open.lock)?)
        } else {
            None
        };
        // Counted before taking the entry: counting takes every shard's lock,
        // and the entry holds one of them.
        let full = self.objects.len() >= self.limits.max_objects;
        match self.objects.entry(name) {
            Entry::Occupied(e) => {
                check_kind(e.key(), e.get(), kind)?;
                if let Object::Array(a) = &e.get().object {
                    a.check_shape(e.key(), array_type(open.array_type)?, open.size)?;
                }
            }
            Entry::Vacant(e) => {
                let params = pb::Open {
                    initial: None,
                    ..open.clone()
                };
                if full {
                    return Err(StoreError::ResourceExhausted(format!(
                        "this server holds at most {} objects (--max-objects)",
                        self.limits.max_objects
                    )));
                }
                let object = Object::new(kind, open, lock, &self.limits)?;
                rec.commit();
                tracing::debug!(name = %e.key(), kind = kind_name(kind), "created");
                e.insert(Arc::new(Stored {
                    open: params,
                    object,
                }));
            }
        }
        Ok(reply::unit())
    }

    /// The Lock or RLock called `name`, created as an RLock if absent.
    fn lock_for_condition(&self, name: &str) -> Result<Arc<lock::Lock>> {
        validate_name(name)?;
        let object = self
            .objects
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Stored {
                    open: pb::Open {
                        kind: Kind::Rlock as i32,
                        ..Default::default()
                    },
                    object: Object::Lock(Arc::new(lock::Lock::new(true))),
                })
            })
            .value()
            .clone();
        match &object.object {
            Object::Lock(l) => Ok(l.clone()),
            other => Err(StoreError::WrongKind {
                name: name.to_owned(),
                wanted: "lock",
                actual: kind_name(other.kind()),
            }),
        }
    }

    fn delete(&self, name: &str, rec: &journal::Recorder) -> Result<OpResult> {
        // Commit while the shard is locked, so the record is ordered with
        // the object's other records.
        match self.objects.remove_if(name, |_, stored| {
            rec.commit();
            // Under the object's lock, after its last change: watchers see
            // the deletion last. (Shard lock, then object lock: the order
            // every path that takes both uses.)
            watch::Watched::locked(stored.as_ref(), &mut |feed, _| feed.close());
            true
        }) {
            Some(_) => Ok(reply::unit()),
            None => Err(StoreError::NotFound(format!("no object named {name:?}"))),
        }
    }

    fn list_objects(&self) -> OpResult {
        let mut objects: Vec<pb::ObjectInfo> = self
            .objects
            .iter()
            .map(|e| pb::ObjectInfo {
                name: e.key().clone(),
                kind: e.value().kind() as i32,
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        reply::objects(objects)
    }

    /// Gives back everything `client_id` holds, because its session ended:
    /// locks and RLocks (any task of it) and semaphore permits. Returns what
    /// was released, `(object name, what)`, for the log.
    pub fn release_client(&self, client_id: &str) -> Vec<(String, String)> {
        let _gate = self.gate.read();
        let mut released = Vec::new();
        for e in self.objects.iter() {
            let what = match &e.value().object {
                Object::Lock(l) => l
                    .release_client(client_id)
                    .then(|| l.kind_name().to_owned()),
                Object::Condition(c) => c
                    .lock()
                    .release_client(client_id)
                    .then(|| "condition lock".to_owned()),
                Object::Semaphore(s) => match s.release_client(client_id) {
                    0 => None,
                    n => Some(format!("{n} semaphore permit(s)")),
                },
                Object::Pool(p) => match self.release_pool_tasks(e.key(), p, client_id) {
                    0 => None,
                    n => Some(format!("{n} pool task(s), queued again")),
                },
                _ => None,
            };
            if let Some(what) = what {
                released.push((e.key().clone(), what));
            }
        }
        released
    }

    /// Queues again the tasks `client_id` runs in pool `name`, logging it as
    /// that client's `PoolRelease` so that replay does the same.
    fn release_pool_tasks(&self, name: &str, pool: &pool::Pool, client_id: &str) -> usize {
        let caller = Caller::new(client_id, "");
        let op = Op::PoolRelease(pb::PoolRelease {});
        let rec = match &self.durable {
            Some(d) => journal::Recorder::for_op(d.as_ref(), &caller, name, &op),
            None => journal::Recorder::none(),
        };
        pool.release_client(client_id, &rec)
    }

    /// What `client_id` holds right now: `(object name, what)`.
    pub fn held_by(&self, client_id: &str) -> Vec<(String, String)> {
        let mut held = Vec::new();
        for e in self.objects.iter() {
            let what = match &e.value().object {
                Object::Lock(l) => l.held_by(client_id).then(|| l.kind_name().to_owned()),
                Object::Condition(c) => c
                    .lock()
                    .held_by(client_id)
                    .then(|| "condition lock".to_owned()),
                Object::Semaphore(s) => match s.held_by(client_id) {
                    0 => None,
                    n => Some(format!("{n} semaphore permit(s)")),
                },
                Object::Pool(p) => match p.running_for(client_id) {
                    0 => None,
                    n => Some(format!("{n} pool task(s)")),
                },
                _ => None,
            };
            if let Some(what) = what {
                held.push((e.key().clone(), what));
            }
        }
        held.sort();
        held
    }

    /// How many objects exist.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

fn check_kind(name: &str, object: &Object, wanted: Kind) -> Result<()> {
    let actual = object.kind();
    if actual == wanted {
        Ok(())
    } else {
        Err(StoreError::WrongKind {
            name: name.to_owned(),
            wanted: kind_name(wanted),
            actual: kind_name(actual),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building operations and unwrapping results in tests.
    use super::val::Val;
    use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R, Kind, OpResult};

    /// `kind` on the object called `name`.
    pub fn op(name: &str, kind: Op) -> pb::Op {
        pb::Op {
            name: name.into(),
            kind: Some(kind),
        }
    }

    /// Opens (gets or creates) an object of `kind` with default parameters.
    pub fn open(kind: Kind) -> Op {
        Op::Open(pb::Open {
            kind: kind as i32,
            ..Default::default()
        })
    }

    pub fn s(x: &str) -> Val {
        Val::Str(x.to_owned())
    }

    fn kind(r: OpResult) -> R {
        r.kind.expect("result has a kind")
    }

    fn val(v: Option<procshare_proto::Value>) -> Val {
        Val::from_wire(v.expect("value present")).expect("valid value")
    }

    pub fn as_maybe(r: OpResult) -> Option<Val> {
        match kind(r) {
            R::Maybe(m) => m.value.map(|v| val(Some(v))),
            other => panic!("expected maybe, got {other:?}"),
        }
    }

    pub fn as_value(r: OpResult) -> Val {
        match kind(r) {
            R::Value(v) => val(Some(v)),
            other => panic!("expected value, got {other:?}"),
        }
    }

    pub fn as_values(r: OpResult) -> Vec<Val> {
        match kind(r) {
            R::Values(l) => l.items.into_iter().map(|v| val(Some(v))).collect(),
            other => panic!("expected values, got {other:?}"),
        }
    }

    pub fn as_count(r: OpResult) -> u64 {
        match kind(r) {
            R::Count(n) => n,
            other => panic!("expected count, got {other:?}"),
        }
    }

    pub fn as_pair(r: OpResult) -> (Val, Val) {
        match kind(r) {
            R::Pair(p) => (val(p.first), val(p.second)),
            other => panic!("expected pair, got {other:?}"),
        }
    }

    pub fn as_swap(r: OpResult) -> (bool, Option<Val>) {
        match kind(r) {
            R::Swap(s) => (
                s.swapped,
                s.current.and_then(|m| m.value).map(|v| val(Some(v))),
            ),
            other => panic!("expected swap, got {other:?}"),
        }
    }

    pub fn as_flag(r: OpResult) -> bool {
        match kind(r) {
            R::Flag(b) => b,
            other => panic!("expected flag, got {other:?}"),
        }
    }

    pub fn as_acquired(r: OpResult) -> (bool, u64) {
        match kind(r) {
            R::Acquired(a) => (a.acquired, a.fencing_token),
            other => panic!("expected acquired, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::{op, open};

    fn caller() -> Caller {
        Caller::new("t", "")
    }

    #[test]
    fn names_with_control_characters_are_refused_and_others_taken() {
        for bad in [
            "a\nb",
            "\0",
            "x\u{7f}",
            "\u{85}next-line",
            "c1-\u{9f}",
            "tab\t",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} must be refused");
        }
        for good in [
            "results",
            "é-ü",
            "\u{a0}nbsp",
            "\u{bf}",
            "日本語",
            "a b.c/d:e",
        ] {
            assert!(validate_name(good).is_ok(), "{good:?} must be taken");
        }
    }

    #[tokio::test]
    async fn open_is_get_or_create_and_checks_the_kind() {
        let store = Store::new();
        store
            .apply(&caller(), op("x", open(Kind::Dict)))
            .await
            .unwrap();
        store
            .apply(&caller(), op("x", open(Kind::Dict)))
            .await
            .unwrap();
        let err = store
            .apply(&caller(), op("x", open(Kind::Lock)))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "\"x\" is a dict, not a lock");
        let err = store
            .apply(&caller(), op("x", Op::ListLen(pb::ListLen {})))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::WrongKind {
                wanted: "list",
                actual: "dict",
                ..
            }
        ));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn operations_on_missing_objects_and_bad_names_fail() {
        let store = Store::new();
        let err = store
            .apply(&caller(), op("nope", Op::DictLen(pb::DictLen {})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        for bad in ["", "a\nb", &"n".repeat(256)] {
            let err = store
                .apply(&caller(), op(bad, open(Kind::Dict)))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidArgument(_)), "{bad:?}");
            // A data operation on a bad name: refused as bad, not as missing.
            let err = store
                .apply(&caller(), op(bad, Op::DictLen(pb::DictLen {})))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidArgument(_)), "{bad:?}");
        }
        let err = store
            .apply(&caller(), op("x", open(Kind::Unspecified)))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)));
        let missing = pb::Op {
            name: "x".into(),
            kind: None,
        };
        assert!(store.apply(&caller(), missing).await.is_err());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_client_that_goes_away_gives_back_what_it_held() {
        let store = Store::new();
        let a = Caller::new("a", "t1");
        let b = Caller::new("b", "");
        store.apply(&a, op("l", open(Kind::Lock))).await.unwrap();
        store.apply(&a, op("r", open(Kind::Rlock))).await.unwrap();
        let sem = Op::Open(pb::Open {
            kind: Kind::BoundedSemaphore as i32,
            size: 2,
            ..Default::default()
        });
        store.apply(&a, op("s", sem)).await.unwrap();
        let acquire = || {
            Op::LockAcquire(pb::LockAcquire {
                blocking: true,
                timeout_secs: None,
            })
        };
        store.apply(&a, op("l", acquire())).await.unwrap();
        store.apply(&a, op("r", acquire())).await.unwrap();
        store.apply(&a, op("r", acquire())).await.unwrap();
        let take = || {
            Op::SemaphoreAcquire(pb::SemaphoreAcquire {
                blocking: true,
                timeout_secs: None,
            })
        };
        store.apply(&a, op("s", take())).await.unwrap();
        store.apply(&b, op("s", take())).await.unwrap();
        assert_eq!(store.held_by("a").len(), 3);

        let released = store.release_client("a");
        assert_eq!(released.len(), 3, "{released:?}");
        assert!(store.held_by("a").is_empty());
        // b's permit stays taken; a's came back.
        let value = store
            .apply(&b, op("s", Op::SemaphoreValue(pb::SemaphoreValue {})))
            .await
            .unwrap();
        assert_eq!(testing::as_count(value), 1);
        let got = store
            .apply(
                &b,
                op(
                    "l",
                    Op::LockAcquire(pb::LockAcquire {
                        blocking: false,
                        timeout_secs: None,
                    }),
                ),
            )
            .await
            .unwrap();
        assert!(testing::as_acquired(got).0);
        let got = store
            .apply(
                &b,
                op(
                    "r",
                    Op::LockAcquire(pb::LockAcquire {
                        blocking: false,
                        timeout_secs: None,
                    }),
                ),
            )
            .await
            .unwrap();
        assert!(
            testing::as_acquired(got).0,
            "the rlock is free whatever its depth was"
        );
    }

    #[tokio::test]
    async fn delete_and_list() {
        let store = Store::new();
        store
            .apply(&caller(), op("b", open(Kind::List)))
            .await
            .unwrap();
        store
            .apply(&caller(), op("a", open(Kind::Value)))
            .await
            .unwrap();
        let listed = store
            .apply(&caller(), op("", Op::ListObjects(pb::ListObjects {})))
            .await
            .unwrap();
        let Some(pb::op_result::Kind::Objects(list)) = listed.kind else {
            panic!("expected objects")
        };
        let names: Vec<_> = list.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        store
            .apply(&caller(), op("a", Op::Delete(pb::Delete {})))
            .await
            .unwrap();
        let err = store
            .apply(&caller(), op("a", Op::Delete(pb::Delete {})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(store.len(), 1);
    }
}
