//! The client's session: opened at connect, kept alive in the background,
//! re-opened if the server forgot it (its lease ran out while the network was
//! down, or the server restarted), closed when the last handle goes.
//!
//! The session id is the identity that owns this client's locks and
//! permits: when this process dies, the server gives them back once the
//! lease runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use procshare_proto as pb;

use crate::error::{Error, Result};

/// The lease a client asks for unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// Something that can make the session calls (the connection's gRPC client).
#[tonic::async_trait]
pub(crate) trait SessionCalls: Clone + Send + Sync + 'static {
    async fn open(&self, ttl: Duration, name: &str) -> Result<(String, Duration)>;
    async fn keep_alive(&self, id: &str) -> Result<()>;
    async fn close(&self, id: &str) -> Result<()>;
}

pub(crate) struct Session<C: SessionCalls> {
    calls: C,
    lease: Duration,
    name: String,
    /// The current id and the lease the server granted.
    current: RwLock<(Arc<str>, Duration)>,
    closed: AtomicBool,
}

impl<C: SessionCalls> Session<C> {
    /// Opens a session and starts keeping it alive.
    pub async fn open(calls: C, lease: Duration, name: String) -> Result<Arc<Self>> {
        let (id, granted) = calls.open(lease, &name).await?;
        let session = Arc::new(Session {
            calls,
            lease,
            name,
            current: RwLock::new((id.into(), granted)),
            closed: AtomicBool::new(false),
        });
        Self::keep_alive_in_background(&session);
        Ok(session)
    }

    pub fn id(&self) -> Arc<str> {
        self.current
            .read()
            .map_or_else(|e| e.into_inner().0.clone(), |c| c.0.clone())
    }

    fn granted(&self) -> Duration {
        self.current.read().map_or(self.lease, |c| c.1)
    }

    /// Opens a new session in place of `old` (if no one did already).
    pub async fn reopen(&self, old: &str) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::SessionExpired("the session was closed".into()));
        }
        if &*self.id() != old {
            return Ok(());
        }
        let (id, granted) = self.calls.open(self.lease, &self.name).await?;
        tracing::warn!(old, new = %id, "procshare session expired; opened a new one (locks and permits held by the old one were released)");
        if let Ok(mut c) = self.current.write() {
            *c = (id.into(), granted);
        }
        Ok(())
    }

    fn keep_alive_in_background(session: &Arc<Self>) {
        let weak = Arc::downgrade(session);
        tokio::spawn(async move {
            loop {
                // A third of the lease: two keep-alives may be lost before
                // the server gives up on us.
                let period = match weak.upgrade() {
                    Some(s) if !s.closed.load(Ordering::Relaxed) => s.granted() / 3,
                    _ => return,
                };
                tokio::time::sleep(period).await;
                let Some(s) = weak.upgrade() else { return };
                if s.closed.load(Ordering::Relaxed) {
                    return;
                }
                let id = s.id();
                match s.calls.keep_alive(&id).await {
                    Ok(()) => {}
                    Err(Error::SessionExpired(_)) => {
                        if let Err(e) = s.reopen(&id).await {
                            tracing::debug!(error = %e, "cannot open a new procshare session yet");
                        }
                    }
                    // The server is unreachable: try again next period; the
                    // channel reconnects by itself.
                    Err(e) => tracing::debug!(error = %e, "procshare keep-alive failed"),
                }
            }
        });
    }

    /// Ends the session now: the server gives back what it held.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        self.calls.close(&self.id()).await
    }
}

impl<C: SessionCalls> Drop for Session<C> {
    fn drop(&mut self) {
        // The last handle is gone: close at once rather than wait out the
        // lease, if there is a runtime to send it on.
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let calls = self.calls.clone();
            let id = self.id();
            rt.spawn(async move {
                let _ = calls.close(&id).await;
            });
        }
    }
}

/// How a session-less server is told apart: it does not know the calls.
pub(crate) fn unsupported(e: &Error) -> bool {
    matches!(e, Error::Unimplemented(_))
}

pub(crate) fn open_request(ttl: Duration, name: &str) -> pb::OpenSessionRequest {
    pb::OpenSessionRequest {
        ttl_secs: ttl.as_secs_f64(),
        client_name: name.to_owned(),
    }
}
