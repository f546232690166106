//! `procshare`: the command-line client.
//!
//! Values and keys are JSON on the command line and in the output. Exit
//! codes: 0 success, 1 an error (one line on stderr), 2 a usage error
//! (including malformed JSON), 3 a timeout.

mod waits;
mod watch;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use procshare::wire::{self as pb, op::Kind as Op, op_result::Kind as R};
use procshare::{Error, Kind, Manager};
use serde_json::Value as Json;

#[derive(Parser)]
#[command(
    name = "procshare",
    version,
    about = "Command-line client for procshared"
)]
struct Cli {
    /// Server URL: http://host:port, https://host:port or unix:///path.
    #[arg(long, env = "PROCSHARE_URL", default_value = procshare::DEFAULT_URL, global = true)]
    url: String,
    /// The server's shared token. Other users may see a flag in the process
    /// list: prefer PROCSHARE_TOKEN or --token-file.
    #[arg(
        long = "token",
        id = "global_token",
        value_name = "TOKEN",
        env = "PROCSHARE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the server's shared token (wins over --token and
    /// PROCSHARE_TOKEN).
    #[arg(
        long = "token-file",
        id = "global_token_file",
        value_name = "FILE",
        global = true
    )]
    token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate that signed the server's certificate (https://).
    #[arg(
        long = "ca",
        id = "global_ca",
        env = "PROCSHARE_CA",
        value_name = "FILE",
        global = true
    )]
    ca: Option<String>,
    /// PEM client certificate, for a server that requires one (mTLS).
    #[arg(
        long = "cert",
        id = "global_cert",
        env = "PROCSHARE_CERT",
        value_name = "FILE",
        global = true
    )]
    cert: Option<String>,
    /// PEM private key of --cert.
    #[arg(
        long = "key",
        id = "global_key",
        env = "PROCSHARE_KEY",
        value_name = "FILE",
        global = true
    )]
    key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the server answers; prints `ok` and its version.
    Ping,
    /// Lists every object, one `KIND NAME` line each.
    Ls,
    /// Deletes an object.
    Delete { name: String },
    /// Shared dicts.
    #[command(subcommand)]
    Dict(DictCmd),
    /// Shared lists.
    #[command(subcommand)]
    List(ListCmd),
    /// Shared values.
    #[command(subcommand)]
    Value(ValueCmd),
    /// Shared locks.
    #[command(subcommand)]
    Lock(LockCmd),
    /// Shared queues.
    #[command(subcommand)]
    Queue(waits::QueueCmd),
    /// Shared events.
    #[command(subcommand)]
    Event(waits::EventCmd),
    /// Shared semaphores.
    #[command(subcommand)]
    Semaphore(waits::SemaphoreCmd),
    /// Shared barriers.
    #[command(subcommand)]
    Barrier(waits::BarrierCmd),
    /// Shared conditions.
    #[command(subcommand)]
    Condition(waits::ConditionCmd),
    /// Task pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Prints an object's kind, waiters and figures as JSON.
    Describe { name: String },
    /// Asks a server with a data dir to write a snapshot now; prints its figures as JSON.
    Snapshot,
    /// Prints server figures as JSON: objects, data dir, log size, last snapshot.
    Stats,
    /// Lists live sessions, one line each: `ID PEER AGE HOLDS` (HOLDS is
    /// `-` or a comma-separated list such as `lock printer`).
    Sessions,
    /// Prints an object's changes as they happen, one JSON object per line
    /// (`{"seq":3,"event":"key_set","key":"a","value":1}`), until it is
    /// deleted or the command is interrupted.
    Watch(watch::WatchArgs),
}

#[derive(Subcommand)]
enum DictCmd {
    /// Stores VALUE under KEY (both JSON).
    Set {
        name: String,
        key: String,
        value: String,
    },
    /// Prints the value under KEY; a missing key is an error.
    Get { name: String, key: String },
    /// Removes KEY and prints its value; a missing key is an error.
    Del { name: String, key: String },
    /// Prints the number of entries.
    Len { name: String },
    /// Prints every entry as a JSON array of `[key, value]` pairs.
    Items { name: String },
}

