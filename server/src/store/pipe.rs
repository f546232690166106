//! Pipe: two connected ends, 0 and 1, like Python's `Pipe()`. What one end
//! sends, the other receives, in order.
//!
//! `poll` and `recv` may wait on the same end at once, and `poll` takes
//! nothing, so a send wakes every waiter of that end (there are few) rather
//! than one that might only be polling.

use std::collections::VecDeque;

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::reply;
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};

#[derive(Default)]
pub struct Pipe {
    /// `inbox[e]`: what end `e` will receive.
    inbox: [Mutex<VecDeque<Val>>; 2],
    arrived: [Notify; 2],
    waiters: Waiters,
}

fn end(name: &str, e: u32) -> Result<usize> {
    match e {
        0 | 1 => Ok(e as usize),
        _ => Err(StoreError::InvalidArgument(format!(
            "pipe {name:?} has ends 0 and 1, not {e}"
        ))),
    }
}

impl Pipe {
    pub async fn apply(&self, name: &str, op: Op) -> Result<OpResult> {
        match op {
            Op::PipeSend(o) => {
                let from = end(name, o.end)?;
                let value = Val::required(o.value, "value")?;
                let to = 1 - from;
                self.inbox[to].lock().push_back(value);
                self.arrived[to].notify_waiters();
                Ok(reply::unit())
            }
            Op::PipeRecv(o) => {
                let at = end(name, o.end)?;
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let got = until(&self.arrived[at], &self.waiters, timeout, || {
                    self.inbox[at].lock().pop_front()
                })
                .await
                .ok_or_else(|| {
                    StoreError::Timeout(format!("nothing arrived at end {at} of pipe {name:?}"))
                })?;
                Ok(reply::value(&got))
            }
            Op::PipePoll(o) => {
                let at = end(name, o.end)?;
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let ready = || (!self.inbox[at].lock().is_empty()).then_some(());
                let ready = match timeout {
                    None => ready(),
                    Some(t) => until(&self.arrived[at], &self.waiters, Some(t), ready).await,
                };
                Ok(reply::flag(ready.is_some()))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("pending_0", Val::Int(self.inbox[0].lock().len() as i64)),
            ("pending_1", Val::Int(self.inbox[1].lock().len() as i64)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    #[tokio::test]
    async fn each_end_receives_what_the_other_sent() {
        let p = Pipe::default();
        let send = |e, v: i64| {
            Op::PipeSend(pb::PipeSend {
                end: e,
                value: Some(Val::Int(v).to_wire()),
            })
        };
        let recv = |e, t| {
            Op::PipeRecv(pb::PipeRecv {
                end: e,
                timeout_secs: t,
            })
        };
        let poll = |e, t| {
            Op::PipePoll(pb::PipePoll {
                end: e,
                timeout_secs: t,
            })
        };
        p.apply("p", send(0, 1)).await.unwrap();
        p.apply("p", send(0, 2)).await.unwrap();
        p.apply("p", send(1, 3)).await.unwrap();
        assert!(as_flag(p.apply("p", poll(1, None)).await.unwrap()));
        assert_eq!(
            as_value(p.apply("p", recv(1, None)).await.unwrap()),
            Val::Int(1)
        );
        assert_eq!(
            as_value(p.apply("p", recv(1, None)).await.unwrap()),
            Val::Int(2)
        );
        assert_eq!(
            as_value(p.apply("p", recv(0, None)).await.unwrap()),
            Val::Int(3)
        );
        assert!(!as_flag(p.apply("p", poll(0, Some(0.01))).await.unwrap()));
        assert!(matches!(
            p.apply("p", recv(0, Some(0.01))).await,
            Err(StoreError::Timeout(_))
        ));
        assert!(matches!(
            p.apply("p", send(2, 0)).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }
}
