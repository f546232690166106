//! Atomic batches: several operations applied as one unit, or not at all.
//!
//! Isolation comes from the store-wide [`Gate`]: every ordinary application
//! attempt holds it shared for as long as it runs synchronously (one poll of
//! its future, never across a wait: a waiting call's later attempts take it
//! again), and a batch holds it exclusively from its first operation to the
//! logging of its record. No one sees a state between two of its operations.
//!
//! All-or-nothing comes from undo: before the first change to an object the
//! batch saves it; if an operation fails, every object touched is put back
//! (or removed again, if the batch created it) and the buffered log records
//! are dropped. Only operations whose effect can be put back that way are
//! taken: none that waits, changes to data objects (dict, list, value,
//! namespace, array), a queue's put, get and task done (without waiting)
//! and an event's set and clear; locks, semaphores and the like take part
//! by being opened, deleted or read. Saving copies the object, so a change
//! costs in proportion to the size of the object, except the commonest,
//! which are undone step by step instead (`Step`): a change to one key of
//! a dict (set, remove, setdefault, compare-and-swap, fetch-add) notes only
//! that key's place and value, an append to a list the list's length (a
//! batch of two sets into a dict of 1,000,000 entries took 156 ms, holding
//! every other call back, when it copied the dict). A queue or an event is only
//! ever undone step by step, in place: the calls blocked on it hold that
//! very object, and a copy put in its place would never wake them.
//!
//! With a data dir, the batch is one log record holding its operations, so
//! a crash never leaves half of it in the log.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use procshare_proto::{self as pb, op::Kind as Op, OpResult};
use prost::Message;

use super::journal::{Recorder, Sink};
use super::restore::save_one;
use super::val::Val;
use super::watch::{Held, Watched};
use super::{event, queue};
use super::{is_read_only, may_wait, Caller, Family, Object, Result, Store, StoreError, Stored};

/// Shared by ordinary attempts, exclusive for an atomic batch.
#[derive(Default)]
pub(crate) struct Gate(RwLock<()>);

impl Gate {
    /// Held shared while something must not see half a batch.
    pub fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read()
    }

    /// Runs `f`, holding the gate shared during each of its polls (not in
    /// between: a wait must not keep a batch out).
    pub fn around<F: Future>(&self, f: F) -> Around<'_, F> {
        Around { gate: self, f }
    }
}

pin_project_lite::pin_project! {
    /// [`Gate::around`]'s future: `f` itself plus a reference, where an
    /// `async fn` would hold `f` twice (its argument and its pinned copy)
    /// in every call blocked in a wait.
    pub(crate) struct Around<'a, F> {
        gate: &'a Gate,
        #[pin]
        f: F,
    }
}

impl<F: Future> Future for Around<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _shared = this.gate.0.read();
        this.f.poll(cx)
    }
}

/// Collects a batch's log records until it is known to succeed.
#[derive(Default)]
struct Buffer(Mutex<Vec<Vec<u8>>>);

impl Sink for Buffer {
    fn append(&self, body: &[u8]) -> u64 {
        let mut b = self.0.lock();
        b.push(body.to_vec());
        b.len() as u64
    }

    fn next_seq(&self) -> u64 {
        self.0.lock().len() as u64 + 1
    }
}

/// An object as it was before the batch touched it.
enum Before {
    Absent,
    Present(Box<Saved>),
}

/// What undoes a batch's changes to an object that was there before it.
struct Saved {
    object: Arc<Stored>,
    /// Its whole contents, saved before the first change that is not to a
    /// single dict key.
    contents: Option<pb::ObjectState>,
    /// The seq of its change feed.
    seq: u64,
    /// Changes small enough to undo one by one, made before `contents` was
    /// saved, in order.
    steps: Vec<Step>,
}

/// How to undo one change without a copy of the object.
#[derive(Debug, PartialEq)]
enum Step {
    /// A change to one dict key, which was at this place with this value
    /// (or absent): see `Dict::undo_key`.
    DictKey(Val, Option<(usize, Val)>),
    /// Items appended to a list that had this many.
    ListLen(usize),
    /// A put, get or task done on a queue.
    Queue(queue::Undo),
    /// A set or clear of an event.
    Event(event::Undo),
}

