//! [`Batch`]: several operations in one call, optionally atomic.

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use crate::connection::Connection;
use crate::error::Result;
use crate::proxy::{DictProxy, EventProxy, ListProxy, QueueProxy, ValueProxy};
use crate::value::to_wire;

/// Operations collected to be sent in one `Batch` call; made by
/// [`Manager::batch`](crate::Manager::batch).
///
/// The typed helpers take the proxy of the object they act on; [`op`]
/// takes any raw wire operation. [`run`](Self::run) returns one raw
/// [`OpResult`](pb::OpResult) (or error) per operation, in order (decode
/// values with [`crate::value::from_wire`]).
///
/// Without [`atomic`](Self::atomic), each operation applies on its own, in
/// order, as if called one after the other (but in one round trip). With
/// it, they apply as one unit: either all of them, with no other client
/// seeing a state in between, or, if one fails, none (every result is then
/// an error: the failing operation's own, and "not applied" for the rest).
/// An atomic batch takes only operations that do not wait, and changes only
/// to dicts, lists, values, namespaces, arrays, queues (a queue's put,
/// get and task done, without waiting: [`queue_put`](Self::queue_put),
/// [`queue_get`](Self::queue_get), [`queue_task_done`](Self::queue_task_done))
/// and events ([`event_set`](Self::event_set),
/// [`event_clear`](Self::event_clear)); opening, deleting and reading
/// anything is fine. Otherwise the whole batch
/// is refused with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
///
/// ```no_run
/// # async fn demo(m: procshare::Manager) -> procshare::Result<()> {
/// use procshare::wire::{op::Kind as Op, ListLen};
/// let stock = m.dict::<String, i64>("stock").await?;
/// let log = m.list::<String>("log").await?;
/// let results = m
///     .batch()
///     .dict_insert(&stock, &"apples".into(), &10)?
///     .list_push(&log, &"restocked apples".into())?
///     .op("log", Op::ListLen(ListLen {}))
///     .atomic()
///     .run()
///     .await?;
/// assert_eq!(results.len(), 3);
/// # Ok(()) }
/// ```
///
/// A worker's result and its `task_done`, both or neither, so that whoever
/// [`join`](QueueProxy::join)s the queue finds every result in place:
///
/// ```no_run
/// # async fn demo(m: procshare::Manager) -> procshare::Result<()> {
/// let jobs = m.joinable_queue::<u64>("jobs", 0).await?;
/// let results = m.dict::<u64, String>("results").await?;
/// let job = jobs.get().await?;
/// m.batch()
///     .dict_insert(&results, &job, &format!("job {job} done"))?
///     .queue_task_done(&jobs)
///     .atomic()
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
///
/// [`op`]: Self::op
#[must_use = "a batch does nothing until run"]
pub struct Batch {
    conn: Connection,
    ops: Vec<(String, String, Op)>,
    atomic: bool,
}

impl Batch {
    pub(crate) fn new(conn: Connection) -> Self {
        Batch {
            conn,
            ops: Vec::new(),
            atomic: false,
        }
    }

    /// Adds a raw operation on the object called `name`.
    pub fn op(mut self, name: &str, op: Op) -> Self {
        self.ops.push((name.to_owned(), String::new(), op));
        self
    }

    /// Applies the operations as one unit (all or none).
    pub fn atomic(mut self) -> Self {
        self.atomic = true;
        self
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// `dict[key] = value` (result: the replaced value, a `maybe`).
    pub fn dict_insert<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        self,
        dict: &DictProxy<K, V>,
        key: &K,
        value: &V,
    ) -> Result<Self> {
        let op = Op::DictSet(pb::DictSet {
            key: Some(to_wire(key)?),
            value: Some(to_wire(value)?),
        });
        Ok(self.op(dict.name(), op))
    }

