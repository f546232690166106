//! One connection to `procshared`: a gRPC channel (TCP, TLS or a Unix
//! socket), the token sent with every call, this client's identity, and the
//! call deadline. Cheap to clone; all proxies of a [`Manager`] share it.
//!
//! The channel sends HTTP/2 keepalive pings even while idle, so that NAT
//! and firewall state stays alive and a dead server is noticed; after a
//! broken connection the channel reconnects by itself on the next call.
//!
//! Calls go over the connection's session stream ([`crate::stream`]),
//! pipelined, unless the builder asked for unary calls (one gRPC `Execute`
//! each) or the server has no stream.
//!
//! [`Manager`]: crate::Manager

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use procshare_proto::{self as pb, procshare_client::ProcshareClient, response::Outcome};
use prost::bytes::Bytes;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codegen::http::Uri;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::{InterceptedService, Interceptor};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::encode;
use crate::error::{Error, Result};
use crate::lane;
use crate::request_ids::RequestIds;
use crate::session::{self, Session, SessionCalls};
use crate::stream::{Answer, Mux};

/// How long a call may take when it does not wait on purpose.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 flow-control window of a stream, in bytes.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// The largest request sent over the session stream: a server's default
/// `--max-message-bytes`, less the gRPC frame header.
const STREAM_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 5;
/// Default interval of the client's HTTP/2 keepalive pings.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a keepalive ping may go unanswered before the connection is
/// considered dead.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a connection's session stream checks its calls' deadlines:
/// a call fails at most this long after its deadline.
fn deadline_tick(call_timeout: Duration) -> Duration {
    (call_timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

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

/// Adds the token to every call, when there is one.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// `Bearer <token>`, marked sensitive so that HTTP/2 never puts it in a
    /// compression table.
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

pub(crate) type Client = ProcshareClient<InterceptedService<Channel, Credentials>>;
/// The same channel, for calls whose requests are already encoded
/// ([`crate::encode`]).
pub(crate) type Raw = tonic::client::Grpc<InterceptedService<Channel, Credentials>>;

/// The session calls, made on the connection's client.
#[derive(Clone)]
pub(crate) struct GrpcSessionCalls {
    client: Client,
    timeout: Duration,
    url: Arc<str>,
    tls: bool,
}

impl GrpcSessionCalls {
    /// Runs a session call within the timeout, errors mapped as any call's.
    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_error(status, &self.url, self.tls)),
            Err(_) => Err(Error::Timeout(format!(
                "{}: {what} took too long",
                self.url
            ))),
        }
    }
}

#[tonic::async_trait]
impl SessionCalls for GrpcSessionCalls {
    async fn open(&self, ttl: Duration, name: &str) -> Result<(String, Duration)> {
        let mut c = self.client.clone();
        let request = session::open_request(ttl, name);
        let r = self
            .call("opening a session", c.open_session(request))
            .await?;
        let granted = Duration::try_from_secs_f64(r.ttl_secs).unwrap_or(ttl);
        Ok((r.session_id, granted))
    }

    async fn keep_alive(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        let request = pb::KeepAliveRequest {
            session_id: id.to_owned(),
        };
        self.call("a keep-alive", c.keep_alive(request)).await?;
        Ok(())
    }

    async fn close(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        let request = pb::CloseSessionRequest {
            session_id: id.to_owned(),
        };
        self.call("closing the session", c.close_session(request))
            .await?;
        Ok(())
    }
}

#[derive(Clone)]
pub(crate) struct Connection {
    client: Client,
    raw: Raw,
    /// The session that owns this client's locks; `None` against a server
    /// without sessions, where `client_id` is the owner.
    session: Option<Arc<Session<GrpcSessionCalls>>>,
    client_id: Arc<str>,
    requests: Arc<RequestIds>,
    call_timeout: Duration,
    url: Arc<str>,
    /// Does the channel speak TLS? (A refused handshake then gets a message
    /// that says so.)
    tls: bool,
    /// The session stream; `None`: unary calls.
    mux: Option<Arc<Mux>>,
}

/// Everything [`Connection::connect`] needs, resolved by the builder.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub url: String,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// The session lease to ask for.
    pub lease: Duration,
    /// One unary `Execute` per call instead of the session stream.
    pub unary: bool,
    /// The session stream on tonic's connection, not one of its own.
    pub shared_stream_connection: bool,
}

/// The three kinds of URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    Unix,
}

