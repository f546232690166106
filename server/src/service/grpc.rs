//! The gRPC service: turns requests into store operations and results back
//! into responses. All three entry points end in [`Store::apply`].

use std::sync::Arc;

use procshare_proto::{self as pb, procshare_server::Procshare, response::Outcome};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::status::{to_status, to_wire};
use crate::store::{Caller, Store, StoreError};

/// Longest client id accepted, in bytes.
const MAX_CLIENT_ID_LEN: usize = 255;

pub struct Service {
    store: Arc<Store>,
    /// Cancelled when the server shuts down, so that calls blocked in a wait
    /// end (with UNAVAILABLE) instead of holding the shutdown up.
    shutdown: CancellationToken,
}

impl Service {
    pub fn new(store: Arc<Store>, shutdown: CancellationToken) -> Self {
        Service { store, shutdown }
    }

    async fn apply(&self, caller: &Caller, op: Option<pb::Op>) -> Result<pb::OpResult, StoreError> {
        let op = op.ok_or_else(|| StoreError::InvalidArgument("request has no op".into()))?;
        tokio::select! {
            r = self.store.apply(caller, op) => r,
            _ = self.shutdown.cancelled() => Err(StoreError::Unavailable("the server is shutting down".into())),
        }
    }
}

fn caller(client_id: String, task_id: String) -> Result<Caller, Status> {
    for (what, id) in [("client_id", &client_id), ("task_id", &task_id)] {
        if id.len() > MAX_CLIENT_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "{what} is {} bytes long; the limit is {MAX_CLIENT_ID_LEN}",
                id.len()
            )));
        }
    }
    Ok(Caller { client_id, task_id })
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

    async fn execute(
        &self,
        request: Request<pb::Request>,
    ) -> Result<Response<pb::Response>, Status> {
        let pb::Request {
            client_id,
            request_id,
            op,
            task_id,
        } = request.into_inner();
        let caller = caller(client_id, task_id)?;
        match self.apply(&caller, op).await {
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
            return Err(to_status(&StoreError::Unimplemented(
                "atomic batches are not supported yet; nothing was applied".into(),
            )));
        }
        let mut responses = Vec::with_capacity(batch.requests.len());
        for r in batch.requests {
            // A request's own client id, if it names one, overrides the batch's.
            let client_id = if r.client_id.is_empty() {
                batch.client_id.clone()
            } else {
                r.client_id
            };
            let caller = caller(client_id, r.task_id)?;
            let outcome = match self.apply(&caller, r.op).await {
                Ok(result) => Outcome::Ok(result),
                Err(e) => Outcome::Error(to_wire(&e)),
            };
            responses.push(pb::Response {
                request_id: r.request_id,
                outcome: Some(outcome),
            });
        }
        Ok(Response::new(pb::BatchResponse { responses }))
    }
}