    /// Removes `key` (result: the removed value, a `maybe`).
    pub fn dict_remove<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        self,
        dict: &DictProxy<K, V>,
        key: &K,
    ) -> Result<Self> {
        let op = Op::DictRemove(pb::DictRemove {
            key: Some(to_wire(key)?),
        });
        Ok(self.op(dict.name(), op))
    }

    /// Adds `delta` to `dict[key]` (result: the `pair` before, after).
    pub fn dict_fetch_add<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        self,
        dict: &DictProxy<K, V>,
        key: &K,
        delta: &V,
    ) -> Result<Self> {
        let op = Op::DictFetchAdd(pb::DictFetchAdd {
            key: Some(to_wire(key)?),
            delta: Some(to_wire(delta)?),
        });
        Ok(self.op(dict.name(), op))
    }

    /// Reads `dict[key]` (result: a `maybe`).
    pub fn dict_get<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        self,
        dict: &DictProxy<K, V>,
        key: &K,
    ) -> Result<Self> {
        let op = Op::DictGet(pb::DictGet {
            key: Some(to_wire(key)?),
        });
        Ok(self.op(dict.name(), op))
    }

    /// Appends `item` to the list.
    pub fn list_push<T: Serialize + DeserializeOwned>(
        self,
        list: &ListProxy<T>,
        item: &T,
    ) -> Result<Self> {
        let op = Op::ListPush(pb::ListPush {
            value: Some(to_wire(item)?),
        });
        Ok(self.op(list.name(), op))
    }

    /// Stores `value` in the value object.
    pub fn value_set<T: Serialize + DeserializeOwned>(
        self,
        cell: &ValueProxy<T>,
        value: &T,
    ) -> Result<Self> {
        let op = Op::ValueSet(pb::ValueSet {
            value: Some(to_wire(value)?),
        });
        Ok(self.op(cell.name(), op))
    }

    /// `queue.put_nowait(item)`: on a full queue the operation fails
    /// ([`Error::Full`](crate::Error::Full)); a batch never waits.
    pub fn queue_put<T: Serialize + DeserializeOwned>(
        self,
        queue: &QueueProxy<T>,
        item: &T,
    ) -> Result<Self> {
        let op = Op::QueuePut(pb::QueuePut {
            value: Some(to_wire(item)?),
            blocking: false,
            timeout_secs: None,
        });
        Ok(self.op(queue.name(), op))
    }

    /// `queue.get_nowait()` (result: the item, a `value`): on an empty
    /// queue the operation fails ([`Error::Empty`](crate::Error::Empty));
    /// a batch never waits.
    pub fn queue_get<T: Serialize + DeserializeOwned>(self, queue: &QueueProxy<T>) -> Self {
        let op = Op::QueueGet(pb::QueueGet {
            blocking: false,
            timeout_secs: None,
        });
        self.op(queue.name(), op)
    }

    /// `queue.task_done()` on a joinable queue: past the count of items
    /// put, the operation fails ([`Error::InvalidArgument`](crate::Error::InvalidArgument)).
    pub fn queue_task_done<T: Serialize + DeserializeOwned>(self, queue: &QueueProxy<T>) -> Self {
        self.op(queue.name(), Op::QueueTaskDone(pb::QueueTaskDone {}))
    }

    /// Sets the event: in an atomic batch, its waiters wake only if the
    /// whole batch stands (they see its other changes when they do).
    pub fn event_set(self, event: &EventProxy) -> Self {
        self.op(event.name(), Op::EventSet(pb::EventSet {}))
    }

    /// Clears the event.
    pub fn event_clear(self, event: &EventProxy) -> Self {
        self.op(event.name(), Op::EventClear(pb::EventClear {}))
    }

    /// Sends the batch: one result per operation, in order. The call itself
    /// fails (nothing applied) on a refused atomic batch, a lost connection
    /// or a timeout.
    pub async fn run(self) -> Result<Vec<Result<pb::OpResult>>> {
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        self.conn.batch(self.ops, self.atomic).await
    }
}
