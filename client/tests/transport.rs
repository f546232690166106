//! The client's side of the transports: URL forms (`http://`, `https://`,
//! `unix://`), the token, the CA and client certificate, from the builder,
//! the environment and the CLI; clear errors for bad options and for a
//! server that went away; reconnecting by itself when it comes back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{procshared_bin, read_line_within, Server, DEADLINE};
use procshare::{Error, Manager};

const TOKEN: &str = "transport-test-token";

/// A folder under cargo's `target/tmp`, emptied first.
fn scratch(tag: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("procshare-transport-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create a scratch dir");
    p
}

/// `deploy/make-certs.sh` output (CA, server and client certificates) and
/// a token file, made once per run.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if !Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "openssl"])
                .status();
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("procshare-transport-certs");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/make-certs.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .args(["localhost", "127.0.0.1"])
            .env("DAYS", "2")
            .output()
            .expect("run deploy/make-certs.sh");
        assert!(
            out.status.success(),
            "make-certs.sh failed (is openssl installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("write the token file");
        dir
    })
}

fn cert(name: &str) -> String {
    certs().join(name).to_string_lossy().into_owned()
}

/// procshared with mTLS and a token, on loopback.
fn secure_server() -> Server {
    Server::start_with(&[
        "--tls-cert",
        &cert("server.pem"),
        "--tls-key",
        &cert("server.key"),
        "--client-ca",
        &cert("ca.pem"),
        "--token-file",
        certs().join("token").to_str().expect("a UTF-8 path"),
    ])
}

fn https_url(s: &Server) -> String {
    let port = s.addr.rsplit(':').next().expect("a port");
    format!("https://localhost:{port}")
}

/// procshared on a Unix socket only; killed on drop.
struct UnixServer {
    child: Child,
    path: PathBuf,
}

