//! procshared's settings, from four places. For each setting the first that
//! has it wins:
//!
//! 1. a flag on the command line (`--listen …`);
//! 2. the TOML file named by `--config` (or `PROCSHARE_CONFIG`);
//! 3. an environment variable (`PROCSHARE_LISTEN`, …);
//! 4. the built-in default.
//!
//! The file sits above the environment because it was named explicitly; the
//! environment only replaces the defaults. `deploy/procshared.toml` lists
//! every key. Relative paths in the file are relative to the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use procshare_server::service::{self, TlsFiles, Token};
use procshare_server::store::persist::{DurableConfig, FsyncPolicy};
use procshare_server::store::StoreLimits;
use serde::Deserialize;

/// The default TCP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The default largest message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Snapshot once the log passes this size.
pub const DEFAULT_SNAPSHOT_LOG_BYTES: u64 = 64 * 1024 * 1024;

const ENV_HELP: &str = "\
Precedence: flags, then the --config file, then PROCSHARE_* environment \
variables, then defaults.

The token itself may come from the environment: PROCSHARE_TOKEN=<token> \
(never from a flag, which other users could read in the process list).

Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT), 1 a runtime failure \
(e.g. the port is taken), 2 a usage or configuration error.";

#[derive(Parser, Debug)]
#[command(
    name = "procshared",
    version,
    about = "The procshare daemon: shared dicts, lists, values, locks, queues … over gRPC",
    after_help = ENV_HELP
)]
pub struct Args {
    /// A TOML file with any of the settings below (see
    /// deploy/procshared.toml); flags override it.
    #[arg(long, env = "PROCSHARE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TCP address to listen on; port 0 picks a free port. [default:
    /// 127.0.0.1:50051, or no TCP at all when only --unix is given]
    #[arg(long, env = "PROCSHARE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also (or, without --listen, only) listen on this Unix domain socket.
    #[arg(long, env = "PROCSHARE_UNIX", value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// File mode of the Unix socket, in octal. [default: 0600]
    #[arg(long, env = "PROCSHARE_UNIX_MODE", value_name = "OCTAL", value_parser = parse_mode)]
    pub unix_mode: Option<u32>,
    /// File holding the shared token every client must send (one line;
    /// `openssl rand -hex 32 > token`).
    #[arg(long, env = "PROCSHARE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate (chain) of this server: turns on TLS.
    #[arg(long, env = "PROCSHARE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PROCSHARE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate signed by
    /// one of them (mTLS). Needs --tls-cert and --tls-key.
    #[arg(long, env = "PROCSHARE_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Listen on a non-loopback address without a token or mTLS: anyone who
    /// can reach the port can then read and change every object.
    #[arg(long, env = "PROCSHARE_INSECURE")]
    pub insecure: bool,
    /// Seconds between HTTP/2 keepalive pings on each connection; 0 turns
    /// them off. [default: 60]
    #[arg(long, env = "PROCSHARE_KEEPALIVE_INTERVAL", value_name = "SECS")]
    pub keepalive_interval: Option<u64>,
    /// Seconds to wait for a ping's answer before dropping the connection.
    /// [default: 20]
    #[arg(long, env = "PROCSHARE_KEEPALIVE_TIMEOUT", value_name = "SECS")]
    pub keepalive_timeout: Option<u64>,
    /// Largest request or response message, in bytes. [default: 4194304]
    #[arg(long, env = "PROCSHARE_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing
    /// filter such as `procshare_server=debug`). Without it, RUST_LOG is
    /// used, else `info`.
    #[arg(long, env = "PROCSHARE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// How log lines are written to stderr: `text` (one readable line per
    /// event) or `json` (one JSON object per line, for a log collector).
    /// [default: text]
    #[arg(long, env = "PROCSHARE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Keep state in DIR (a write-ahead log and snapshots) so it survives
    /// restarts and crashes. Without it, state lives in memory only.
    #[arg(long, env = "PROCSHARE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When the log is fsynced: `always` (before every reply: nothing
    /// acknowledged is lost), `every-second` (a machine crash may lose the
    /// last second), `never` (the OS decides). [default: every-second]
    #[arg(long, env = "PROCSHARE_FSYNC", value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,
    /// Snapshot the state (and drop the log it covers) once the log grows
    /// past this many bytes. [default: 67108864]
    #[arg(long, env = "PROCSHARE_SNAPSHOT_LOG_BYTES", value_name = "BYTES")]
    pub snapshot_log_bytes: Option<u64>,
    /// The longest lease a client may ask for, in seconds (a client's lease
    /// is 5 s unless it asks). [default: 300]
    #[arg(long, env = "PROCSHARE_MAX_LEASE_SECS", value_name = "SECS")]
    pub max_lease_secs: Option<f64>,
    /// Live sessions (connected clients) at once. [default: 100000]
    #[arg(long, env = "PROCSHARE_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Bytes of answers larger than 1 KiB that each session keeps, newest
    /// first, so that a call retried after a broken connection gets its
    /// answer rather than being applied again; a retry whose answer was not
    /// kept fails with ANSWER_LOST (it is not applied again either).
    /// [default: 2097152]
    #[arg(long, env = "PROCSHARE_SESSION_ANSWER_BYTES", value_name = "BYTES")]
    pub session_answer_bytes: Option<usize>,
    /// Bytes of the answers (small and large) kept by all sessions
    /// together; a session whose answer would take the total over it
    /// forgets its own oldest first, larger before small.
    /// [default: 268435456]
    #[arg(long, env = "PROCSHARE_MAX_KEPT_ANSWER_BYTES", value_name = "BYTES")]
    pub max_kept_answer_bytes: Option<usize>,
    /// Calls blocked in a wait at once, over all clients. [default: 100000]
    #[arg(long, env = "PROCSHARE_MAX_WAITERS", value_name = "N")]
    pub max_waiters: Option<usize>,
    /// Largest operation (its keys and values), encoded. [default: 1048576]
    #[arg(long, env = "PROCSHARE_MAX_VALUE_BYTES", value_name = "BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Objects on the server at once. [default: 1000000]
    #[arg(long, env = "PROCSHARE_MAX_OBJECTS", value_name = "N")]
    pub max_objects: Option<usize>,
    /// Items in one queue, whatever its maxsize. [default: 1000000]
    #[arg(long, env = "PROCSHARE_MAX_QUEUE_LEN", value_name = "N")]
    pub max_queue_len: Option<usize>,
    /// Bytes in an object's name, 1 to 255. [default: 255]
    #[arg(long, env = "PROCSHARE_MAX_NAME_BYTES", value_name = "N")]
    pub max_name_bytes: Option<usize>,
    /// Testing only: every Nth mutation is applied but its reply is replaced
    /// by UNAVAILABLE, as if it were lost on the way.
    #[arg(long, hide = true, value_name = "N")]
    pub fault_drop_replies: Option<u64>,
    /// Serve every connection through tonic, also those a client marks as
    /// carrying only its session stream (served directly by default): a way
    /// back, and the other half of an A/B.
    #[arg(long, hide = true, env = "PROCSHARE_SESSIONS_VIA_TONIC")]
    pub sessions_via_tonic: bool,
}

