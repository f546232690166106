//! The shared lock, with a fencing token.
//!
//! Waiting is asynchronous: a blocked `acquire` is a future parked on a
//! [`Notify`], not a thread. When the caller goes away, tonic drops that
//! future and the waiter simply disappears; it never held the lock.

use std::time::Duration;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::{reply, Caller};

#[derive(Default)]
pub struct Lock {
    state: Mutex<State>,
    released: Notify,
}

#[derive(Default)]
struct State {
    owner: Option<String>,
    /// The fencing token of the latest successful acquire.
    token: u64,
}

impl State {
    fn try_take(&mut self, owner: &str) -> Option<u64> {
        if self.owner.is_some() {
            return None;
        }
        self.owner = Some(owner.to_owned());
        self.token += 1;
        Some(self.token)
    }
}

/// Validates a wire timeout: absent means forever; negative, NaN or too large
/// to represent is an error.
pub fn timeout_from_secs(secs: Option<f64>) -> Result<Option<Duration>> {
    secs.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| {
            StoreError::InvalidArgument(format!(
                "timeout must be a finite number of seconds >= 0, got {s}"
            ))
        })
    })
    .transpose()
}

impl Lock {
    pub async fn apply(&self, name: &str, caller: &Caller, op: Op) -> Result<OpResult> {
        match op {
            Op::LockAcquire(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                if !o.blocking {
                    let token = self.state.lock().try_take(&caller.client_id);
                    return Ok(reply::acquired(token.is_some(), token.unwrap_or(0)));
                }
                let token = self
                    .acquire(&caller.client_id, timeout)
                    .await
                    .ok_or_else(|| {
                        StoreError::Timeout(format!("timed out waiting for lock {name:?}"))
                    })?;
                Ok(reply::acquired(true, token))
            }
            Op::LockRelease(_) => {
                self.release(name, &caller.client_id)?;
                Ok(reply::unit())
            }
            Op::LockLocked(_) => Ok(reply::flag(self.state.lock().owner.is_some())),
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// Waits until the lock is ours, or `timeout` passes (`None`).
    async fn acquire(&self, owner: &str, timeout: Option<Duration>) -> Option<u64> {
        let wait = async {
            loop {
                // Register for the wake-up before looking, so a release
                // between the look and the wait is not missed.
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(token) = self.state.lock().try_take(owner) {
                    return token;
                }
                released.await;
            }
        };
        match timeout {
            None => Some(wait.await),
            Some(t) => tokio::time::timeout(t, wait).await.ok(),
        }
    }

    fn release(&self, name: &str, owner: &str) -> Result<()> {
        let mut state = self.state.lock();
        match &state.owner {
            Some(o) if o == owner => {
                state.owner = None;
                drop(state);
                // One waiter is enough: if it was cancelled meanwhile, tokio
                // hands the wake-up on to the next one.
                self.released.notify_one();
                Ok(())
            }
            Some(_) => Err(StoreError::NotOwner(format!(
                "lock {name:?} is held by another client"
            ))),
            None => Err(StoreError::NotOwner(format!("lock {name:?} is not held"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procshare_proto as pb;
    use std::sync::Arc;

    fn caller(id: &str) -> Caller {
        Caller {
            client_id: id.to_owned(),
        }
    }

    async fn acquire(l: &Lock, who: &str, timeout: Option<f64>) -> Result<(bool, u64)> {
        let r = l
            .apply(
                "l",
                &caller(who),
                Op::LockAcquire(pb::LockAcquire {
                    blocking: true,
                    timeout_secs: timeout,
                }),
            )
            .await?;
        Ok(crate::store::testing::as_acquired(r))
    }

    #[tokio::test]
    async fn tokens_grow_and_only_the_owner_releases() {
        let l = Lock::default();
        assert_eq!(acquire(&l, "a", None).await.unwrap(), (true, 1));
        let r = l
            .apply("l", &caller("b"), Op::LockRelease(pb::LockRelease {}))
            .await;
        assert!(matches!(r, Err(StoreError::NotOwner(_))));
        l.apply("l", &caller("a"), Op::LockRelease(pb::LockRelease {}))
            .await
            .unwrap();
        assert_eq!(acquire(&l, "b", None).await.unwrap(), (true, 2));
    }

    #[tokio::test]
    async fn acquire_times_out_while_held() {
        let l = Lock::default();
        acquire(&l, "a", None).await.unwrap();
        let r = acquire(&l, "b", Some(0.01)).await;
        assert!(matches!(r, Err(StoreError::Timeout(_))));
        let r = acquire(&l, "b", Some(-1.0)).await;
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
        let r = acquire(&l, "b", Some(f64::NAN)).await;
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_swallow_the_release() {
        let l = Arc::new(Lock::default());
        acquire(&l, "a", None).await.unwrap();
        let cancelled = tokio::spawn({
            let l = l.clone();
            async move { acquire(&l, "b", None).await }
        });
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { acquire(&l, "c", Some(10.0)).await }
        });
        tokio::task::yield_now().await;
        cancelled.abort();
        let _ = cancelled.await;
        l.apply("l", &caller("a"), Op::LockRelease(pb::LockRelease {}))
            .await
            .unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), (true, 2));
    }
}
