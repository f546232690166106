//! Semaphore and BoundedSemaphore.
//!
//! Permits are counted per holding client, so that a later lease can give
//! back what a dead client held. Anyone may release (as in Python), but a
//! bounded semaphore refuses to rise above its start value.

use std::collections::HashMap;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};
use super::{reply, Caller};

pub struct Semaphore {
    /// The start value, which a bounded semaphore may not exceed.
    bound: Option<u64>,
    state: Mutex<State>,
    released: Notify,
    waiters: Waiters,
}

struct State {
    value: u64,
    held: HashMap<String, u64>,
}

impl Semaphore {
    pub fn new(value: u64, bounded: bool) -> Self {
        Semaphore {
            bound: bounded.then_some(value),
            state: Mutex::new(State {
                value,
                held: HashMap::new(),
            }),
            released: Notify::new(),
            waiters: Waiters::default(),
        }
    }

    pub fn is_bounded(&self) -> bool {
        self.bound.is_some()
    }

    fn try_take(&self, caller: &Caller, rec: &Recorder) -> Option<()> {
        let mut s = self.state.lock();
        if s.value == 0 {
            return None;
        }
        rec.commit();
        s.value -= 1;
        *s.held.entry(caller.client_id.clone()).or_default() += 1;
        Some(())
    }

    pub async fn apply(
        &self,
        name: &str,
        caller: &Caller,
        op: Op,
        rec: &Recorder<'_>,
    ) -> Result<OpResult> {
        match op {
            Op::SemaphoreAcquire(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                if !o.blocking {
                    return Ok(reply::acquired(self.try_take(caller, rec).is_some(), 0));
                }
                until(&self.released, &self.waiters, timeout, || {
                    self.try_take(caller, rec)
                })
                .await
                .ok_or_else(|| {
                    StoreError::Timeout(format!("timed out waiting for semaphore {name:?}"))
                })?;
                Ok(reply::acquired(true, 0))
            }
            Op::SemaphoreRelease(o) => {
                self.release(name, caller, o.n.max(1), rec)?;
                Ok(reply::unit())
            }
            Op::SemaphoreValue(_) => Ok(reply::count(self.state.lock().value as usize)),
            other => Err(super::misrouted(name, &other)),
        }
    }

    fn release(&self, name: &str, caller: &Caller, n: u64, rec: &Recorder) -> Result<()> {
        let mut s = self.state.lock();
        let value = s.value.checked_add(n).ok_or_else(|| {
            StoreError::InvalidArgument(format!("semaphore {name:?}: release overflows"))
        })?;
        if let Some(bound) = self.bound {
            if value > bound {
                return Err(StoreError::InvalidArgument(format!(
                    "bounded semaphore {name:?} released too many times (its value would be {value}, above its start value {bound})"
                )));
            }
        }
        rec.commit();
        s.value = value;
        if let Some(held) = s.held.get_mut(&caller.client_id) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                s.held.remove(&caller.client_id);
            }
        }
        drop(s);
        for _ in 0..n.min(1024) {
            self.released.notify_one();
        }
        if n > 1024 {
            self.released.notify_waiters();
        }
        Ok(())
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let s = self.state.lock();
        vec![
            ("value", Val::Int(s.value as i64)),
            (
                "bound",
                self.bound.map_or(Val::Null, |b| Val::Int(b as i64)),
            ),
            ("holders", Val::Int(s.held.len() as i64)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }

    /// The value once every holder has given its permits back (as a
    /// restart does), and the seq `next_seq` gives while it is locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (u64, u64) {
        let s = self.state.lock();
        (self.value_without_holders(&s), next_seq())
    }

    fn value_without_holders(&self, s: &State) -> u64 {
        let value = s.value.saturating_add(s.held.values().sum());
        self.bound.map_or(value, |b| value.min(b))
    }

    /// A semaphore restored from a snapshot: `bound` is its start value.
    pub fn restore(value: u64, bound: u64, bounded: bool) -> Self {
        let s = Semaphore::new(bound, bounded);
        s.state.lock().value = value;
        s
    }

    /// How many permits `client_id` holds.
    pub fn held_by(&self, client_id: &str) -> u64 {
        self.state.lock().held.get(client_id).copied().unwrap_or(0)
    }

    /// Gives back the permits `client_id` holds: its session ended. Returns
    /// how many.
    pub fn release_client(&self, client_id: &str) -> u64 {
        let mut s = self.state.lock();
        let Some(held) = s.held.remove(client_id) else {
            return 0;
        };
        let value = s.value.saturating_add(held);
        s.value = self.bound.map_or(value, |b| value.min(b));
        drop(s);
        self.released.notify_waiters();
        held
    }

    /// Gives back every permit any holder has (after a restart).
    pub fn release_all_holders(&self) {
        let mut s = self.state.lock();
        s.value = self.value_without_holders(&s);
        s.held.clear();
        drop(s);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Semaphore {
        async fn ap(&self, name: &str, caller: &Caller, op: Op) -> Result<OpResult> {
            self.apply(name, caller, op, &Recorder::none()).await
        }
    }

    fn acquire(blocking: bool, timeout: Option<f64>) -> Op {
        Op::SemaphoreAcquire(pb::SemaphoreAcquire {
            blocking,
            timeout_secs: timeout,
        })
    }

    fn release() -> Op {
        Op::SemaphoreRelease(pb::SemaphoreRelease { n: 1 })
    }

    #[tokio::test]
    async fn counts_down_and_times_out_at_zero() {
        let s = Semaphore::new(2, false);
        let a = Caller::new("a", "");
        for _ in 0..2 {
            s.ap("s", &a, acquire(true, None)).await.unwrap();
        }
        let r = s.ap("s", &a, acquire(false, None)).await.unwrap();
        assert_eq!(as_acquired(r), (false, 0));
        let r = s.ap("s", &a, acquire(true, Some(0.01))).await;
        assert!(matches!(r, Err(StoreError::Timeout(_))));
        s.ap("s", &a, release()).await.unwrap();
        assert_eq!(
            as_count(
                s.ap("s", &a, Op::SemaphoreValue(pb::SemaphoreValue {}))
                    .await
                    .unwrap()
            ),
            1
        );
    }

    #[tokio::test]
    async fn a_plain_semaphore_may_grow_a_bounded_one_may_not() {
        let a = Caller::new("a", "");
        let plain = Semaphore::new(1, false);
        plain.ap("s", &a, release()).await.unwrap();
        assert_eq!(plain.state.lock().value, 2);

        let bounded = Semaphore::new(1, true);
        let r = bounded.ap("s", &a, release()).await;
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
        assert_eq!(bounded.state.lock().value, 1, "unchanged");
        bounded.ap("s", &a, acquire(true, None)).await.unwrap();
        bounded.ap("s", &a, release()).await.unwrap();
    }
}