/// A Unix file mode in octal: `0600`, `600` or `0o600`.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{s:?} is not an octal file mode between 0000 and 0777"
        )),
    }
}

/// The TOML file. Unknown keys are errors, so that a typo is not silently
/// ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub unix_mode: Option<Mode>,
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub keepalive_interval: Option<u64>,
    pub keepalive_timeout: Option<u64>,
    pub max_message_bytes: Option<usize>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub fsync: Option<String>,
    pub snapshot_log_bytes: Option<u64>,
    pub max_lease_secs: Option<f64>,
    pub max_sessions: Option<usize>,
    pub session_answer_bytes: Option<usize>,
    pub max_kept_answer_bytes: Option<usize>,
    pub max_waiters: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_objects: Option<usize>,
    pub max_queue_len: Option<usize>,
    pub max_name_bytes: Option<usize>,
}

/// A file mode in TOML: `0o600` (a number) or `"0600"` (a string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Mode {
    Number(u32),
    Text(String),
}

/// How procshared writes its log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, coloured only on a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`,
    /// `fields.message`, …), for journald, Loki, Elasticsearch and the like.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("bad config file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<FileConfig> {
        // toml's messages span several lines (a snippet of the file); one
        // line is enough here.
        toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{span}{}", e.message())
        })
    }

    /// Makes relative paths relative to the file's folder.
    fn anchor(&mut self, dir: &Path) {
        for p in [
            &mut self.unix,
            &mut self.token_file,
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.client_ca,
            &mut self.data_dir,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
}

/// Everything procshared needs, resolved and checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub unix_mode: u32,
    pub token: Option<Token>,
    pub tls: Option<TlsFiles>,
    pub insecure: bool,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_message_bytes: usize,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    /// The data dir and its policies; `None` for the in-memory store.
    pub durable: Option<DurableConfig>,
    pub store_limits: StoreLimits,
    pub session_limits: service::SessionLimits,
    pub service_limits: service::ServiceLimits,
    /// Serve session-only connections directly (not through tonic).
    pub direct_sessions: bool,
}

