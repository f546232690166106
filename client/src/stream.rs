//! The session stream: one long-lived bidirectional gRPC stream per
//! connection, over which every call is sent with its request id, many at
//! once. Responses come back in any order and are routed to their callers
//! by request id.
//!
//! Callers hand their request to the writer (an unbounded channel that tonic
//! drains into the HTTP/2 stream) and wait on a oneshot registered under the
//! request id; one reader task per stream routes the responses. If the stream
//! breaks, every call in flight on it fails with UNAVAILABLE (and is retried
//! by the connection, over a new stream opened on demand). A caller that
//! gives up (its future dropped: a client-side timeout, a `select!`) takes
//! its entry out of the map and tells the server to cancel the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use procshare_proto as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::connection::Client;
use crate::error::{Error, Result};

/// Callers waiting for a response, by request id; `None` once the stream
/// is broken (no one may wait on it any more).
struct Waiting(Mutex<Option<HashMap<u64, oneshot::Sender<pb::Response>>>>);

impl Waiting {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<pb::Response>>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: u64) -> Option<oneshot::Receiver<pb::Response>> {
        let (tx, rx) = oneshot::channel();
        self.lock().as_mut()?.insert(id, tx);
        Some(rx)
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<pb::Response>> {
        self.lock().as_mut()?.remove(&id)
    }

    fn is_broken(&self) -> bool {
        self.lock().is_none()
    }

    /// Fails every waiting caller (their receivers see the sender dropped).
    fn break_all(&self) {
        self.lock().take();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }
}

/// One open stream.
struct Pipe {
    requests: mpsc::UnboundedSender<pb::Request>,
    waiting: Arc<Waiting>,
}

/// The connection's stream, opened on first use and again after a break.
pub(crate) struct Mux {
    client: Client,
    current: Arc<Slot>,
    /// One opening at a time, so concurrent first calls share one stream.
    opening: tokio::sync::Mutex<()>,
    /// The server has no session stream (an older one): use unary calls.
    unsupported: AtomicBool,
}

/// Where the open stream is kept.
type Slot = Mutex<Option<Arc<Pipe>>>;

/// A call in flight; dropped before its response came, it withdraws.
struct Outstanding<'a> {
    pipe: &'a Pipe,
    id: u64,
    answered: bool,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        if self.pipe.waiting.take(self.id).is_some() {
            // Still running on the server (a wait): end it there too, so
            // that it takes nothing for a caller who is gone.
            let _ = self.pipe.requests.send(pb::Request {
                request_id: self.id,
                cancel: true,
                ..Default::default()
            });
        }
    }
}

impl Mux {
    pub fn new(client: Client) -> Self {
        Mux {
            client,
            current: Arc::new(Mutex::new(None)),
            opening: tokio::sync::Mutex::new(()),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Whether calls should go over the stream (the server has it).
    pub fn usable(&self) -> bool {
        !self.unsupported.load(Ordering::Relaxed)
    }

    fn live(&self) -> Option<Arc<Pipe>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|p| !p.waiting.is_broken()).cloned()
    }

    /// The open stream, opening one if there is none (or it broke).
    /// `Ok(None)`: the server has no session stream.
    async fn pipe(
        &self,
        status_error: &(dyn Fn(tonic::Status) -> Error + Sync),
    ) -> Result<Option<Arc<Pipe>>> {
        if let Some(p) = self.live() {
            return Ok(Some(p));
        }
        let _one = self.opening.lock().await;
        if let Some(p) = self.live() {
            return Ok(Some(p));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut client = self.client.clone();
        let responses = match client.session(UnboundedReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                tracing::debug!("the server has no session stream; using unary calls");
                self.unsupported.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            Err(s) => return Err(status_error(s)),
        };
        let waiting = Arc::new(Waiting(Mutex::new(Some(HashMap::new()))));
        let pipe = Arc::new(Pipe {
            requests: tx,
            waiting: waiting.clone(),
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe.clone());
        tokio::spawn(read(responses, waiting, Arc::downgrade(&self.current)));
        Ok(Some(pipe))
    }

    /// Sends `request` and waits for its response. `Ok(None)`: the server
    /// has no session stream. A broken stream is UNAVAILABLE.
    pub async fn call(
        &self,
        request: pb::Request,
        status_error: &(dyn Fn(tonic::Status) -> Error + Sync),
    ) -> Result<Option<pb::Response>> {
        let Some(pipe) = self.pipe(status_error).await? else {
            return Ok(None);
        };
        let id = request.request_id;
        let broken = || Error::Unavailable("the session stream to the server broke".into());
        let rx = pipe.waiting.register(id).ok_or_else(broken)?;
        let mut outstanding = Outstanding {
            pipe: &pipe,
            id,
            answered: false,
        };
        pipe.requests.send(request).map_err(|_| broken())?;
        let response = rx.await.map_err(|_| broken());
        outstanding.answered = true;
        response.map(Some)
    }
}

/// Routes responses to their callers until the stream ends, then fails the
/// callers still waiting and lets go of the stream, so that its request
/// side closes too (a server shutting down waits for that). Holds the slot
/// weakly: the stream must close when the connection is dropped.
async fn read(
    mut responses: tonic::Streaming<pb::Response>,
    waiting: Arc<Waiting>,
    slot: Weak<Slot>,
) {
    loop {
        match responses.message().await {
            Ok(Some(r)) => {
                if let Some(tx) = waiting.take(r.request_id) {
                    // The caller may have given up meanwhile: fine.
                    let _ = tx.send(r);
                }
            }
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(%status, "procshare session stream broke");
                break;
            }
        }
    }
    waiting.break_all();
    if let Some(slot) = slot.upgrade() {
        let mut current = slot.lock().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.waiting, &waiting))
        {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_map_takes_no_one_and_fails_everyone() {
        let w = Waiting(Mutex::new(Some(HashMap::new())));
        let mut rx = w.register(1).unwrap();
        assert_eq!(w.len(), 1);
        w.break_all();
        assert!(w.register(2).is_none());
        assert!(rx.try_recv().is_err());
        assert_eq!(w.len(), 0);
    }
}
