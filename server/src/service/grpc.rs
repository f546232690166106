//! The gRPC service: turns requests into store operations and results back
//! into responses. Every operation, unary, batched or on the session stream
//! (see [`super::stream`]), goes through [`Core::run`] and ends in
//! [`Store::apply`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use procshare_proto::{self as pb, op::Kind as Op, procshare_server::Procshare, response::Outcome};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::batch_reply::{self, Room};
use super::session::{Begin, Resolver, Session, Sessions};
use super::status::{to_response, to_status};
use crate::store::val::Val;
use crate::store::{is_read_only, may_wait, Caller, Store, StoreError};

/// Longest client id accepted, in bytes.
pub(super) const MAX_CLIENT_ID_LEN: usize = 255;

/// Limits the service enforces before an operation reaches the store.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Calls blocked in a wait at once, over all clients.
    pub max_waiters: usize,
    /// Largest operation (its values and keys), encoded, in bytes.
    pub max_value_bytes: usize,
    /// Largest answer to a read, encoded, in bytes: the server's
    /// `--max-message-bytes` less room for the response around it. A larger
    /// one is refused on its own, where sending it would break the
    /// connection's session stream and every call in flight on it.
    pub max_reply_bytes: usize,
    /// Testing only: every Nth mutation is applied but its reply is replaced
    /// by UNAVAILABLE, as if the reply were lost (0: never).
    pub fault_drop_replies: u64,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_waiters: 100_000,
            max_value_bytes: 1024 * 1024,
            max_reply_bytes: 4 * 1024 * 1024 - REPLY_ROOM,
            fault_drop_replies: 0,
        }
    }
}

/// Bytes of a response around its answer (request id, outcome, framing),
/// with room to spare.
pub const REPLY_ROOM: usize = 256;

/// The service as tonic sees it: a handle on the [`Core`], which the
/// session stream's spawned tasks share.
pub struct Service(Arc<Core>);

impl std::ops::Deref for Service {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.0
    }
}

pub struct Core {
    pub(super) store: Arc<Store>,
    pub(super) sessions: Arc<Sessions>,
    limits: ServiceLimits,
    /// Cancelled when the server shuts down, so that calls blocked in a wait
    /// end (with UNAVAILABLE) instead of holding the shutdown up.
    pub(super) shutdown: CancellationToken,
    waiting: AtomicUsize,
    mutations: AtomicU64,
}

/// Counts a blocked call against `max_waiters` while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Service {
    pub fn new(
        store: Arc<Store>,
        sessions: Arc<Sessions>,
        limits: ServiceLimits,
        shutdown: CancellationToken,
    ) -> Self {
        Service(Arc::new(Core {
            store,
            sessions,
            limits,
            shutdown,
            waiting: AtomicUsize::new(0),
            mutations: AtomicU64::new(0),
        }))
    }
}

impl Service {
    /// The core, shared with connections served outside tonic.
    pub(super) fn core(&self) -> Arc<Core> {
        self.0.clone()
    }
}

