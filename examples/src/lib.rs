//! Shared helpers for the examples.
//!
//! Python's multiprocessing examples start a manager, fork a few worker
//! processes, hand them proxies and join them. The examples here do the same
//! with real OS processes, and these helpers are the plumbing they share:
//!
//! - [`server`] finds a `procshared` to talk to: the one named by
//!   `PROCSHARE_URL`, or else one embedded in this process, so that
//!   `cargo run --bin counter` works with nothing else running.
//! - [`Workers`] re-runs the current executable as worker processes (the
//!   stand-in for `multiprocessing.Process`), tells them where the server is
//!   through `PROCSHARE_URL`, and joins them.
//! - [`unique_name`] names shared objects so that a re-run against a
//!   long-lived server starts from fresh state, and [`Objects`] hands out
//!   such names for one run and deletes the objects when it ends.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let server = procshare_examples::server()?;
//! let m = procshare::blocking::Manager::connect(server.url())?;
//! let name = procshare_examples::unique_name("hits");
//! m.value::<i64>(&name, &0)?;
//! procshare_examples::Workers::spawn(server.url(), 4, |_| vec!["worker".into(), name.clone()])?
//!     .wait_all()?;
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use procshare_server::{store::Store, ServerConfig};
use tokio::sync::oneshot;

/// The environment variable every procshare client reads for the server's
/// address (the equivalent of Python's `BaseManager(address=...)`).
pub const URL_VAR: &str = "PROCSHARE_URL";

/// The server an example talks to: either an external `procshared` named by
/// `PROCSHARE_URL`, or one embedded in this process that stops when this
/// value is dropped.
///
/// Drop it last: an embedded server lives exactly as long as this value, so
/// managers connected to it should go first.
pub struct Server {
    url: String,
    embedded: Option<EmbeddedServer>,
}

impl Server {
    /// The URL to hand to `Manager::connect` and to worker processes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this process runs the server itself.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.is_embedded() {
            "embedded"
        } else {
            "from PROCSHARE_URL"
        };
        write!(f, "{} ({how})", self.url)
    }
}

/// The server named by `PROCSHARE_URL` if it is set, else a fresh embedded
/// one on a free loopback port.
///
/// An embedded server is what makes an example self-contained; pointing
/// `PROCSHARE_URL` at a real `procshared` (possibly on another host) runs
/// the very same program as a distributed one.
pub fn server() -> anyhow::Result<Server> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Ok(Server {
            url,
            embedded: None,
        }),
        _ => {
            let embedded = EmbeddedServer::start()?;
            Ok(Server {
                url: format!("http://{}", embedded.addr()),
                embedded: Some(embedded),
            })
        }
    }
}