impl UnixServer {
    fn start(path: &Path) -> UnixServer {
        let mut child = Command::new(procshared_bin())
            .args(["--log-level", "warn", "--unix"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start procshared");
        let line = read_line_within(child.stdout.take().expect("piped"), DEADLINE)
            .expect("procshared printed no line");
        assert_eq!(line.trim(), format!("listening on unix:{}", path.display()));
        UnixServer {
            child,
            path: path.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI with `args` and extra environment variables.
fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(common::cli_bin())
        .args(args)
        .env_remove("PROCSHARE_URL")
        .env_remove("PROCSHARE_TOKEN")
        .env_remove("PROCSHARE_CA")
        .env_remove("PROCSHARE_CERT")
        .env_remove("PROCSHARE_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run procshare")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_owned()
}

#[tokio::test]
async fn bad_options_are_invalid_arguments_before_any_connection() {
    let missing = |b: procshare::ManagerBuilder| async move {
        b.connect().await.err().expect("refused before connecting")
    };
    let cases = [
        (Manager::builder().url("ftp://example"), "unsupported URL"),
        (Manager::builder().url("unix://"), "unix:///path"),
        (
            Manager::builder()
                .url("http://127.0.0.1:1")
                .ca_file(cert("ca.pem")),
            "not an https:// URL",
        ),
        (
            Manager::builder()
                .url("unix:///tmp/x.sock")
                .cert(cert("client.pem")),
            "not an https:// URL",
        ),
        (
            Manager::builder()
                .url("https://127.0.0.1:1")
                .ca_file(cert("ca.pem"))
                .cert(cert("client.pem")),
            "needs its key",
        ),
        (
            Manager::builder()
                .url("https://127.0.0.1:1")
                .ca_file("/nonexistent/ca.pem"),
            "/nonexistent/ca.pem",
        ),
        (
            Manager::builder()
                .url("https://127.0.0.1:1")
                .ca_file(cert("client.key")),
            "no PEM certificate",
        ),
        (
            Manager::builder()
                .url("http://127.0.0.1:1")
                .token("two words"),
            "printable ASCII",
        ),
    ];
    for (builder, needle) in cases {
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains("two words"),
            "Debug hides the token: {shown}"
        );
        let err = missing(builder).await;
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains(needle)),
            "{shown}: {err}"
        );
        assert!(!err.to_string().contains("two words"), "{err}");
    }
}

#[tokio::test]
async fn unix_urls_in_both_spellings_and_the_blocking_facade() {
    let dir = scratch("unix");
    let sock = dir.join("p.sock");
    let s = UnixServer::start(&sock);
    let a = Manager::connect(&s.url()).await.unwrap();
    let b = Manager::connect(&format!("unix:{}", sock.display()))
        .await
        .unwrap();
    let q = a.queue::<u32>("jobs", 0).await.unwrap();
    q.put(5).await.unwrap();
    assert_eq!(
        b.queue::<u32>("jobs", 0)
            .await
            .unwrap()
            .get()
            .await
            .unwrap(),
        5
    );
    let url = s.url();
    let n = tokio::task::spawn_blocking(move || {
        let m = procshare::blocking::Manager::connect(&url)?;
        m.ping()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn a_lost_server_is_unavailable_and_the_client_reconnects_when_it_is_back() {
    let dir = scratch("reconnect");
    let sock = dir.join("p.sock");
    let s = UnixServer::start(&sock);
    let m = Manager::builder()
        .url(s.url())
        .call_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    m.ping().await.unwrap();
    drop(s); // SIGKILL: the connection breaks, the socket file stays.

    let err = m.ping().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");

    // Back on the same path: the same Manager gets through again, without
    // reconnecting by hand. Every attempt is a real call, none sleeps.
    let _s = UnixServer::start(&sock);
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        match m.ping().await {
            Ok(_) => break,
            Err(Error::Unavailable(e)) => {
                assert!(std::time::Instant::now() < end, "never reconnected: {e}")
            }
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::task::yield_now().await;
    }
}

#[test]
fn the_cli_takes_token_ca_cert_and_key() {
    let s = secure_server();
    let url = https_url(&s);
    let (ca, crt, key) = (cert("ca.pem"), cert("client.pem"), cert("client.key"));
    let tls = ["--url", &url, "--ca", &ca, "--cert", &crt, "--key", &key];

    let mut args = tls.to_vec();
    args.extend(["--token", TOKEN, "dict", "set", "d", "\"k\"", "1"]);
    let out = cli_env(&args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The token from a file, and from the environment.
    let token_file = certs().join("token");
    let mut args = tls.to_vec();
    args.extend([
        "--token-file",
        token_file.to_str().unwrap(),
        "dict",
        "get",
        "d",
        "\"k\"",
    ]);
    let out = cli_env(&args, &[]);
    assert_eq!(text(&out.stdout), "1", "{}", text(&out.stderr));
    let mut args = tls.to_vec();
    args.extend(["dict", "len", "d"]);
    let out = cli_env(&args, &[("PROCSHARE_TOKEN", TOKEN)]);
    assert_eq!(text(&out.stdout), "1", "{}", text(&out.stderr));

    // Everything from the environment.
    let out = cli_env(
        &["ping"],
        &[
            ("PROCSHARE_URL", &url),
            ("PROCSHARE_TOKEN", TOKEN),
            ("PROCSHARE_CA", &ca),
            ("PROCSHARE_CERT", &crt),
            ("PROCSHARE_KEY", &key),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // No token: exit 1, unauthenticated.
    let mut args = tls.to_vec();
    args.extend(["dict", "len", "d"]);
    let out = cli_env(&args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unauthenticated"),
        "{}",
        text(&out.stderr)
    );

    // No client certificate: exit 1, and the message says what is missing.
    let out = cli_env(&["--url", &url, "--ca", &ca, "--token", TOKEN, "ping"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("client certificate"),
        "{}",
        text(&out.stderr)
    );

    // A file that is not there: a usage error, exit 2.
    let out = cli_env(&["--url", &url, "--ca", "/nonexistent/ca.pem", "ping"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/ca.pem"));
}

#[test]
fn the_cli_over_a_unix_socket() {
    let dir = scratch("cli-unix");
    let s = UnixServer::start(&dir.join("p.sock"));
    let url = s.url();
    let out = cli_env(&["--url", &url, "value", "set", "v", "3"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli_env(&["--url", &url, "value", "add", "v", "4"], &[]);
    assert_eq!(text(&out.stdout), "7", "{}", text(&out.stderr));
}

/// Run by `the_builder_falls_back_to_the_environment` in a child process
/// with the variables set (setting them here would leak into the other
/// tests of this binary); a no-op otherwise.
#[tokio::test]
async fn env_child() {
    if std::env::var_os("PROCSHARE_TEST_ENV_CHILD").is_none() {
        return;
    }
    let m = Manager::from_env()
        .await
        .expect("connect from the environment");
    let v = m.value("from_env", &0i64).await.unwrap();
    v.fetch_add(1).await.unwrap();
}

#[tokio::test]
async fn the_builder_falls_back_to_the_environment() {
    let s = secure_server();
    let url = https_url(&s);
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "env_child", "--nocapture"])
        .env("PROCSHARE_TEST_ENV_CHILD", "1")
        .env("PROCSHARE_URL", &url)
        .env("PROCSHARE_TOKEN", TOKEN)
        .env("PROCSHARE_CA", cert("ca.pem"))
        .env("PROCSHARE_CERT", cert("client.pem"))
        .env("PROCSHARE_KEY", cert("client.key"))
        .output()
        .expect("run the child test");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let m = Manager::builder()
        .url(&url)
        .token(TOKEN)
        .ca_file(cert("ca.pem"))
        .cert(cert("client.pem"))
        .key(cert("client.key"))
        .connect()
        .await
        .unwrap();
    let v = m.value("from_env", &0i64).await.unwrap();
    assert_eq!(v.get().await.unwrap(), 1, "the child's call got through");
}