/// Accepts `http://host:port`, `https://host:port`, `unix:///path` (or
/// `unix:path`), or a bare `host:port` (plain HTTP).
fn endpoint(url: &str) -> Result<(Endpoint, Scheme)> {
    if let Some(rest) = url.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "bad URL {url:?}: expected unix:///path/to/socket"
            )));
        }
        let e = Endpoint::from_shared(format!("unix:{path}"))
            .map_err(|e| Error::InvalidArgument(format!("bad URL {url:?}: {e}")))?;
        return Ok((e, Scheme::Unix));
    }
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let scheme = if full.starts_with("http://") {
        Scheme::Http
    } else if full.starts_with("https://") {
        Scheme::Https
    } else {
        return Err(Error::InvalidArgument(format!(
            "unsupported URL {url:?}: expected http://host:port, https://host:port or \
             unix:///path"
        )));
    };
    let e = Endpoint::from_shared(full)
        .map_err(|e| Error::InvalidArgument(format!("bad URL {url:?}: {e}")))?;
    Ok((e, scheme))
}

/// The session stream's own connection ([`lane`]) for a plain `http://`
/// or `unix:` URL; `https://` keeps tonic's channel (TLS is not done there).
fn lane_settings(o: &ConnectOptions, uri: &Uri, scheme: Scheme) -> Option<lane::Settings> {
    if o.shared_stream_connection {
        return None;
    }
    let (target, authority) = match scheme {
        Scheme::Https => return None,
        Scheme::Unix => {
            let rest = o.url.strip_prefix("unix:")?;
            let path = rest.strip_prefix("//").unwrap_or(rest);
            (lane::Target::Unix(path.into()), "localhost".to_owned())
        }
        Scheme::Http => {
            let host = uri.host()?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let port = uri.port_u16().unwrap_or(80);
            let target = lane::Target::Tcp {
                host: host.to_owned(),
                port,
            };
            (target, uri.authority()?.to_string())
        }
    };
    Some(lane::Settings {
        target,
        authority,
        authorization: o.token.as_deref().map(|t| format!("Bearer {}", t.trim())),
        connect_timeout: o.connect_timeout,
        keepalive: o
            .keepalive_interval
            .map(|every| (every, o.keepalive_timeout)),
        window: STREAM_WINDOW,
    })
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!("cannot read the {what} {}: {e}", path.display()))
    })
}

/// Reads a PEM file that must hold at least one certificate.
fn read_certs(what: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read_pem(what, path)?;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&pem) {
        c.map_err(|e| {
            Error::InvalidArgument(format!(
                "the {what} {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::InvalidArgument(format!(
            "the {what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(pem)
}

/// The TLS settings of an `https://` URL: the CA that signed the server's
/// certificate (else the system's roots), and this client's certificate for
/// mTLS.
fn tls_config(o: &ConnectOptions) -> Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new();
    tls = match &o.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read_certs("CA file", ca)?)),
        None => tls.with_native_roots(),
    };
    match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            let cert = read_certs("client certificate", cert)?;
            let key_pem = read_pem("client key", key)?;
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                Error::InvalidArgument(format!(
                    "the client key {} holds no PEM private key",
                    key.display()
                ))
            })?;
            tls = tls.identity(Identity::from_pem(cert, key_pem));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "a client certificate needs its key as well (key, --key or PROCSHARE_KEY)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(
                "a client key needs its certificate as well (cert, --cert or PROCSHARE_CERT)"
                    .into(),
            ))
        }
    }
    Ok(tls)
}

