//! Queue and JoinableQueue: FIFO across every client.
//!
//! `get` takes its item in the same step that finds it, so a `get` whose
//! client goes away while it waits takes nothing. Waiting getters and putters
//! are woken one at a time (tokio hands a wake-up on if its waiter was
//! cancelled), so a put to a queue with a thousand waiting getters wakes
//! one, not a thousand.

use std::collections::VecDeque;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};
use super::watch::{Change, Feed, Snapshot};

pub struct Queue {
    /// 0: unbounded.
    maxsize: usize,
    /// The server's limit on any queue's length.
    max_len: usize,
    joinable: bool,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    all_done: Notify,
    waiters: Waiters,
    feed: Feed,
}

/// How to undo one change to a queue in place; see [`Queue::undo_for`].
#[derive(Debug, PartialEq)]
pub enum Undo {
    /// Items were put into a queue that held `len` of them, `unfinished`
    /// not yet done.
    Put { len: usize, unfinished: u64 },
    /// This item was taken from the front.
    Get(Val),
    /// A task was marked done while `unfinished` were not.
    TaskDone { unfinished: u64 },
}

#[derive(Default)]
struct State {
    items: VecDeque<Val>,
    /// Items put and not yet marked done (JoinableQueue).
    unfinished: u64,
}

impl Queue {
    pub fn new(maxsize: u64, joinable: bool) -> Self {
        Queue {
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
            max_len: usize::MAX,
            joinable,
            state: Mutex::default(),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            all_done: Notify::new(),
            waiters: Waiters::default(),
            feed: Feed::default(),
        }
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs `f` with the queue locked, on its feed and its state.
    pub fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
        let s = self.state.lock();
        f(&self.feed, &|| Snapshot::Queue {
            items: s.items.iter().cloned().collect(),
            unfinished: s.unfinished,
        })
    }

    /// The same queue under the server's length limit.
    pub fn limited(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    pub fn is_joinable(&self) -> bool {
        self.joinable
    }

    fn kind_name(&self) -> &'static str {
        if self.joinable {
            "joinable queue"
        } else {
            "queue"
        }
    }

    fn try_put(&self, value: &mut Option<Val>, rec: &Recorder) -> Option<()> {
        let mut s = self.state.lock();
        if self.maxsize != 0 && s.items.len() >= self.maxsize {
            return None;
        }
        let value = value.take()?;
        rec.commit();
        self.feed.publish(|| Change::Pushed(value.clone()));
        s.items.push_back(value);
        s.unfinished += 1;
        Some(())
    }

    fn try_get(&self, rec: &Recorder) -> Option<Val> {
        let mut s = self.state.lock();
        let item = s.items.pop_front()?;
        rec.commit();
        self.feed.publish(|| Change::Popped {
            index: 0,
            value: item.clone(),
        });
        Some(item)
    }