/// The step that will undo `op` on `object`, if it is one of the changes
/// undone without a copy: a change to one dict key (set, remove,
/// setdefault, compare-and-swap, fetch-add), an append to a list, a
/// queue's put, get or task done, an event's set or clear. `None`
/// for any other (the object is copied first), and `Some(None)` for one
/// that will fail and so change nothing.
fn step(object: &Object, op: &Op) -> Option<Option<Step>> {
    match (object, op) {
        (Object::Dict(d), _) => {
            let key = match op {
                Op::DictSet(o) => o.key.as_ref(),
                Op::DictRemove(o) => o.key.as_ref(),
                Op::DictSetDefault(o) => o.key.as_ref(),
                Op::DictCompareAndSwap(o) => o.key.as_ref(),
                Op::DictFetchAdd(o) => o.key.as_ref(),
                _ => return None,
            };
            // A missing or invalid key fails the operation.
            let key = key.and_then(|k| Val::from_wire(k.clone()).ok());
            Some(key.map(|key| {
                let was = d.key_state(&key);
                Step::DictKey(key, was)
            }))
        }
        (Object::List(l), Op::ListPush(_) | Op::ListExtend(_)) => {
            Some(Some(Step::ListLen(l.len())))
        }
        (Object::Queue(q), _) => q.undo_for(op).map(|undo| undo.map(Step::Queue)),
        (Object::Event(e), _) => e.undo_for(op).map(|undo| Some(Step::Event(undo))),
        _ => None,
    }
}

/// Why `op` cannot be in an atomic batch, if it cannot.
fn refused(op: &Op) -> Option<&'static str> {
    if may_wait(op) {
        return Some("an operation that may wait");
    }
    match op {
        Op::Snapshot(_) => Some("a snapshot"),
        Op::Sessions(_) => Some("a list of sessions"),
        _ if is_read_only(op) => None,
        // Not waiting (above), and undone in place (`Step::Queue`,
        // `Step::Event`).
        Op::QueuePut(_)
        | Op::QueueGet(_)
        | Op::QueueTaskDone(_)
        | Op::EventSet(_)
        | Op::EventClear(_) => None,
        _ => match Family::of(op) {
            Family::Manager
            | Family::Dict
            | Family::List
            | Family::Value
            | Family::Namespace
            | Family::Array => None,
            _ => Some("a change to a lock, semaphore, condition, barrier, pipe or pool"),
        },
    }
}

/// The room left for an atomic batch's answers.
struct AnswerRoom {
    left: usize,
    limit: usize,
    /// Counted for each answer besides its own bytes.
    envelope: usize,
}

impl AnswerRoom {
    /// Takes room for `r`, or fails (and so undoes) the batch.
    fn take(&mut self, r: OpResult) -> Result<OpResult> {
        let size = r.encoded_len().saturating_add(self.envelope);
        if size > self.left {
            return Err(StoreError::ResourceExhausted(format!(
                "the batch's answers come to more than {} bytes, the most this server sends in \
                 one reply (--max-message-bytes): nothing was applied; split the batch, or read \
                 in parts",
                self.limit
            )));
        }
        self.left -= size;
        Ok(r)
    }
}

/// The error of an operation that was not applied because `failed` (the
/// operation at `index`) failed: the same kind, saying so. Its message
/// is not repeated (the failing operation's own answer has it): a batch
/// of many operations would otherwise answer with it many times over, past
/// what one reply may hold.
fn not_applied(index: usize, failed: &StoreError) -> StoreError {
    let why = format!("not applied: operation {index} of the atomic batch failed");
    match failed {
        StoreError::NotFound(_) => StoreError::NotFound(why),
        StoreError::WrongKind { .. } => failed.clone(),
        StoreError::InvalidArgument(_) => StoreError::InvalidArgument(why),
        StoreError::OutOfRange(_) => StoreError::OutOfRange(why),
        StoreError::NotOwner(_) => StoreError::NotOwner(why),
        StoreError::Timeout(_) => StoreError::Timeout(why),
        StoreError::Empty(_) => StoreError::Empty(why),
        StoreError::Full(_) => StoreError::Full(why),
        StoreError::BrokenBarrier(_) => StoreError::BrokenBarrier(why),
        StoreError::Unimplemented(_) => StoreError::Unimplemented(why),
        StoreError::Unavailable(_) => StoreError::Unavailable(why),
        StoreError::SessionExpired(_) => StoreError::SessionExpired(why),
        StoreError::ResourceExhausted(_) => StoreError::ResourceExhausted(why),
        StoreError::AnswerLost(_) => StoreError::AnswerLost(why),
        StoreError::Internal(_) => StoreError::Internal(why),
    }
}

/// A `LogRecord` holding `bodies` (each an encoded `LogRecord`) as its
/// `batch` field, encoded without its seq.
fn batch_record(bodies: &[Vec<u8>]) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut out = Vec::with_capacity(bodies.iter().map(|b| b.len() + 6).sum());
    for b in bodies {
        encode_key(5, WireType::LengthDelimited, &mut out);
        encode_varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
    }
    out
}

