//! Blocking without threads: the one waiting loop every blocking operation
//! uses, and the count of who is waiting.
//!
//! A waiter is a future parked on a [`Notify`]. When a client goes away,
//! tonic drops its request future, and with it the waiter: nothing is left
//! registered, nothing was taken.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::error::{Result, StoreError};

/// How many calls are blocked on an object right now.
#[derive(Default)]
pub struct Waiters(AtomicUsize);

impl Waiters {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts the caller as waiting until the returned guard is dropped.
    pub fn enter(&self) -> WaiterGuard<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        WaiterGuard(&self.0)
    }
}

pub struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `attempt` until it returns `Some`, trying again each time `notify`
/// fires, for at most `timeout` (`None`: no limit). Returns `None` on timeout.
///
/// The wake-up is registered *before* each attempt, so a notification that
/// lands between a failed attempt and the wait is not missed.
pub async fn until<T>(
    notify: &Notify,
    waiters: &Waiters,
    timeout: Option<Duration>,
    mut attempt: impl FnMut() -> Option<T>,
) -> Option<T> {
    let wait = async {
        let mut counted = None;
        loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(done) = attempt() {
                return done;
            }
            counted.get_or_insert_with(|| waiters.enter());
            woken.await;
        }
    };
    match timeout {
        None => Some(wait.await),
        Some(t) => tokio::time::timeout(t, wait).await.ok(),
    }
}

/// Validates a wire timeout: absent means no limit; negative, NaN or too
/// large to represent is an `InvalidArgument` error.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_notification_between_attempts_is_not_lost() {
        let notify = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(false));
        let waiters = Arc::new(Waiters::default());
        let task = tokio::spawn({
            let (notify, ready, waiters) = (notify.clone(), ready.clone(), waiters.clone());
            async move {
                until(&notify, &waiters, Some(Duration::from_secs(10)), || {
                    ready.load(Ordering::SeqCst).then_some(())
                })
                .await
            }
        });
        while waiters.count() == 0 {
            tokio::task::yield_now().await;
        }
        ready.store(true, Ordering::SeqCst);
        notify.notify_waiters();
        assert_eq!(task.await.unwrap(), Some(()));
        assert_eq!(waiters.count(), 0);
    }

    #[tokio::test]
    async fn times_out_with_none_and_forgets_the_waiter() {
        let notify = Notify::new();
        let waiters = Waiters::default();
        let r: Option<()> = until(&notify, &waiters, Some(Duration::from_millis(5)), || None).await;
        assert_eq!(r, None);
        assert_eq!(waiters.count(), 0);
    }

    #[test]
    fn timeouts_are_validated() {
        assert_eq!(timeout_from_secs(None).unwrap(), None);
        assert_eq!(
            timeout_from_secs(Some(1.5)).unwrap(),
            Some(Duration::from_millis(1500))
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(timeout_from_secs(Some(bad)).is_err(), "{bad}");
        }
    }
}