fn credentials(token: Option<&str>) -> Result<Credentials> {
    let authorization = match token {
        None => None,
        Some(t) => {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                // Never echo the token itself.
                return Err(Error::InvalidArgument(
                    "the token must be printable ASCII without spaces, and not empty".into(),
                ));
            }
            let mut v: MetadataValue<Ascii> = format!("Bearer {t}").parse().map_err(|_| {
                Error::InvalidArgument("the token cannot travel in a header".into())
            })?;
            v.set_sensitive(true);
            Some(v)
        }
    };
    Ok(Credentials { authorization })
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
    pub async fn connect(o: ConnectOptions) -> Result<Self> {
        let url = o.url.as_str();
        let (endpoint, scheme) = endpoint(url)?;
        let has_tls_files = o.ca_file.is_some() || o.cert.is_some() || o.key.is_some();
        let mut endpoint = endpoint
            .connect_timeout(o.connect_timeout)
            .tcp_nodelay(true)
            .keep_alive_while_idle(true)
            .keep_alive_timeout(o.keepalive_timeout)
            // One stream carries every call: a larger window lets many be
            // in flight without waiting for window updates.
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(2 * STREAM_WINDOW));
        if let Some(interval) = o.keepalive_interval {
            endpoint = endpoint.http2_keep_alive_interval(interval);
        }
        match scheme {
            Scheme::Https => {
                endpoint = endpoint.tls_config(tls_config(&o)?).map_err(|e| {
                    Error::InvalidArgument(format!("bad TLS settings: {}", source_chain(&e)))
                })?;
            }
            Scheme::Http | Scheme::Unix if has_tls_files => {
                return Err(Error::InvalidArgument(format!(
                    "a CA file or client certificate was given, but {url:?} is not an https:// URL"
                )));
            }
            Scheme::Http | Scheme::Unix => {}
        }
        let credentials = credentials(o.token.as_deref())?;
        let endpoint_uri = endpoint.uri().clone();
        let channel = endpoint.connect().await.map_err(|e| {
            let chain = source_chain(&e);
            let hint = if scheme == Scheme::Https && chain.contains("InvalidContentType") {
                " (is the server plain HTTP? then connect to http://…)"
            } else {
                ""
            };
            Error::Unavailable(format!("cannot connect to {url}: {chain}{hint}"))
        })?;
        // The server bounds what it sends (`--max-message-bytes`, and
        // answers too large to send are refused one by one): tonic's own 4
        // MiB default would turn a larger answer from a server configured
        // for it into a broken connection.
        let raw = Raw::new(InterceptedService::new(
            channel.clone(),
            credentials.clone(),
        ))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
        let client = ProcshareClient::with_interceptor(channel, credentials)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut conn = Connection {
            mux: (!o.unary).then(|| {
                let lane = lane_settings(&o, &endpoint_uri, scheme);
                Arc::new(Mux::new(raw.clone(), deadline_tick(o.call_timeout), lane))
            }),
            client,
            raw,
            session: None,
            client_id: new_client_id().into(),
            requests: Arc::new(RequestIds::new()),
            call_timeout: o.call_timeout,
            url: url.into(),
            tls: scheme == Scheme::Https,
        };
        if conn.tls {
            conn.check_tls_client(o.connect_timeout, o.cert.is_some())
                .await?;
        }
        let calls = GrpcSessionCalls {
            client: conn.client.clone(),
            timeout: o.connect_timeout.max(Duration::from_secs(1)),
            url: conn.url.clone(),
            tls: conn.tls,
        };
        let name = format!("pid {}", std::process::id());
        match Session::open(calls, o.lease, name).await {
            Ok(s) => conn.session = Some(s),
            Err(e) if session::unsupported(&e) => {
                tracing::warn!("the server has no sessions: locks held by this client are not freed if it dies");
            }
            Err(e) => return Err(e),
        }
        Ok(conn)
    }

    /// Who owns this client's locks: its session id (which changes if the
    /// session had to be re-opened).
    pub fn client_id(&self) -> Arc<str> {
        match &self.session {
            Some(s) => s.id(),
            None => self.client_id.clone(),
        }
    }

    /// Ends the session now: the server gives back what it held.
    pub async fn close(&self) -> Result<()> {
        match &self.session {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gRPC client on this connection's channel (with its token), for
    /// calls other than `execute`: a watch's stream.
    pub(crate) fn grpc(&self) -> Client {
        self.client.clone()
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
            None => call.await.map_err(|s| self.call_error(s)),
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r.map_err(|s| self.call_error(s)),
                Err(_) => Err(Error::Timeout(format!(
                    "no answer from {} within {limit:?}",
                    self.url
                ))),
            },
        }
    }

    /// A failed call as an [`Error`]. A status the server sent maps by its
    /// code; one that tonic made from a transport failure (it has a source)
    /// becomes UNAVAILABLE with the chain of causes and, where the symptom
    /// is a known one, a hint.
    fn call_error(&self, status: tonic::Status) -> Error {
        status_error(status, &self.url, self.tls)
    }

    /// Over TLS, the first call tells whether the server accepted this
    /// client: with mTLS, a server that refuses the client's certificate (or
    /// its lack of one) closes the connection only after the client thinks
    /// the handshake is done. Asking now turns that into a clear error at
    /// connect rather than a puzzling one later.
    async fn check_tls_client(&self, limit: Duration, has_cert: bool) -> Result<()> {
        let mut client = self.client.clone();
        let status = match tokio::time::timeout(limit, client.ping(pb::PingRequest {})).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(status)) => status,
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "{}: no answer within {limit:?} after the TLS handshake",
                    self.url
                )))
            }
        };
        match std::error::Error::source(&status).map(source_chain) {
            // Right after a handshake that went through, a dropped
            // connection is the server saying no to the certificate.
            Some(chain) if certificate_refused(&chain) || connection_dropped(&chain) => {
                Err(Error::Unauthenticated(if has_cert {
                    format!(
                        "{}: the server closed the connection after the TLS handshake: it \
                         refused this client's certificate (is it signed by the server's \
                         --client-ca?) ({chain})",
                        self.url
                    )
                } else {
                    format!(
                        "{}: the server closed the connection after the TLS handshake: it \
                         requires a client certificate (mTLS); pass one signed by its client \
                         CA with its key (cert/key, --cert/--key, PROCSHARE_CERT/PROCSHARE_KEY) \
                         ({chain})",
                        self.url
                    )
                }))
            }
            _ => match self.call_error(status) {
                // A server that wants a token answers the ping with
                // UNAUTHENTICATED: say so now too.
                e @ Error::Unauthenticated(_) => Err(e),
                // Anything else (an old server without ping, …) is for the
                // calls to report.
                _ => Ok(()),
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
    ///
    /// A call that fails because the server cannot be reached (or is
    /// restarting) is retried with backoff, under the same request id, until
    /// its deadline: the server applies a retried mutation once. If the
    /// session expired meanwhile, a new one is opened and the call retried
    /// once in it.
    pub async fn execute(
        &self,
        name: &str,
        task: &str,
        op: pb::op::Kind,
        deadline: Deadline,
    ) -> Result<pb::OpResult> {
        // Open until this call is over, retries included.
        let id = self.requests.open(1);
        let encode = |client_id: &str| {
            encode::Parts {
                client_id,
                request_id: id.first,
                answered_below: id.answered_below,
                name,
                task_id: task,
                op: &op,
            }
            .encode()
        };
        let mut client_id = self.client_id();
        let mut request = encode(&client_id);
        let limit = self.limit(deadline);
        // One clock read per call: the deadline is a point in time, and the
        // time left is only worked out again after a failure.
        let due = limit.map(|l| tokio::time::Instant::now() + l);
        let mut backoff = Duration::from_millis(20);
        let mut reopened = false;
        loop {
            match self.attempt(id.first, &request, due).await {
                Err(Error::Unavailable(why))
                    if due.is_none_or(|d| {
                        d.saturating_duration_since(tokio::time::Instant::now()) > backoff
                    }) =>
                {
                    tracing::debug!(error = %why, "procshare call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(Error::SessionExpired(why)) if !reopened => {
                    let Some(s) = &self.session else {
                        return Err(Error::SessionExpired(why));
                    };
                    s.reopen(&client_id).await?;
                    client_id = s.id();
                    request = encode(&client_id);
                    reopened = true;
                }
                other => return other,
            }
        }
    }

    /// One try of a call, answered by `due` (`None`: no limit).
    async fn attempt(
        &self,
        id: u64,
        request: &Bytes,
        due: Option<tokio::time::Instant>,
    ) -> Result<pb::OpResult> {
        let reply = self.send(id, request, due).await?;
        match reply.outcome {
            Some(Outcome::Ok(result)) => Ok(result),
            Some(Outcome::Error(e)) => Err(Error::from_kind(
                pb::ErrorKind::try_from(e.kind).unwrap_or(pb::ErrorKind::Unspecified),
                e.message,
            )),
            None => Err(Error::Protocol("response without outcome".into())),
        }
    }

    /// Sends the encoded request `id` over the stream, or as a unary call,
    /// and waits for the answer until `due`. (The caller keeps the bytes
    /// for a retry.)
    async fn send(
        &self,
        id: u64,
        request: &Bytes,
        due: Option<tokio::time::Instant>,
    ) -> Result<pb::Response> {
        let timed_out = || {
            Error::Timeout(format!(
                "no answer from {} within the call's deadline",
                self.url
            ))
        };
        // A request larger than a server takes (4 MiB by default) would
        // break the session stream, failing every call on it: as a unary
        // call, it is refused alone.
        let mux = self.mux.as_ref().filter(|m| m.usable());
        if let Some(mux) = mux.filter(|_| request.len() <= STREAM_REQUEST_BYTES) {
            let status_error = |s| self.call_error(s);
            match mux.call(id, request.clone(), due, &status_error).await? {
                Some(Answer::Response(r)) => return Ok(r),
                Some(Answer::Expired) => return Err(timed_out()),
                None => {}
            }
        }
        let call = encode::execute(self.raw.clone(), request.clone());
        let reply = match due {
            None => call.await,
            Some(due) => tokio::time::timeout_at(due, call)
                .await
                .map_err(|_| timed_out())?,
        };
        reply.map_err(|s| self.call_error(s))
    }

    /// Applies several operations with one `Batch` call; with `atomic`, as
    /// one unit. An atomic batch is not retried after UNAVAILABLE (whether
    /// it was applied is unknown then); a plain one is, under the same
    /// request ids, which the server de-duplicates.
    pub async fn batch(
        &self,
        ops: Vec<(String, String, pb::op::Kind)>,
        atomic: bool,
    ) -> Result<Vec<Result<pb::OpResult>>> {
        let ids = self.requests.open(ops.len() as u64);
        let mut batch = pb::BatchRequest {
            client_id: self.client_id().to_string(),
            requests: ops
                .into_iter()
                .zip(ids.first..)
                .map(|((name, task_id, kind), request_id)| pb::Request {
                    request_id,
                    op: Some(pb::Op {
                        name,
                        kind: Some(kind),
                    }),
                    task_id,
                    ..Default::default()
                })
                .collect(),
            atomic,
        };
        // Encoded once; every attempt sends the same bytes (re-encoded only
        // when a reopened session gives the batch a new client id).
        let mut encoded = Bytes::from(batch.encode_to_vec());
        let limit = self.call_timeout;
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(20);
        let mut reopened = false;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let call = encode::batch(self.raw.clone(), encoded.clone());
            let reply = match tokio::time::timeout(left, call).await {
                Ok(r) => r.map_err(|s| self.call_error(s)),
                Err(_) => Err(Error::Timeout(format!(
                    "no answer from {} within {limit:?}",
                    self.url
                ))),
            };
            let expired = |e: &Error| matches!(e, Error::SessionExpired(_));
            let outcomes: Result<Vec<Result<pb::OpResult>>> = reply.map(|r| {
                r.responses
                    .into_iter()
                    .map(|r| match r.outcome {
                        Some(Outcome::Ok(result)) => Ok(result),
                        Some(Outcome::Error(e)) => Err(Error::from_kind(
                            pb::ErrorKind::try_from(e.kind).unwrap_or(pb::ErrorKind::Unspecified),
                            e.message,
                        )),
                        None => Err(Error::Protocol("response without outcome".into())),
                    })
                    .collect()
            });
            let session_gone = match &outcomes {
                Err(e) => expired(e),
                Ok(v) => !v.is_empty() && v.iter().all(|r| r.as_ref().is_err_and(expired)),
            };
            match outcomes {
                Err(Error::Unavailable(why)) if !atomic && left > backoff => {
                    tracing::debug!(error = %why, "procshare batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                _ if session_gone && !reopened && self.session.is_some() => {
                    if let Some(s) = &self.session {
                        s.reopen(&batch.client_id).await?;
                        batch.client_id = s.id().to_string();
                        encoded = Bytes::from(batch.encode_to_vec());
                    }
                    reopened = true;
                }
                other => return other,
            }
        }
    }
}

/// A failed call as an [`Error`]: see [`Connection::call_error`].
fn status_error(status: tonic::Status, url: &str, tls: bool) -> Error {
    let transport = matches!(
        status.code(),
        tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    );
    let source = std::error::Error::source(&status).filter(|_| transport);
    let Some(source) = source else {
        return Error::from(status);
    };
    let chain = source_chain(source);
    let hint = if !tls && chain.contains("frame with invalid size") {
        " (if the server uses TLS, connect to https://…)"
    } else if tls && certificate_refused(&chain) {
        " (the server refused this client's certificate: pass one signed by its client CA, \
         with its key)"
    } else {
        ""
    };
    Error::Unavailable(format!("{url}: {chain}{hint}"))
}

/// Does this chain of causes say the server dropped the connection?
fn connection_dropped(chain: &str) -> bool {
    [
        "broken pipe",
        "connection closed",
        "connection reset",
        "operation was canceled",
    ]
    .iter()
    .any(|s| chain.contains(s))
}

/// Does it carry a TLS alert by which the server refused this client's
/// certificate (or its lack of one)?
fn certificate_refused(chain: &str) -> bool {
    [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "DecryptError",
    ]
    .iter()
    .any(|s| chain.contains(s))
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