impl Store {
    /// Applies `ops` in order as one unit. Returns each operation's outcome:
    /// all `Ok`, or, if one failed, nothing applied and every outcome an
    /// error (the failing one's own, "not applied" for the others). A batch
    /// holding an operation it cannot take is refused whole
    /// (`InvalidArgument`, nothing applied). So is one whose answers come
    /// to more than `max_answer_bytes`, counting `envelope` more for each
    /// (`ResourceExhausted`: an answer too large to send must not be of a
    /// batch that was applied).
    pub async fn apply_atomic(
        &self,
        ops: Vec<(Caller, pb::Op)>,
        max_answer_bytes: usize,
        envelope: usize,
    ) -> Result<Vec<Result<OpResult>>> {
        for (i, (_, op)) in ops.iter().enumerate() {
            let kind = op
                .kind
                .as_ref()
                .ok_or_else(|| StoreError::missing_field("op.kind"))?;
            if let Some(what) = refused(kind) {
                return Err(StoreError::InvalidArgument(format!(
                    "operation {i} of the atomic batch is {what}, which an atomic batch cannot \
                     take; nothing was applied"
                )));
            }
        }
        if let Some(durable) = &self.durable {
            durable.check_writable()?;
        }
        let room = AnswerRoom {
            left: max_answer_bytes,
            limit: max_answer_bytes,
            envelope,
        };
        let (outcomes, seq) = self.apply_atomic_now(ops, room);
        if let (Some(seq), Some(durable)) = (seq, &self.durable) {
            durable.wait_logged(seq).await?;
        }
        Ok(outcomes)
    }

    /// The batch proper, under the exclusive gate; returns the outcomes and
    /// the seq of its log record, if it wrote one.
    fn apply_atomic_now(
        &self,
        ops: Vec<(Caller, pb::Op)>,
        mut room: AnswerRoom,
    ) -> (Vec<Result<OpResult>>, Option<u64>) {
        let _exclusive = self.gate.0.write();
        // Watchers see the batch's changes once it stands, or never.
        let held = Held::start();
        let buffer = Buffer::default();
        let mut before: HashMap<String, Before> = HashMap::new();
        let mut results = Vec::with_capacity(ops.len());
        let total = ops.len();
        for (i, (caller, op)) in ops.into_iter().enumerate() {
            self.remember(&mut before, &op);
            let rec = match (&self.durable, &op.kind) {
                (Some(_), Some(kind)) => Recorder::for_op(&buffer, &caller, &op.name, kind),
                _ => Recorder::none(),
            };
            let outcome = {
                let f = std::pin::pin!(self.apply_with(&caller, op, &rec));
                match f.poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(r) => r,
                    // Refused above; kept as a guard: a future that is
                    // dropped unfinished took nothing.
                    Poll::Pending => Err(StoreError::InvalidArgument(
                        "an atomic batch cannot wait".into(),
                    )),
                }
            };
            match outcome.and_then(|r| room.take(r)) {
                Ok(r) => results.push(Ok(r)),
                Err(e) => {
                    held.discard();
                    self.undo(before);
                    let outcomes = (0..total)
                        .map(|j| {
                            Err(if j == i {
                                e.clone()
                            } else {
                                not_applied(i, &e)
                            })
                        })
                        .collect();
                    return (outcomes, None);
                }
            }
        }
        held.release();
        let bodies = std::mem::take(&mut *buffer.0.lock());
        let seq = match (&self.durable, bodies.as_slice()) {
            (None, _) | (_, []) => None,
            (Some(d), [one]) => Some(d.append(one)),
            (Some(d), many) => Some(d.append(&batch_record(many))),
        };
        (results, seq)
    }

    /// Notes what `op` is about to touch, as it is now, the first time.
    fn remember(&self, before: &mut HashMap<String, Before>, op: &pb::Op) {
        let Some(kind) = &op.kind else { return };
        let mut names = vec![op.name.as_str()];
        if let Op::Open(o) = kind {
            // A condition's open may create its lock.
            names.push(o.lock.as_str());
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            let current = self.objects.get(name).map(|e| e.value().clone());
            let entry = before
                .entry(name.to_owned())
                .or_insert_with(|| match &current {
                    None => Before::Absent,
                    Some(o) => Before::Present(Box::new(Saved {
                        object: o.clone(),
                        contents: None,
                        seq: o.feed().seq(),
                        steps: Vec::new(),
                    })),
                });
            // Contents are saved before the first change to the original
            // object (not to one the batch made in its place).
            let changes = !is_read_only(kind) && Family::of(kind) != Family::Manager;
            let (true, Before::Present(saved), Some(cur)) = (changes, entry, &current) else {
                continue;
            };
            if saved.contents.is_some()
                || !Arc::ptr_eq(&saved.object, cur)
                || !keeps_contents(&saved.object.object)
            {
                continue;
            }
            match step(&saved.object.object, kind) {
                Some(step) => saved.steps.extend(step),
                None => saved.contents = Some(save_one(name.to_owned(), &saved.object, &|| 0)),
            }
        }
    }

    /// Puts every touched object back as it was.
    fn undo(&self, before: HashMap<String, Before>) {
        for (name, was) in before {
            let Before::Present(saved) = was else {
                self.objects.remove(&name);
                continue;
            };
            let Saved {
                object: orig,
                contents,
                seq,
                steps,
            } = *saved;
            if orig.watchable() {
                // Its watchers saw nothing of the batch (held back): its feed
                // goes back to where they are.
                orig.locked(&mut |feed, _| feed.rewind(seq));
            }
            let orig = match contents {
                None => orig,
                Some(state) => match self.restore_one(state) {
                    Ok(stored) => match put_back(&orig.object, stored.object) {
                        // Same object, old contents: watchers stay attached.
                        None => orig,
                        Some(object) => {
                            let open = stored.open;
                            Arc::new(Stored { open, object })
                        }
                    },
                    Err(e) => {
                        // Cannot happen (the state was saved from a live
                        // object); the original object is the best left.
                        tracing::error!(name, error = %e, "atomic batch: cannot restore");
                        orig
                    }
                },
            };
            // The steps came before the contents were saved.
            for step in steps.into_iter().rev() {
                match (&orig.object, step) {
                    (Object::Dict(d), Step::DictKey(key, was)) => d.undo_key(&key, was),
                    (Object::List(l), Step::ListLen(len)) => l.truncate(len),
                    (Object::Queue(q), Step::Queue(undo)) => q.undo(undo),
                    (Object::Event(e), Step::Event(undo)) => e.undo(undo),
                    (_, step) => {
                        tracing::error!(name, ?step, "atomic batch: a step for another kind")
                    }
                }
            }
            self.objects.insert(name, orig);
        }
    }
}

