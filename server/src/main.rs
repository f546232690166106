//! `procshared`: the procshare daemon.
//!
//! Prints `listening on <addr>` on stdout once it accepts TCP connections
//! (with the real port when asked for port 0), and `listening on unix:<path>`
//! for its Unix socket; logs to stderr through `tracing`; shuts down
//! gracefully on SIGTERM or SIGINT. Settings: see [`config`].

mod config;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use procshare_server::service::{serve_on, Listeners, UnixSocket};
use procshare_server::store::Store;
use tracing_subscriber::EnvFilter;

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

fn announce(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn run(settings: config::Settings) -> anyhow::Result<()> {
    let tcp = match settings.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let unix = match &settings.unix {
        Some(path) => Some(UnixSocket::bind(path, settings.unix_mode)?),
        None => None,
    };
    let shutdown = shutdown_signal()?;
    if let Some(l) = &tcp {
        let addr = l.local_addr()?;
        announce(&format!("listening on {addr}"))?;
        tracing::info!(%addr, tls = settings.tls.is_some(), auth = settings.authenticates(), "listening on TCP");
    }
    if let Some(u) = &unix {
        announce(&format!("listening on unix:{}", u.path().display()))?;
        tracing::info!(path = %u.path().display(), mode = format!("{:o}", settings.unix_mode), "listening on a Unix socket");
    }
    for w in settings.warnings() {
        tracing::warn!("{w}");
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "procshared started");
    let listeners = Listeners { tcp, unix };
    serve_on(
        listeners,
        Arc::new(Store::new()),
        settings.server_config(),
        shutdown,
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let (args, matches) = config::parse_args();
    // Configuration errors exit 2 (systemd does not restart on them, see
    // deploy/procshared.service); failures while running exit 1.
    let settings = match config::resolve(args, &matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("procshared: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(settings.log_level.as_deref()) {
        eprintln!("procshared: {e:#}");
        return ExitCode::from(2);
    }
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("procshared: {e:#}");
            ExitCode::from(1)
        }
    }
}