impl Core {
    fn enter_wait(&self) -> Result<Waiting<'_>, StoreError> {
        let n = self.waiting.fetch_add(1, Ordering::Relaxed);
        let guard = Waiting(&self.waiting);
        if n >= self.limits.max_waiters {
            return Err(StoreError::ResourceExhausted(format!(
                "{} calls are already waiting, the server's limit (--max-waiters)",
                self.limits.max_waiters
            )));
        }
        Ok(guard)
    }

    /// Refuses `result` if it is too large to send (a read: nothing was
    /// changed, so it is refused whole), where sending it would break the
    /// stream it goes on, and every call in flight there.
    /// Returns its size otherwise.
    fn check_reply(&self, result: &pb::OpResult) -> Result<usize, StoreError> {
        let size = result.encoded_len();
        if size > self.limits.max_reply_bytes {
            return Err(StoreError::ResourceExhausted(format!(
                "the answer is {size} bytes; this server sends at most {} \
                 (--max-message-bytes): read it in parts (keys, then get; a range of a list)",
                self.limits.max_reply_bytes
            )));
        }
        Ok(size)
    }

    /// Runs one operation for `caller`: limits, de-duplication of a retried
    /// mutation, cancellation when the server stops or the session ends.
    pub(super) async fn run(
        &self,
        caller: &Caller,
        session: Option<&Session>,
        request_id: u64,
        op: Option<pb::Op>,
    ) -> Result<pb::OpResult, StoreError> {
        self.run_sized(caller, session, request_id, op)
            .await
            .map(|(r, _)| r)
    }

    /// [`run`](Self::run), and the size of a successful answer when it was
    /// worked out on the way (a read's, checked against the limit; a
    /// session's mutation's, kept for retries).
    pub(super) async fn run_sized(
        &self,
        caller: &Caller,
        session: Option<&Session>,
        request_id: u64,
        op: Option<pb::Op>,
    ) -> Result<(pb::OpResult, Option<usize>), StoreError> {
        let op = op.ok_or_else(|| StoreError::InvalidArgument("request has no op".into()))?;
        let Some(kind) = &op.kind else {
            return Err(StoreError::InvalidArgument("op has no kind".into()));
        };
        match kind {
            Op::Sessions(_) => {
                let sessions = self.sessions.describe();
                let size = self.check_reply(&sessions)?;
                return Ok((sessions, Some(size)));
            }
            Op::Stats(_) => {
                // The store's figures, plus the service's own.
                let mut stats = self.store.apply(caller, op).await?;
                if let Some(pb::op_result::Kind::Value(pb::Value {
                    kind: Some(pb::value::Kind::Map(m)),
                })) = &mut stats.kind
                {
                    for (k, v) in [
                        ("sessions", self.sessions.len() as i64),
                        ("waiting_calls", self.waiting.load(Ordering::Relaxed) as i64),
                        (
                            "kept_answer_bytes",
                            self.sessions.kept_answer_bytes() as i64,
                        ),
                    ] {
                        m.entries.push(pb::Pair {
                            first: Some(Val::Str(k.into()).to_wire()),
                            second: Some(Val::Int(v).to_wire()),
                        });
                    }
                }
                let size = self.check_reply(&stats)?;
                return Ok((stats, Some(size)));
            }
            _ => {}
        }
        let size = op.encoded_len();
        if size > self.limits.max_value_bytes {
            return Err(StoreError::ResourceExhausted(format!(
                "the operation is {size} bytes; this server takes at most {} (--max-value-bytes)",
                self.limits.max_value_bytes
            )));
        }
        let read = is_read_only(kind);
        let attempt = match session.filter(|_| request_id != 0 && !read) {
            None => None,
            Some(s) => match s.begin(request_id) {
                Begin::New(a) => Some(a),
                // A retry: answer with the first attempt's outcome.
                Begin::Answered(outcome) => return outcome.map(|r| (r, None)),
                Begin::Running(rx) => {
                    let outcome = rx.await.unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(
                            "the first attempt of this request was cancelled; retry it".into(),
                        ))
                    });
                    return outcome.map(|r| (r, None));
                }
            },
        };
        let outcome = if may_wait(kind) {
            let _waiting = self.enter_wait()?;
            let ended = async {
                match session {
                    Some(s) => s.ended.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.store.apply(caller, op) => r,
                _ = self.shutdown.cancelled() => Err(StoreError::Unavailable("the server is shutting down".into())),
                _ = ended => Err(StoreError::SessionExpired("the session ended while this call waited".into())),
            }
        } else {
            // Cannot wait: nothing to cancel it for (a durable write's wait
            // for the log is bounded by the log, not by a client).
            self.store.apply(caller, op).await
        };
        match attempt {
            Some(a) => {
                let size = a.finish(&outcome);
                outcome.map(|r| (r, Some(size)))
            }
            // Only a read's answer can be large (a changed value is bounded
            // by --max-value-bytes).
            None if read => {
                let r = outcome?;
                let size = self.check_reply(&r)?;
                Ok((r, Some(size)))
            }
            None => outcome.map(|r| (r, None)),
        }
    }

    /// Testing only (`--fault-drop-replies`): UNAVAILABLE in place of a
    /// batch's reply that is to be lost. `applied` (did the batch change
    /// anything?) is asked only when the fault is on.
    fn lose_batch_reply(&self, applied: impl FnOnce() -> bool) -> Result<(), Status> {
        if self.limits.fault_drop_replies > 0 && self.drop_reply(applied()) {
            return Err(Status::unavailable(
                "injected fault: the batch's reply was dropped after it was applied",
            ));
        }
        Ok(())
    }

    /// Testing only: whether to pretend this mutation's reply was lost.
    pub(super) fn drop_reply(&self, mutated: bool) -> bool {
        let every = self.limits.fault_drop_replies;
        mutated && every > 0 && self.mutations.fetch_add(1, Ordering::Relaxed) % every == every - 1
    }
}

