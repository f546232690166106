//! Condition: wait for a notify while holding a Lock or RLock.
//!
//! `wait` checks that the caller holds the lock, queues itself, releases the
//! lock (every level of an RLock), waits for a notify or its timeout, and
//! re-acquires the lock before answering. `notify(n)` wakes exactly `n`
//! waiters that are still there: a waiter whose client went away is skipped,
//! and one that was notified just as it was cancelled hands the notify on.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::oneshot;

use super::error::Result;
use super::lock::Lock;
use super::val::Val;
use super::wait::timeout_from_secs;
use super::{reply, Caller};

pub struct Condition {
    /// The lock, shared with the Lock or RLock object it was bound to.
    lock: Arc<Lock>,
    /// The name of that lock object, or empty for a lock of its own.
    lock_name: String,
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
}

/// A waiter's place in the queue. If the waiter is dropped after it was
/// notified but before it could act on it, the notify goes to the next one.
struct Ticket<'a> {
    condition: &'a Condition,
    woken: oneshot::Receiver<()>,
    /// A notify reached this waiter.
    notified: bool,
    /// The waiter answered (it has the lock back): nothing to hand on.
    done: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // Dropped before answering, e.g. while getting the lock back after
        // a notify: that notify belongs to another waiter.
        if !self.done && (self.notified || self.woken.try_recv().is_ok()) {
            self.condition.wake(1);
        }
    }
}

impl Condition {
    pub fn new(lock: Arc<Lock>, lock_name: String) -> Self {
        Condition {
            lock,
            lock_name,
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Wakes up to `n` live waiters; returns how many.
    fn wake(&self, n: usize) -> usize {
        let mut queue = self.queue.lock();
        let mut woken = 0;
        while woken < n {
            let Some(tx) = queue.pop_front() else { break };
            if tx.send(()).is_ok() {
                woken += 1;
            }
        }
        woken
    }

    pub async fn apply(&self, name: &str, caller: &Caller, op: Op) -> Result<OpResult> {
        match op {
            // The condition's own acquire and release are its lock's.
            Op::LockAcquire(_) | Op::LockRelease(_) | Op::LockLocked(_) => {
                self.lock.apply(name, caller, op).await
            }
            Op::ConditionWait(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                self.lock.check_owner(name, caller)?;
                let (tx, rx) = oneshot::channel();
                self.queue.lock().push_back(tx);
                let mut ticket = Ticket {
                    condition: self,
                    woken: rx,
                    notified: false,
                    done: false,
                };
                let depth = self.lock.release_all(name, caller)?;
                let notified = match timeout {
                    None => (&mut ticket.woken).await.is_ok(),
                    Some(t) => match tokio::time::timeout(t, &mut ticket.woken).await {
                        Ok(r) => r.is_ok(),
                        // A notify that raced with the timeout still counts.
                        Err(_) => ticket.woken.try_recv().is_ok(),
                    },
                };
                ticket.notified = notified;
                self.lock.restore(caller, depth).await;
                ticket.done = true;
                Ok(reply::flag(notified))
            }
            Op::ConditionNotify(o) => {
                self.lock.check_owner(name, caller)?;
                let n = if o.all { usize::MAX } else { o.n as usize };
                Ok(reply::count(self.wake(n)))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// The lock this condition uses.
    pub fn lock(&self) -> &Arc<Lock> {
        &self.lock
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let waiting = self.queue.lock().iter().filter(|t| !t.is_closed()).count();
        let mut d = vec![
            ("lock", Val::Str(self.lock_name.clone())),
            ("waiters", Val::Int(waiting as i64)),
        ];
        d.extend(
            self.lock
                .describe()
                .into_iter()
                .filter(|(k, _)| *k != "waiters"),
        );
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use crate::store::StoreError;
    use procshare_proto as pb;

    fn acquire() -> Op {
        Op::LockAcquire(pb::LockAcquire {
            blocking: true,
            timeout_secs: None,
        })
    }

    fn wait(t: Option<f64>) -> Op {
        Op::ConditionWait(pb::ConditionWait { timeout_secs: t })
    }

    fn notify(n: u64) -> Op {
        Op::ConditionNotify(pb::ConditionNotify { n, all: false })
    }

    fn live(c: &Condition) -> usize {
        c.queue.lock().iter().filter(|t| !t.is_closed()).count()
    }

    #[tokio::test]
    async fn wait_and_notify_need_the_lock() {
        let c = Condition::new(Arc::new(Lock::new(true)), String::new());
        let a = Caller::new("a", "");
        assert!(matches!(
            c.apply("c", &a, wait(Some(0.01))).await,
            Err(StoreError::NotOwner(_))
        ));
        assert!(matches!(
            c.apply("c", &a, notify(1)).await,
            Err(StoreError::NotOwner(_))
        ));
        c.apply("c", &a, acquire()).await.unwrap();
        // Times out, returns false, and holds the lock again.
        assert!(!as_flag(c.apply("c", &a, wait(Some(0.01))).await.unwrap()));
        assert!(c.lock.locked());
        assert_eq!(as_count(c.apply("c", &a, notify(1)).await.unwrap()), 0);
    }

    #[tokio::test]
    async fn notify_n_wakes_exactly_n() {
        let c = Arc::new(Condition::new(Arc::new(Lock::new(true)), String::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let me = Caller::new(&format!("w{i}"), "");
                c.apply("c", &me, acquire()).await.unwrap();
                let notified = as_flag(c.apply("c", &me, wait(Some(30.0))).await.unwrap());
                c.apply("c", &me, Op::LockRelease(pb::LockRelease {}))
                    .await
                    .unwrap();
                notified
            }));
        }
        while live(&c) < 5 {
            tokio::task::yield_now().await;
        }
        let n = Caller::new("notifier", "");
        c.apply("c", &n, acquire()).await.unwrap();
        assert_eq!(as_count(c.apply("c", &n, notify(2)).await.unwrap()), 2);
        c.apply("c", &n, Op::LockRelease(pb::LockRelease {}))
            .await
            .unwrap();
        // Exactly two come back; three are still waiting.
        let mut finished = 0;
        while finished < 2 {
            finished = tasks.iter().filter(|t| t.is_finished()).count();
            tokio::task::yield_now().await;
        }
        assert_eq!(live(&c), 3);
        c.apply("c", &n, acquire()).await.unwrap();
        let all = Op::ConditionNotify(pb::ConditionNotify { n: 0, all: true });
        assert_eq!(as_count(c.apply("c", &n, all).await.unwrap()), 3);
        c.apply("c", &n, Op::LockRelease(pb::LockRelease {}))
            .await
            .unwrap();
        for t in tasks {
            assert!(t.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_cancelled_waiter_is_skipped() {
        let c = Arc::new(Condition::new(Arc::new(Lock::new(false)), String::new()));
        let gone = tokio::spawn({
            let c = c.clone();
            async move {
                let me = Caller::new("gone", "");
                c.apply("c", &me, acquire()).await.unwrap();
                c.apply("c", &me, wait(None)).await
            }
        });
        while live(&c) < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        let n = Caller::new("n", "");
        // The cancelled waiter released the lock when it began waiting.
        c.apply("c", &n, acquire()).await.unwrap();
        assert_eq!(as_count(c.apply("c", &n, notify(1)).await.unwrap()), 0);
    }
}
