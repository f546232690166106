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
use config::LogFormat;
use procshare_server::service::{serve_on, Listeners, UnixSocket};
use procshare_server::store::Store;
use tracing_subscriber::EnvFilter;

fn init_logging(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("bad --log-level {l:?}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal: not in a file, a pipe or the journal.
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Spans' fields go in `span`/`spans`, so that a collector can
        // filter on, say, a client id without parsing text.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
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

/// The store: in memory, or recovered from the data dir, with a task that
/// snapshots it whenever the log has grown past its limit.
async fn open_store(settings: &config::Settings) -> anyhow::Result<Arc<Store>> {
    let Some(durable) = &settings.durable else {
        return Ok(Arc::new(Store::with_limits(settings.store_limits.clone())));
    };
    let (store, recovered) = Store::open_durable(durable.clone(), settings.store_limits.clone())
        .await
        .with_context(|| format!("cannot open data dir {}", durable.dir.display()))?;
    tracing::info!(
        dir = %durable.dir.display(),
        fsync = %durable.fsync,
        objects = recovered.objects,
        snapshot_seq = ?recovered.snapshot_seq,
        replayed = recovered.replayed,
        dropped = recovered.dropped.len(),
        elapsed_ms = recovered.elapsed.as_millis() as u64,
        "data dir recovered"
    );
    let weak = Arc::downgrade(&store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            let Some(d) = store.durability() else { return };
            if d.wants_snapshot() {
                if let Err(e) = d.snapshot(&store).await {
                    tracing::error!("automatic snapshot failed: {e}");
                }
            }
        }
    });
    Ok(store)
}

async fn run(settings: config::Settings) -> anyhow::Result<()> {
    // Recover before listening: a client never sees a half-loaded store.
    let store = open_store(&settings).await?;
    let tcp = match settings.listen {
        Some(addr) => Some(
            procshare_server::service::listen_tcp(addr)
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
    serve_on(listeners, store.clone(), settings.server_config(), shutdown).await?;
    if let Some(d) = store.durability() {
        // Flush and fsync what is left of the log before exiting.
        d.close();
    }
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
    if let Err(e) = init_logging(settings.log_level.as_deref(), settings.log_format) {
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
