//! Commands for the objects people wait on: queues, events, semaphores,
//! barriers and conditions. A wait that runs out of `--timeout` exits 3,
//! whatever error the object reports for it (Empty, Full, BrokenBarrier).

use std::time::{Duration, Instant};

use clap::Subcommand;
use procshare::{Error, Manager};
use serde_json::Value as Json;

use crate::{json_arg, say, seconds, Failure, Outcome, WaitLimit};

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Puts VALUE (JSON) at the end; waits for room if the queue is full.
    Put {
        name: String,
        value: String,
        /// The maxsize of a new queue (0: unbounded); an existing queue keeps its own.
        #[arg(long, default_value_t = 0)]
        maxsize: u64,
        #[command(flatten)]
        wait: WaitLimit,
    },
    /// Takes the first item and prints it; waits for one if the queue is empty.
    Get {
        name: String,
        #[command(flatten)]
        wait: WaitLimit,
    },
    /// Prints the number of items.
    Len { name: String },
}

#[derive(Subcommand)]
pub enum EventCmd {
    /// Sets the event, waking every waiter.
    Set { name: String },
    /// Clears the event.
    Clear { name: String },
    /// Waits until the event is set; prints `true`.
    Wait {
        name: String,
        #[command(flatten)]
        wait: WaitLimit,
    },
    /// Prints `true` or `false`.
    IsSet { name: String },
}

#[derive(Subcommand)]
pub enum SemaphoreCmd {
    /// Takes a permit, holds it for --hold seconds, then gives it back.
    Acquire {
        name: String,
        /// The start value of a new semaphore; an existing one keeps its own.
        #[arg(long)]
        value: u64,
        #[command(flatten)]
        wait: WaitLimit,
        /// Seconds to hold the permit before releasing it.
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
    },
    /// Gives a permit back (to an existing semaphore).
    Release { name: String },
    /// Prints the permits available now.
    Value { name: String },
}

#[derive(Subcommand)]
pub enum BarrierCmd {
    /// Waits until PARTIES callers have arrived; prints this caller's arrival index.
    Wait {
        name: String,
        /// The number of parties of a new barrier; an existing one keeps its own.
        #[arg(long)]
        parties: u64,
        #[command(flatten)]
        wait: WaitLimit,
    },
}

#[derive(Subcommand)]
pub enum ConditionCmd {
    /// Acquires the condition's lock, waits for a notify, releases; prints `true`.
    Wait {
        name: String,
        #[command(flatten)]
        wait: WaitLimit,
    },
    /// Acquires the lock, wakes N waiters (or all), releases; prints how many woke.
    Notify {
        name: String,
        #[arg(long, default_value_t = 1)]
        n: u64,
        #[arg(long, conflicts_with = "n")]
        all: bool,
    },
}

/// Turns the error of a wait that ran out into an exit-3 failure.
fn ran_out(e: Error, timeout: Option<Duration>) -> Failure {
    match e {
        Error::Empty(_) | Error::Full(_) if timeout.is_some() => Failure::TimedOut(e),
        e => Failure::Call(e),
    }
}

pub async fn queue(m: &Manager, cmd: QueueCmd) -> Outcome {
    match cmd {
        QueueCmd::Put {
            name,
            value,
            maxsize,
            wait,
        } => {
            let item = procshare::value::wire_to_json(json_arg("VALUE", &value)?)?;
            let timeout = wait.duration()?;
            let q = open_queue(m, &name, maxsize).await?;
            let put = match timeout {
                Some(t) => q.put_timeout(item, t).await,
                None => q.put(item).await,
            };
            put.map_err(|e| ran_out(e, timeout))?;
        }
        QueueCmd::Get { name, wait } => {
            let timeout = wait.duration()?;
            let q = open_queue(m, &name, 0).await?;
            let got = match timeout {
                Some(t) => q.get_timeout(t).await,
                None => q.get().await,
            };
            say(&got.map_err(|e| ran_out(e, timeout))?.to_string());
        }
        QueueCmd::Len { name } => say(&open_queue(m, &name, 0).await?.qsize().await?.to_string()),
    }
    Ok(())
}