#[derive(Subcommand)]
enum ListCmd {
    /// Appends VALUE (JSON).
    Push { name: String, value: String },
    /// Prints the item at INDEX (negative counts from the end).
    Get {
        name: String,
        #[arg(allow_negative_numbers = true)]
        index: i64,
    },
    /// Removes and prints the last item.
    Pop { name: String },
    /// Prints the number of items.
    Len { name: String },
    /// Prints the whole list as a JSON array.
    Items { name: String },
}

#[derive(Subcommand)]
enum ValueCmd {
    /// Stores VALUE (JSON).
    Set { name: String, value: String },
    /// Prints the value.
    Get { name: String },
    /// Atomically adds DELTA (a JSON number) and prints the new value.
    Add {
        name: String,
        #[arg(allow_negative_numbers = true)]
        delta: String,
    },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Prints the pool's counts as JSON: queued, running, done, failed,
    /// unfetched, closed, workers. A missing pool is an error.
    Status { name: String },
    /// Closes the pool: no more submits; workers exit once it is drained.
    Close { name: String },
}

#[derive(Subcommand)]
enum LockCmd {
    /// Acquires the lock, prints the fencing token, holds it for --hold
    /// seconds, then releases it and exits.
    Acquire {
        name: String,
        #[command(flatten)]
        wait: WaitLimit,
        /// Seconds to hold the lock before releasing it.
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
    },
    /// Prints `locked` or `unlocked`.
    Status { name: String },
}

#[derive(Args)]
pub(crate) struct WaitLimit {
    /// Seconds to wait at most (default: forever); running out exits 3.
    #[arg(long)]
    timeout: Option<f64>,
}

impl WaitLimit {
    /// The validated timeout.
    pub(crate) fn duration(&self) -> Result<Option<Duration>, Failure> {
        self.timeout.map(|t| seconds("--timeout", t)).transpose()
    }
}

/// Why the CLI failed, and so its exit code.
pub(crate) enum Failure {
    /// Exit 2.
    Usage(String),
    /// Exit 1, or 3 for a timeout.
    Call(Error),
    /// Exit 3: a wait ran out (Empty, Full, BrokenBarrier after --timeout).
    TimedOut(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Call(e)
    }
}

pub(crate) type Outcome = Result<(), Failure>;

pub(crate) fn json_arg(what: &str, text: &str) -> Result<pb::Value, Failure> {
    let json: Json = serde_json::from_str(text).map_err(|e| {
        Failure::Usage(format!(
            "{what} must be JSON (strings in double quotes, e.g. '\"text\"'): {text:?}: {e}"
        ))
    })?;
    procshare::value::json_to_wire(json).map_err(|e| Failure::Usage(format!("{what}: {e}")))
}

pub(crate) fn seconds(what: &str, secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        Failure::Usage(format!(
            "{what} must be a number of seconds >= 0, got {secs}"
        ))
    })
}

pub(crate) fn show(v: pb::Value) -> Result<String, Failure> {
    Ok(procshare::value::wire_to_json(v)?.to_string())
}

pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) fn unexpected(got: R) -> Failure {
    Failure::Call(Error::Protocol(format!("unexpected result {got:?}")))
}

/// Opens `name` as `kind` (get-or-create), then applies `op`.
pub(crate) async fn on(m: &Manager, kind: Kind, name: &str, op: Op) -> Result<R, Failure> {
    let open = Op::Open(pb::Open {
        kind: kind.wire() as i32,
        ..Default::default()
    });
    m.execute(name, open).await?;
    m.execute(name, op)
        .await?
        .kind
        .ok_or_else(|| Failure::Call(Error::Protocol("result without a kind".into())))
}

/// Runs one of the server's own operations; its result as JSON text.
async fn server_op(m: &Manager, op: Op) -> Result<String, Failure> {
    match m.execute("", op).await?.kind {
        Some(R::Value(v)) => show(v),
        other => Err(Failure::Call(Error::Protocol(format!(
            "unexpected result {other:?}"
        )))),
    }
}

pub(crate) fn print_value(r: R) -> Outcome {
    match r {
        R::Value(v) => say(&show(v)?),
        R::Count(n) => say(&n.to_string()),
        R::Values(l) => {
            let items = l
                .items
                .into_iter()
                .map(procshare::value::wire_to_json)
                .collect::<Result<Vec<_>, _>>()?;
            say(&Json::Array(items).to_string());
        }
        R::Unit(_) => {}
        other => return Err(unexpected(other)),
    }
    Ok(())
}

