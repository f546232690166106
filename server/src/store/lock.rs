//! Lock and RLock, with fencing tokens.
//!
//! A `Lock` is owned by a client: another task of the same client may
//! release it (as another thread may release a Python `Lock`), another client
//! may not. An `RLock` is owned by the pair (client, task) and counts its
//! re-entries. Every acquire that takes a free lock increments the fencing
//! token.
//!
//! Waiting is asynchronous (see [`super::wait`]): a cancelled `acquire`
//! never holds the lock.

use std::time::Duration;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};
use super::{reply, Caller};

pub struct Lock {
    reentrant: bool,
    state: Mutex<State>,
    released: Notify,
    waiters: Waiters,
}

#[derive(Default)]
struct State {
    owner: Option<Caller>,
    /// Re-entries of an RLock (1 for a held Lock).
    depth: u32,
    /// The fencing token of the latest acquire of the free lock.
    token: u64,
}

impl Lock {
    pub fn new(reentrant: bool) -> Self {
        Lock {
            reentrant,
            state: Mutex::default(),
            released: Notify::new(),
            waiters: Waiters::default(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        if self.reentrant {
            "rlock"
        } else {
            "lock"
        }
    }

    /// Whether `caller` counts as the holder `owner`.
    fn is_owner(&self, owner: &Caller, caller: &Caller) -> bool {
        owner.client_id == caller.client_id && (!self.reentrant || owner.task_id == caller.task_id)
    }

    fn try_take(&self, caller: &Caller) -> Option<u64> {
        let mut s = self.state.lock();
        match &s.owner {
            None => {
                s.owner = Some(caller.clone());
                s.depth = 1;
                s.token += 1;
                Some(s.token)
            }
            Some(o) if self.reentrant && self.is_owner(o, caller) => {
                s.depth += 1;
                Some(s.token)
            }
            Some(_) => None,
        }
    }

    pub async fn apply(&self, name: &str, caller: &Caller, op: Op) -> Result<OpResult> {
        match op {
            Op::LockAcquire(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                if !o.blocking {
                    let token = self.try_take(caller);
                    return Ok(reply::acquired(token.is_some(), token.unwrap_or(0)));
                }
                let token = self.acquire(caller, timeout).await.ok_or_else(|| {
                    StoreError::Timeout(format!(
                        "timed out waiting for {} {name:?}",
                        self.kind_name()
                    ))
                })?;
                Ok(reply::acquired(true, token))
            }
            Op::LockRelease(_) => {
                self.release(name, caller)?;
                Ok(reply::unit())
            }
            Op::LockLocked(_) => Ok(reply::flag(self.locked())),
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// Waits until `caller` holds the lock, or `timeout` passes (`None`).
    pub async fn acquire(&self, caller: &Caller, timeout: Option<Duration>) -> Option<u64> {
        until(&self.released, &self.waiters, timeout, || {
            self.try_take(caller)
        })
        .await
    }

    pub fn locked(&self) -> bool {
        self.state.lock().owner.is_some()
    }

    /// Checks that `caller` holds the lock.
    pub fn check_owner(&self, name: &str, caller: &Caller) -> Result<()> {
        match &self.state.lock().owner {
            Some(o) if self.is_owner(o, caller) => Ok(()),
            Some(_) => Err(StoreError::NotOwner(format!(
                "{} {name:?} is held by another {}",
                self.kind_name(),
                if self.reentrant { "owner" } else { "client" }
            ))),
            None => Err(StoreError::NotOwner(format!(
                "{} {name:?} is not held",
                self.kind_name()
            ))),
        }
    }

    /// Releases one level of the lock.
    pub fn release(&self, name: &str, caller: &Caller) -> Result<()> {
        self.check_owner(name, caller)?;
        let mut s = self.state.lock();
        s.depth = s.depth.saturating_sub(1);
        if s.depth == 0 {
            s.owner = None;
            drop(s);
            // One waiter is enough: if it was cancelled meanwhile, tokio
            // hands the wake-up on to the next one.
            self.released.notify_one();
        }
        Ok(())
    }

    /// Releases every level (a condition's wait); returns how many there were.
    pub fn release_all(&self, name: &str, caller: &Caller) -> Result<u32> {
        self.check_owner(name, caller)?;
        let mut s = self.state.lock();
        let depth = std::mem::take(&mut s.depth);
        s.owner = None;
        drop(s);
        self.released.notify_one();
        Ok(depth)
    }

    /// Re-acquires after [`Lock::release_all`], restoring the depth.
    pub async fn restore(&self, caller: &Caller, depth: u32) {
        // No timeout: as in Python, a condition's wait always ends holding
        // the lock (or is cancelled with its caller).
        let _ = self.acquire(caller, None).await;
        self.state.lock().depth = depth.max(1);
    }

    /// Whether `client_id` (any of its tasks) holds the lock.
    pub fn held_by(&self, client_id: &str) -> bool {
        self.state
            .lock()
            .owner
            .as_ref()
            .is_some_and(|o| o.client_id == client_id)
    }

    /// Frees the lock if `client_id` (any of its tasks) holds it: its
    /// session ended. Returns whether it did.
    pub fn release_client(&self, client_id: &str) -> bool {
        let mut s = self.state.lock();
        if s.owner.as_ref().is_some_and(|o| o.client_id == client_id) {
            s.owner = None;
            s.depth = 0;
            drop(s);
            self.released.notify_one();
            return true;
        }
        false
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let s = self.state.lock();
        vec![
            ("locked", Val::Bool(s.owner.is_some())),
            ("depth", Val::Int(s.depth.into())),
            ("fencing_token", Val::Int(s.token as i64)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procshare_proto as pb;
    use std::sync::Arc;

    fn caller(id: &str) -> Caller {
        Caller::new(id, "")
    }

    async fn acquire(l: &Lock, who: &Caller, timeout: Option<f64>) -> Result<(bool, u64)> {
        let r = l
            .apply(
                "l",
                who,
                Op::LockAcquire(pb::LockAcquire {
                    blocking: true,
                    timeout_secs: timeout,
                }),
            )
            .await?;
        Ok(crate::store::testing::as_acquired(r))
    }

    async fn release(l: &Lock, who: &Caller) -> Result<OpResult> {
        l.apply("l", who, Op::LockRelease(pb::LockRelease {})).await
    }

    #[tokio::test]
    async fn tokens_grow_and_only_the_owner_releases() {
        let l = Lock::new(false);
        assert_eq!(acquire(&l, &caller("a"), None).await.unwrap(), (true, 1));
        assert!(matches!(
            release(&l, &caller("b")).await,
            Err(StoreError::NotOwner(_))
        ));
        // Another task of the same client may release a plain lock.
        release(&l, &Caller::new("a", "other-task")).await.unwrap();
        assert!(matches!(
            release(&l, &caller("a")).await,
            Err(StoreError::NotOwner(_))
        ));
        assert_eq!(acquire(&l, &caller("b"), None).await.unwrap(), (true, 2));
    }

    #[tokio::test]
    async fn a_plain_lock_is_not_reentrant() {
        let l = Lock::new(false);
        acquire(&l, &caller("a"), None).await.unwrap();
        let r = acquire(&l, &caller("a"), Some(0.01)).await;
        assert!(matches!(r, Err(StoreError::Timeout(_))));
    }

    #[tokio::test]
    async fn an_rlock_counts_entries_per_task() {
        let l = Lock::new(true);
        let t1 = Caller::new("a", "t1");
        let t2 = Caller::new("a", "t2");
        assert_eq!(acquire(&l, &t1, None).await.unwrap(), (true, 1));
        assert_eq!(acquire(&l, &t1, None).await.unwrap(), (true, 1));
        // Another task of the same client is another owner.
        assert!(matches!(
            acquire(&l, &t2, Some(0.01)).await,
            Err(StoreError::Timeout(_))
        ));
        assert!(matches!(
            release(&l, &t2).await,
            Err(StoreError::NotOwner(_))
        ));
        release(&l, &t1).await.unwrap();
        assert!(l.locked());
        release(&l, &t1).await.unwrap();
        assert!(!l.locked());
        assert_eq!(acquire(&l, &t2, None).await.unwrap(), (true, 2));
    }

    #[tokio::test]
    async fn acquire_times_out_and_validates_the_timeout() {
        let l = Lock::new(false);
        acquire(&l, &caller("a"), None).await.unwrap();
        assert!(matches!(
            acquire(&l, &caller("b"), Some(0.01)).await,
            Err(StoreError::Timeout(_))
        ));
        assert!(matches!(
            acquire(&l, &caller("b"), Some(-1.0)).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            acquire(&l, &caller("b"), Some(f64::NAN)).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_swallow_the_release() {
        let l = Arc::new(Lock::new(false));
        acquire(&l, &caller("a"), None).await.unwrap();
        let cancelled = tokio::spawn({
            let l = l.clone();
            async move { acquire(&l, &caller("b"), None).await }
        });
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { acquire(&l, &caller("c"), Some(10.0)).await }
        });
        while l.waiters.count() < 2 {
            tokio::task::yield_now().await;
        }
        cancelled.abort();
        let _ = cancelled.await;
        assert_eq!(l.waiters.count(), 1, "the cancelled waiter is gone");
        release(&l, &caller("a")).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), (true, 2));
    }

    #[tokio::test]
    async fn release_all_and_restore_keep_the_depth() {
        let l = Lock::new(true);
        let a = caller("a");
        acquire(&l, &a, None).await.unwrap();
        acquire(&l, &a, None).await.unwrap();
        assert_eq!(l.release_all("l", &a).unwrap(), 2);
        assert!(!l.locked());
        l.restore(&a, 2).await;
        release(&l, &a).await.unwrap();
        assert!(l.locked(), "one level is left");
    }
}
