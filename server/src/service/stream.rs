//! The session stream: many requests in flight on one HTTP/2 stream.
//!
//! Each request goes through [`Core::run`], exactly as a unary `Execute`
//! (limits, sessions, de-duplication, cancellation on shutdown or session
//! end). What the stream adds is scheduling:
//! - an operation is first polled right in the read loop, so operations that
//!   do not wait are applied in the order they arrived, without a task
//!   spawn each;
//! - one that is not finished by then (a wait, or a durable write waiting
//!   for the log) goes on in a task of its own, so it does not hold up the
//!   requests behind it;
//! - those tasks live in a [`JoinSet`] owned by the stream: when the client
//!   goes away the set is dropped, every wait is cancelled and, because the
//!   store's wait loop only takes something in the attempt that returns,
//!   a cancelled wait takes nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use procshare_proto as pb;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::grpc::{checked_caller, mutates, Core};
use super::session::{Resolver, Session};
use super::status::to_response;
use crate::store::{may_wait, Caller, StoreError};

/// The response half of a session stream.
pub type Responses = ReceiverStream<Result<pb::Response, Status>>;

/// Responses queued for the client before the read loop stops reading: a
/// client that sends and never reads is held back here.
const QUEUED_RESPONSES: usize = 1024;

type Pending = Pin<Box<dyn Future<Output = pb::Response> + Send>>;

/// Starts serving one stream; the returned responses end when the client
/// has closed its side and every request is answered, when the client goes
/// away, or when the server shuts down.
pub fn serve(core: Arc<Core>, requests: Streaming<pb::Request>) -> Responses {
    let (tx, rx) = mpsc::channel(QUEUED_RESPONSES);
    tokio::spawn(read_loop(core, requests, tx));
    ReceiverStream::new(rx)
}

async fn read_loop(
    core: Arc<Core>,
    mut requests: Streaming<pb::Request>,
    tx: mpsc::Sender<Result<pb::Response, Status>>,
) {
    // Requests still running, by request id (for `cancel`). Dropping the
    // set at the end of this function aborts them all.
    let mut running: JoinSet<u64> = JoinSet::new();
    let mut handles: HashMap<u64, AbortHandle> = HashMap::new();
    let mut reading = true;
    let mut sessions = Resolver::new(core.sessions.clone());
    // Made once, not per loop turn: each would register and unregister a
    // waiter at every request.
    let shutdown = core.shutdown.clone().cancelled_owned();
    let client_gone = tx.clone();
    let client_gone = client_gone.closed();
    tokio::pin!(shutdown, client_gone);
    // Without a log to wait for, an operation that cannot wait finishes in
    // its first poll: it is run right here, without a boxed future.
    let in_memory = !core.store.is_durable();
    loop {
        tokio::select! {
            next = requests.message(), if reading => match next {
                Ok(Some(r)) if r.cancel => {
                    if let Some(h) = handles.remove(&r.request_id) {
                        h.abort();
                    }
                }
                Ok(Some(r)) if in_memory && !r.op.as_ref().and_then(|o| o.kind.as_ref()).is_some_and(may_wait) => {
                    let response = answer_now(&core, &mut sessions, r).await;
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(r)) => {
                    let id = r.request_id;
                    let mut pending = answer(core.clone(), &mut sessions, r);
                    match poll_once(&mut pending) {
                        Poll::Ready(response) => {
                            if tx.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                        Poll::Pending => {
                            let tx = tx.clone();
                            let h = running.spawn(async move {
                                let response = pending.await;
                                // The client may be gone: nothing to tell.
                                let _ = tx.send(Ok(response)).await;
                                id
                            });
                            handles.insert(id, h);
                        }
                    }
                }
                // The client closed its side: answer what is running, then end.
                Ok(None) => reading = false,
                // The client went away (or sent garbage): end, and with the
                // set dropped, cancel every wait.
                Err(status) => {
                    tracing::debug!(%status, "session stream broken");
                    return;
                }
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(id) = done {
                    handles.remove(&id);
                }
            }
            _ = &mut client_gone => return,
            _ = &mut shutdown, if reading => {
                // Stop taking requests; running ones end with UNAVAILABLE
                // through `run`'s own shutdown branch.
                reading = false;
            }
        }
        if !reading && running.is_empty() {
            return;
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
        ..
    } = r;
    let checked = checked_caller(client_id, task_id)
        .and_then(|caller| Ok((sessions.resolve(&caller.client_id)?, caller)));
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
