//! Watching an object: a per-object change feed.
//!
//! Every watchable object (dict, list, value, queue, event) owns a [`Feed`].
//! The object calls [`Feed::publish`] while it is still locked, at the very
//! place where it applies a change (beside the write-ahead log's
//! `Recorder::commit`, for the same reason: the lock orders concurrent
//! writers, so the feed's `seq` follows the order the changes were applied
//! in). Deriving events after the fact from the op and its result would run
//! after the lock is gone, where two writers can overtake each other.
//!
//! Nobody watching costs one atomic add (the seq) and one atomic load (the
//! watcher count) per change; the event itself is built only when someone
//! watches. Watchers share a bounded tokio broadcast channel, so a slow
//! watcher never holds a writer up: it falls behind, is told so
//! ([`Event::Lagged`]), and is brought back in step with a snapshot read
//! under the object's lock, which later changes apply on top of.
//!
//! Falling behind is bounded in bytes as well as in count: the channel
//! keeps a change until every watcher has seen it, so one watcher that
//! stopped reading (its client is stalled, and the watch's forwarding task
//! waits for room to send) would hold the last [`CAPACITY`] changes of the
//! object, 1 GiB of 1 MiB values. Past [`BYTES`] held, the feed moves a
//! cut-off; a watcher behind it lets go of its receiver at once (the
//! forwarding task waits for that too: [`Watcher::fell_behind`]) and, when
//! next read, resynchronises as if it had lagged.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::val::Val;

/// Changes a watcher may fall behind by before it is resynchronised.
pub const CAPACITY: usize = 1024;

/// Bytes of changes (about: see [`Val::bytes`]) an object's feed holds for
/// the watchers behind it before the furthest behind are resynchronised.
pub const BYTES: usize = 16 << 20;

/// One change to an object, as applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// dict: `key` now holds `value`.
    KeySet { key: Val, value: Val },
    /// dict: `key`, which held `value`, is gone.
    KeyRemoved { key: Val, value: Val },
    /// dict: `update`, its entries in order.
    Updated(Vec<(Val, Val)>),
    /// dict, list: emptied.
    Cleared,
    /// list: appended; queue: put.
    Pushed(Val),
    /// list: extended.
    Extended(Vec<Val>),
    /// list: the item at `index` removed; queue: got (index 0).
    Popped { index: usize, value: Val },
    /// list: `list[index] = value`.
    ItemSet { index: usize, value: Val },
    /// list: `value` inserted, now at `index`.
    Inserted { index: usize, value: Val },
    /// list: reversed in place.
    Reversed,
    /// value: the new value.
    ValueSet(Val),
    /// event: the flag after a set or a clear.
    Flag(bool),
    /// joinable queue: a task marked done; the unfinished count after it.
    TaskDone { unfinished: u64 },
    /// The object was deleted: the last event of every watch on it.
    Deleted,
}

/// The whole state of a watchable object.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshot {
    Dict(Vec<(Val, Val)>),
    List(Vec<Val>),
    Value(Val),
    Queue { items: Vec<Val>, unfinished: u64 },
    Event(bool),
}

impl Change {
    /// About how many bytes the change holds.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Published>()
            + match self {
                Change::KeySet { key, value } | Change::KeyRemoved { key, value } => {
                    key.bytes() + value.bytes()
                }
                Change::Updated(entries) => {
                    entries.iter().map(|(k, v)| k.bytes() + v.bytes()).sum()
                }
                Change::Pushed(v)
                | Change::ValueSet(v)
                | Change::Popped { value: v, .. }
                | Change::ItemSet { value: v, .. }
                | Change::Inserted { value: v, .. } => v.bytes(),
                Change::Extended(items) => items.iter().map(Val::bytes).sum(),
                Change::Cleared
                | Change::Reversed
                | Change::Flag(_)
                | Change::TaskDone { .. }
                | Change::Deleted => 0,
            }
    }
}

/// A change and its place in the object's history.
#[derive(Debug, PartialEq)]
pub struct Published {
    pub seq: u64,
    pub change: Change,
}