    pub async fn apply(&self, name: &str, op: Op, rec: &Recorder<'_>) -> Result<OpResult> {
        match op {
            Op::QueuePut(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let mut value = Some(Val::required(o.value, "value")?);
                if self.state.lock().items.len() >= self.max_len {
                    return Err(StoreError::ResourceExhausted(format!(
                        "{} {name:?} holds {} items, the server's limit (--max-queue-len)",
                        self.kind_name(),
                        self.max_len
                    )));
                }
                let put = if o.blocking {
                    until(&self.not_full, &self.waiters, timeout, || {
                        self.try_put(&mut value, rec)
                    })
                    .await
                } else {
                    self.try_put(&mut value, rec)
                };
                put.ok_or_else(|| {
                    StoreError::Full(format!(
                        "{} {name:?} is full ({} items)",
                        self.kind_name(),
                        self.maxsize
                    ))
                })?;
                self.not_empty.notify_one();
                Ok(reply::unit())
            }
            Op::QueueGet(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let got = if o.blocking {
                    until(&self.not_empty, &self.waiters, timeout, || {
                        self.try_get(rec)
                    })
                    .await
                } else {
                    self.try_get(rec)
                };
                let item = got.ok_or_else(|| {
                    StoreError::Empty(format!("{} {name:?} is empty", self.kind_name()))
                })?;
                self.not_full.notify_one();
                Ok(reply::value(&item))
            }
            Op::QueueTaskDone(_) => {
                self.require_joinable(name)?;
                let mut s = self.state.lock();
                if s.unfinished == 0 {
                    return Err(StoreError::InvalidArgument(format!(
                        "task_done() called too many times on {name:?}"
                    )));
                }
                rec.commit();
                s.unfinished -= 1;
                let unfinished = s.unfinished;
                self.feed.publish(|| Change::TaskDone { unfinished });
                if s.unfinished == 0 {
                    drop(s);
                    self.all_done.notify_waiters();
                }
                Ok(reply::unit())
            }
            Op::QueueJoin(o) => {
                self.require_joinable(name)?;
                let timeout = timeout_from_secs(o.timeout_secs)?;
                until(&self.all_done, &self.waiters, timeout, || {
                    (self.state.lock().unfinished == 0).then_some(())
                })
                .await
                .ok_or_else(|| StoreError::Timeout(format!("timed out joining {name:?}")))?;
                Ok(reply::unit())
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// The items and unfinished count, and the seq `next_seq` gives while
    /// they are locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Vec<Val>, u64, u64) {
        let s = self.state.lock();
        (s.items.iter().cloned().collect(), s.unfinished, next_seq())
    }

    pub fn restore(maxsize: u64, joinable: bool, items: Vec<Val>, unfinished: u64) -> Self {
        let q = Queue::new(maxsize, joinable);
        {
            let mut s = q.state.lock();
            s.items = items.into();
            s.unfinished = unfinished;
        }
        q
    }

    /// What undoes `op` on this queue, noted just before it is applied by
    /// an atomic batch: a queue is undone in place, never copied and
    /// replaced, because the calls blocked on it hold this very queue.
    /// `None` for an operation that is not a change; `Some(None)` for a get
    /// from an empty queue, which will fail and so change nothing.
    pub fn undo_for(&self, op: &Op) -> Option<Option<Undo>> {
        let s = self.state.lock();
        match op {
            Op::QueuePut(_) => Some(Some(Undo::Put {
                len: s.items.len(),
                unfinished: s.unfinished,
            })),
            Op::QueueGet(_) => Some(s.items.front().cloned().map(Undo::Get)),
            Op::QueueTaskDone(_) => Some(Some(Undo::TaskDone {
                unfinished: s.unfinished,
            })),
            _ => None,
        }
    }

    /// Undoes one change noted by [`Queue::undo_for`]. Undone in the
    /// reverse order they were made, such changes leave the queue exactly
    /// as it was. Callers woken by the change (a getter by a put, a joiner
    /// by the last task done) find it gone when they try, and wait again.
    pub fn undo(&self, undo: Undo) {
        let mut s = self.state.lock();
        match undo {
            Undo::Put { len, unfinished } => {
                s.items.truncate(len);
                s.unfinished = unfinished;
            }
            Undo::Get(item) => s.items.push_front(item),
            Undo::TaskDone { unfinished } => s.unfinished = unfinished,
        }
    }

    /// Takes `saved`'s items and count in place (calls blocked on this
    /// queue stay attached to it).
    pub fn put_back(&self, saved: Self) {
        *self.state.lock() = saved.state.into_inner();
    }

    fn require_joinable(&self, name: &str) -> Result<()> {
        if self.joinable {
            Ok(())
        } else {
            Err(StoreError::WrongKind {
                name: name.to_owned(),
                wanted: "joinable_queue",
                actual: "queue",
            })
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let s = self.state.lock();
        vec![
            ("len", Val::Int(s.items.len() as i64)),
            ("maxsize", Val::Int(self.maxsize as i64)),
            ("unfinished", Val::Int(s.unfinished as i64)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Queue {
        async fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none()).await
        }
    }
    use std::sync::Arc;

    fn put(v: i64, blocking: bool, timeout: Option<f64>) -> Op {
        Op::QueuePut(pb::QueuePut {
            value: Some(Val::Int(v).to_wire()),
            blocking,
            timeout_secs: timeout,
        })
    }

    fn get(blocking: bool, timeout: Option<f64>) -> Op {
        Op::QueueGet(pb::QueueGet {
            blocking,
            timeout_secs: timeout,
        })
    }

    #[tokio::test]
    async fn fifo_full_and_empty() {
        let q = Queue::new(2, false);
        q.ap("q", put(1, true, None)).await.unwrap();
        q.ap("q", put(2, true, None)).await.unwrap();
        assert!(matches!(
            q.ap("q", put(3, false, None)).await,
            Err(StoreError::Full(_))
        ));
        assert!(matches!(
            q.ap("q", put(3, true, Some(0.01))).await,
            Err(StoreError::Full(_))
        ));
        assert_eq!(
            as_value(q.ap("q", get(true, None)).await.unwrap()),
            Val::Int(1)
        );
        assert_eq!(
            as_value(q.ap("q", get(false, None)).await.unwrap()),
            Val::Int(2)
        );
        assert!(matches!(
            q.ap("q", get(false, None)).await,
            Err(StoreError::Empty(_))
        ));
        assert!(matches!(
            q.ap("q", get(true, Some(0.01))).await,
            Err(StoreError::Empty(_))
        ));
    }

    #[tokio::test]
    async fn a_cancelled_get_takes_nothing() {
        let q = Arc::new(Queue::new(0, false));
        let gone = tokio::spawn({
            let q = q.clone();
            async move { q.ap("q", get(true, None)).await }
        });
        while q.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        q.ap("q", put(7, true, None)).await.unwrap();
        assert_eq!(
            as_value(q.ap("q", get(false, None)).await.unwrap()),
            Val::Int(7)
        );
    }

    #[tokio::test]
    async fn a_blocked_put_goes_in_when_room_appears() {
        let q = Arc::new(Queue::new(1, false));
        q.ap("q", put(1, true, None)).await.unwrap();
        let putter = tokio::spawn({
            let q = q.clone();
            async move { q.ap("q", put(2, true, Some(10.0))).await }
        });
        while q.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            as_value(q.ap("q", get(true, None)).await.unwrap()),
            Val::Int(1)
        );
        putter.await.unwrap().unwrap();
        assert_eq!(
            as_value(q.ap("q", get(true, None)).await.unwrap()),
            Val::Int(2)
        );
    }

    #[tokio::test]
    async fn changes_undone_in_reverse_leave_the_queue_as_it_was() {
        let q = Queue::new(0, true);
        for v in [1, 2] {
            q.ap("q", put(v, false, None)).await.unwrap();
        }
        let was = q.save(|| 0);
        let done = Op::QueueTaskDone(pb::QueueTaskDone {});
        let mut undos = Vec::new();
        for op in [
            get(false, None),
            put(3, false, None),
            done,
            get(false, None),
        ] {
            undos.push(q.undo_for(&op).unwrap().unwrap());
            q.ap("q", op).await.unwrap();
        }
        assert_eq!(q.save(|| 0), (vec![Val::Int(3)], 2, 0));
        for undo in undos.into_iter().rev() {
            q.undo(undo);
        }
        assert_eq!(q.save(|| 0), was);
        assert_eq!(
            q.undo_for(&get(false, None)),
            Some(Some(Undo::Get(Val::Int(1))))
        );
        let empty = Queue::new(0, false);
        assert_eq!(
            empty.undo_for(&get(false, None)),
            Some(None),
            "a get that will fail"
        );
        let join = Op::QueueJoin(pb::QueueJoin { timeout_secs: None });
        assert_eq!(empty.undo_for(&join), None, "not a change undone in place");
    }

    #[tokio::test]
    async fn task_done_and_join() {
        let q = Queue::new(0, true);
        let done = || Op::QueueTaskDone(pb::QueueTaskDone {});
        let join = |t| Op::QueueJoin(pb::QueueJoin { timeout_secs: t });
        assert!(matches!(
            q.ap("q", done()).await,
            Err(StoreError::InvalidArgument(_))
        ));
        q.ap("q", join(Some(0.01))).await.unwrap();
        q.ap("q", put(1, true, None)).await.unwrap();
        q.ap("q", get(true, None)).await.unwrap();
        assert!(matches!(
            q.ap("q", join(Some(0.01))).await,
            Err(StoreError::Timeout(_))
        ));
        q.ap("q", done()).await.unwrap();
        q.ap("q", join(None)).await.unwrap();
        let plain = Queue::new(0, false);
        assert!(matches!(
            plain.ap("q", done()).await,
            Err(StoreError::WrongKind { .. })
        ));
    }
}
