//! The network face of the server: the gRPC service, its configuration, and
//! [`serve`], which runs it on a listener until told to stop.

mod grpc;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use procshare_proto::procshare_server::ProcshareServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// How long in-flight calls get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `store` on `listener` until `shutdown` completes. Calls blocked in a
/// wait are then ended with UNAVAILABLE, and in-flight calls are answered.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let cancel = CancellationToken::new();
    let service = ProcshareServer::new(grpc::Service::new(store, cancel.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let signal = {
        let cancel = cancel.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            cancel.cancel();
        }
    };
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        // Connections that stay open (idle clients) would hold a graceful
        // shutdown forever: after the grace period, stop regardless.
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(config.shutdown_grace).await;
        } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    }
}