/// What a watcher receives. Every event carries the object's seq: for a
/// change, the change's own; otherwise the seq of the state it describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The watch begins after change `seq`.
    Started {
        seq: u64,
    },
    /// The object's state after change `seq`.
    Snapshot {
        seq: u64,
        state: Snapshot,
    },
    /// `missed` changes up to `seq` were not delivered; a snapshot follows.
    Lagged {
        seq: u64,
        missed: u64,
    },
    Change(Arc<Published>),
}

impl Event {
    pub fn seq(&self) -> u64 {
        match self {
            Event::Started { seq } | Event::Snapshot { seq, .. } | Event::Lagged { seq, .. } => {
                *seq
            }
            Event::Change(p) => p.seq,
        }
    }
}

/// An object's change feed.
#[derive(Default)]
pub struct Feed {
    /// Changes applied so far. Only moves with the object locked.
    seq: AtomicU64,
    /// Live watches. Only grows with the object locked, so a publisher that
    /// reads 0 under the lock cannot miss a watcher.
    watchers: AtomicUsize,
    /// Made by the first watch, kept for the object's life.
    tx: OnceLock<broadcast::Sender<Arc<Published>>>,
    /// Deleted: no new watch may start.
    closed: AtomicBool,
    /// The sizes of the changes the channel still holds, oldest first.
    held: parking_lot::Mutex<HeldBytes>,
    /// A watcher that has not seen every change before this seq must let
    /// go of its receiver (see the module's doc).
    cutoff: AtomicU64,
    /// Woken when `cutoff` moves.
    cut: Notify,
}

/// The changes a feed's channel holds: (seq, bytes), oldest first, and
/// their sum. An estimate: the channel says how many it holds, and those
/// are the newest.
#[derive(Default)]
struct HeldBytes {
    sizes: VecDeque<(u64, usize)>,
    bytes: usize,
}

impl HeldBytes {
    /// Counts change `seq` of `bytes` in a channel that now holds `queued`
    /// changes; returns a new cut-off if the changes held are over
    /// [`BYTES`].
    fn count(&mut self, seq: u64, bytes: usize, queued: usize) -> Option<u64> {
        self.sizes.push_back((seq, bytes));
        self.bytes += bytes;
        while self.sizes.len() > queued.max(1) {
            self.drop_oldest();
        }
        if self.bytes <= BYTES {
            return None;
        }
        while self.bytes > BYTES && self.sizes.len() > 1 {
            self.drop_oldest();
        }
        self.sizes.front().map(|&(seq, _)| seq)
    }

    fn drop_oldest(&mut self) {
        if let Some((_, b)) = self.sizes.pop_front() {
            self.bytes -= b;
        }
    }
}

impl Feed {
    /// Counts one change and hands it to the watchers, if any. Call it with
    /// the object locked, where the change is applied; `change` is only
    /// called when someone watches.
    #[inline]
    pub fn publish(&self, change: impl FnOnce() -> Change) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(tx) = self.tx.get() {
            let published = Arc::new(Published {
                seq,
                change: change(),
            });
            let bytes = published.change.bytes();
            // Inside an atomic batch: held back until it is known to stand.
            let unheld = HELD.with(|h| match h.borrow_mut().as_mut() {
                Some(held) => {
                    held.push((tx.clone(), published));
                    None
                }
                None => Some(published),
            });
            if let Some(published) = unheld {
                // No receiver left (a watch ending right now): nothing to do.
                let _ = tx.send(published);
            }
            // (A batch's held-back changes are counted now, sent later.)
            if let Some(cutoff) = self.held.lock().count(seq, bytes, tx.len()) {
                self.cutoff.store(cutoff, Ordering::Relaxed);
                self.cut.notify_waiters();
            }
        }
    }

    /// About how many bytes of changes the channel holds for watchers.
    pub fn held_bytes(&self) -> usize {
        self.held.lock().bytes
    }

    /// Puts the feed back as it was at `seq`, before an atomic batch whose
    /// changes were held back and then dropped; a delete in that batch is
    /// undone too. Call it with the object locked.
    pub(crate) fn rewind(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
        self.closed.store(false, Ordering::Relaxed);
    }

    /// Marks the object deleted and tells its watchers. Call it with the
    /// object locked.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.publish(|| Change::Deleted);
    }

    /// The seq of the last change. Read it with the object locked.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// A receiver of every change after now. Call it with the object
    /// locked; `None` once the object is deleted.
    fn receiver(&self) -> Option<broadcast::Receiver<Arc<Published>>> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let tx = self.tx.get_or_init(|| broadcast::channel(CAPACITY).0);
        Some(tx.subscribe())
    }

    #[cfg(test)]
    pub(crate) fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}