/// The caller of one request of a batch: its own client id, if it names
/// one, overrides the batch's.
fn member_caller(batch_client: &str, client_id: String, task_id: String) -> Result<Caller, Status> {
    let client_id = if client_id.is_empty() {
        batch_client.to_owned()
    } else {
        client_id
    };
    caller(client_id, task_id)
}

fn caller(client_id: String, task_id: String) -> Result<Caller, Status> {
    checked_caller(client_id, task_id).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The caller a request names, if its ids are within bounds.
pub(super) fn checked_caller(client_id: String, task_id: String) -> Result<Caller, StoreError> {
    for (what, id) in [("client_id", &client_id), ("task_id", &task_id)] {
        if id.len() > MAX_CLIENT_ID_LEN {
            return Err(StoreError::InvalidArgument(format!(
                "{what} is {} bytes long; the limit is {MAX_CLIENT_ID_LEN}",
                id.len()
            )));
        }
    }
    Ok(Caller { client_id, task_id })
}

/// Whether a request's op changes state (a lost reply to it is retried).
pub(super) fn mutates(op: Option<&pb::Op>) -> bool {
    op.and_then(|o| o.kind.as_ref())
        .is_some_and(|k| !is_read_only(k))
}

fn peer<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unix".to_owned(), |a| a.to_string())
}