/// Puts `saved`'s contents into `orig` in place where `orig` has a change
/// feed (so its watches go on); otherwise gives `saved` back, to replace it.
fn put_back(orig: &Object, saved: Object) -> Option<Object> {
    match (orig, saved) {
        (Object::Dict(o), Object::Dict(s)) => o.put_back(s),
        (Object::List(o), Object::List(s)) => o.put_back(s),
        (Object::Value(o), Object::Value(s)) => o.put_back(s),
        (Object::Queue(o), Object::Queue(s)) => o.put_back(s),
        (Object::Event(o), Object::Event(s)) => o.put_back(s),
        (_, saved) => return Some(saved),
    }
    None
}

/// Objects whose contents a batch may change (and so saves first).
fn keeps_contents(o: &Object) -> bool {
    matches!(
        o,
        Object::Dict(_)
            | Object::List(_)
            | Object::Value(_)
            | Object::Namespace(_)
            | Object::Array(_)
            | Object::Queue(_)
            | Object::Event(_)
    )
}

#[cfg(test)]
impl Store {
    /// `apply_atomic` with no bound on the answers.
    pub async fn apply_atomic_unbounded(
        &self,
        ops: Vec<(Caller, pb::Op)>,
    ) -> Result<Vec<Result<OpResult>>> {
        self.apply_atomic(ops, usize::MAX, 0).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{as_maybe, as_pair, as_value, as_values, open, s};
    use super::super::val::Val;
    use super::*;
    use procshare_proto::Kind;

    /// `kind` on `name`, by the test's caller.
    fn op(name: &str, kind: Op) -> (Caller, pb::Op) {
        (Caller::new("t", ""), super::super::testing::op(name, kind))
    }

    fn set(k: &str, v: i64) -> Op {
        Op::DictSet(pb::DictSet {
            key: Some(s(k).to_wire()),
            value: Some(Val::Int(v).to_wire()),
        })
    }

    fn get(k: &str) -> Op {
        Op::DictGet(pb::DictGet {
            key: Some(s(k).to_wire()),
        })
    }

    async fn value_of(store: &Store, name: &str, k: &str) -> Option<Val> {
        as_maybe(
            store
                .apply(&Caller::new("t", ""), op(name, get(k)).1)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn all_apply_in_order() {
        let store = Store::new();
        let out = store
            .apply_atomic_unbounded(vec![
                op("d", open(Kind::Dict)),
                op("d", set("a", 1)),
                op(
                    "d",
                    Op::DictFetchAdd(pb::DictFetchAdd {
                        key: Some(s("a").to_wire()),
                        delta: Some(Val::Int(2).to_wire()),
                    }),
                ),
            ])
            .await
            .unwrap();
        assert_eq!(out.len(), 3);
        let r = out.into_iter().nth(2).unwrap().unwrap();
        assert_eq!(as_pair(r), (Val::Int(1), Val::Int(3)));
        assert_eq!(value_of(&store, "d", "a").await, Some(Val::Int(3)));
    }

    #[tokio::test]
    async fn a_failure_in_the_middle_undoes_everything() {
        let store = Store::new();
        store
            .apply_atomic_unbounded(vec![op("d", open(Kind::Dict)), op("d", set("a", 1))])
            .await
            .unwrap();
        store
            .apply_atomic_unbounded(vec![op("q", open(Kind::Queue))])
            .await
            .unwrap();
        let out = store
            .apply_atomic_unbounded(vec![
                op("d", set("a", 2)),
                op("d", Op::DictClear(pb::DictClear {})),
                op("new", open(Kind::List)),
                op("q", Op::Delete(pb::Delete {})),
                op("d", set("b", 3)),
                // Fails: there is no list called "missing".
                op("missing", Op::ListLen(pb::ListLen {})),
                op("d", set("c", 4)),
            ])
            .await
            .unwrap();
        assert!(out.iter().all(Result::is_err));
        assert!(matches!(out[5], Err(StoreError::NotFound(ref m)) if !m.contains("not applied")));
        assert!(matches!(out[0], Err(StoreError::NotFound(ref m)) if m.contains("operation 5")));
        let Err(own) = &out[5] else { unreachable!() };
        for (i, other) in out.iter().enumerate().filter(|(i, _)| *i != 5) {
            let Err(e) = other else { unreachable!() };
            let m = e.to_string();
            assert!(m.len() < 100 && !m.contains(&own.to_string()), "{i}: {m}");
        }
        assert_eq!(value_of(&store, "d", "a").await, Some(Val::Int(1)));
        assert_eq!(value_of(&store, "d", "b").await, None);
        assert_eq!(store.len(), 2, "new list removed, deleted queue back");
        assert!(store.get("q").is_ok());
    }

    /// The dict's entries, in order.
    async fn items_of(store: &Store, name: &str) -> Vec<(Val, Val)> {
        let r = store
            .apply(
                &Caller::new("t", ""),
                op(name, Op::DictItems(pb::DictItems {})).1,
            )
            .await
            .unwrap();
        match r.kind {
            Some(pb::op_result::Kind::Pairs(p)) => p
                .entries
                .into_iter()
                .map(|p| Val::pair_from_wire(p).unwrap())
                .collect(),
            other => panic!("expected pairs, got {other:?}"),
        }
    }

    /// A change to one key, picked by `r`, among keys k0..k7.
    fn keyed(r: u64) -> Op {
        let key = Some(s(&format!("k{}", (r >> 8) % 8)).to_wire());
        let v = Some(Val::Int((r >> 16) as i64 % 100).to_wire());
        match r % 5 {
            0 => Op::DictSet(pb::DictSet { key, value: v }),
            1 => Op::DictRemove(pb::DictRemove { key }),
            2 => Op::DictSetDefault(pb::DictSetDefault { key, default: v }),
            3 => Op::DictCompareAndSwap(pb::DictCompareAndSwap {
                key,
                expected: Some(pb::Maybe { value: None }),
                new: v,
            }),
            _ => Op::DictFetchAdd(pb::DictFetchAdd { key, delta: v }),
        }
    }

    #[tokio::test]
    async fn undone_key_changes_leave_the_dict_exactly_as_it_was_order_included() {
        let mut r: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            r >> 11
        };
        for round in 0..300 {
            let store = Store::new();
            let mut setup = vec![op("d", open(Kind::Dict))];
            for _ in 0..next() % 8 {
                setup.push(op("d", keyed(next())));
            }
            store.apply_atomic_unbounded(setup).await.unwrap();
            let was = items_of(&store, "d").await;
            let mut batch: Vec<_> = (0..1 + next() % 12)
                .map(|_| op("d", keyed(next())))
                .collect();
            if round % 3 == 0 {
                // A change that is not to one key: the contents are saved
                // there, between key changes.
                let at = (next() as usize) % batch.len();
                batch.insert(at, op("d", Op::DictClear(pb::DictClear {})));
            }
            batch.push(op("missing", Op::ListLen(pb::ListLen {})));
            let out = store.apply_atomic_unbounded(batch).await.unwrap();
            assert!(out.iter().all(Result::is_err), "round {round}");
            assert_eq!(items_of(&store, "d").await, was, "round {round}");
        }
    }

    /// What the batch noted of `name`, which was there before it.
    fn noted<'a>(before: &'a HashMap<String, Before>, name: &str) -> &'a Saved {
        match before.get(name) {
            Some(Before::Present(saved)) => saved,
            _ => panic!("{name:?} was there before the batch"),
        }
    }

