//! Barrier: `parties` callers wait until all have arrived.
//!
//! Each round is a generation with its own outcome, published through a
//! `watch` channel: every waiter of that round learns whether it passed or
//! was broken, even if a new round has started since. A timeout, an abort,
//! a reset, or a waiter that goes away (its client died) breaks the round
//! for all its waiters: better a clear `BrokenBarrier` than a barrier that
//! can never fill.

use std::time::Duration;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::watch;

use super::error::{Result, StoreError};
use super::reply;
use super::val::Val;
use super::wait::timeout_from_secs;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Outcome {
    Waiting,
    Passed,
    Broken,
}

pub struct Barrier {
    parties: u64,
    default_timeout: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    arrived: u64,
    /// Broken until reset: new arrivals fail at once.
    broken: bool,
    round: watch::Sender<Outcome>,
    /// Which round `round` is.
    round_id: u64,
}

impl State {
    /// Ends the current round with `outcome` and starts the next.
    fn end_round(&mut self, outcome: Outcome) {
        self.round.send_replace(outcome);
        self.round = watch::channel(Outcome::Waiting).0;
        self.round_id += 1;
        self.arrived = 0;
    }
}

/// Breaks the round if its waiter is dropped before the round ended.
struct Arrival<'a> {
    barrier: &'a Barrier,
    round: watch::Receiver<Outcome>,
    round_id: u64,
    settled: bool,
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.barrier.break_round(self.round_id);
        }
    }
}

impl Barrier {
    pub fn new(parties: u64, default_timeout: Option<Duration>) -> Result<Self> {
        if parties == 0 {
            return Err(StoreError::InvalidArgument(
                "a barrier needs at least 1 party".into(),
            ));
        }
        Ok(Barrier {
            parties,
            default_timeout,
            state: Mutex::new(State {
                arrived: 0,
                broken: false,
                round: watch::channel(Outcome::Waiting).0,
                round_id: 0,
            }),
        })
    }

    /// Breaks round `round_id` if it is still the current one; new arrivals
    /// then fail until a reset.
    fn break_round(&self, round_id: u64) {
        let mut s = self.state.lock();
        if s.round_id == round_id {
            s.end_round(Outcome::Broken);
            s.broken = true;
        }
    }

    async fn wait(&self, name: &str, timeout: Option<Duration>) -> Result<u64> {
        let broken = || StoreError::BrokenBarrier(format!("barrier {name:?} is broken"));
        let (index, round, round_id) = {
            let mut s = self.state.lock();
            if s.broken {
                return Err(broken());
            }
            let index = s.arrived;
            s.arrived += 1;
            if s.arrived == self.parties {
                s.end_round(Outcome::Passed);
                return Ok(index);
            }
            (index, s.round.subscribe(), s.round_id)
        };
        let mut arrival = Arrival {
            barrier: self,
            round,
            round_id,
            settled: false,
        };
        let waited = {
            let ended = arrival.round.wait_for(|o| *o != Outcome::Waiting);
            match timeout.or(self.default_timeout) {
                None => Some(ended.await.map(|o| *o)),
                Some(t) => tokio::time::timeout(t, ended)
                    .await
                    .ok()
                    .map(|r| r.map(|o| *o)),
            }
        };
        arrival.settled = true;
        match waited {
            Some(Ok(Outcome::Passed)) => Ok(index),
            None => {
                // Timed out: as in Python, that breaks the barrier for all.
                self.break_round(arrival.round_id);
                Err(StoreError::BrokenBarrier(format!(
                    "barrier {name:?} timed out and is now broken"
                )))
            }
            _ => Err(broken()),
        }
    }

    pub async fn apply(&self, name: &str, op: Op) -> Result<OpResult> {
        match op {
            Op::BarrierWait(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                Ok(reply::count(self.wait(name, timeout).await? as usize))
            }
            Op::BarrierReset(_) => {
                // Whoever is waiting now gets BrokenBarrier; then a fresh start.
                let mut s = self.state.lock();
                s.end_round(Outcome::Broken);
                s.broken = false;
                Ok(reply::unit())
            }
            Op::BarrierAbort(_) => {
                let mut s = self.state.lock();
                s.end_round(Outcome::Broken);
                s.broken = true;
                Ok(reply::unit())
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let s = self.state.lock();
        vec![
            ("parties", Val::Int(self.parties as i64)),
            ("n_waiting", Val::Int(s.arrived as i64)),
            ("broken", Val::Bool(s.broken)),
            ("waiters", Val::Int(s.arrived as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn waiting(b: &Barrier) -> u64 {
        b.state.lock().arrived
    }

    #[tokio::test]
    async fn indexes_are_distinct_and_the_barrier_is_reusable() {
        let b = Arc::new(Barrier::new(3, None).unwrap());
        for _round in 0..2 {
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    tokio::spawn(async move { b.wait("b", None).await.unwrap() })
                })
                .collect();
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await.unwrap());
            }
            got.sort();
            assert_eq!(got, [0, 1, 2]);
        }
    }

    #[tokio::test]
    async fn a_timeout_breaks_it_for_everyone_until_reset() {
        let b = Arc::new(Barrier::new(3, None).unwrap());
        let other = tokio::spawn({
            let b = b.clone();
            async move { b.wait("b", None).await }
        });
        while waiting(&b) < 1 {
            tokio::task::yield_now().await;
        }
        let r = b.wait("b", Some(Duration::from_millis(10))).await;
        assert!(matches!(r, Err(StoreError::BrokenBarrier(_))));
        assert!(matches!(
            other.await.unwrap(),
            Err(StoreError::BrokenBarrier(_))
        ));
        assert!(matches!(
            b.wait("b", None).await,
            Err(StoreError::BrokenBarrier(_))
        ));
        b.apply("b", Op::BarrierReset(procshare_proto::BarrierReset {}))
            .await
            .unwrap();
        assert!(!b.state.lock().broken);
        assert_eq!(waiting(&b), 0);
    }

    #[tokio::test]
    async fn abort_and_a_vanished_waiter_break_it() {
        let b = Arc::new(Barrier::new(2, None).unwrap());
        let gone = tokio::spawn({
            let b = b.clone();
            async move { b.wait("b", None).await }
        });
        while waiting(&b) < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        assert!(b.state.lock().broken, "a waiter that went away broke it");
        b.apply("b", Op::BarrierReset(procshare_proto::BarrierReset {}))
            .await
            .unwrap();
        b.apply("b", Op::BarrierAbort(procshare_proto::BarrierAbort {}))
            .await
            .unwrap();
        assert!(matches!(
            b.wait("b", None).await,
            Err(StoreError::BrokenBarrier(_))
        ));
    }
}