async fn dict(m: &Manager, cmd: DictCmd) -> Outcome {
    match cmd {
        DictCmd::Set { name, key, value } => {
            let op = Op::DictSet(pb::DictSet {
                key: Some(json_arg("KEY", &key)?),
                value: Some(json_arg("VALUE", &value)?),
            });
            on(m, Kind::Dict, &name, op).await?;
        }
        DictCmd::Get { name, key } => {
            let op = Op::DictGet(pb::DictGet {
                key: Some(json_arg("KEY", &key)?),
            });
            present(on(m, Kind::Dict, &name, op).await?, &name, &key)?;
        }
        DictCmd::Del { name, key } => {
            let op = Op::DictRemove(pb::DictRemove {
                key: Some(json_arg("KEY", &key)?),
            });
            present(on(m, Kind::Dict, &name, op).await?, &name, &key)?;
        }
        DictCmd::Len { name } => {
            print_value(on(m, Kind::Dict, &name, Op::DictLen(pb::DictLen {})).await?)?
        }
        DictCmd::Items { name } => {
            match on(m, Kind::Dict, &name, Op::DictItems(pb::DictItems {})).await? {
                R::Pairs(map) => {
                    let pairs = map
                        .entries
                        .into_iter()
                        .map(|p| {
                            let k = procshare::value::wire_to_json(p.first.unwrap_or_default())?;
                            let v = procshare::value::wire_to_json(p.second.unwrap_or_default())?;
                            Ok(Json::Array(vec![k, v]))
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    say(&Json::Array(pairs).to_string());
                }
                other => return Err(unexpected(other)),
            }
        }
    }
    Ok(())
}

/// Prints a dict lookup's value, or fails if the key was missing.
fn present(r: R, name: &str, key: &str) -> Outcome {
    match r {
        R::Maybe(pb::Maybe { value: Some(v) }) => {
            say(&show(v)?);
            Ok(())
        }
        R::Maybe(pb::Maybe { value: None }) => Err(Failure::Call(Error::NotFound(format!(
            "key {key} not in dict {name:?}"
        )))),
        other => Err(unexpected(other)),
    }
}

async fn list(m: &Manager, cmd: ListCmd) -> Outcome {
    let (name, op) = match cmd {
        ListCmd::Push { name, value } => {
            let value = Some(json_arg("VALUE", &value)?);
            (name, Op::ListPush(pb::ListPush { value }))
        }
        ListCmd::Get { name, index } => (name, Op::ListGet(pb::ListGet { index })),
        ListCmd::Pop { name } => (name, Op::ListPop(pb::ListPop { index: None })),
        ListCmd::Len { name } => (name, Op::ListLen(pb::ListLen {})),
        ListCmd::Items { name } => (name, Op::ListSnapshot(pb::ListSnapshot {})),
    };
    print_value(on(m, Kind::List, &name, op).await?)
}

async fn value(m: &Manager, cmd: ValueCmd) -> Outcome {
    match cmd {
        ValueCmd::Set { name, value } => {
            let value = Some(json_arg("VALUE", &value)?);
            print_value(on(m, Kind::Value, &name, Op::ValueSet(pb::ValueSet { value })).await?)
        }
        ValueCmd::Get { name } => {
            print_value(on(m, Kind::Value, &name, Op::ValueGet(pb::ValueGet {})).await?)
        }
        ValueCmd::Add { name, delta } => {
            let delta = Some(json_arg("DELTA", &delta)?);
            match on(
                m,
                Kind::Value,
                &name,
                Op::ValueFetchAdd(pb::ValueFetchAdd { delta }),
            )
            .await?
            {
                R::Pair(p) => say(&show(p.second.unwrap_or_default())?),
                other => return Err(unexpected(other)),
            }
            Ok(())
        }
    }
}

async fn pool(m: &Manager, cmd: PoolCmd) -> Outcome {
    // No open first: asking about a pool must not create one.
    let (name, op) = match cmd {
        PoolCmd::Status { name } => (name, Op::PoolStatus(pb::PoolStatus {})),
        PoolCmd::Close { name } => (name, Op::PoolClose(pb::PoolClose {})),
    };
    match m.execute(&name, op).await?.kind {
        Some(r) => print_value(r),
        None => Err(Failure::Call(Error::Protocol(
            "result without a kind".into(),
        ))),
    }
}

async fn lock(m: &Manager, cmd: LockCmd) -> Outcome {
    match cmd {
        LockCmd::Acquire { name, wait, hold } => {
            let hold = seconds("--hold", hold)?;
            let timeout = wait.duration()?;
            let stop = interrupted();
            let lock = m.lock(&name).await?;
            let token = match timeout {
                Some(t) => lock.acquire_timeout(t).await?,
                None => lock.acquire().await?,
            };
            say(&token.to_string());
            // Hold, but let Ctrl-C / SIGTERM end the hold early and still release.
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = stop => {}
            }
            lock.release().await?;
        }
        LockCmd::Status { name } => {
            let locked = m.lock(&name).await?.locked().await?;
            say(if locked { "locked" } else { "unlocked" });
        }
    }
    Ok(())
}

/// Installs SIGTERM/SIGINT handlers now, before anything is printed that a
/// script might answer with a signal, and returns a future that completes on
/// the first one.
pub(crate) fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The Manager from the global flags. Bad options (an unreadable file, a
/// malformed URL) are usage errors.
async fn manager(cli: &Cli) -> Result<Manager, Failure> {
    let mut b = Manager::builder().url(&cli.url);
    let token = match &cli.token_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?),
        None => cli.token.clone(),
    };
    // An empty variable (PROCSHARE_TOKEN=) means unset, as in the library.
    let set = |p: &Option<String>| p.clone().filter(|p| !p.is_empty());
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        b = b.token(t);
    }
    if let Some(ca) = set(&cli.ca) {
        b = b.ca_file(ca);
    }
    if let Some(cert) = set(&cli.cert) {
        b = b.cert(cert);
    }
    if let Some(key) = set(&cli.key) {
        b = b.key(key);
    }
    b.connect().await.map_err(|e| match e {
        Error::InvalidArgument(msg) => Failure::Usage(msg),
        e => Failure::Call(e),
    })
}

