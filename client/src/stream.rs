//! The session stream: one long-lived bidirectional gRPC stream per
//! connection, over which every call is sent with its request id, many at
//! once. Responses come back in any order and are routed to their callers
//! by request id.
//!
//! Callers hand their request to the writer (an unbounded channel drained
//! into the HTTP/2 stream: by the stream's own connection, [`crate::lane`],
//! over `http://` and `unix:`; by tonic over `https://`) and wait on a
//! oneshot registered under the request id; one reader task per stream
//! routes the responses. If the stream
//! breaks, every call in flight on it fails with UNAVAILABLE (and is retried
//! by the connection, over a new stream opened on demand). A caller that
//! gives up (its future dropped: a client-side timeout, a `select!`) takes
//! its entry out of the map and tells the server to cancel the request. A
//! sweep task fails the calls whose deadline passed (and cancels them on
//! the server the same way).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use procshare_proto as pb;
use prost::bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::connection::Raw;
use crate::encode;
use crate::error::{Error, Result};
use crate::lane;

/// What a caller waiting on the stream gets.
#[derive(Debug)]
pub(crate) enum Answer {
    Response(pb::Response),
    /// The call's deadline passed first.
    Expired,
}

/// A caller waiting for its response.
struct Caller {
    due: Option<Instant>,
    tx: oneshot::Sender<Answer>,
}

type Calls = HashMap<u64, Caller, BuildHasherDefault<IdHasher>>;

/// Hashes this client's own request ids. They are numbers it chose, in
/// sequence, not anyone's input: no one can pick ids that collide, so the
/// std hasher's defence against that (SipHash, ~280 instructions a call
/// for the insert and the removal) buys nothing here. A Fibonacci multiply
/// spreads them over the high bits the table's tags come from, and keeps
/// consecutive ids apart in the low bits it picks buckets with.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; any other input still hashes.
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Callers waiting for a response, by request id, and their deadlines.
///
/// The deadlines are checked by a sweep every `tick`, not by a timer per
/// call (arming and disarming a tokio timer for every call was ~600
/// instructions of ~23,000). A call fails at most a tick after its
/// deadline. While no call with a deadline waits, the sweep pauses (an
/// idle client never wakes up); the caller that ends such a pause wakes
/// it.
struct Waiting {
    /// `None` once the stream is broken (no one may wait on it any more).
    calls: Mutex<Option<Calls>>,
    /// Whether the sweep is ticking; cleared by the sweep when it pauses.
    ticking: AtomicBool,
    /// Ends a pause.
    wake: Notify,
}

