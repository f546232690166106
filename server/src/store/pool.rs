//! Pool: tasks that live on the server, run by worker processes anywhere.
//!
//! A task is a handler name and an argument. `submit` queues it (FIFO);
//! `claim` hands the first queued task whose handler the worker serves to
//! that worker and records the worker's client as running it; `complete`
//! stores its outcome (a value or the handler's error); `result` waits for
//! an outcome and hands it out.
//!
//! At least once: when a client goes away ([`Pool::release_client`], called
//! when its session ends or its lease runs out), the tasks it was running go
//! back to the front of the queue, and another worker runs them again. Only
//! the client running a task may complete it; a task completed twice (its
//! first worker was only presumed dead) keeps its first outcome.
//!
//! Memory is bounded: an outcome is forgotten once `result` hands it out
//! (the caller keeps it), and the pool refuses a submit while it holds the
//! server's queue limit of queued, running and unfetched tasks. The counts
//! `done` and `failed` are totals since the pool was made.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use procshare_proto::{self as pb, op::Kind as Op, op_result::Kind as R, OpResult};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::wait::{timeout_from_secs, until, Waiters};

pub struct Pool {
    /// The server's limit on tasks held (queued, running, unfetched).
    max_len: usize,
    state: Mutex<State>,
    /// A task was queued, or the pool may have become drained.
    claimable: Notify,
    /// A task finished.
    finished: Notify,
    /// Nothing is queued or running any more.
    idle: Notify,
    waiters: Waiters,
    /// Clients blocked in `claim` right now, and how many calls each.
    claimers: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<u64>,
    tasks: HashMap<u64, Task>,
    running: usize,
    next_id: u64,
    done: u64,
    failed: u64,
    closed: bool,
}

struct Task {
    handler: String,
    arg: Val,
    deliveries: u32,
    stage: Stage,
}

enum Stage {
    Queued,
    /// Claimed by this client.
    Running(String),
    /// Finished; the outcome is not handed out yet.
    Finished(Outcome),
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ok(Val),
    Err(String),
}

impl Outcome {
    fn to_wire(&self, task_id: u64) -> pb::PoolOutcome {
        pb::PoolOutcome {
            task_id,
            outcome: Some(match self {
                Outcome::Ok(v) => pb::pool_outcome::Outcome::Ok(v.to_wire()),
                Outcome::Err(e) => pb::pool_outcome::Outcome::Error(e.clone()),
            }),
        }
    }
}

/// Counts a client as waiting to claim until dropped.
struct Claiming<'a> {
    claimers: &'a Mutex<HashMap<String, usize>>,
    client: String,
}

impl<'a> Claiming<'a> {
    fn enter(claimers: &'a Mutex<HashMap<String, usize>>, client: &str) -> Self {
        *claimers.lock().entry(client.to_owned()).or_default() += 1;
        Claiming {
            claimers,
            client: client.to_owned(),
        }
    }
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        let mut c = self.claimers.lock();
        if let Some(n) = c.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.client);
            }
        }
    }
}

/// What one claim attempt found.
enum Claimed {
    Task(pb::PoolTask),
    Drained,
}

impl State {
    fn serves(handlers: &[String], handler: &str) -> bool {
        handlers.is_empty() || handlers.iter().any(|h| h == handler)
    }

    fn try_claim(&mut self, handlers: &[String], client: &str, rec: &Recorder) -> Option<Claimed> {
        let at = self.queue.iter().position(|id| {
            self.tasks
                .get(id)
                .is_some_and(|t| Self::serves(handlers, &t.handler))
        });
        let Some(at) = at else {
            let running_for_me = self.tasks.values().any(|t| {
                matches!(t.stage, Stage::Running(_)) && Self::serves(handlers, &t.handler)
            });
            return (self.closed && !running_for_me).then_some(Claimed::Drained);
        };
        let id = self.queue.remove(at)?;
        let task = self.tasks.get_mut(&id)?;
        rec.commit();
        task.stage = Stage::Running(client.to_owned());
        task.deliveries = task.deliveries.saturating_add(1);
        self.running += 1;
        Some(Claimed::Task(pb::PoolTask {
            id,
            handler: task.handler.clone(),
            arg: Some(task.arg.to_wire()),
            deliveries: task.deliveries,
            drained: false,
        }))
    }