    #[tokio::test]
    async fn a_change_to_one_key_notes_the_key_not_the_dict() {
        let store = Store::new();
        store
            .apply_atomic_unbounded(vec![op("d", open(Kind::Dict)), op("d", set("a", 1))])
            .await
            .unwrap();
        let mut before = HashMap::new();
        store.remember(&mut before, &op("d", set("a", 2)).1);
        store.remember(&mut before, &op("d", set("b", 2)).1);
        let saved = noted(&before, "d");
        assert!(saved.contents.is_none(), "no copy of the dict");
        assert_eq!(
            saved.steps,
            vec![
                Step::DictKey(s("a"), Some((0, Val::Int(1)))),
                Step::DictKey(s("b"), None)
            ]
        );
        store.remember(&mut before, &op("d", Op::DictClear(pb::DictClear {})).1);
        let saved = noted(&before, "d");
        assert!(saved.contents.is_some(), "a clear saves the contents");
    }

    #[tokio::test]
    async fn undone_appends_leave_the_list_as_it_was_without_a_copy() {
        let store = Store::new();
        let push = |v: i64| {
            op(
                "l",
                Op::ListPush(pb::ListPush {
                    value: Some(Val::Int(v).to_wire()),
                }),
            )
        };
        let extend = |vs: &[i64]| {
            op(
                "l",
                Op::ListExtend(pb::ListExtend {
                    values: vs.iter().map(|v| Val::Int(*v).to_wire()).collect(),
                }),
            )
        };
        let snapshot = || op("l", Op::ListSnapshot(pb::ListSnapshot {}));
        store
            .apply_atomic_unbounded(vec![op("l", open(Kind::List)), push(1), push(2)])
            .await
            .unwrap();
        let mut before = HashMap::new();
        store.remember(&mut before, &push(3).1);
        store.remember(&mut before, &extend(&[4, 5]).1);
        let saved = noted(&before, "l");
        assert!(saved.contents.is_none(), "no copy of the list");
        assert_eq!(saved.steps, vec![Step::ListLen(2), Step::ListLen(2)]);
        let set = op(
            "l",
            Op::ListSet(pb::ListSet {
                index: 0,
                value: Some(Val::Int(9).to_wire()),
            }),
        );
        let missing = op("missing", Op::ListLen(pb::ListLen {}));
        for batch in [
            vec![push(3), extend(&[4, 5]), push(6), missing.clone()],
            vec![push(3), set.clone(), extend(&[4]), missing.clone()],
        ] {
            let out = store.apply_atomic_unbounded(batch).await.unwrap();
            assert!(out.iter().all(Result::is_err));
            let items = store
                .apply(&Caller::new("t", ""), snapshot().1)
                .await
                .unwrap();
            assert_eq!(as_values(items), vec![Val::Int(1), Val::Int(2)]);
        }
    }