/// A `procshared` running inside this process, on its own thread and its own
/// tokio runtime, stopped and joined on drop.
///
/// Its own thread and runtime, because the examples use the blocking client,
/// which must not run inside a runtime: keeping the server's runtime out of
/// the main thread lets the main thread be an ordinary synchronous program.
pub struct EmbeddedServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Starts a server on `127.0.0.1:0` (a port the OS picks) and returns once
    /// it is listening, so the address is immediately connectable.
    pub fn start() -> anyhow::Result<EmbeddedServer> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("procshared".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("cannot start a runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Binding needs the runtime (tokio registers the socket
                    // with its reactor), hence here rather than in `start`.
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!(e).context("cannot listen")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().map_err(anyhow::Error::from);
                    let _ = ready_tx.send(addr);
                    let config = ServerConfig {
                        // Our own clients are gone by the time we stop; a
                        // long grace period would only delay the exit.
                        shutdown_grace: std::time::Duration::from_millis(500),
                        ..ServerConfig::default()
                    };
                    // A dropped sender (a panic unwinding past the guard)
                    // stops the server too.
                    let stopped = async move {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) =
                        procshare_server::serve(listener, Arc::new(Store::new()), config, stopped)
                            .await
                    {
                        eprintln!("embedded procshared failed: {e}");
                    }
                });
            })
            .context("cannot spawn the server thread")?;
        let addr = ready_rx
            .recv()
            .map_err(|_| anyhow!("the embedded server thread died before listening"))??;
        Ok(EmbeddedServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Turns `main`'s result into an exit code, printing an error as one line
/// with its causes (`prog: error: ...: ...`).
///
/// Why not `fn main() -> anyhow::Result<()>`: that prints the error's debug
/// form, with a backtrace whenever `RUST_BACKTRACE` is set, and an example's
/// workers failing together would bury the one line that says why.
pub fn exit_code(prog: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("{prog}: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// A name no earlier run has used: `prefix.<pid>-<time>`.
///
/// Python's examples get fresh objects from a fresh manager each run; against
/// a long-lived `procshared`, objects outlive the program, so a fixed name
/// would start a counter where the last run left it.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}.{}-{nanos:x}", std::process::id())
}

/// The shared objects of one run: fresh names under one [`unique_name`]
/// prefix, deleted together when the run is over, however it ends.
///
/// [`Objects::name`] hands out `<prefix>.<pid>-<time>.<what>` and remembers
/// it; [`Objects::delete_all`] deletes them all and reports a failure, and
/// dropping an `Objects` without it (an early `?`) deletes them quietly, so
/// a failed run leaves a long-lived server as clean as a good one.
///
/// Declare it before the [`Workers`]: values drop in reverse order, so the
/// workers are killed before their objects disappear under them.
pub struct Objects {
    m: procshare::blocking::Manager,
    base: String,
    names: Vec<String>,
}

impl Objects {
    /// Objects named under a fresh `unique_name(prefix)`.
    pub fn new(m: &procshare::blocking::Manager, prefix: &str) -> Objects {
        Objects {
            m: m.clone(),
            base: unique_name(prefix),
            names: Vec::new(),
        }
    }

    /// The prefix of every name: `<prefix>.<pid>-<time>`. A worker that
    /// knows it can name the run's objects itself: `format!("{prefix}.{what}")`.
    pub fn prefix(&self) -> &str {
        &self.base
    }

    /// The name for the object `what` of this run, to be deleted at the end.
    pub fn name(&mut self, what: &str) -> String {
        let name = format!("{}.{what}", self.base);
        self.names.push(name.clone());
        name
    }

    /// Deletes every object named so far; an error names the first that
    /// could not be deleted (the others are still tried).
    pub fn delete_all(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for name in std::mem::take(&mut self.names) {
            if let Err(e) = self.m.delete(&name) {
                first_error.get_or_insert(anyhow!(e).context(format!("cannot delete {name}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        for name in &self.names {
            // Best effort: an object never created is NotFound, and a server
            // that has gone away takes its objects with it.
            let _ = self.m.delete(name);
        }
    }
}

/// Worker processes: copies of the current executable, started with the
/// arguments the example chooses and `PROCSHARE_URL` pointing at the server.
///
/// Re-running our own executable is the portable `fork`: the example's
/// `main` looks at its arguments and becomes either the coordinator or a
/// worker. Workers inherit stdout and stderr, so their errors show up.
///
/// Dropping `Workers` without [`Workers::wait_all`] kills the ones still
/// running, so an early error in the coordinator leaves no orphans behind.
pub struct Workers {
    children: Vec<(usize, Child)>,
}

impl Workers {
    /// Starts `count` workers; worker `i` gets the arguments `args(i)`.
    pub fn spawn<F, A>(url: &str, count: usize, mut args: F) -> anyhow::Result<Workers>
    where
        F: FnMut(usize) -> Vec<A>,
        A: Into<OsString>,
    {
        let exe = std::env::current_exe().context("cannot find the current executable")?;
        let mut workers = Workers {
            children: Vec::with_capacity(count),
        };
        for i in 0..count {
            let child = Command::new(&exe)
                .args(args(i).into_iter().map(Into::into))
                .env(URL_VAR, url)
                .spawn()
                .with_context(|| format!("cannot start worker {i} ({})", exe.display()))?;
            workers.children.push((i, child));
        }
        Ok(workers)
    }

    /// The number of workers started.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether no worker was started.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Waits for every worker (Python's `p.join()` for each); an error names
    /// each worker that exited unsuccessfully.
    ///
    /// Workers are joined in order. Once one has failed, the rest are killed
    /// rather than waited for: a worker that fails may leave the others
    /// waiting for it forever (on a queue item or a barrier it never
    /// reaches), and the run has failed anyway.
    pub fn wait_all(mut self) -> anyhow::Result<()> {
        while !self.children.is_empty() {
            let (i, mut child) = self.children.remove(0);
            let status = child
                .wait()
                .with_context(|| format!("cannot wait for worker {i}"))?;
            if !status.success() {
                // Returning drops `self`, which kills the workers not yet joined.
                // ExitStatus displays as "exit status: 1" or "signal: 9 (SIGKILL)".
                bail!("worker {i} failed ({status})");
            }
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_server_serves_and_stops() {
        let server = EmbeddedServer::start().unwrap();
        let m =
            procshare::blocking::Manager::connect(&format!("http://{}", server.addr())).unwrap();
        let v = m.value::<i64>("x", &41).unwrap();
        assert_eq!(v.fetch_add(1).unwrap(), 41);
        drop(v);
        drop(m);
        // Dropping joins the server thread: this returning is the test.
        drop(server);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("c"), unique_name("c"));
        assert!(unique_name("c").starts_with("c."));
    }

    #[test]
    fn objects_are_deleted_at_the_end() {
        let server = EmbeddedServer::start().unwrap();
        let m =
            procshare::blocking::Manager::connect(&format!("http://{}", server.addr())).unwrap();
        let names = |m: &procshare::blocking::Manager| {
            m.list_objects()
                .unwrap()
                .into_iter()
                .map(|o| o.name)
                .collect::<Vec<_>>()
        };

        let mut objects = Objects::new(&m, "t");
        let (a, b) = (objects.name("a"), objects.name("b"));
        assert_eq!(a, format!("{}.a", objects.prefix()));
        assert!(objects.prefix().starts_with("t."));
        m.value::<i64>(&a, &0).unwrap();
        m.event(&b).unwrap();
        assert_eq!(names(&m).len(), 2);
        objects.delete_all().unwrap();
        assert!(names(&m).is_empty());

        // Dropped without delete_all (an early return): deleted all the same,
        // including a name whose object was never created.
        let mut objects = Objects::new(&m, "t");
        m.dict::<String, i64>(&objects.name("c")).unwrap();
        objects.name("never created");
        drop(objects);
        assert!(names(&m).is_empty());

        // delete_all reports what it could not delete.
        let mut objects = Objects::new(&m, "t");
        objects.name("missing");
        let err = format!("{:#}", objects.delete_all().unwrap_err());
        assert!(
            err.contains("cannot delete t.") && err.contains("not found"),
            "{err}"
        );
        drop(m);
        drop(server);
    }

    // The workers here are this test executable, re-run with libtest's own
    // arguments: a filter that matches no test exits 0; an unknown flag fails.

    #[test]
    fn workers_that_succeed_join_cleanly() {
        let workers = Workers::spawn("http://unused", 2, |_| {
            vec!["--exact", "no such test", "--quiet"]
        })
        .unwrap();
        assert_eq!(workers.len(), 2);
        workers.wait_all().unwrap();
    }

    #[test]
    fn a_failing_worker_fails_the_join() {
        let workers = Workers::spawn("http://unused", 2, |i| {
            if i == 0 {
                vec!["--no-such-libtest-flag"]
            } else {
                vec!["--exact", "no such test", "--quiet"]
            }
        })
        .unwrap();
        let err = workers.wait_all().unwrap_err().to_string();
        assert!(err.starts_with("worker 0 failed"), "{err}");
    }
}