    /// The first finished task among `ids`, taken out; `Err` if an id is
    /// unknown (or was handed out meanwhile).
    fn try_take(&mut self, name: &str, ids: &[u64], rec: &Recorder) -> Option<Result<OpResult>> {
        for id in ids {
            match self.tasks.get(id).map(|t| &t.stage) {
                None => return Some(Err(unknown(name, *id))),
                Some(Stage::Finished(_)) => {
                    rec.commit();
                    let task = self.tasks.remove(id)?;
                    let Stage::Finished(outcome) = task.stage else {
                        return None;
                    };
                    return Some(Ok(OpResult {
                        kind: Some(R::PoolOutcome(outcome.to_wire(*id))),
                    }));
                }
                Some(_) => {}
            }
        }
        None
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.running == 0
    }

    /// Puts `client`'s running tasks back at the front, in id order.
    fn requeue(&mut self, client: Option<&str>) -> usize {
        let mut ids: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| match (&t.stage, client) {
                (Stage::Running(c), Some(client)) => c == client,
                (Stage::Running(_), None) => true,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids.iter().rev() {
            if let Some(t) = self.tasks.get_mut(id) {
                t.stage = Stage::Queued;
            }
            self.queue.push_front(*id);
        }
        self.running -= ids.len();
        ids.len()
    }
}

fn unknown(name: &str, id: u64) -> StoreError {
    StoreError::NotFound(format!(
        "pool {name:?} has no task {id} (never submitted, or its result was already handed out)"
    ))
}

impl Pool {
    pub fn new(max_len: usize) -> Self {
        Pool {
            max_len,
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            claimable: Notify::new(),
            finished: Notify::new(),
            idle: Notify::new(),
            waiters: Waiters::default(),
            claimers: Mutex::default(),
        }
    }