async fn run(cli: Cli) -> Outcome {
    let m = manager(&cli).await?;
    let outcome = command(&m, cli.command).await;
    // End the session now rather than when its lease runs out.
    let _ = m.close().await;
    outcome
}

async fn command(m: &Manager, command: Command) -> Outcome {
    let m = m.clone();
    match command {
        Command::Ping => say(&format!("ok {}", m.ping().await?)),
        Command::Ls => {
            for o in m.list_objects().await? {
                let kind = o.kind.map_or("unknown", Kind::as_str);
                say(&format!("{kind} {}", o.name));
            }
        }
        Command::Delete { name } => m.delete(&name).await?,
        Command::Dict(c) => dict(&m, c).await?,
        Command::List(c) => list(&m, c).await?,
        Command::Value(c) => value(&m, c).await?,
        Command::Lock(c) => lock(&m, c).await?,
        Command::Pool(c) => pool(&m, c).await?,
        Command::Queue(c) => waits::queue(&m, c).await?,
        Command::Event(c) => waits::event(&m, c).await?,
        Command::Semaphore(c) => waits::semaphore(&m, c).await?,
        Command::Barrier(c) => waits::barrier(&m, c).await?,
        Command::Condition(c) => waits::condition(&m, c).await?,
        Command::Watch(args) => watch::watch(&m, args).await?,
        Command::Describe { name } => say(&m.describe(&name).await?.to_string()),
        Command::Snapshot => say(&server_op(&m, Op::Snapshot(pb::Snapshot {})).await?),
        Command::Stats => say(&server_op(&m, Op::Stats(pb::Stats {})).await?),
        Command::Sessions => {
            let me = m.client_id();
            for s in m.sessions().await?.as_array().into_iter().flatten() {
                let id = s["id"].as_str().unwrap_or("?");
                if id == me {
                    // This command's own session is not worth listing.
                    continue;
                }
                let holds: Vec<&str> = s["holds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.as_str())
                    .collect();
                say(&format!(
                    "{id} {} {:.1}s {}",
                    s["peer"].as_str().unwrap_or("?"),
                    s["age_secs"].as_f64().unwrap_or(0.0),
                    if holds.is_empty() {
                        "-".to_owned()
                    } else {
                        holds.join(", ")
                    }
                ));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Call(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_timeout() { 3 } else { 1 })
        }
        Err(Failure::TimedOut(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