/// Picks a setting: a flag beats the file, the file beats the environment.
fn pick<T>(m: &ArgMatches, id: &str, arg: Option<T>, file: Option<T>) -> Option<T> {
    match m.value_source(id) {
        Some(ValueSource::CommandLine) => arg,
        Some(ValueSource::EnvVariable) => file.or(arg),
        _ => file,
    }
}

/// Parses the command line (exits on a usage error, as clap does).
pub fn parse_args() -> (Args, ArgMatches) {
    let matches = Args::command().get_matches();
    match Args::from_arg_matches(&matches) {
        Ok(args) => (args, matches),
        Err(e) => e.exit(),
    }
}

/// Merges flags, file, environment and defaults, loads the token and TLS
/// files, and checks that the result is safe to run.
pub fn resolve(args: Args, m: &ArgMatches) -> anyhow::Result<Settings> {
    resolve_with_env(args, m, std::env::var("PROCSHARE_TOKEN").ok())
}

fn resolve_with_env(
    args: Args,
    m: &ArgMatches,
    env_token: Option<String>,
) -> anyhow::Result<Settings> {
    let mut file = match &args.config {
        Some(p) => {
            let mut f = FileConfig::load(p)?;
            f.anchor(p.parent().unwrap_or(Path::new(".")));
            f
        }
        None => FileConfig::default(),
    };

    let unix = pick(m, "unix", args.unix, file.unix.take());
    let listen = match pick(m, "listen", args.listen, file.listen) {
        Some(a) => Some(a),
        // Only a Unix socket was asked for: no TCP.
        None if unix.is_some() => None,
        None => Some(
            DEFAULT_LISTEN
                .parse()
                .context("the default listen address")?,
        ),
    };
    let unix_mode = match (
        m.value_source("unix_mode"),
        args.unix_mode,
        file.unix_mode.take(),
    ) {
        (Some(ValueSource::CommandLine), Some(mode), _) => mode,
        (_, _, Some(Mode::Number(n))) if n <= 0o777 => n,
        (_, _, Some(Mode::Number(n))) => {
            bail!("unix_mode {n:o} in the config file is not a file mode between 0000 and 0777")
        }
        (_, _, Some(Mode::Text(s))) => {
            parse_mode(&s).map_err(|e| anyhow::anyhow!("unix_mode in the config file: {e}"))?
        }
        (_, Some(mode), None) => mode,
        (_, None, None) => service::unix::DEFAULT_MODE,
    };

    let token = match (
        m.value_source("token_file"),
        &args.token_file,
        &file.token_file,
    ) {
        (Some(ValueSource::CommandLine), Some(p), _) => Some(Token::from_file(p)?),
        (_, _, Some(p)) => Some(Token::from_file(p)?),
        _ => match env_token.filter(|t| !t.is_empty()) {
            Some(t) => Some(Token::new(&t, "PROCSHARE_TOKEN")?),
            None => match &args.token_file {
                Some(p) => Some(Token::from_file(p)?),
                None => None,
            },
        },
    };

    let tls_cert = pick(m, "tls_cert", args.tls_cert, file.tls_cert.take());
    let tls_key = pick(m, "tls_key", args.tls_key, file.tls_key.take());
    let client_ca = pick(m, "client_ca", args.client_ca, file.client_ca.take());
    let tls = match (&tls_cert, &tls_key) {
        (Some(c), Some(k)) => Some(TlsFiles::load(c, k, client_ca.as_deref())?),
        (None, None) if client_ca.is_some() => {
            bail!("--client-ca (mTLS) needs --tls-cert and --tls-key as well")
        }
        (None, None) => None,
        (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert (the certificate it belongs to)"),
    };

    let insecure = match m.value_source("insecure") {
        Some(ValueSource::CommandLine) => true,
        Some(ValueSource::EnvVariable) => file.insecure.unwrap_or(args.insecure),
        _ => file.insecure.unwrap_or(false),
    };
    let keepalive_interval = pick(
        m,
        "keepalive_interval",
        args.keepalive_interval,
        file.keepalive_interval,
    )
    .map_or(Some(service::DEFAULT_KEEPALIVE_INTERVAL), |s| {
        (s > 0).then(|| Duration::from_secs(s))
    });
    let keepalive_timeout = match pick(
        m,
        "keepalive_timeout",
        args.keepalive_timeout,
        file.keepalive_timeout,
    ) {
        Some(0) => bail!("--keepalive-timeout must be at least 1 second"),
        Some(s) => Duration::from_secs(s),
        None => service::DEFAULT_KEEPALIVE_TIMEOUT,
    };
    let max_message_bytes = match pick(
        m,
        "max_message_bytes",
        args.max_message_bytes,
        file.max_message_bytes,
    ) {
        Some(0) => bail!("--max-message-bytes must be at least 1"),
        Some(n) => n,
        None => DEFAULT_MAX_MESSAGE_BYTES,
    };
    let log_level = pick(m, "log_level", args.log_level, file.log_level.take());
    let file_log_format = match file.log_format.take() {
        Some(s) => Some(
            s.parse::<LogFormat>()
                .map_err(|e| anyhow::anyhow!("log_format in the config file: {e}"))?,
        ),
        None => None,
    };
    let log_format =
        pick(m, "log_format", args.log_format, file_log_format).unwrap_or(LogFormat::Text);
    let file_fsync = match file.fsync.take() {
        Some(s) => Some(
            s.parse::<FsyncPolicy>()
                .map_err(|e| anyhow::anyhow!("fsync in the config file: {e}"))?,
        ),
        None => None,
    };
    let fsync = pick(m, "fsync", args.fsync, file_fsync).unwrap_or(FsyncPolicy::EverySecond);
    let snapshot_log_bytes = match pick(
        m,
        "snapshot_log_bytes",
        args.snapshot_log_bytes,
        file.snapshot_log_bytes,
    ) {
        Some(0) => bail!("--snapshot-log-bytes must be at least 1"),
        Some(n) => n,
        None => DEFAULT_SNAPSHOT_LOG_BYTES,
    };
    let durable =
        pick(m, "data_dir", args.data_dir, file.data_dir.take()).map(|dir| DurableConfig {
            dir,
            fsync,
            snapshot_log_bytes,
        });

    let positive = |what: &str, n: Option<usize>, default: usize| -> anyhow::Result<usize> {
        match n {
            Some(0) => bail!("--{what} must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    };
    let store_defaults = StoreLimits::default();
    let store_limits = StoreLimits {
        max_objects: positive(
            "max-objects",
            pick(m, "max_objects", args.max_objects, file.max_objects),
            store_defaults.max_objects,
        )?,
        max_queue_len: positive(
            "max-queue-len",
            pick(m, "max_queue_len", args.max_queue_len, file.max_queue_len),
            store_defaults.max_queue_len,
        )?,
        max_name_bytes: match pick(
            m,
            "max_name_bytes",
            args.max_name_bytes,
            file.max_name_bytes,
        ) {
            Some(n) if (1..=255).contains(&n) => n,
            Some(n) => bail!("--max-name-bytes must be between 1 and 255, not {n}"),
            None => store_defaults.max_name_bytes,
        },
    };
    let mut session_limits = service::SessionLimits::default();
    session_limits.max_sessions = positive(
        "max-sessions",
        pick(m, "max_sessions", args.max_sessions, file.max_sessions),
        session_limits.max_sessions,
    )?;
    if let Some(bytes) = pick(
        m,
        "session_answer_bytes",
        args.session_answer_bytes,
        file.session_answer_bytes,
    ) {
        session_limits.session_answer_bytes = bytes;
    }
    if let Some(bytes) = pick(
        m,
        "max_kept_answer_bytes",
        args.max_kept_answer_bytes,
        file.max_kept_answer_bytes,
    ) {
        session_limits.max_kept_answer_bytes = bytes;
    }
    if let Some(secs) = pick(
        m,
        "max_lease_secs",
        args.max_lease_secs,
        file.max_lease_secs,
    ) {
        if !(secs.is_finite() && secs >= 1.0) {
            bail!("--max-lease-secs must be at least 1, not {secs}");
        }
        session_limits.max_lease = Duration::from_secs_f64(secs);
        session_limits.default_lease = session_limits.default_lease.min(session_limits.max_lease);
    }
    let service_defaults = service::ServiceLimits::default();
    let service_limits = service::ServiceLimits {
        max_waiters: positive(
            "max-waiters",
            pick(m, "max_waiters", args.max_waiters, file.max_waiters),
            service_defaults.max_waiters,
        )?,
        max_value_bytes: positive(
            "max-value-bytes",
            pick(
                m,
                "max_value_bytes",
                args.max_value_bytes,
                file.max_value_bytes,
            ),
            service_defaults.max_value_bytes,
        )?,
        // Set from --max-message-bytes where the service is built.
        max_reply_bytes: service_defaults.max_reply_bytes,
        fault_drop_replies: args.fault_drop_replies.unwrap_or(0),
    };
    let settings = Settings {
        listen,
        unix,
        unix_mode,
        token,
        tls,
        insecure,
        keepalive_interval,
        keepalive_timeout,
        max_message_bytes,
        log_level,
        log_format,
        durable,
        store_limits,
        session_limits,
        service_limits,
        direct_sessions: !args.sessions_via_tonic,
    };
    settings.check_exposure()?;
    Ok(settings)
}

impl Settings {
    /// Does a client have to prove who it is (a token, or a certificate)?
    pub fn authenticates(&self) -> bool {
        self.token.is_some() || self.tls.as_ref().is_some_and(TlsFiles::mtls)
    }

    /// Is the TCP listener reachable from other hosts?
    pub fn exposed(&self) -> bool {
        self.listen.is_some_and(|a| !a.ip().is_loopback())
    }

    /// The safe default: no open door to the network by accident.
    fn check_exposure(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.listen {
            if self.exposed() && !self.authenticates() && !self.insecure {
                bail!(
                    "refusing to listen on {addr} (not loopback) without authentication: \
                     give a token (--token-file or PROCSHARE_TOKEN) or mTLS (--client-ca), \
                     or pass --insecure"
                );
            }
        }
        Ok(())
    }

    /// Warnings worth a log line once logging is up.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(addr) = self.listen.filter(|_| self.exposed()) {
            if !self.authenticates() {
                w.push(format!(
                    "--insecure: anyone who can reach {addr} can read and change every object"
                ));
            } else if self.tls.is_none() {
                w.push(format!(
                    "{addr} is not loopback and TLS is off: the token and all data travel in \
                     clear text (add --tls-cert and --tls-key)"
                ));
            }
        }
        w
    }

    pub fn server_config(&self) -> service::ServerConfig {
        service::ServerConfig {
            max_message_bytes: self.max_message_bytes,
            token: self.token.clone(),
            tls: self.tls.clone(),
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            sessions: self.session_limits.clone(),
            limits: self.service_limits.clone(),
            direct_sessions: self.direct_sessions,
            ..service::ServerConfig::default()
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