impl Waiting {
    fn new() -> Self {
        Waiting {
            calls: Mutex::new(Some(Calls::default())),
            ticking: AtomicBool::new(true),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Calls>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: u64, due: Option<Instant>) -> Option<oneshot::Receiver<Answer>> {
        let (tx, rx) = oneshot::channel();
        self.lock().as_mut()?.insert(id, Caller { due, tx });
        if due.is_some()
            && !self.ticking.load(Ordering::SeqCst)
            && !self.ticking.swap(true, Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
        Some(rx)
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<Answer>> {
        Some(self.lock().as_mut()?.remove(&id)?.tx)
    }

    /// Fails the callers whose deadline is past `now`; tells whether any
    /// caller with a deadline is left.
    fn expire(&self, now: Instant) -> bool {
        let (expired, left) = {
            let mut guard = self.lock();
            let Some(calls) = guard.as_mut() else {
                return false;
            };
            let ids: Vec<u64> = calls
                .iter()
                .filter(|(_, c)| c.due.is_some_and(|due| due <= now))
                .map(|(&id, _)| id)
                .collect();
            let expired: Vec<Caller> = ids.iter().filter_map(|id| calls.remove(id)).collect();
            (expired, calls.values().any(|c| c.due.is_some()))
        };
        for c in expired {
            // The caller may have given up meanwhile: fine.
            let _ = c.tx.send(Answer::Expired);
        }
        left
    }

    /// After a tick that found no deadline left: pauses the ticking, unless
    /// a caller with a deadline came meanwhile. Returns whether to go on
    /// ticking. (A caller that comes after the pause starts has found
    /// `ticking` false and wakes the sweep.)
    fn pause(&self) -> bool {
        self.ticking.store(false, Ordering::SeqCst);
        let any_due = self
            .lock()
            .as_ref()
            .is_some_and(|calls| calls.values().any(|c| c.due.is_some()));
        // Taken back by us: go on. Taken by a caller: it has notified.
        any_due && !self.ticking.swap(true, Ordering::SeqCst)
    }

    fn is_broken(&self) -> bool {
        self.lock().is_none()
    }

    /// Fails every waiting caller (their receivers see the sender dropped),
    /// and ends the sweep.
    fn break_all(&self) {
        self.lock().take();
        self.wake.notify_one();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }
}

/// One open stream.
struct Pipe {
    /// Encoded requests ([`crate::encode`]).
    requests: mpsc::UnboundedSender<Bytes>,
    waiting: Arc<Waiting>,
}

/// The connection's stream, opened on first use and again after a break.
pub(crate) struct Mux {
    raw: Raw,
    current: Arc<Slot>,
    /// One opening at a time, so concurrent first calls share one stream.
    opening: tokio::sync::Mutex<()>,
    /// The server has no session stream (an older one): use unary calls.
    unsupported: AtomicBool,
    /// How often deadlines are checked while calls wait.
    tick: Duration,
    /// Open the stream on a connection of its own, spoken directly
    /// ([`lane`]), rather than on tonic's channel.
    lane: Option<lane::Settings>,
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
            let _ = self.pipe.requests.send(encode::cancel(self.id));
        }
    }
}

impl Mux {
    /// A stream on `raw` whose calls fail at most `tick` after their
    /// deadline.
    pub fn new(raw: Raw, tick: Duration, lane: Option<lane::Settings>) -> Self {
        Mux {
            raw,
            tick,
            lane,
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
        let opened = match &self.lane {
            Some(settings) => lane::open(settings)
                .await
                .map(|(tx, reader)| (tx, Responses::Lane(reader))),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                encode::session(self.raw.clone(), UnboundedReceiverStream::new(rx))
                    .await
                    .map(|r| (tx, Responses::Tonic(r)))
            }
        };
        let (tx, responses) = match opened {
            Ok(r) => r,
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                tracing::debug!("the server has no session stream; using unary calls");
                self.unsupported.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            Err(s) => return Err(status_error(s)),
        };
        let waiting = Arc::new(Waiting::new());
        let pipe = Arc::new(Pipe {
            requests: tx,
            waiting: waiting.clone(),
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe.clone());
        let slot = Arc::downgrade(&self.current);
        tokio::spawn(sweep(waiting.clone(), self.tick));
        tokio::spawn(read(responses, waiting, slot));
        Ok(Some(pipe))
    }

    /// Sends the encoded request `id` and waits for its response until
    /// `due` (`None`: no limit). `Ok(None)`: the server has no session
    /// stream. A broken stream is UNAVAILABLE.
    pub async fn call(
        &self,
        id: u64,
        request: Bytes,
        due: Option<Instant>,
        status_error: &(dyn Fn(tonic::Status) -> Error + Sync),
    ) -> Result<Option<Answer>> {
        // Almost always open already: no timer for that.
        let pipe = match (self.live(), due) {
            (Some(open), _) => Some(open),
            (None, None) => self.pipe(status_error).await?,
            (None, Some(due)) => {
                match tokio::time::timeout_at(due, self.pipe(status_error)).await {
                    Ok(pipe) => pipe?,
                    Err(_) => return Ok(Some(Answer::Expired)),
                }
            }
        };
        let Some(pipe) = pipe else {
            return Ok(None);
        };
        let broken = || Error::Unavailable("the session stream to the server broke".into());
        let rx = pipe.waiting.register(id, due).ok_or_else(broken)?;
        let mut outstanding = Outstanding {
            pipe: &pipe,
            id,
            answered: false,
        };
        pipe.requests.send(request).map_err(|_| broken())?;
        let answer = rx.await.map_err(|_| broken())?;
        outstanding.answered = true;
        if let Answer::Expired = answer {
            // Maybe still running on the server (a wait): end it there.
            let _ = pipe.requests.send(encode::cancel(id));
        }
        Ok(Some(answer))
    }
}

/// Every `tick` while callers with a deadline wait, fails those past it;
/// pauses while there are none. Ends when the stream breaks.
async fn sweep(waiting: Arc<Waiting>, tick: Duration) {
    while !waiting.is_broken() {
        tokio::time::sleep(tick).await;
        if !waiting.expire(Instant::now()) && !waiting.pause() {
            waiting.wake.notified().await;
        }
    }
}

/// Where a stream's responses come from.
enum Responses {
    Tonic(tonic::Streaming<pb::Response>),
    Lane(lane::Reader),
}

impl Responses {
    async fn message(&mut self) -> std::result::Result<Option<pb::Response>, tonic::Status> {
        match self {
            Responses::Tonic(s) => s.message().await,
            Responses::Lane(r) => r.message().await,
        }
    }
}

/// Routes responses to their callers until the stream ends, then fails the
/// callers still waiting and lets go of the stream, so that its request
/// side closes too (a server shutting down waits for that). Holds the slot
/// weakly: the stream must close when the connection is dropped.
async fn read(mut responses: Responses, waiting: Arc<Waiting>, slot: Weak<Slot>) {
    loop {
        match responses.message().await {
            Ok(Some(r)) => {
                if let Some(tx) = waiting.take(r.request_id) {
                    // The caller may have given up meanwhile: fine.
                    let _ = tx.send(Answer::Response(r));
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

    fn id_hash(id: u64) -> u64 {
        let mut h = IdHasher::default();
        h.write_u64(id);
        h.finish()
    }

    #[test]
    fn consecutive_ids_take_distinct_buckets_and_varied_tags() {
        // The table picks a bucket with the low bits and a tag with the top
        // 7: 1,024 ids in a row, from anywhere, fill 1,024 buckets of 1,024
        // and use most of the 128 tags.
        for start in [0u64, 1 << 20, u64::MAX - 2048] {
            let ids = start..start + 1024;
            let buckets: std::collections::HashSet<u64> =
                ids.clone().map(|id| id_hash(id) & 1023).collect();
            assert_eq!(buckets.len(), 1024, "ids from {start}");
            let tags: std::collections::HashSet<u64> = ids.map(|id| id_hash(id) >> 57).collect();
            assert!(tags.len() > 100, "ids from {start}: {} tags", tags.len());
        }
    }

    #[test]
    fn a_broken_map_takes_no_one_and_fails_everyone() {
        let w = Waiting::new();
        let mut rx = w.register(1, None).unwrap();
        assert_eq!(w.len(), 1);
        w.break_all();
        assert!(w.register(2, None).is_none());
        assert!(rx.try_recv().is_err());
        assert_eq!(w.len(), 0);
    }

    #[tokio::test]
    async fn only_callers_past_their_deadline_expire() {
        let w = Waiting::new();
        let now = Instant::now();
        let mut past = w.register(1, Some(now - Duration::from_millis(1))).unwrap();
        let mut due_now = w.register(2, Some(now)).unwrap();
        let mut later = w.register(3, Some(now + Duration::from_secs(60))).unwrap();
        let mut never = w.register(4, None).unwrap();
        assert!(w.expire(now), "a caller with a deadline is left");
        assert!(matches!(past.try_recv(), Ok(Answer::Expired)));
        assert!(matches!(due_now.try_recv(), Ok(Answer::Expired)));
        assert!(later.try_recv().is_err());
        assert!(never.try_recv().is_err());
        assert_eq!(w.len(), 2);
        assert!(w.take(3).is_some());
        assert!(!w.expire(now), "only a caller without a deadline is left");
        assert_eq!(w.len(), 1);
    }

    /// Waits (a bounded time) until `f` holds.
    async fn until(f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "condition not met in 10 s");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn the_sweep_pauses_when_no_deadline_waits_and_the_next_caller_wakes_it() {
        let w = Arc::new(Waiting::new());
        let task = tokio::spawn(sweep(w.clone(), Duration::from_millis(5)));
        let mut never = w.register(1, None).unwrap();
        until(|| !w.ticking.load(Ordering::SeqCst)).await;
        let soon = w.register(2, Some(Instant::now() + Duration::from_millis(20)));
        assert!(
            w.ticking.load(Ordering::SeqCst),
            "the caller woke the sweep"
        );
        let answer = tokio::time::timeout(Duration::from_secs(10), soon.unwrap())
            .await
            .expect("expired by the sweep")
            .expect("not dropped");
        assert!(matches!(answer, Answer::Expired));
        until(|| !w.ticking.load(Ordering::SeqCst)).await;
        assert!(
            never.try_recv().is_err(),
            "a call without deadline waits on"
        );
        w.break_all();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a broken stream ends the sweep")
            .unwrap();
    }
}
