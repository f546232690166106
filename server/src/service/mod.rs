//! The network face of the server: the gRPC service, its configuration, and
//! [`serve`] / [`serve_on`], which run it until told to stop.
//!
//! What a connection gets:
//! - `procshare.v1.Procshare`, the objects, behind the [`auth`] check;
//! - server reflection (`grpc.reflection.v1` and `v1alpha`), behind the same
//!   check, so that `grpcurl` and friends work without the proto file;
//! - the standard health check `grpc.health.v1.Health`, the one service that
//!   answers without a token (load balancers and probes have none).
//!
//! TCP may be wrapped in TLS (mTLS with a client CA); the Unix socket never
//! is: it is local, and its file mode decides who may connect.
//!
//! A plain (not TLS) connection whose client says it carries only its
//! session stream is served by [`lane`], outside tonic: the same calls,
//! checks and answers, at about half the cost a call ([`accept`] sorts the
//! connections).

mod accept;
mod answers;
pub mod auth;
mod batch_reply;
mod grpc;
mod lane;
pub mod session;
pub mod status;
mod stream;
pub mod tls;
pub mod unix;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use procshare_proto::procshare_server::ProcshareServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::transport::Server;

pub use auth::{Auth, Token, TokenError};
pub use tls::{TlsError, TlsFiles};
pub use unix::UnixSocket;

use crate::store::Store;
pub use grpc::ServiceLimits;
pub use session::{SessionLimits, Sessions};

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// How long in-flight calls get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The shared token every call but the health check must carry; `None`
    /// lets every call through.
    pub token: Option<Token>,
    /// TLS on the TCP listener (with a client CA: mTLS).
    pub tls: Option<TlsFiles>,
    /// How often to send an HTTP/2 PING on a connection; `None`: never. The
    /// pings keep NAT and firewall state alive and reveal a dead peer.
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a PING's answer before closing the connection.
    pub keepalive_timeout: Duration,
    /// Lease bounds and the session limit.
    pub sessions: SessionLimits,
    /// Waiter, value-size limits (and fault injection, for tests).
    pub limits: ServiceLimits,
    /// Serve connections that carry only a session stream (a client marks
    /// them) directly, not through tonic. On by default; off, every
    /// connection goes through tonic.
    pub direct_sessions: bool,
}

/// Default HTTP/2 keepalive interval of the server.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Default HTTP/2 keepalive timeout of the server.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
            token: None,
            tls: None,
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            sessions: SessionLimits::default(),
            limits: ServiceLimits::default(),
            direct_sessions: true,
        }
    }
}

/// Where to accept connections: TCP, a Unix socket, or both.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub unix: Option<UnixSocket>,
}

/// Serves `store` on `listener` until `shutdown` completes. Calls blocked in a
/// wait are then ended with UNAVAILABLE, and in-flight calls are answered.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let listeners = Listeners {
        tcp: Some(listener),
        unix: None,
    };
    serve_on(listeners, store, config, shutdown).await
}