/// An existing queue (joinable or not), or a new plain queue of `maxsize`.
async fn open_queue(
    m: &Manager,
    name: &str,
    maxsize: u64,
) -> Result<procshare::QueueProxy<Json>, Failure> {
    match m.queue::<Json>(name, maxsize).await {
        Err(Error::WrongKind(msg)) if msg.contains("joinable_queue") => {
            Ok(m.joinable_queue::<Json>(name, maxsize).await?)
        }
        other => Ok(other?),
    }
}

pub async fn event(m: &Manager, cmd: EventCmd) -> Outcome {
    match cmd {
        EventCmd::Set { name } => m.event(&name).await?.set().await?,
        EventCmd::Clear { name } => m.event(&name).await?.clear().await?,
        EventCmd::IsSet { name } => say(&m.event(&name).await?.is_set().await?.to_string()),
        EventCmd::Wait { name, wait } => {
            let timeout = wait.duration()?;
            if !m.event(&name).await?.wait(timeout).await? {
                return Err(Failure::TimedOut(Error::Timeout(format!(
                    "event {name:?} was not set within {:?}",
                    timeout.unwrap_or_default()
                ))));
            }
            say("true");
        }
    }
    Ok(())
}

pub async fn semaphore(m: &Manager, cmd: SemaphoreCmd) -> Outcome {
    match cmd {
        SemaphoreCmd::Acquire {
            name,
            value,
            wait,
            hold,
        } => {
            let hold = seconds("--hold", hold)?;
            let timeout = wait.duration()?;
            let stop = crate::interrupted();
            let s = match m.semaphore(&name, value).await {
                Err(Error::WrongKind(msg)) if msg.contains("bounded_semaphore") => {
                    m.bounded_semaphore(&name, value).await?
                }
                other => other?,
            };
            match timeout {
                Some(t) => s.acquire_timeout(t).await?,
                None => s.acquire().await?,
            }
            say("acquired");
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = stop => {}
            }
            s.release().await?;
        }
        SemaphoreCmd::Release { name } => existing_semaphore(m, &name).await?.release().await?,
        SemaphoreCmd::Value { name } => say(&existing_semaphore(m, &name)
            .await?
            .value()
            .await?
            .to_string()),
    }
    Ok(())
}

/// A semaphore that must exist already: creating one here would need a start
/// value the command does not have.
async fn existing_semaphore(m: &Manager, name: &str) -> Result<procshare::SemaphoreProxy, Failure> {
    let kind = m
        .list_objects()
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .and_then(|o| o.kind)
        .ok_or_else(|| Failure::Call(Error::NotFound(format!("no semaphore named {name:?}"))))?;
    Ok(match kind {
        procshare::Kind::BoundedSemaphore => m.bounded_semaphore(name, 0).await?,
        _ => m.semaphore(name, 0).await?,
    })
}

pub async fn barrier(m: &Manager, cmd: BarrierCmd) -> Outcome {
    let BarrierCmd::Wait {
        name,
        parties,
        wait,
    } = cmd;
    let timeout = wait.duration()?;
    let b = m.barrier(&name, parties, None).await?;
    let started = Instant::now();
    let waited = match timeout {
        Some(t) => b.wait_timeout(t).await,
        None => b.wait().await,
    };
    match waited {
        Ok(index) => say(&index.to_string()),
        // Our own timeout broke it: that is a timeout (exit 3).
        Err(e @ Error::BrokenBarrier(_)) if timeout.is_some_and(|t| started.elapsed() >= t) => {
            return Err(Failure::TimedOut(e))
        }
        Err(e) => return Err(Failure::Call(e)),
    }
    Ok(())
}

pub async fn condition(m: &Manager, cmd: ConditionCmd) -> Outcome {
    match cmd {
        ConditionCmd::Wait { name, wait } => {
            let timeout = wait.duration()?;
            let c = m.condition(&name, None).await?;
            c.acquire().await?;
            let notified = c.wait(timeout).await;
            let released = c.release().await;
            if !notified? {
                return Err(Failure::TimedOut(Error::Timeout(format!(
                    "condition {name:?} was not notified within {:?}",
                    timeout.unwrap_or_default()
                ))));
            }
            released?;
            say("true");
        }
        ConditionCmd::Notify { name, n, all } => {
            let c = m.condition(&name, None).await?;
            c.acquire().await?;
            let woken = if all {
                c.notify_all().await
            } else {
                c.notify(n).await
            };
            c.release().await?;
            say(&woken?.to_string());
        }
    }
    Ok(())
}