#[tonic::async_trait]
impl Procshare for Service {
    async fn ping(
        &self,
        _: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let peer = peer(&request);
        let r = request.into_inner();
        let s = self
            .sessions
            .open(r.ttl_secs, r.client_name, peer)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::OpenSessionResponse {
            session_id: s.id.clone(),
            ttl_secs: s.ttl().as_secs_f64(),
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let s = self
            .sessions
            .keep_alive(&request.into_inner().session_id)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::KeepAliveResponse {
            ttl_secs: s.ttl().as_secs_f64(),
        }))
    }

    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        self.sessions
            .end(&request.into_inner().session_id, "closed by its client");
        Ok(Response::new(pb::CloseSessionResponse {}))
    }

    async fn execute(
        &self,
        request: Request<pb::Request>,
    ) -> Result<Response<pb::Response>, Status> {
        let pb::Request {
            client_id,
            request_id,
            op,
            task_id,
            answered_below,
            ..
        } = request.into_inner();
        let caller = caller(client_id, task_id)?;
        let session = self
            .sessions
            .resolve(&caller.client_id)
            .map_err(|e| to_status(&e))?;
        if let Some(s) = &session {
            s.answered_below(answered_below);
        }
        let mutates = mutates(op.as_ref());
        match self.run(&caller, session.as_deref(), request_id, op).await {
            Ok(_) if self.drop_reply(mutates) => Err(Status::unavailable(
                "injected fault: the reply was dropped after the operation was applied",
            )),
            Ok(result) => Ok(Response::new(pb::Response {
                request_id,
                outcome: Some(Outcome::Ok(result)),
            })),
            Err(e) => {
                tracing::debug!(client = %caller.client_id, request_id, error = %e, "op failed");
                Err(to_status(&e))
            }
        }
    }

    async fn batch(
        &self,
        request: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let batch = request.into_inner();
        if batch.atomic {
            // Only for the fault below (testing), only when it is on.
            let mutates = self.limits.fault_drop_replies > 0
                && batch.requests.iter().any(|r| mutates(r.op.as_ref()));
            let reply = self.atomic_batch(batch).await?;
            self.lose_batch_reply(|| {
                mutates
                    && reply
                        .responses
                        .iter()
                        .all(|r| matches!(r.outcome, Some(Outcome::Ok(_))))
            })?;
            return Ok(Response::new(reply));
        }
        let mut responses = Vec::with_capacity(batch.requests.len());
        let mut room = Room::new(
            batch.requests.len(),
            self.limits.max_reply_bytes,
            self.limits.max_value_bytes,
        )
        .map_err(|e| to_status(&e))?;
        let mut sessions = Resolver::new(self.sessions.clone());
        // The batch's own caller, made once for the members that name no
        // other (the usual case), instead of a copy of its id per member.
        let mut batch_caller: Option<Caller> = None;
        let mut applied_a_mutation = false;
        for r in batch.requests {
            let own;
            let caller = if r.client_id.is_empty() && r.task_id.is_empty() {
                match &mut batch_caller {
                    Some(c) => &*c,
                    none => none.insert(member_caller(&batch.client_id, r.client_id, r.task_id)?),
                }
            } else {
                own = member_caller(&batch.client_id, r.client_id, r.task_id)?;
                &own
            };
            let mutated = mutates(r.op.as_ref());
            let no_room = if mutated {
                room.refuse_mutation()
            } else {
                None
            };
            let (outcome, size) = match sessions.resolve(&caller.client_id) {
                Err(e) => (Err(e), None),
                Ok(session) => match no_room {
                    Some(no_room) => (Err(no_room), None),
                    None => match self
                        .run_sized(caller, session.as_deref(), r.request_id, r.op)
                        .await
                    {
                        Ok((result, size)) => (Ok(result), size),
                        Err(e) => (Err(e), None),
                    },
                },
            };
            applied_a_mutation |= mutated && outcome.is_ok();
            responses.push(room.answer(r.request_id, mutated, outcome, size));
        }
        self.lose_batch_reply(|| applied_a_mutation)?;
        Ok(Response::new(pb::BatchResponse { responses }))
    }

    type WatchStream = super::watch::WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        super::watch::start(
            &self.store,
            &self.sessions,
            &self.shutdown,
            request,
            self.limits.max_reply_bytes,
        )
    }

    type SessionStream = super::stream::Responses;

    async fn session(
        &self,
        request: Request<tonic::Streaming<pb::Request>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Ok(Response::new(super::stream::serve(
            self.0.clone(),
            request.into_inner(),
        )))
    }
}

impl Service {
    /// An atomic batch: checked (callers, sessions) first, then applied as
    /// one unit by the store. A failing operation fails them all.
    async fn atomic_batch(&self, batch: pb::BatchRequest) -> Result<pb::BatchResponse, Status> {
        // The same bound on how many operations as a plain batch's; their
        // answers are bounded by the store.
        Room::new(
            batch.requests.len(),
            self.limits.max_reply_bytes,
            self.limits.max_value_bytes,
        )
        .map_err(|e| to_status(&e))?;
        let mut ops = Vec::with_capacity(batch.requests.len());
        let mut ids = Vec::with_capacity(batch.requests.len());
        let mut sessions = Resolver::new(self.sessions.clone());
        for r in batch.requests {
            let caller = member_caller(&batch.client_id, r.client_id, r.task_id)?;
            sessions
                .resolve(&caller.client_id)
                .map_err(|e| to_status(&e))?;
            let op =
                r.op.ok_or_else(|| Status::invalid_argument("request has no op"))?;
            let size = op.encoded_len();
            if size > self.limits.max_value_bytes {
                return Err(to_status(&StoreError::ResourceExhausted(format!(
                    "operation of {size} bytes; this server takes at most {} (--max-value-bytes)",
                    self.limits.max_value_bytes
                ))));
            }
            ids.push(r.request_id);
            ops.push((caller, op));
        }
        let outcomes = self
            .store
            .apply_atomic(ops, self.limits.max_reply_bytes, batch_reply::ENVELOPE)
            .await
            .map_err(|e| to_status(&e))?;
        let responses = ids
            .into_iter()
            .zip(outcomes)
            .map(|(request_id, outcome)| to_response(request_id, outcome))
            .collect();
        Ok(pb::BatchResponse { responses })
    }
}