/// The services every listener offers, built once, and what connections
/// served outside tonic share.
fn routes(
    store: Arc<Store>,
    config: &ServerConfig,
    cancel: CancellationToken,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> (Routes, Arc<lane::Config>) {
    let auth = Auth::new(config.token.clone());
    let sessions = Sessions::new(store.clone(), config.sessions.clone());
    sessions.spawn_reaper(cancel.clone());
    let mut limits = config.limits.clone();
    limits.max_reply_bytes = config.max_message_bytes.saturating_sub(grpc::REPLY_ROOM);
    let service = grpc::Service::new(store, sessions, limits, cancel);
    let lanes = Arc::new(lane::Config {
        core: service.core(),
        auth: auth.clone(),
        max_message_bytes: config.max_message_bytes,
        keepalive: config
            .keepalive_interval
            .map(|every| (every, config.keepalive_timeout)),
    });
    let procshare = ProcshareServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let mut routes =
        Routes::new(InterceptedService::new(procshare, auth.clone())).add_service(health);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(procshare_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Building fails only on a corrupt compiled-in descriptor: serve the
    // objects anyway and say what is missing.
    match reflection().build_v1() {
        Ok(r) => routes = routes.add_service(InterceptedService::new(r, auth.clone())),
        Err(e) => tracing::error!(error = %e, "server reflection (v1) is off"),
    }
    match reflection().build_v1alpha() {
        Ok(r) => routes = routes.add_service(InterceptedService::new(r, auth)),
        Err(e) => tracing::error!(error = %e, "server reflection (v1alpha) is off"),
    }
    (routes, lanes)
}

/// Connections waiting to be accepted before the kernel drops new ones (it
/// caps this at `net.core.somaxconn`). Tokio's `bind` asks for 1,024: ten
/// thousand clients connecting at once overflowed it and were reset.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a backlog fit for thousands of clients arriving
/// at once.
pub fn listen_tcp(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's `bind`: a restarted daemon can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connections `listener` accepts, with Nagle's algorithm off. Tonic's
/// `tcp_nodelay` only reaches sockets it accepts itself: without this, a
/// small reply written after a larger one waits for the peer's delayed ACK
/// (~40 ms per call seen with 1 KiB values).
fn accept_tcp(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    })
}

fn builder(config: &ServerConfig) -> Server {
    // A client's session stream carries all its calls: a larger window
    // lets many be in flight without waiting for window updates.
    Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .http2_keepalive_interval(config.keepalive_interval)
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
}

/// Serves `store` on every listener of `listeners` until `shutdown`
/// completes; then as [`serve`]. The Unix socket's file is removed on
/// return.
pub async fn serve_on(
    listeners: Listeners,
    store: Arc<Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let Listeners { tcp, mut unix } = listeners;
    let cancel = CancellationToken::new();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            <ProcshareServer<grpc::Service> as tonic::server::NamedService>::NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let (routes, lanes) = routes(store, &config, cancel.clone(), health);
    // Session-only connections are tracked here (tonic tracks its own), so
    // that a shutdown waits for their calls too, and ended when it is over.
    let sorting = Sorting {
        lanes,
        tracker: TaskTracker::new(),
        cancel: cancel.clone(),
        hard_stop: CancellationToken::new(),
    };
    let _hard_stop = sorting.hard_stop.clone().drop_guard();

    let signal = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Probes see the server go before it stops answering.
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            health_reporter
                .set_service_status(
                    <ProcshareServer<grpc::Service> as tonic::server::NamedService>::NAME,
                    tonic_health::ServingStatus::NotServing,
                )
                .await;
            cancel.cancel();
        })
    };

    let tcp_server = {
        let cancel = cancel.clone();
        let routes = routes.clone();
        let config = config.clone();
        let sorting = sorting.clone();
        async move {
            let Some(listener) = tcp else { return Ok(()) };
            let mut b = builder(&config);
            if let Some(tls) = &config.tls {
                b = b.tls_config(tls.server_config())?;
            }
            let b = b.add_routes(routes);
            // TLS connections all go to tonic: a client's session-only
            // connection is a plain one.
            if config.tls.is_some() || !config.direct_sessions {
                return b
                    .serve_with_incoming_shutdown(accept_tcp(listener), cancel.cancelled_owned())
                    .await;
            }
            b.serve_with_incoming_shutdown(
                sorting.sort(accept_tcp(listener)),
                cancel.cancelled_owned(),
            )
            .await
        }
    };
    let unix_server = {
        let cancel = cancel.clone();
        let config = config.clone();
        let listener = unix.as_mut().and_then(UnixSocket::take_listener);
        let sorting = sorting.clone();
        async move {
            let Some(listener) = listener else {
                return Ok(());
            };
            let b = builder(&config).add_routes(routes);
            if !config.direct_sessions {
                return b
                    .serve_with_incoming_shutdown(
                        UnixListenerStream::new(listener),
                        cancel.cancelled_owned(),
                    )
                    .await;
            }
            b.serve_with_incoming_shutdown(
                sorting.sort(UnixListenerStream::new(listener)),
                cancel.cancelled_owned(),
            )
            .await
        }
    };
    let servers = async {
        tokio::try_join!(tcp_server, unix_server)?;
        sorting.tracker.close();
        sorting.tracker.wait().await;
        Ok(())
    };
    tokio::pin!(servers);
    let result = tokio::select! {
        r = &mut servers => r,
        // Connections that stay open (idle clients) would hold a graceful
        // shutdown forever: after the grace period, stop regardless.
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(config.shutdown_grace).await;
        } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    };
    signal.abort();
    drop(unix);
    result
}

