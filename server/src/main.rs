//! `procshared`: the procshare daemon.
//!
//! Prints `listening on <addr>` on stdout once it accepts connections (with
//! the real port when asked for port 0), logs to stderr through `tracing`,
//! and shuts down gracefully on SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use procshare_server::{serve, store::Store, ServerConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "procshared",
    version,
    about = "The procshare daemon: shared dicts, lists, values and locks over gRPC"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:50051", env = "PROCSHARE_LISTEN")]
    listen: SocketAddr,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing
    /// filter such as `procshare_server=debug`). Without it, RUST_LOG is used,
    /// else `info`.
    #[arg(long)]
    log_level: Option<String>,
    /// Largest request or response message, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_message_bytes: usize,
}

fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("bad --log-level {l:?}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now (before the `listening on` line,
/// so a script that signals right after reading it is heard) and returns a
/// future that completes on the first signal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_level.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "procshared started");
    let config = ServerConfig {
        max_message_bytes: args.max_message_bytes,
        ..Default::default()
    };
    serve(listener, Arc::new(Store::new()), config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