    #[tokio::test]
    async fn waits_and_lock_changes_are_refused_whole() {
        let store = Store::new();
        store
            .apply_atomic_unbounded(vec![op("q", open(Kind::Queue)), op("l", open(Kind::Lock))])
            .await
            .unwrap();
        for (name, bad) in [
            (
                "q",
                Op::QueueGet(pb::QueueGet {
                    blocking: true,
                    timeout_secs: None,
                }),
            ),
            (
                "l",
                Op::LockAcquire(pb::LockAcquire {
                    blocking: false,
                    timeout_secs: None,
                }),
            ),
        ] {
            let err = store
                .apply_atomic_unbounded(vec![op("d", open(Kind::Dict)), op(name, bad)])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
            assert!(store.get("d").is_err(), "nothing applied");
        }
    }

    fn qput(v: i64) -> (Caller, pb::Op) {
        op(
            "q",
            Op::QueuePut(pb::QueuePut {
                value: Some(Val::Int(v).to_wire()),
                blocking: false,
                timeout_secs: None,
            }),
        )
    }

    fn qget() -> (Caller, pb::Op) {
        op(
            "q",
            Op::QueueGet(pb::QueueGet {
                blocking: false,
                timeout_secs: None,
            }),
        )
    }

    fn qdone() -> (Caller, pb::Op) {
        op("q", Op::QueueTaskDone(pb::QueueTaskDone {}))
    }

