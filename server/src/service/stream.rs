//! The session stream: many requests in flight on one HTTP/2 stream.
//!
//! Each request goes through [`Core::run`], exactly as a unary `Execute`
//! (limits, sessions, de-duplication, cancellation on shutdown or session
//! end). What the stream adds is scheduling:
//! - the stream of responses drives the requests: each time hyper asks it
//!   for the next response (it does so while the client takes them), it
//!   reads the next request and applies it right there, so operations that
//!   do not wait are applied in the order they arrived, without a task or
//!   a channel between reading a request and writing its answer (a task in
//!   between cost a wake-up and a task poll per call: 1.6k of procshared's
//!   26.2k instructions per sequential call);
//! - one that is not finished in its first poll (a wait, or a write waiting
//!   for its log record with a data dir) goes on in a task of its own, so
//!   it does not hold up the requests behind it, and takes what it waited
//!   for even while this stream is not polled; its answer is taken when it
//!   is done. (Polling the writes here instead, without tasks, was tried:
//!   no fewer instructions, no measurable gain.)
//! - those tasks live in a [`JoinSet`] owned by the stream: when the client
//!   goes away hyper drops the stream, the set with it, every wait is
//!   cancelled and, because the store's wait loop only takes something in
//!   the attempt that returns, a cancelled wait takes nothing;
//! - a client that sends and never reads is held back by HTTP/2 flow
//!   control: with no room to send answers, hyper stops asking for them,
//!   and no more requests are read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use procshare_proto as pb;
use tokio::task::{AbortHandle, JoinSet};
use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};

use super::grpc::{checked_caller, mutates, Core};
use super::session::{Resolver, Session};
use super::status::to_response;
use crate::store::{is_read_only, may_wait, Caller, StoreError};

type Pending = Pin<Box<dyn Future<Output = pb::Response> + Send>>;

/// The response half of a session stream; see the module's doc. It ends
/// when the client has closed its side and every request is answered,
/// when the client's side breaks, or, after a shutdown, when the requests
/// still running have ended.
pub struct Responses<S = Streaming<pb::Request>> {
    core: Arc<Core>,
    requests: S,
    reading: bool,
    /// Requests still running, by request id (for `cancel`). Dropping the
    /// set (with the stream) aborts them all.
    running: JoinSet<(u64, pb::Response)>,
    handles: HashMap<u64, AbortHandle>,
    sessions: Resolver,
    /// Made once, not per request: each would register and unregister a
    /// waiter.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker `shutdown` was last polled with: it wakes that one when
    /// the shutdown comes, so polls with the same waker only check the
    /// token (polling the future takes two locks each time; 500
    /// instructions a call).
    shutdown_waker: Option<Waker>,
    /// Without a log to wait for, an operation that cannot wait finishes in
    /// its first poll: it is run in place, without a boxed future (with a
    /// data dir, so is a read).
    in_memory: bool,
}

/// Starts serving one stream: its requests come from `requests` (tonic's
/// decoder, or [`super::lane`]'s).
pub fn serve<S>(core: Arc<Core>, requests: S) -> Responses<S> {
    Responses {
        sessions: Resolver::new(core.sessions.clone()),
        shutdown: Box::pin(core.shutdown.clone().cancelled_owned()),
        shutdown_waker: None,
        in_memory: !core.store.is_durable(),
        core,
        requests,
        reading: true,
        running: JoinSet::new(),
        handles: HashMap::new(),
    }
}

impl<S> Responses<S> {
    /// Where the requests come from.
    pub(super) fn requests_mut(&mut self) -> &mut S {
        &mut self.requests
    }
}

