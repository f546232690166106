//! [`Worker`]: serves a [`PoolProxy`](crate::PoolProxy) from any process on
//! any host.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;

use procshare_proto as pb;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::value::{from_wire, to_wire};
use crate::Manager;

type HandlerFn = Arc<dyn Fn(pb::Value) -> std::result::Result<pb::Value, String> + Send + Sync>;

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Tasks whose handler returned a value.
    pub done: u64,
    /// Tasks whose handler returned an error or panicked.
    pub failed: u64,
    /// Tasks it ran whose outcome the pool did not take: they had gone to
    /// another worker meanwhile (this one was presumed dead), or were
    /// already finished.
    pub lost: u64,
}

/// Stops a serving [`Worker`] from elsewhere (a signal handler, another
/// thread): it claims no more tasks, finishes the ones it runs, gives back
/// any it claimed and had not started, and `serve` returns.
#[derive(Clone)]
pub struct WorkerStop {
    tx: Arc<watch::Sender<bool>>,
}

impl WorkerStop {
    /// Asks the worker to stop.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }
}

/// A worker process's side of a pool: named handlers, run for the tasks it
/// claims, until the pool is closed and drained or it is told to stop.
///
/// Handlers are ordinary (blocking) functions, run off the async runtime; a
/// handler that returns `Err` or panics makes that task failed (the caller
/// gets a [`TaskError`](crate::TaskError)), and the worker carries on.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let report = procshare::Worker::new(&m, "thumbs")
///     .handle("thumbnail", |file: String| -> Result<u64, String> {
///         Ok(file.len() as u64 * 100)
///     })
///     .concurrency(4)
///     .serve()
///     .await?;
/// println!("{} done, {} failed", report.done, report.failed);
/// # Ok(()) }
/// ```
pub struct Worker {
    manager: Manager,
    pool: String,
    handlers: HashMap<String, HandlerFn>,
    concurrency: usize,
    stop: Arc<watch::Sender<bool>>,
}

impl Worker {
    /// A worker for the pool called `pool` (created if absent when it
    /// starts serving), with no handlers yet.
    pub fn new(manager: &Manager, pool: &str) -> Worker {
        Worker {
            manager: manager.clone(),
            pool: pool.to_owned(),
            handlers: HashMap::new(),
            concurrency: 1,
            stop: Arc::new(watch::channel(false).0),
        }
    }

    /// Serves tasks submitted for `name` with `f`. The argument is decoded
    /// as `A`; an argument that does not decode fails that task.
    pub fn handle<A, T, E, F>(mut self, name: &str, f: F) -> Worker
    where
        A: DeserializeOwned,
        T: Serialize,
        E: Display,
        F: Fn(A) -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        let run = move |arg: pb::Value| -> std::result::Result<pb::Value, String> {
            let arg: A =
                from_wire(arg).map_err(|e| format!("the argument does not decode: {e}"))?;
            let value = f(arg).map_err(|e| e.to_string())?;
            to_wire(&value).map_err(|e| format!("the value does not encode: {e}"))
        };
        self.handlers.insert(name.to_owned(), Arc::new(run));
        self
    }

    /// How many tasks it runs at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n.max(1);
        self
    }

    /// A handle that stops [`serve`](Worker::serve) from elsewhere.
    pub fn stopper(&self) -> WorkerStop {
        WorkerStop {
            tx: self.stop.clone(),
        }
    }

    /// Claims and runs tasks until the pool is closed and drained, or
    /// [`WorkerStop::stop`] is called. An error is a failed call (the
    /// server gone), never a handler's.
    pub async fn serve(self) -> Result<WorkerReport> {
        if self.handlers.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "worker for pool {:?} has no handlers",
                self.pool
            )));
        }
        let pool = self.manager.pool(&self.pool).await?;
        let names: Arc<[String]> = self.handlers.keys().cloned().collect();
        let handlers = Arc::new(self.handlers);
        let mut loops = JoinSet::new();
        for _ in 0..self.concurrency {
            let (pool, names, handlers) = (pool.clone(), names.clone(), handlers.clone());
            let mut stop = self.stop.subscribe();
            loops.spawn(async move {
                let mut report = WorkerReport::default();
                loop {
                    let claimed = tokio::select! {
                        c = pool.claim(&names, None) => c?,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    let Some(task) = claimed else { break };
                    let outcome = match handlers.get(&task.handler) {
                        Some(f) => run(f.clone(), task.arg).await,
                        None => Err(format!("this worker has no handler {:?}", task.handler)),
                    };
                    let ok = outcome.is_ok();
                    match pool.complete_raw(task.id, outcome).await {
                        Ok(true) if ok => report.done += 1,
                        Ok(true) => report.failed += 1,
                        Ok(false) | Err(Error::NotOwner(_)) => report.lost += 1,
                        Err(e) => return Err(e),
                    }
                }
                Ok::<_, Error>(report)
            });
        }
        let mut total = WorkerReport::default();
        let mut failure = None;
        while let Some(joined) = loops.join_next().await {
            match joined {
                Ok(Ok(r)) => {
                    total.done += r.done;
                    total.failed += r.failed;
                    total.lost += r.lost;
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                    loops.abort_all();
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    failure.get_or_insert(Error::Internal(format!("a worker loop failed: {e}")));
                    loops.abort_all();
                }
            }
        }
        // A claim cut short by the stop may have taken a task on the server:
        // give it back rather than leave it until this session ends.
        let released = pool.release().await;
        match failure {
            Some(e) => Err(e),
            None => released.map(|_| total),
        }
    }
}

/// Runs a handler off the runtime; a panic becomes the task's error.
async fn run(f: HandlerFn, arg: pb::Value) -> std::result::Result<pb::Value, String> {
    match tokio::task::spawn_blocking(move || f(arg)).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            Err(format!("the handler panicked: {why}"))
        }
        Err(e) => Err(format!("the handler did not finish: {e}")),
    }
}