type HeldEvent = (broadcast::Sender<Arc<Published>>, Arc<Published>);

thread_local! {
    /// Changes held back on this thread while an atomic batch runs.
    static HELD: RefCell<Option<Vec<HeldEvent>>> = const { RefCell::new(None) };
}

/// Holds back the changes published on this thread until [`Held::release`]
/// (the batch succeeded: watchers get them all, in order) or
/// [`Held::discard`] (it was undone: watchers never see them). An atomic
/// batch runs synchronously on one thread under the store's exclusive gate,
/// so no other change can come between.
pub(crate) struct Held(());

impl Held {
    pub fn start() -> Held {
        HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
        Held(())
    }

    pub fn release(self) {
        for (tx, published) in Self::take() {
            let _ = tx.send(published);
        }
    }

    pub fn discard(self) {
        drop(Self::take());
    }

    fn take() -> Vec<HeldEvent> {
        HELD.with(|h| h.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Released or discarded already, or unwinding: stop holding.
        HELD.with(|h| *h.borrow_mut() = None);
    }
}

/// An object that can be watched: its feed, and a way to read its state and
/// touch its feed in one locked step.
pub trait Watched: Send + Sync {
    fn feed(&self) -> &Feed;

    /// Runs `f` once, with the object locked, on its feed and a function
    /// that reads its whole state.
    fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot));
}

/// One watch of one object: its events, in the order the changes were
/// applied, with no gap in seq except across a `Lagged` + `Snapshot` pair.
pub struct Watcher {
    target: Arc<dyn Watched>,
    /// `None` after letting go (fell behind the feed's cut-off).
    rx: Option<broadcast::Receiver<Arc<Published>>>,
    /// The seq of the last event handed out.
    last: u64,
    pending: VecDeque<Event>,
    done: bool,
}

impl Watcher {
    /// Starts watching `target` from now: the first event is `Started`, or
    /// with `snapshot`, a `Snapshot` of the current state. A deleted object
    /// is NOT_FOUND.
    pub fn start(target: Arc<dyn Watched>, name: &str, snapshot: bool) -> Result<Watcher> {
        let mut started = None;
        target.locked(&mut |feed, state| {
            if let Some(rx) = feed.receiver() {
                feed.watchers.fetch_add(1, Ordering::Relaxed);
                let seq = feed.seq();
                let first = if snapshot {
                    Event::Snapshot {
                        seq,
                        state: state(),
                    }
                } else {
                    Event::Started { seq }
                };
                started = Some((rx, seq, first));
            }
        });
        let (rx, last, first) =
            started.ok_or_else(|| StoreError::NotFound(format!("no object named {name:?}")))?;
        Ok(Watcher {
            target,
            rx: Some(rx),
            last,
            pending: VecDeque::from([first]),
            done: false,
        })
    }

