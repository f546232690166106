//! Event: a flag that waiters wait for.
//!
//! As in Python, a `wait` that was woken by `set` returns true even if the
//! flag was cleared again before the waiter ran: each `set` starts a new
//! generation, and a waiter wakes when the generation moves on.

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::Result;
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};
use super::watch::{Change, Feed, Snapshot};

#[derive(Default)]
pub struct Event {
    state: Mutex<State>,
    changed: Notify,
    waiters: Waiters,
    feed: Feed,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct State {
    flag: bool,
    generation: u64,
}

/// How an atomic batch undoes a `set` or `clear` in place: the state
/// before it. A waiter woken by an undone `set` finds the generation it
/// started in and waits again.
#[derive(Debug, PartialEq)]
pub struct Undo(State);

impl Event {
    pub async fn apply(&self, name: &str, op: Op, rec: &Recorder<'_>) -> Result<OpResult> {
        match op {
            Op::EventSet(_) => {
                let mut s = self.state.lock();
                rec.commit();
                self.feed.publish(|| Change::Flag(true));
                s.flag = true;
                s.generation += 1;
                drop(s);
                self.changed.notify_waiters();
                Ok(reply::unit())
            }
            Op::EventClear(_) => {
                let mut s = self.state.lock();
                rec.commit();
                self.feed.publish(|| Change::Flag(false));
                s.flag = false;
                Ok(reply::unit())
            }
            Op::EventIsSet(_) => Ok(reply::flag(self.state.lock().flag)),
            Op::EventWait(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let start = self.state.lock().generation;
                let set = until(&self.changed, &self.waiters, timeout, || {
                    let s = self.state.lock();
                    (s.flag || s.generation != start).then_some(())
                })
                .await;
                Ok(reply::flag(set.is_some()))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// What undoes `op` (a `set` or a `clear`), noted just before an
    /// atomic batch applies it; `None` for an operation that is not a
    /// change. Undone in place: calls blocked on the event hold it.
    pub fn undo_for(&self, op: &Op) -> Option<Undo> {
        match op {
            Op::EventSet(_) | Op::EventClear(_) => Some(Undo(*self.state.lock())),
            _ => None,
        }
    }

    /// Puts the state noted by [`Event::undo_for`] back.
    pub fn undo(&self, undo: Undo) {
        *self.state.lock() = undo.0;
    }

    /// Takes `saved`'s state in place (calls blocked on this event stay
    /// attached to it).
    pub fn put_back(&self, saved: Self) {
        *self.state.lock() = saved.state.into_inner();
    }

    /// The flag, and the seq `next_seq` gives while it is locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (bool, u64) {
        let s = self.state.lock();
        (s.flag, next_seq())
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs `f` with the event locked, on its feed and its state.
    pub fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
        let s = self.state.lock();
        f(&self.feed, &|| Snapshot::Event(s.flag))
    }

    pub fn restore(flag: bool) -> Self {
        let e = Event::default();
        e.state.lock().flag = flag;
        e
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("is_set", Val::Bool(self.state.lock().flag)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Event {
        async fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none()).await
        }
    }
    use std::sync::Arc;

    fn wait(t: Option<f64>) -> Op {
        Op::EventWait(pb::EventWait { timeout_secs: t })
    }

    #[tokio::test]
    async fn wait_returns_false_on_timeout_and_true_once_set() {
        let e = Event::default();
        assert!(!as_flag(e.ap("e", wait(Some(0.01))).await.unwrap()));
        e.ap("e", Op::EventSet(pb::EventSet {})).await.unwrap();
        assert!(as_flag(e.ap("e", wait(Some(0.01))).await.unwrap()));
        assert!(as_flag(e.ap("e", wait(None)).await.unwrap()));
    }

    #[tokio::test]
    async fn a_set_then_clear_still_wakes_waiters_with_true() {
        let e = Arc::new(Event::default());
        let waiter = tokio::spawn({
            let e = e.clone();
            async move { as_flag(e.ap("e", wait(Some(10.0))).await.unwrap()) }
        });
        while e.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        e.ap("e", Op::EventSet(pb::EventSet {})).await.unwrap();
        e.ap("e", Op::EventClear(pb::EventClear {})).await.unwrap();
        assert!(waiter.await.unwrap());
        assert!(!as_flag(
            e.ap("e", Op::EventIsSet(pb::EventIsSet {})).await.unwrap()
        ));
    }
}