    /// The items of queue "q" and its unfinished count.
    fn queue_state(store: &Store) -> (Vec<Val>, u64) {
        let q = store.get("q").unwrap();
        let Object::Queue(q) = &q.object else {
            panic!("q is a queue")
        };
        let (items, unfinished, _) = q.save(|| 0);
        (items, unfinished)
    }

    #[tokio::test]
    async fn undone_queue_changes_leave_the_same_queue_as_it_was() {
        let store = Store::new();
        store
            .apply_atomic_unbounded(vec![
                op("q", open(Kind::JoinableQueue)),
                qput(1),
                qput(2),
                qput(3),
                qget(),
            ])
            .await
            .unwrap();
        let was = queue_state(&store);
        assert_eq!(was, (vec![Val::Int(2), Val::Int(3)], 3));
        let original = store.get("q").unwrap();
        let missing = op("missing", Op::ListLen(pb::ListLen {}));
        for batch in [
            vec![
                qget(),
                qput(4),
                qdone(),
                qget(),
                qput(5),
                qdone(),
                missing.clone(),
            ],
            vec![
                qput(4),
                qget(),
                qget(),
                qget(),
                qdone(),
                qdone(),
                missing.clone(),
            ],
            // Fails on its own: the queue is empty by the fourth get.
            vec![qget(), qget(), qdone(), qget()],
        ] {
            let out = store.apply_atomic_unbounded(batch).await.unwrap();
            assert!(out.iter().all(Result::is_err), "{out:?}");
            assert_eq!(queue_state(&store), was);
            assert!(
                Arc::ptr_eq(&original, &store.get("q").unwrap()),
                "undone in place, not replaced by a copy"
            );
        }
        let mut before = HashMap::new();
        store.remember(&mut before, &qget().1);
        store.remember(&mut before, &qput(9).1);
        store.remember(&mut before, &qdone().1);
        let saved = noted(&before, "q");
        assert!(saved.contents.is_none(), "no copy of the queue");
        assert_eq!(
            saved.steps,
            vec![
                Step::Queue(queue::Undo::Get(Val::Int(2))),
                Step::Queue(queue::Undo::Put {
                    len: 2,
                    unfinished: 3
                }),
                Step::Queue(queue::Undo::TaskDone { unfinished: 3 }),
            ]
        );

        // Without the failure, the same changes stand.
        let out = store
            .apply_atomic_unbounded(vec![qget(), qput(4), qdone()])
            .await
            .unwrap();
        assert_eq!(as_value(out[0].clone().unwrap()), Val::Int(2));
        assert_eq!(queue_state(&store), (vec![Val::Int(3), Val::Int(4)], 3));
    }

    /// Whether one call is blocked on `name` now (its `Describe` figure).
    fn one_waiting(store: &Store, name: &str) -> bool {
        let figures = match &store.get(name).unwrap().object {
            Object::Queue(q) => q.describe(),
            Object::Event(e) => e.describe(),
            _ => panic!("{name} is a queue or an event"),
        };
        figures.contains(&("waiters", Val::Int(1)))
    }