    /// The next event; `None` after `Deleted`. Cancel-safe: an event is
    /// either returned or still to come.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        if self.done {
            return None;
        }
        if self.behind() {
            self.let_go();
        }
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return Some(self.resync());
            };
            match rx.recv().await {
                Ok(p) if p.seq <= self.last => continue,
                Ok(p) => {
                    self.last = p.seq;
                    self.done = p.change == Change::Deleted;
                    return Some(Event::Change(p));
                }
                Err(RecvError::Lagged(_)) => return Some(self.resync()),
                // The sender lives as long as the object, which this watch
                // keeps alive: not expected, but an end all the same.
                Err(RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    /// Whether changes this watcher has not seen are past the feed's
    /// cut-off.
    fn behind(&self) -> bool {
        self.rx.is_some()
            && self.last.saturating_add(1) < self.target.feed().cutoff.load(Ordering::Relaxed)
    }

    /// Completes when this watcher falls behind the feed's cut-off: its
    /// receiver holds more than the feed allows, and must be let go of
    /// ([`Watcher::let_go`]) even if nobody is reading the watch now.
    /// Never completes once let go of.
    pub async fn fell_behind(&self) {
        let feed = self.target.feed();
        loop {
            let cut = feed.cut.notified();
            tokio::pin!(cut);
            cut.as_mut().enable();
            if self.behind() {
                return;
            }
            cut.await;
        }
    }

    /// Drops the receiver and what it holds; the next read resynchronises
    /// (`Lagged`, then a snapshot).
    pub fn let_go(&mut self) {
        self.rx = None;
    }

    /// After falling behind: a fresh receiver and the state it starts from,
    /// read in one locked step. Returns `Lagged`; the snapshot (or the
    /// deletion, if that is what was missed) is queued behind it.
    fn resync(&mut self) -> Event {
        let mut got = None;
        self.target.locked(&mut |feed, state| {
            let seq = feed.seq();
            got = Some(match feed.receiver() {
                Some(rx) => (Some(rx), seq, Some(state())),
                None => (None, seq, None),
            });
        });
        let Some((rx, seq, state)) = got else {
            self.done = true;
            return Event::Lagged {
                seq: self.last,
                missed: 0,
            };
        };
        let missed = seq.saturating_sub(self.last);
        match (rx, state) {
            (Some(rx), Some(state)) => {
                self.rx = Some(rx);
                self.pending.push_back(Event::Snapshot { seq, state });
            }
            _ => {
                self.done = true;
                self.pending.push_back(Event::Change(Arc::new(Published {
                    seq,
                    change: Change::Deleted,
                })));
            }
        }
        self.last = seq;
        Event::Lagged { seq, missed }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.target.feed().watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

    /// A list-like object with the locking discipline of the real ones.
    #[derive(Default)]
    struct Items {
        items: Mutex<Vec<Val>>,
        feed: Feed,
    }

    impl Items {
        fn push(&self, v: i64) {
            self.push_val(Val::Int(v));
        }

        fn push_val(&self, v: Val) {
            let mut items = self.items.lock();
            self.feed.publish(|| Change::Pushed(v.clone()));
            items.push(v);
        }

        fn delete(&self) {
            let _items = self.items.lock();
            self.feed.close();
        }
    }

    impl Watched for Items {
        fn feed(&self) -> &Feed {
            &self.feed
        }

        fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
            let items = self.items.lock();
            f(&self.feed, &|| Snapshot::List(items.clone()))
        }
    }

    fn pushed(e: Option<Event>) -> (u64, i64) {
        match e {
            Some(Event::Change(p)) => match &p.change {
                Change::Pushed(Val::Int(v)) => (p.seq, *v),
                other => panic!("expected a push, got {other:?}"),
            },
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_watch_sees_changes_from_now_in_order() {
        let obj = Arc::new(Items::default());
        obj.push(-1);
        let mut w = Watcher::start(obj.clone(), "l", false).unwrap();
        assert_eq!(w.next().await, Some(Event::Started { seq: 1 }));
        for i in 0..10 {
            obj.push(i);
        }
        for i in 0..10 {
            assert_eq!(pushed(w.next().await), (i as u64 + 2, i));
        }
    }

    #[tokio::test]
    async fn a_snapshot_start_holds_the_state_the_changes_apply_to() {
        let obj = Arc::new(Items::default());
        obj.push(1);
        obj.push(2);
        let mut w = Watcher::start(obj.clone(), "l", true).unwrap();
        obj.push(3);
        assert_eq!(
            w.next().await,
            Some(Event::Snapshot {
                seq: 2,
                state: Snapshot::List(vec![Val::Int(1), Val::Int(2)])
            })
        );
        assert_eq!(pushed(w.next().await), (3, 3));
    }

    #[tokio::test]
    async fn nobody_watching_builds_no_event_and_counts_watchers() {
        let obj = Arc::new(Items::default());
        obj.feed
            .publish(|| unreachable!("no watcher: the event is never built"));
        assert_eq!(obj.feed.seq(), 1);
        let w = Watcher::start(obj.clone(), "l", false).unwrap();
        let w2 = Watcher::start(obj.clone(), "l", false).unwrap();
        assert_eq!(obj.feed.watchers(), 2);
        drop(w);
        drop(w2);
        assert_eq!(obj.feed.watchers(), 0);
        obj.feed.publish(|| unreachable!("the watchers left"));
    }

    #[tokio::test]
    async fn a_slow_watcher_lags_then_resyncs_from_a_snapshot() {
        let obj = Arc::new(Items::default());
        let mut w = Watcher::start(obj.clone(), "l", false).unwrap();
        assert_eq!(w.next().await, Some(Event::Started { seq: 0 }));
        let n = CAPACITY as i64 * 3;
        // The writer is never held up by the watcher that reads nothing.
        for i in 0..n {
            obj.push(i);
        }
        assert_eq!(
            w.next().await,
            Some(Event::Lagged {
                seq: n as u64,
                missed: n as u64
            })
        );
        match w.next().await {
            Some(Event::Snapshot {
                seq,
                state: Snapshot::List(items),
            }) => {
                assert_eq!(seq, n as u64);
                assert_eq!(items, (0..n).map(Val::Int).collect::<Vec<_>>());
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        obj.push(n);
        assert_eq!(pushed(w.next().await), (n as u64 + 1, n));
    }

    #[tokio::test]
    async fn a_watcher_behind_by_too_many_bytes_lets_go_and_resyncs() {
        let obj = Arc::new(Items::default());
        let mut slow = Watcher::start(obj.clone(), "l", false).unwrap();
        let mut quick = Watcher::start(obj.clone(), "l", false).unwrap();
        assert_eq!(slow.next().await, Some(Event::Started { seq: 0 }));
        assert_eq!(quick.next().await, Some(Event::Started { seq: 0 }));
        let big = Val::Str("v".repeat(1 << 20));
        let n = 40u64; // 40 MiB, well under CAPACITY changes
        for _ in 0..n {
            obj.push_val(big.clone());
            assert!(matches!(quick.next().await, Some(Event::Change(_))));
        }
        assert!(obj.feed.held_bytes() <= BYTES, "{}", obj.feed.held_bytes());
        // The slow one is told, though nobody reads it...
        tokio::time::timeout(Duration::from_secs(10), slow.fell_behind())
            .await
            .expect("the slow watcher is behind the cut-off");
        slow.let_go();
        // ...and once it has let go, the channel holds nothing for it.
        obj.push(-1);
        assert!(matches!(quick.next().await, Some(Event::Change(_))));
        assert!(obj.feed.held_bytes() < 1 << 20, "{}", obj.feed.held_bytes());
        assert_eq!(
            slow.next().await,
            Some(Event::Lagged {
                seq: n + 1,
                missed: n + 1
            })
        );
        match slow.next().await {
            Some(Event::Snapshot {
                seq,
                state: Snapshot::List(items),
            }) => {
                assert_eq!(seq, n + 1);
                assert_eq!(items.len(), n as usize + 1);
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        obj.push(7);
        assert_eq!(pushed(slow.next().await), (n + 2, 7));
        // The quick one never fell behind.
        assert_eq!(pushed(quick.next().await), (n + 2, 7));
    }

    #[tokio::test]
    async fn deletion_ends_the_watch_and_refuses_new_ones() {
        let obj = Arc::new(Items::default());
        let mut w = Watcher::start(obj.clone(), "l", false).unwrap();
        w.next().await;
        obj.push(7);
        obj.delete();
        assert_eq!(pushed(w.next().await), (1, 7));
        match w.next().await {
            Some(Event::Change(p)) => assert_eq!(
                *p,
                Published {
                    seq: 2,
                    change: Change::Deleted
                }
            ),
            other => panic!("expected the deletion, got {other:?}"),
        }
        assert_eq!(w.next().await, None);
        assert!(matches!(
            Watcher::start(obj.clone(), "l", false),
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_writers_publish_in_the_order_they_applied() {
        let obj = Arc::new(Items::default());
        let mut w = Watcher::start(obj.clone(), "l", false).unwrap();
        w.next().await;
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let obj = obj.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        obj.push(t * 1000 + i);
                    }
                })
            })
            .collect();
        for t in writers {
            t.join().unwrap();
        }
        // The events, replayed, give exactly the list as it is.
        let mut seen = Vec::new();
        for expect in 1..=800 {
            let (seq, v) = pushed(w.next().await);
            assert_eq!(seq, expect);
            seen.push(Val::Int(v));
        }
        assert_eq!(seen, *obj.items.lock());
    }

    /// The real objects through the store: what each operation publishes,
    /// that failed or no-op operations publish nothing, and the refusals.
    #[tokio::test]
    async fn store_objects_publish_what_they_applied() {
        use crate::store::{Caller, Store};
        use procshare_proto::{self as pb, op::Kind as Op, Kind};
        let store = Store::new();
        let c = Caller::new("t", "");
        let run = |name: &str, op: Op| {
            let op = pb::Op {
                name: name.into(),
                kind: Some(op),
            };
            let store = &store;
            let c = &c;
            async move { store.apply(c, op).await }
        };
        let open = |kind: Kind| {
            Op::Open(pb::Open {
                kind: kind as i32,
                ..Default::default()
            })
        };
        let s = |x: &str| Val::Str(x.into());
        run("d", open(Kind::Dict)).await.unwrap();
        run("l", open(Kind::List)).await.unwrap();
        run("lk", open(Kind::Lock)).await.unwrap();
        assert!(matches!(
            store.watch("lk", false),
            Err(StoreError::WrongKind { actual: "lock", .. })
        ));
        assert!(matches!(
            store.watch("nope", false),
            Err(StoreError::NotFound(_))
        ));

        let mut d = store.watch("d", false).unwrap();
        let mut l = store.watch("l", true).unwrap();
        assert_eq!(d.next().await, Some(Event::Started { seq: 0 }));
        assert_eq!(
            l.next().await,
            Some(Event::Snapshot {
                seq: 0,
                state: Snapshot::List(vec![])
            })
        );
        let set = Op::DictSet(pb::DictSet {
            key: Some(s("a").to_wire()),
            value: Some(Val::Int(1).to_wire()),
        });
        run("d", set).await.unwrap();
        // A missing key: nothing removed, nothing published.
        let remove = |k: &str| {
            Op::DictRemove(pb::DictRemove {
                key: Some(s(k).to_wire()),
            })
        };
        run("d", remove("zzz")).await.unwrap();
        run("d", remove("a")).await.unwrap();
        run("d", Op::DictPopItem(pb::DictPopItem {}))
            .await
            .unwrap_err();
        run("d", Op::DictClear(pb::DictClear {})).await.unwrap();
        run("d", Op::Delete(pb::Delete {})).await.unwrap();
        let mut got = Vec::new();
        while let Some(Event::Change(p)) = d.next().await {
            got.push((p.seq, p.change.clone()));
        }
        assert_eq!(
            got,
            [
                (
                    1,
                    Change::KeySet {
                        key: s("a"),
                        value: Val::Int(1)
                    }
                ),
                (
                    2,
                    Change::KeyRemoved {
                        key: s("a"),
                        value: Val::Int(1)
                    }
                ),
                (3, Change::Cleared),
                (4, Change::Deleted),
            ]
        );

        let push = |v: i64| {
            Op::ListPush(pb::ListPush {
                value: Some(Val::Int(v).to_wire()),
            })
        };
        run("l", push(1)).await.unwrap();
        run("l", push(2)).await.unwrap();
        run(
            "l",
            Op::ListInsert(pb::ListInsert {
                index: -1,
                value: Some(Val::Int(9).to_wire()),
            }),
        )
        .await
        .unwrap();
        run("l", Op::ListPop(pb::ListPop { index: Some(0) }))
            .await
            .unwrap();
        run("l", Op::ListPop(pb::ListPop { index: Some(7) }))
            .await
            .unwrap_err();
        let mut got = Vec::new();
        for _ in 0..4 {
            match l.next().await {
                Some(Event::Change(p)) => got.push(p.change.clone()),
                other => panic!("expected a change, got {other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                Change::Pushed(Val::Int(1)),
                Change::Pushed(Val::Int(2)),
                Change::Inserted {
                    index: 1,
                    value: Val::Int(9)
                },
                Change::Popped {
                    index: 0,
                    value: Val::Int(1)
                },
            ]
        );
    }
}