    pub async fn apply(
        &self,
        name: &str,
        client: &str,
        op: Op,
        rec: &Recorder<'_>,
    ) -> Result<OpResult> {
        match op {
            Op::PoolSubmit(o) => {
                if o.handler.is_empty() {
                    return Err(StoreError::InvalidArgument(
                        "pool submit: a handler name is required".into(),
                    ));
                }
                let arg = Val::required(o.arg, "arg")?;
                let mut s = self.state.lock();
                if s.closed {
                    return Err(StoreError::InvalidArgument(format!(
                        "pool {name:?} is closed: it takes no more tasks"
                    )));
                }
                if s.tasks.len() >= self.max_len {
                    return Err(StoreError::ResourceExhausted(format!(
                        "pool {name:?} holds {} unfinished or unfetched tasks, the server's limit (--max-queue-len)",
                        self.max_len
                    )));
                }
                rec.commit();
                let id = s.next_id;
                s.next_id += 1;
                s.tasks.insert(
                    id,
                    Task {
                        handler: o.handler,
                        arg,
                        deliveries: 0,
                        stage: Stage::Queued,
                    },
                );
                s.queue.push_back(id);
                drop(s);
                // Every claimer looks: one woken alone might not serve this
                // handler.
                self.claimable.notify_waiters();
                Ok(reply::count(id as usize))
            }
            Op::PoolClaim(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let attempt = || self.state.lock().try_claim(&o.handlers, client, rec);
                let claimed = if timeout.is_some_and(|t| t.is_zero()) {
                    attempt()
                } else {
                    let _claiming = Claiming::enter(&self.claimers, client);
                    until(&self.claimable, &self.waiters, timeout, attempt).await
                };
                let task = match claimed {
                    Some(Claimed::Task(t)) => t,
                    Some(Claimed::Drained) => pb::PoolTask {
                        drained: true,
                        ..Default::default()
                    },
                    None => {
                        return Err(StoreError::Empty(format!(
                            "pool {name:?} has no task for {}",
                            if o.handlers.is_empty() {
                                "any handler".to_owned()
                            } else {
                                format!("handlers {:?}", o.handlers)
                            }
                        )))
                    }
                };
                Ok(OpResult {
                    kind: Some(R::PoolTask(task)),
                })
            }
            Op::PoolComplete(o) => {
                let outcome = match o.outcome {
                    Some(pb::pool_complete::Outcome::Ok(v)) => Outcome::Ok(Val::from_wire(v)?),
                    Some(pb::pool_complete::Outcome::Error(e)) => Outcome::Err(e),
                    None => return Err(StoreError::missing_field("outcome")),
                };
                let mut s = self.state.lock();
                let task = s
                    .tasks
                    .get_mut(&o.task_id)
                    .ok_or_else(|| unknown(name, o.task_id))?;
                match &task.stage {
                    Stage::Finished(_) => return Ok(reply::flag(false)),
                    Stage::Running(owner) if owner == client => {}
                    Stage::Running(_) | Stage::Queued => {
                        return Err(StoreError::NotOwner(format!(
                            "task {} of pool {name:?} is not running for this client (it was handed to another worker)",
                            o.task_id
                        )))
                    }
                }
                rec.commit();
                match outcome {
                    Outcome::Ok(_) => s.done += 1,
                    Outcome::Err(_) => s.failed += 1,
                }
                if let Some(task) = s.tasks.get_mut(&o.task_id) {
                    task.stage = Stage::Finished(outcome);
                }
                s.running -= 1;
                let idle = s.is_idle();
                drop(s);
                self.finished.notify_waiters();
                if idle {
                    self.idle.notify_waiters();
                }
                // A closed pool may have just drained.
                self.claimable.notify_waiters();
                Ok(reply::flag(true))
            }
            Op::PoolResult(o) => {
                if o.task_ids.is_empty() {
                    return Err(StoreError::InvalidArgument(
                        "pool result: no task ids given".into(),
                    ));
                }
                let timeout = timeout_from_secs(o.timeout_secs)?;
                let attempt = || self.state.lock().try_take(name, &o.task_ids, rec);
                let taken = if timeout.is_some_and(|t| t.is_zero()) {
                    attempt()
                } else {
                    until(&self.finished, &self.waiters, timeout, attempt).await
                };
                taken.unwrap_or_else(|| {
                    Err(StoreError::Timeout(format!(
                        "no result from pool {name:?} in time"
                    )))
                })
            }
            Op::PoolStatus(_) => Ok(reply::value(&Val::Map(
                self.describe()
                    .into_iter()
                    .map(|(k, v)| (Val::Str(k.into()), v))
                    .collect(),
            ))),
            Op::PoolClose(_) => {
                let mut s = self.state.lock();
                if !s.closed {
                    rec.commit();
                    s.closed = true;
                }
                drop(s);
                self.claimable.notify_waiters();
                Ok(reply::unit())
            }
            Op::PoolJoin(o) => {
                let timeout = timeout_from_secs(o.timeout_secs)?;
                until(&self.idle, &self.waiters, timeout, || {
                    self.state.lock().is_idle().then_some(())
                })
                .await
                .ok_or_else(|| {
                    StoreError::Timeout(format!("pool {name:?} still has work after the timeout"))
                })?;
                Ok(reply::unit())
            }
            Op::PoolRelease(_) => Ok(reply::count(self.release_with(Some(client), rec))),
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// Puts the tasks `client` (every client: `None`) runs back at the front
    /// of the queue; returns how many.
    fn release_with(&self, client: Option<&str>, rec: &Recorder) -> usize {
        let mut s = self.state.lock();
        let has_any = s.tasks.values().any(|t| match (&t.stage, client) {
            (Stage::Running(c), Some(client)) => c == client,
            (Stage::Running(_), None) => true,
            _ => false,
        });
        if !has_any {
            return 0;
        }
        rec.commit();
        let n = s.requeue(client);
        drop(s);
        self.claimable.notify_waiters();
        n
    }

    /// `client` went away: its running tasks go back to the front of the
    /// queue (logged through `rec` as its `PoolRelease`).
    pub fn release_client(&self, client: &str, rec: &Recorder) -> usize {
        self.release_with(Some(client), rec)
    }

    /// After a restart: the sessions that ran tasks are gone.
    pub fn release_all(&self) -> usize {
        self.release_with(None, &Recorder::none())
    }

    /// How many tasks `client` runs.
    pub fn running_for(&self, client: &str) -> usize {
        self.state
            .lock()
            .tasks
            .values()
            .filter(|t| matches!(&t.stage, Stage::Running(c) if c == client))
            .count()
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let s = self.state.lock();
        let mut workers: std::collections::HashSet<&str> = s
            .tasks
            .values()
            .filter_map(|t| match &t.stage {
                Stage::Running(c) => Some(c.as_str()),
                _ => None,
            })
            .collect();
        let claimers = self.claimers.lock();
        workers.extend(claimers.keys().map(String::as_str));
        let unfetched = s.tasks.len() - s.queue.len() - s.running;
        vec![
            ("queued", Val::Int(s.queue.len() as i64)),
            ("running", Val::Int(s.running as i64)),
            ("done", Val::Int(s.done as i64)),
            ("failed", Val::Int(s.failed as i64)),
            ("unfetched", Val::Int(unfetched as i64)),
            ("closed", Val::Bool(s.closed)),
            ("workers", Val::Int(workers.len() as i64)),
            ("waiters", Val::Int(self.waiters.count() as i64)),
        ]
    }

    /// The pool's state for a snapshot, and the seq `next_seq` gives while
    /// it is locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (pb::PoolState, u64) {
        let s = self.state.lock();
        let task = |id: u64, t: &Task| pb::PoolTaskState {
            id,
            handler: t.handler.clone(),
            arg: Some(t.arg.to_wire()),
            deliveries: t.deliveries,
            claimed_by: match &t.stage {
                Stage::Running(c) => c.clone(),
                _ => String::new(),
            },
            outcome: match &t.stage {
                Stage::Finished(o) => Some(o.to_wire(id)),
                _ => None,
            },
        };
        // Queued tasks in queue order, then the others by id.
        let mut others: Vec<u64> = s
            .tasks
            .iter()
            .filter(|(_, t)| !matches!(t.stage, Stage::Queued))
            .map(|(id, _)| *id)
            .collect();
        others.sort_unstable();
        let tasks = s
            .queue
            .iter()
            .chain(others.iter())
            .filter_map(|id| s.tasks.get(id).map(|t| task(*id, t)))
            .collect();
        let state = pb::PoolState {
            tasks,
            next_id: s.next_id,
            done: s.done,
            failed: s.failed,
            closed: s.closed,
        };
        (state, next_seq())
    }

    /// A pool from a snapshot's state.
    pub fn restore(st: pb::PoolState, max_len: usize) -> Result<Self> {
        let pool = Pool::new(max_len);
        {
            let mut s = pool.state.lock();
            s.next_id = st.next_id.max(1);
            s.done = st.done;
            s.failed = st.failed;
            s.closed = st.closed;
            for t in st.tasks {
                let stage = match (t.outcome, t.claimed_by.is_empty()) {
                    (Some(o), _) => Stage::Finished(match o.outcome {
                        Some(pb::pool_outcome::Outcome::Ok(v)) => Outcome::Ok(Val::from_wire(v)?),
                        Some(pb::pool_outcome::Outcome::Error(e)) => Outcome::Err(e),
                        None => return Err(StoreError::missing_field("outcome")),
                    }),
                    (None, true) => {
                        s.queue.push_back(t.id);
                        Stage::Queued
                    }
                    (None, false) => {
                        s.running += 1;
                        Stage::Running(t.claimed_by)
                    }
                };
                let task = Task {
                    handler: t.handler,
                    arg: Val::required(t.arg, "arg")?,
                    deliveries: t.deliveries,
                    stage,
                };
                if s.tasks.insert(t.id, task).is_some() {
                    return Err(StoreError::InvalidArgument(format!(
                        "task {} appears twice",
                        t.id
                    )));
                }
            }
        }
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use std::sync::Arc;

    impl Pool {
        async fn ap(&self, client: &str, op: Op) -> Result<OpResult> {
            self.apply("p", client, op, &Recorder::none()).await
        }

        async fn submit(&self, handler: &str, arg: i64) -> u64 {
            as_count(
                self.ap("caller", submit(handler, arg))
                    .await
                    .expect("submit"),
            )
        }

        fn status(&self) -> Vec<(&'static str, Val)> {
            self.describe()
        }

        fn count(&self, what: &str) -> i64 {
            match self.status().into_iter().find(|(k, _)| *k == what) {
                Some((_, Val::Int(n))) => n,
                other => panic!("no {what}: {other:?}"),
            }
        }
    }

    fn submit(handler: &str, arg: i64) -> Op {
        Op::PoolSubmit(pb::PoolSubmit {
            handler: handler.into(),
            arg: Some(Val::Int(arg).to_wire()),
        })
    }

    fn claim(handlers: &[&str], timeout: Option<f64>) -> Op {
        Op::PoolClaim(pb::PoolClaim {
            handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
            timeout_secs: timeout,
        })
    }

    fn complete(id: u64, ok: Result<i64, &str>) -> Op {
        Op::PoolComplete(pb::PoolComplete {
            task_id: id,
            outcome: Some(match ok {
                Ok(v) => pb::pool_complete::Outcome::Ok(Val::Int(v).to_wire()),
                Err(e) => pb::pool_complete::Outcome::Error(e.into()),
            }),
        })
    }

    fn result(ids: &[u64], timeout: Option<f64>) -> Op {
        Op::PoolResult(pb::PoolResult {
            task_ids: ids.to_vec(),
            timeout_secs: timeout,
        })
    }

    fn as_task(r: OpResult) -> pb::PoolTask {
        match r.kind {
            Some(R::PoolTask(t)) => t,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn as_outcome(r: OpResult) -> (u64, Result<Val, String>) {
        match r.kind {
            Some(R::PoolOutcome(o)) => (
                o.task_id,
                match o.outcome {
                    Some(pb::pool_outcome::Outcome::Ok(v)) => Ok(Val::from_wire(v).unwrap()),
                    Some(pb::pool_outcome::Outcome::Error(e)) => Err(e),
                    None => panic!("no outcome"),
                },
            ),
            other => panic!("expected an outcome, got {other:?}"),
        }
    }

    fn arg(t: &pb::PoolTask) -> Val {
        Val::from_wire(t.arg.clone().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn tasks_are_claimed_in_fifo_order_by_handler() {
        let p = Pool::new(100);
        assert_eq!(p.submit("a", 1).await, 1);
        assert_eq!(p.submit("b", 2).await, 2);
        assert_eq!(p.submit("a", 3).await, 3);
        let t = as_task(p.ap("w", claim(&["b"], Some(0.0))).await.unwrap());
        assert_eq!((t.id, t.handler.as_str(), arg(&t)), (2, "b", Val::Int(2)));
        assert_eq!(t.deliveries, 1);
        assert!(matches!(
            p.ap("w", claim(&["b"], Some(0.0))).await,
            Err(StoreError::Empty(_))
        ));
        let t = as_task(p.ap("w", claim(&[], None)).await.unwrap());
        assert_eq!(t.id, 1);
        let t = as_task(p.ap("w", claim(&["x", "a"], Some(0.01))).await.unwrap());
        assert_eq!(t.id, 3);
        assert_eq!((p.count("queued"), p.count("running")), (0, 3));
    }

    #[tokio::test]
    async fn a_blocked_claim_gets_a_later_submit() {
        let p = Arc::new(Pool::new(100));
        let worker = tokio::spawn({
            let p = p.clone();
            async move { p.ap("w", claim(&["a"], None)).await }
        });
        while p.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(p.count("workers"), 1, "a waiting claimer is a worker");
        p.submit("b", 0).await;
        p.submit("a", 7).await;
        let t = as_task(worker.await.unwrap().unwrap());
        assert_eq!(arg(&t), Val::Int(7));
        assert_eq!(p.count("queued"), 1, "the b task waits for its own worker");
    }

    #[tokio::test]
    async fn outcomes_are_handed_out_once_and_errors_are_outcomes() {
        let p = Pool::new(100);
        let (a, b) = (p.submit("f", 1).await, p.submit("f", 2).await);
        as_task(p.ap("w", claim(&[], None)).await.unwrap());
        as_task(p.ap("w", claim(&[], None)).await.unwrap());
        assert!(matches!(
            p.ap("c", result(&[a], Some(0.01))).await,
            Err(StoreError::Timeout(_))
        ));
        assert!(as_flag(p.ap("w", complete(b, Err("boom"))).await.unwrap()));
        assert!(as_flag(p.ap("w", complete(a, Ok(10))).await.unwrap()));
        assert_eq!((p.count("done"), p.count("failed")), (1, 1));
        assert_eq!(p.count("unfetched"), 2);
        // The first finished in list order.
        let (id, got) = as_outcome(p.ap("c", result(&[b, a], None)).await.unwrap());
        assert_eq!((id, got), (b, Err("boom".to_owned())));
        let (id, got) = as_outcome(p.ap("c", result(&[a], None)).await.unwrap());
        assert_eq!((id, got), (a, Ok(Val::Int(10))));
        // Handed out: forgotten.
        assert!(matches!(
            p.ap("c", result(&[a], None)).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(p.count("unfetched"), 0);
    }

    #[tokio::test]
    async fn a_waiting_result_wakes_on_completion() {
        let p = Arc::new(Pool::new(100));
        let id = p.submit("f", 1).await;
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.ap("c", result(&[id], None)).await }
        });
        while p.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        as_task(p.ap("w", claim(&[], None)).await.unwrap());
        p.ap("w", complete(id, Ok(5))).await.unwrap();
        let (_, got) = as_outcome(waiter.await.unwrap().unwrap());
        assert_eq!(got, Ok(Val::Int(5)));
    }

    #[tokio::test]
    async fn only_the_claimer_completes_and_the_first_outcome_wins() {
        let p = Pool::new(100);
        let id = p.submit("f", 1).await;
        assert!(matches!(
            p.ap("w1", complete(id, Ok(1))).await,
            Err(StoreError::NotOwner(_))
        ));
        as_task(p.ap("w1", claim(&[], None)).await.unwrap());
        assert!(matches!(
            p.ap("w2", complete(id, Ok(2))).await,
            Err(StoreError::NotOwner(_))
        ));
        assert!(matches!(
            p.ap("w1", complete(99, Ok(2))).await,
            Err(StoreError::NotFound(_))
        ));
        let missing = Op::PoolComplete(pb::PoolComplete {
            task_id: id,
            outcome: None,
        });
        assert!(matches!(
            p.ap("w1", missing).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert_eq!(p.count("running"), 1, "failed completes change nothing");
        assert!(as_flag(p.ap("w1", complete(id, Ok(1))).await.unwrap()));
        // A re-delivered task completed again: the first outcome stays.
        assert!(!as_flag(p.ap("w1", complete(id, Ok(3))).await.unwrap()));
        assert!(!as_flag(
            p.ap("w2", complete(id, Err("late"))).await.unwrap()
        ));
        let (_, got) = as_outcome(p.ap("c", result(&[id], None)).await.unwrap());
        assert_eq!(got, Ok(Val::Int(1)));
        assert_eq!((p.count("done"), p.count("failed")), (1, 0));
    }

    #[tokio::test]
    async fn a_client_that_goes_away_gives_its_tasks_back_to_the_front() {
        let p = Pool::new(100);
        for i in 1..=4 {
            p.submit("f", i).await;
        }
        let t1 = as_task(p.ap("dead", claim(&[], None)).await.unwrap());
        let t2 = as_task(p.ap("alive", claim(&[], None)).await.unwrap());
        let t3 = as_task(p.ap("dead", claim(&[], None)).await.unwrap());
        assert_eq!((t1.id, t2.id, t3.id), (1, 2, 3));
        assert_eq!(p.running_for("dead"), 2);
        assert_eq!(p.release_client("dead", &Recorder::none()), 2);
        assert_eq!(p.release_client("dead", &Recorder::none()), 0);
        assert_eq!((p.count("queued"), p.count("running")), (3, 1));
        // Back at the front, in their order, ahead of task 4.
        let again = as_task(p.ap("other", claim(&[], None)).await.unwrap());
        assert_eq!((again.id, again.deliveries), (1, 2));
        assert_eq!(
            as_task(p.ap("other", claim(&[], None)).await.unwrap()).id,
            3
        );
        // The dead client's late completion is refused; the new owner's counts.
        assert!(matches!(
            p.ap("dead", complete(1, Ok(0))).await,
            Err(StoreError::NotOwner(_))
        ));
        assert!(as_flag(p.ap("other", complete(1, Ok(1))).await.unwrap()));
        // A worker can give its tasks back itself.
        let back = p.ap("other", Op::PoolRelease(pb::PoolRelease {})).await;
        assert_eq!(as_count(back.unwrap()), 1);
        assert_eq!(
            as_task(p.ap("x", claim(&[], Some(0.0))).await.unwrap()).id,
            3
        );
    }

    #[tokio::test]
    async fn close_refuses_submits_and_drained_claims_end() {
        let p = Arc::new(Pool::new(100));
        let id = p.submit("f", 1).await;
        p.ap("c", Op::PoolClose(pb::PoolClose {})).await.unwrap();
        p.ap("c", Op::PoolClose(pb::PoolClose {})).await.unwrap();
        assert!(matches!(
            p.ap("c", submit("f", 2)).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert_eq!(p.count("queued"), 1, "the refused submit left no trace");
        // Queued work is still handed out after close.
        as_task(p.ap("w1", claim(&[], None)).await.unwrap());
        // Nothing queued, but a task runs (and could come back): wait.
        let idle = tokio::spawn({
            let p = p.clone();
            async move { p.ap("w2", claim(&[], None)).await }
        });
        while p.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        // A worker for another handler has nothing to wait for.
        assert!(as_task(p.ap("w3", claim(&["g"], None)).await.unwrap()).drained);
        p.ap("w1", complete(id, Ok(1))).await.unwrap();
        assert!(as_task(idle.await.unwrap().unwrap()).drained);
        assert!(p.status().contains(&("closed", Val::Bool(true))));
    }

    #[tokio::test]
    async fn join_waits_until_nothing_is_queued_or_running() {
        let p = Arc::new(Pool::new(100));
        let join = |t| Op::PoolJoin(pb::PoolJoin { timeout_secs: t });
        p.ap("c", join(Some(0.0))).await.unwrap();
        let id = p.submit("f", 1).await;
        assert!(matches!(
            p.ap("c", join(Some(0.01))).await,
            Err(StoreError::Timeout(_))
        ));
        let joiner = tokio::spawn({
            let p = p.clone();
            async move { p.ap("c", join(None)).await }
        });
        as_task(p.ap("w", claim(&[], None)).await.unwrap());
        while p.waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        p.ap("w", complete(id, Ok(1))).await.unwrap();
        joiner.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_changes_nothing() {
        let p = Pool::new(2);
        assert!(matches!(
            p.ap("c", submit("", 1)).await,
            Err(StoreError::InvalidArgument(_))
        ));
        let no_arg = Op::PoolSubmit(pb::PoolSubmit {
            handler: "f".into(),
            arg: None,
        });
        assert!(matches!(
            p.ap("c", no_arg).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            p.ap("c", result(&[], None)).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            p.ap("c", result(&[5], None)).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            p.ap("w", claim(&[], Some(-1.0))).await,
            Err(StoreError::InvalidArgument(_))
        ));
        p.submit("f", 1).await;
        p.submit("f", 2).await;
        assert!(matches!(
            p.ap("c", submit("f", 3)).await,
            Err(StoreError::ResourceExhausted(_))
        ));
        assert_eq!(p.count("queued"), 2);
        assert_eq!(p.state.lock().next_id, 3, "refused submits take no id");
    }

    #[tokio::test]
    async fn a_snapshot_keeps_everything_and_restart_requeues_running_tasks() {
        let p = Pool::new(100);
        for i in 1..=4 {
            p.submit(if i == 2 { "g" } else { "f" }, i).await;
        }
        as_task(p.ap("w", claim(&["f"], None)).await.unwrap()); // 1
        as_task(p.ap("w", claim(&["f"], None)).await.unwrap()); // 3
        p.ap("w", complete(3, Err("bad"))).await.unwrap();
        p.ap("c", Op::PoolClose(pb::PoolClose {})).await.unwrap();
        let (state, seq) = p.save(|| 42);
        assert_eq!(seq, 42);
        let q = Pool::restore(state, 100).unwrap();
        assert_eq!(q.describe(), p.describe());
        // A completion logged after the snapshot still finds its owner.
        assert!(as_flag(q.ap("w", complete(1, Ok(10))).await.unwrap()));
        as_task(q.ap("w", claim(&["f"], None)).await.unwrap()); // 4
        assert_eq!(q.release_all(), 1);
        let order: Vec<u64> = q.state.lock().queue.iter().copied().collect();
        assert_eq!(order, [4, 2]);
        let (_, got) = as_outcome(q.ap("c", result(&[3], None)).await.unwrap());
        assert_eq!(got, Err("bad".to_owned()));
        assert!(matches!(
            q.ap("c", submit("f", 9)).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }

    mod durable {
        //! The pool through a real data dir: the log replays claims,
        //! completions, fetches and the requeue of a session that ended.
        use super::*;
        use crate::store::persist::{DurableConfig, FsyncPolicy};
        use crate::store::{Caller, Store, StoreLimits};

        struct Dir(std::path::PathBuf);

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        async fn open(dir: &Dir) -> Arc<Store> {
            let config = DurableConfig {
                dir: dir.0.clone(),
                fsync: FsyncPolicy::Always,
                snapshot_log_bytes: u64::MAX,
            };
            Store::open_durable(config, StoreLimits::default())
                .await
                .unwrap()
                .0
        }

        async fn run(store: &Store, client: &str, kind: Op) -> Result<OpResult> {
            let op = pb::Op {
                name: "p".into(),
                kind: Some(kind),
            };
            store.apply(&Caller::new(client, ""), op).await
        }

        async fn status(store: &Store) -> Val {
            as_value(
                run(store, "c", Op::PoolStatus(pb::PoolStatus {}))
                    .await
                    .unwrap(),
            )
        }

        async fn scenario(snapshot_midway: bool) {
            let dir = Dir(std::env::temp_dir().join(format!(
                "procshare-pool-{}-{snapshot_midway}",
                std::process::id()
            )));
            let _ = std::fs::remove_dir_all(&dir.0);
            let before = {
                let store = open(&dir).await;
                let open_pool = Op::Open(pb::Open {
                    kind: pb::Kind::Pool as i32,
                    ..Default::default()
                });
                run(&store, "c", open_pool).await.unwrap();
                for i in 1..=4 {
                    run(&store, "c", submit("f", i)).await.unwrap();
                }
                // w1 takes 1 and dies; 1 goes back to the front.
                as_task(run(&store, "w1", claim(&[], None)).await.unwrap());
                if snapshot_midway {
                    run(&store, "c", Op::Snapshot(pb::Snapshot {}))
                        .await
                        .unwrap();
                }
                assert_eq!(store.release_client("w1").len(), 1);
                // w2 takes 1 again and 2, finishes both; the caller fetches 2.
                let t = as_task(run(&store, "w2", claim(&[], None)).await.unwrap());
                assert_eq!((t.id, t.deliveries), (1, 2));
                as_task(run(&store, "w2", claim(&[], None)).await.unwrap());
                run(&store, "w2", complete(1, Ok(10))).await.unwrap();
                run(&store, "w2", complete(2, Err("no"))).await.unwrap();
                let (_, got) = as_outcome(run(&store, "c", result(&[2], None)).await.unwrap());
                assert_eq!(got, Err("no".to_owned()));
                // w3 is running 3 when the server stops.
                as_task(run(&store, "w3", claim(&[], None)).await.unwrap());
                run(&store, "c", Op::PoolClose(pb::PoolClose {}))
                    .await
                    .unwrap();
                status(&store).await
            };
            let store = open(&dir).await;
            let after = status(&store).await;
            let Val::Map(b) = before else { panic!() };
            let Val::Map(a) = after else { panic!() };
            let get = |m: &[(Val, Val)], k: &str| {
                m.iter()
                    .find(|(key, _)| *key == Val::Str(k.into()))
                    .map(|(_, v)| v.clone())
            };
            for k in ["done", "failed", "unfetched", "closed"] {
                assert_eq!(get(&a, k), get(&b, k), "{k}");
            }
            // w3's session is gone: its task 3 is queued again, ahead of 4.
            assert_eq!(get(&a, "queued"), Some(Val::Int(2)));
            assert_eq!(get(&a, "running"), Some(Val::Int(0)));
            let t = as_task(run(&store, "w4", claim(&[], Some(0.0))).await.unwrap());
            assert_eq!((t.id, t.deliveries), (3, 2));
            assert!(
                matches!(
                    run(&store, "c", result(&[2], None)).await,
                    Err(StoreError::NotFound(_))
                ),
                "2 was handed out before the restart"
            );
            let (id, got) = as_outcome(run(&store, "c", result(&[1], None)).await.unwrap());
            assert_eq!((id, got), (1, Ok(Val::Int(10))));
        }

        #[tokio::test]
        async fn a_pool_survives_a_restart_through_the_log() {
            scenario(false).await;
        }

        #[tokio::test]
        async fn a_pool_survives_through_a_snapshot_and_the_log_after_it() {
            scenario(true).await;
        }
    }
}