impl<S> Stream for Responses<S>
where
    S: Stream<Item = Result<pb::Request, Status>> + Unpin,
{
    type Item = Result<pb::Response, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Stop taking requests at shutdown; running ones end with
        // UNAVAILABLE through `Core::run`'s own shutdown branch.
        if this.reading {
            let registered = this
                .shutdown_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            let stopping = if registered {
                this.core.shutdown.is_cancelled()
            } else {
                this.shutdown_waker = Some(cx.waker().clone());
                this.shutdown.as_mut().poll(cx).is_ready()
            };
            if stopping {
                this.reading = false;
            }
        }
        loop {
            // Answers of requests that went on in tasks of their own.
            while let Poll::Ready(Some(done)) = this.running.poll_join_next(cx) {
                // An aborted (cancelled) request has no answer.
                if let Ok((id, response)) = done {
                    this.handles.remove(&id);
                    return Poll::Ready(Some(Ok(response)));
                }
            }
            if !this.reading {
                return if this.running.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            let r = match Pin::new(&mut this.requests).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(r))) => r,
                // The client closed its side: answer what is running, then end.
                Poll::Ready(None) => {
                    this.reading = false;
                    continue;
                }
                // The client's side broke (or it sent garbage): end with
                // what is wrong; the running requests are cancelled.
                Poll::Ready(Some(Err(status))) => {
                    tracing::debug!(%status, "session stream broken");
                    this.reading = false;
                    this.running.abort_all();
                    this.handles.clear();
                    return Poll::Ready(Some(Err(status)));
                }
            };
            if r.cancel {
                if let Some(h) = this.handles.remove(&r.request_id) {
                    h.abort();
                }
                continue;
            }
            let kind = r.op.as_ref().and_then(|o| o.kind.as_ref());
            let waits = kind.is_some_and(may_wait);
            // With a data dir, a read writes no record, so it does not wait
            // for the log either.
            let logs = !this.in_memory && !kind.is_some_and(is_read_only);
            let id = r.request_id;
            if !waits && !logs {
                let answer = pin!(answer_now(&this.core, &mut this.sessions, r));
                return Poll::Ready(Some(Ok(finished_in_place(id, answer))));
            }
            let mut pending = answer(this.core.clone(), &mut this.sessions, r);
            match poll_once(&mut pending) {
                Poll::Ready(response) => return Poll::Ready(Some(Ok(response))),
                Poll::Pending => {
                    let h = this.running.spawn(async move { (id, pending.await) });
                    this.handles.insert(id, h);
                }
            }
        }
    }
}

/// The answer of request `id`, which neither waits nor writes a log record
/// (any operation in memory; a read with a data dir): its future finishes
/// in its first poll, as nothing in its path awaits anything else. Should
/// it not, a bug, it is dropped where it stopped and the client gets an
/// INTERNAL error, rather than the stream blocking on it.
fn finished_in_place(
    id: u64,
    mut answer: Pin<&mut impl Future<Output = pb::Response>>,
) -> pb::Response {
    let mut cx = Context::from_waker(Waker::noop());
    match answer.as_mut().poll(&mut cx) {
        Poll::Ready(response) => response,
        Poll::Pending => {
            debug_assert!(false, "an operation that cannot wait did not finish");
            tracing::error!("an operation that cannot wait did not finish in its first poll");
            to_response(
                id,
                Err(StoreError::Internal(
                    "the operation did not finish at once; it was cancelled".into(),
                )),
            )
        }
    }
}

/// Polls `f` once, without a task to wake: a future that is not ready has
/// registered a waker that will never be used, and is polled again (with a
/// real one) by the task it moves to.
fn poll_once(f: &mut Pending) -> Poll<pb::Response> {
    let mut cx = Context::from_waker(Waker::noop());
    f.as_mut().poll(&mut cx)
}

/// The future of one request's response. Its caller and session are
/// checked here, in arrival order, so that requests that cannot wait are
/// applied in that order.
fn answer(core: Arc<Core>, sessions: &mut Resolver, r: pb::Request) -> Pending {
    let (request_id, checked, op) = check(sessions, r);
    Box::pin(async move { respond(&core, request_id, checked, op).await })
}

/// [`answer`] for a request that finishes in its first poll, run in place.
async fn answer_now(core: &Core, sessions: &mut Resolver, r: pb::Request) -> pb::Response {
    let (request_id, checked, op) = check(sessions, r);
    respond(core, request_id, checked, op).await
}

type Checked = Result<(Option<Arc<Session>>, Caller), StoreError>;

fn check(sessions: &mut Resolver, r: pb::Request) -> (u64, Checked, Option<pb::Op>) {
    let pb::Request {
        client_id,
        request_id,
        op,
        task_id,
        answered_below,
        ..
    } = r;
    let checked = checked_caller(client_id, task_id).and_then(|caller| {
        let session = sessions.resolve(&caller.client_id)?;
        if let Some(s) = &session {
            s.answered_below(answered_below);
        }
        Ok((session, caller))
    });
    (request_id, checked, op)
}

async fn respond(
    core: &Core,
    request_id: u64,
    checked: Checked,
    op: Option<pb::Op>,
) -> pb::Response {
    let result = match checked {
        Ok((session, caller)) => run(core, &caller, session.as_deref(), request_id, op).await,
        Err(e) => Err(e),
    };
    to_response(request_id, result)
}

async fn run(
    core: &Core,
    caller: &Caller,
    session: Option<&Session>,
    request_id: u64,
    op: Option<pb::Op>,
) -> Result<pb::OpResult, StoreError> {
    let mutates = mutates(op.as_ref());
    let result = core.run(caller, session, request_id, op).await?;
    if core.drop_reply(mutates) {
        return Err(StoreError::Unavailable(
            "injected fault: the reply was dropped after the operation was applied".into(),
        ));
    }
    Ok(result)
}