    #[tokio::test]
    async fn a_get_blocked_on_a_queue_outlives_an_undone_put_and_takes_the_next() {
        let store = Arc::new(Store::new());
        store
            .apply_atomic_unbounded(vec![op("q", open(Kind::Queue))])
            .await
            .unwrap();
        let getter = tokio::spawn({
            let store = store.clone();
            async move {
                let get = Op::QueueGet(pb::QueueGet {
                    blocking: true,
                    timeout_secs: Some(30.0),
                });
                store.apply(&Caller::new("g", ""), op("q", get).1).await
            }
        });
        while !one_waiting(&store, "q") {
            tokio::task::yield_now().await;
        }
        let missing = op("missing", Op::ListLen(pb::ListLen {}));
        let out = store
            .apply_atomic_unbounded(vec![qput(1), missing])
            .await
            .unwrap();
        assert!(out.iter().all(Result::is_err));
        // The getter was woken by the put, found nothing, and waits again
        // on the same queue: an ordinary put reaches it.
        store.apply(&Caller::new("t", ""), qput(2).1).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), getter)
            .await
            .expect("the blocked get was answered")
            .unwrap()
            .unwrap();
        assert_eq!(as_value(got), Val::Int(2));
        assert_eq!(queue_state(&store), (vec![], 1));
    }

    #[tokio::test]
    async fn a_wait_on_an_event_outlives_an_undone_set_and_ends_with_the_next() {
        let store = Arc::new(Store::new());
        store
            .apply_atomic_unbounded(vec![op("e", open(Kind::Event))])
            .await
            .unwrap();
        let original = store.get("e").unwrap();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move {
                let wait = Op::EventWait(pb::EventWait {
                    timeout_secs: Some(30.0),
                });
                store.apply(&Caller::new("w", ""), op("e", wait).1).await
            }
        });
        while !one_waiting(&store, "e") {
            tokio::task::yield_now().await;
        }
        let raise = || op("e", Op::EventSet(pb::EventSet {}));
        let clear = || op("e", Op::EventClear(pb::EventClear {}));
        let missing = op("missing", Op::ListLen(pb::ListLen {}));
        let out = store
            .apply_atomic_unbounded(vec![raise(), clear(), raise(), missing])
            .await
            .unwrap();
        assert!(out.iter().all(Result::is_err));
        assert!(Arc::ptr_eq(&original, &store.get("e").unwrap()));
        let is_set = || op("e", Op::EventIsSet(pb::EventIsSet {}));
        let flag = store
            .apply(&Caller::new("t", ""), is_set().1)
            .await
            .unwrap();
        assert_eq!(flag, super::super::reply::flag(false));
        // The waiter was woken by the set (this test's runtime has one
        // thread: yielding lets it run), found it undone, and waits again:
        // it is still there, and the next set ends its wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(one_waiting(&store, "e"));
        assert!(!waiter.is_finished(), "an undone set ended a wait");
        let out = store
            .apply_atomic_unbounded(vec![
                op("d", open(Kind::Dict)),
                op("d", set("k", 1)),
                raise(),
            ])
            .await
            .unwrap();
        assert!(out.iter().all(Result::is_ok));
        let woke = tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
            .await
            .expect("the wait ended")
            .unwrap()
            .unwrap();
        assert_eq!(woke, super::super::reply::flag(true));
    }

    /// The next event of `w`, if one is ready now.
    fn ready(w: &mut super::super::watch::Watcher) -> Option<super::super::watch::Event> {
        let f = std::pin::pin!(w.next());
        match f.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(e) => e,
            Poll::Pending => None,
        }
    }

    fn key_set(e: Option<super::super::watch::Event>) -> (u64, Val, Val) {
        use super::super::watch::{Change, Event};
        match e {
            Some(Event::Change(p)) => match &p.change {
                Change::KeySet { key, value } => (p.seq, key.clone(), value.clone()),
                other => panic!("not a key set: {other:?}"),
            },
            other => panic!("not a change: {other:?}"),
        }
    }

    #[tokio::test]
    async fn watchers_see_a_whole_batch_or_nothing_of_it() {
        let store = Store::new();
        store
            .apply_atomic_unbounded(vec![op("d", open(Kind::Dict)), op("d", set("a", 1))])
            .await
            .unwrap();
        let mut w = store.watch("d", false).unwrap();
        assert!(matches!(
            ready(&mut w),
            Some(super::super::watch::Event::Started { seq: 1 })
        ));
        // Undone: the watcher sees none of it, and stays attached.
        let out = store
            .apply_atomic_unbounded(vec![
                op("d", set("a", 2)),
                op("d", Op::Delete(pb::Delete {})),
                op("missing", Op::ListLen(pb::ListLen {})),
            ])
            .await
            .unwrap();
        assert!(out.iter().all(Result::is_err));
        assert!(ready(&mut w).is_none(), "an undone batch published nothing");
        // Applied: all of it, in order, numbered on from before the undo.
        store
            .apply_atomic_unbounded(vec![op("d", set("b", 2)), op("d", set("c", 3))])
            .await
            .unwrap()
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .unwrap();
        assert_eq!(key_set(ready(&mut w)), (2, s("b"), Val::Int(2)));
        assert_eq!(key_set(ready(&mut w)), (3, s("c"), Val::Int(3)));
        // An ordinary change after it reaches the same watcher.
        store
            .apply(&Caller::new("t", ""), op("d", set("e", 5)).1)
            .await
            .unwrap();
        assert_eq!(key_set(ready(&mut w)), (4, s("e"), Val::Int(5)));
        assert_eq!(value_of(&store, "d", "a").await, Some(Val::Int(1)));
    }
}