/// Sorts accepted connections ([`accept`]): session-only ones are served
/// here, the others handed to tonic.
#[derive(Clone)]
struct Sorting {
    lanes: Arc<lane::Config>,
    tracker: TaskTracker,
    /// The shutdown signal: connections not yet sorted are dropped.
    cancel: CancellationToken,
    /// Cancelled when [`serve_on`] returns: every session-only connection
    /// still open is closed.
    hard_stop: CancellationToken,
}

/// Who is at the other end of a connection, for log lines.
trait Peer {
    fn peer(&self) -> String;
}

impl Peer for tokio::net::TcpStream {
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|_| "an unknown peer".to_owned(), |a| a.to_string())
    }
}

impl Peer for tokio::net::UnixStream {
    fn peer(&self) -> String {
        "a local client".to_owned()
    }
}

impl Sorting {
    /// The connections of `accepted` that tonic is to serve; a task sorts
    /// each (so that one slow to send its first bytes holds up no other)
    /// and serves the session-only ones.
    fn sort<IO>(
        &self,
        accepted: impl tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static,
    ) -> ReceiverStream<std::io::Result<accept::Rewind<IO>>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Peer + Unpin + Send + 'static,
    {
        use tokio_stream::StreamExt;
        let (tx, rx) = mpsc::channel(64);
        let sorting = self.clone();
        tokio::spawn(async move {
            let mut accepted = std::pin::pin!(accepted);
            loop {
                let next = tokio::select! {
                    _ = sorting.cancel.cancelled() => return,
                    next = accepted.next() => next,
                };
                match next {
                    None => return,
                    // Tonic logs and goes on, as it did when it accepted.
                    Some(Err(e)) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(io)) => {
                        let task = sorting.clone().serve(io, tx.clone());
                        sorting.tracker.spawn(task);
                    }
                }
            }
        });
        ReceiverStream::new(rx)
    }

    async fn serve<IO>(
        self,
        mut io: IO,
        to_tonic: mpsc::Sender<std::io::Result<accept::Rewind<IO>>>,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Peer + Unpin + Send + 'static,
    {
        let sorted = tokio::select! {
            _ = self.cancel.cancelled() => return,
            sorted = accept::sort(&mut io) => sorted,
        };
        match sorted {
            Err(e) => tracing::debug!(error = %e, "a connection failed before its first bytes"),
            Ok(accept::Opening::Other(read)) => {
                let _ = to_tonic.send(Ok(accept::Rewind::new(read, io))).await;
            }
            Ok(accept::Opening::SessionOnly { settings, rest }) => {
                drop(to_tonic);
                let peer = io.peer();
                tokio::select! {
                    _ = self.hard_stop.cancelled() => {}
                    _ = lane::serve(io, settings, rest, self.lanes, peer) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() -> std::io::Result<()> {
        let listener = super::listen_tcp(([127, 0, 0, 1], 0).into())?;
        let addr = listener.local_addr()?;
        let mut incoming = std::pin::pin!(super::accept_tcp(listener));
        let _client = tokio::net::TcpStream::connect(addr).await?;
        let accepted = incoming
            .next()
            .await
            .ok_or(std::io::ErrorKind::UnexpectedEof)??;
        assert!(accepted.nodelay()?);
        Ok(())
    }
}
