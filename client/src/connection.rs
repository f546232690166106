//! One connection to `procshared`: a gRPC channel, this client's identity,
//! and the call deadline. Cheap to clone; all proxies of a [`Manager`]
//! share it.
//!
//! [`Manager`]: crate::Manager

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use procshare_proto::{self as pb, procshare_client::ProcshareClient, response::Outcome};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// How long a call may take when it does not wait on purpose.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadline of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// The connection's default call timeout.
    Default,
    /// A wait of this long on the server, plus the default call timeout.
    Wait(Duration),
    /// A wait without end (a blocking acquire with no timeout).
    Never,
}

#[derive(Clone)]
pub(crate) struct Connection {
    client: ProcshareClient<Channel>,
    client_id: Arc<str>,
    next_request: Arc<AtomicU64>,
    call_timeout: Duration,
    url: Arc<str>,
}

/// Accepts `http://host:port`, `https://host:port`, or a bare `host:port`.
fn endpoint(url: &str) -> Result<Endpoint> {
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    if !(full.starts_with("http://") || full.starts_with("https://")) {
        return Err(Error::InvalidArgument(format!(
            "unsupported URL {url:?}: expected http://host:port"
        )));
    }
    Endpoint::from_shared(full).map_err(|e| Error::InvalidArgument(format!("bad URL {url:?}: {e}")))
}

/// A client id unique enough across processes and hosts: pid, time and a
/// per-process counter, hashed with a random key.
fn new_client_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}-{}", h.finish(), std::process::id())
}

impl Connection {
    pub async fn connect(
        url: &str,
        call_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let channel = endpoint(url)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                Error::Unavailable(format!("cannot connect to {url}: {}", source_chain(&e)))
            })?;
        Ok(Connection {
            client: ProcshareClient::new(channel),
            client_id: new_client_id().into(),
            next_request: Arc::new(AtomicU64::new(1)),
            call_timeout,
            url: url.into(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn limit(&self, deadline: Deadline) -> Option<Duration> {
        match deadline {
            Deadline::Default => Some(self.call_timeout),
            Deadline::Wait(w) => Some(w.saturating_add(self.call_timeout)),
            Deadline::Never => None,
        }
    }

    /// Runs one gRPC call under `deadline`.
    async fn within<T>(
        &self,
        deadline: Deadline,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T> {
        match self.limit(deadline) {
            None => call.await.map_err(Error::from),
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r.map_err(Error::from),
                Err(_) => Err(Error::Timeout(format!(
                    "no answer from {} within {limit:?}",
                    self.url
                ))),
            },
        }
    }

    pub async fn ping(&self) -> Result<String> {
        let mut client = self.client.clone();
        let reply = self
            .within(Deadline::Default, client.ping(pb::PingRequest {}))
            .await?;
        Ok(reply.into_inner().version)
    }

    /// Applies one operation to the object `name`.
    pub async fn execute(
        &self,
        name: &str,
        task: &str,
        op: pb::op::Kind,
        deadline: Deadline,
    ) -> Result<pb::OpResult> {
        let request = pb::Request {
            client_id: self.client_id.to_string(),
            request_id: self.next_request.fetch_add(1, Ordering::Relaxed),
            op: Some(pb::Op {
                name: name.to_owned(),
                kind: Some(op),
            }),
            task_id: task.to_owned(),
        };
        let mut client = self.client.clone();
        let reply = self.within(deadline, client.execute(request)).await?;
        match reply.into_inner().outcome {
            Some(Outcome::Ok(result)) => Ok(result),
            Some(Outcome::Error(e)) => Err(Error::from_kind(
                pb::ErrorKind::try_from(e.kind).unwrap_or(pb::ErrorKind::Unspecified),
                e.message,
            )),
            None => Err(Error::Protocol("response without outcome".into())),
        }
    }
}

/// The whole chain of an error's causes, for messages that say why.
/// Causes whose text is already in the message (tonic repeats some) are
/// left out.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
