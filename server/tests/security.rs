//! procshared on a network: the token, the refusal to listen openly, TLS and
//! mTLS, the Unix socket, the health and reflection services, and the config
//! file, each through the real binary and real gRPC.
//!
//! Certificates come from `deploy/make-certs.sh` (the openssl CLI), made
//! once per run under cargo's `target/tmp`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use procshare::{Error, Manager};

const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "s3cr3t-t0ken-for-tests";

/// A folder under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "procshare-security-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write a temp file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes sure the openssl CLI is there (installing it where we may).
fn ensure_openssl() {
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    if ok(Command::new("openssl").arg("version")) {
        return;
    }
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "openssl"])
        .status();
    assert!(
        ok(Command::new("openssl").arg("version")),
        "these tests need the openssl command (apt-get install openssl)"
    );
}

/// A CA with its server and client certificates.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: PathBuf) -> Certs {
        ensure_openssl();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/make-certs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .args(["localhost", "127.0.0.1"])
            .env("DAYS", "2")
            .output()
            .expect("run deploy/make-certs.sh");
        assert!(
            out.status.success(),
            "make-certs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Certs { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.file(name).to_string_lossy().into_owned()
    }
}

/// The test CA, and a second, unrelated one.
fn certs() -> &'static (Certs, Certs) {
    static CERTS: OnceLock<(Certs, Certs)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("procshare-security-certs");
        let _ = std::fs::remove_dir_all(&base);
        (
            Certs::make(base.join("ca")),
            Certs::make(base.join("other")),
        )
    })
}

/// A running procshared, killed on drop; all it writes to stderr is kept.
struct Daemon {
    child: Child,
    /// Its `listening on …` lines.
    lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts procshared with `args` and `env`, waiting for `n` announce
    /// lines.
    fn start_env(args: &[&str], env: &[(&str, &str)], n: usize) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_procshared"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start procshared");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut d = Daemon {
            child,
            lines: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        while d.lines.len() < n {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) => d.lines.push(line),
                Err(_) => panic!(
                    "procshared {args:?} announced {:?} only; stderr: {}",
                    d.lines,
                    d.stderr.lock().unwrap()
                ),
            }
        }
        d
    }

    fn start(args: &[&str]) -> Daemon {
        Self::start_env(args, &[], 1)
    }

    /// The TCP address of the first announce line.
    fn addr(&self) -> &str {
        self.lines[0]
            .strip_prefix("listening on ")
            .expect("an announce line")
    }

    fn port(&self) -> &str {
        self.addr().rsplit(':').next().expect("a port")
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// SIGTERM, then the exit code and everything written to stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let code = wait(&mut self.child);
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let err = self.stderr.lock().unwrap().clone();
        (code, err)
    }
}

impl Daemon {
    /// [`Daemon::stop`] from async code: the runtime keeps running, so the
    /// test's own connections can close while the daemon shuts down.
    async fn stop_async(self) -> (Option<i32>, String) {
        tokio::task::spawn_blocking(move || self.stop())
            .await
            .expect("stop the daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the exit; a watchdog kills the process after the deadline.
fn wait(child: &mut Child) -> Option<i32> {
    let (tx, rx) = mpsc::channel::<()>();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let status = child.wait().expect("wait for procshared");
    let _ = tx.send(());
    let _ = watchdog.join();
    status.code()
}

/// Runs procshared expecting it to refuse to start: exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_procshared"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procshared");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (wait(&mut child), err)
}

/// Connecting opens a session, the first call: without the right token it
/// is refused there, with a clear error.
async fn refused_at_connect(url: &str, token: Option<&str>) -> Error {
    let mut b = Manager::builder().url(url);
    if let Some(t) = token {
        b = b.token(t);
    }
    b.connect().await.err().expect("refused at connect")
}

async fn connect_with_token(url: &str, token: Option<&str>) -> Manager {
    let mut b = Manager::builder().url(url);
    if let Some(t) = token {
        b = b.token(t);
    }
    b.connect().await.expect("connect")
}

#[tokio::test]
async fn the_token_guards_every_call_and_is_never_logged() {
    let dir = TempDir::new("token");
    let token_file = dir.file("token", &format!("{TOKEN}\n"));
    let d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
        "--log-level",
        "trace",
    ]);
    let url = d.url();

    let err = refused_at_connect(&url, None).await;
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");

    let err = refused_at_connect(&url, Some("s3cr3t-t0ken-for-tesTs")).await;
    assert_eq!(err, Error::Unauthenticated("wrong token".into()));

    let right = connect_with_token(&url, Some(TOKEN)).await;
    assert!(
        right.list_objects().await.unwrap().is_empty(),
        "the refused calls created nothing"
    );
    let d1 = right.dict::<String, i64>("d").await.unwrap();
    d1.insert("a".into(), 1).await.unwrap();
    assert_eq!(d1.get(&"a".into()).await.unwrap(), Some(1));
    // Open connections would hold the graceful shutdown up.
    drop((d1, right));

    let (code, stderr) = d.stop_async().await;
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("refused a call with a wrong token"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused a call without a token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t"),
        "the token (or a guess of it) appears in the log"
    );
}

#[tokio::test]
async fn the_token_may_come_from_the_environment() {
    let d = Daemon::start_env(
        &["--listen", "127.0.0.1:0", "--log-level", "warn"],
        &[("PROCSHARE_TOKEN", TOKEN)],
        1,
    );
    let url = d.url();
    let err = refused_at_connect(&url, None).await;
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    let right = connect_with_token(&url, Some(TOKEN)).await;
    right.ping().await.unwrap();
}

#[tokio::test]
async fn health_answers_without_a_token_and_reflection_needs_one() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };

    let d = Daemon::start_env(
        &["--listen", "127.0.0.1:0", "--log-level", "warn"],
        &[("PROCSHARE_TOKEN", TOKEN)],
        1,
    );
    let channel = tonic::transport::Endpoint::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "procshare.v1.Procshare"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"));
        assert_eq!(
            r.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut anonymous = ServerReflectionClient::new(channel.clone());
    let err = anonymous.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let mut reflection =
        ServerReflectionClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    let mut stream = reflection
        .server_reflection_info(list())
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(services)) = reply.message_response else {
        panic!("unexpected reflection answer {reply:?}");
    };
    let names: Vec<_> = services.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "procshare.v1.Procshare"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };

    let d = Daemon::start(&["--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let channel = tonic::transport::Endpoint::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "procshare.v1.Procshare".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().expect("the current status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let pid = d.child.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let next = tokio::time::timeout(DEADLINE, watch.message())
        .await
        .expect("a status change within the deadline")
        .unwrap()
        .expect("a status change");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    assert_eq!(d.stop_async().await.0, Some(0));
}

#[test]
fn a_network_address_needs_a_token_or_mtls() {
    let (code, err) = refused(&["--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
    assert!(err.contains("--insecure"), "{err}");

    // TLS alone does not authenticate clients.
    let (c, _) = certs();
    let (code, err) = refused(&[
        "--listen",
        "[::]:0",
        "--tls-cert",
        &c.s("server.pem"),
        "--tls-key",
        &c.s("server.key"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refusing"), "{err}");

    let dir = TempDir::new("exposed");
    let token_file = dir.file("token", TOKEN);
    for extra in [
        vec!["--insecure"],
        vec!["--token-file", token_file.to_str().unwrap()],
    ] {
        let mut args = vec!["--listen", "0.0.0.0:0", "--log-level", "warn"];
        args.extend(extra.iter().copied());
        let d = Daemon::start(&args);
        assert!(d.addr().starts_with("0.0.0.0:"), "{:?}", d.lines);
        let (code, _) = d.stop();
        assert_eq!(code, Some(0), "{extra:?}");
    }
    let d = Daemon::start(&[
        "--listen",
        "0.0.0.0:0",
        "--log-level",
        "warn",
        "--tls-cert",
        &c.s("server.pem"),
        "--tls-key",
        &c.s("server.key"),
        "--client-ca",
        &c.s("ca.pem"),
    ]);
    assert_eq!(d.stop().0, Some(0), "mTLS is enough");
}

#[tokio::test]
async fn tls_serves_https_clients_that_trust_its_ca() {
    let (c, other) = certs();
    let d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
        "--tls-cert",
        &c.s("server.pem"),
        "--tls-key",
        &c.s("server.key"),
    ]);
    for host in ["localhost", "127.0.0.1"] {
        let m = Manager::builder()
            .url(format!("https://{host}:{}", d.port()))
            .ca_file(c.file("ca.pem"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("https://{host}: {e}"));
        let q = m.queue::<String>("q", 0).await.unwrap();
        q.put(host.to_owned()).await.unwrap();
        assert_eq!(q.get().await.unwrap(), host);
    }
    // A client that trusts another CA refuses the server.
    let err = Manager::builder()
        .url(format!("https://localhost:{}", d.port()))
        .ca_file(other.file("ca.pem"))
        .connect()
        .await
        .err()
        .expect("an untrusted server certificate");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // Plain HTTP to a TLS port fails at connect (its first call), with a hint.
    let err = Manager::builder()
        .url(d.url())
        .call_timeout(Duration::from_secs(3))
        .connect()
        .await
        .err()
        .expect("plain HTTP to a TLS port");
    assert!(
        matches!(err, Error::Unavailable(_) | Error::Timeout(_)),
        "{err}"
    );
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_its_ca() {
    let (c, other) = certs();
    let d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
        "--tls-cert",
        &c.s("server.pem"),
        "--tls-key",
        &c.s("server.key"),
        "--client-ca",
        &c.s("ca.pem"),
    ]);
    let url = format!("https://localhost:{}", d.port());

    let err = Manager::builder()
        .url(&url)
        .ca_file(c.file("ca.pem"))
        .connect()
        .await
        .err()
        .expect("no client certificate");
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");

    let err = Manager::builder()
        .url(&url)
        .ca_file(c.file("ca.pem"))
        .cert(other.file("client.pem"))
        .key(other.file("client.key"))
        .connect()
        .await
        .err()
        .expect("a client certificate from another CA");
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");

    let m = Manager::builder()
        .url(&url)
        .ca_file(c.file("ca.pem"))
        .cert(c.file("client.pem"))
        .key(c.file("client.key"))
        .connect()
        .await
        .expect("the right certificate");
    let v = m.value("v", &41).await.unwrap();
    assert_eq!(v.fetch_add(1).await.unwrap(), 41);
    assert_eq!(v.get().await.unwrap(), 42);
}

#[tokio::test]
async fn a_unix_socket_alone_is_private_and_removed_on_exit() {
    let dir = TempDir::new("unix");
    let sock = dir.path("procshared.sock");
    let d = Daemon::start(&["--unix", sock.to_str().unwrap(), "--log-level", "warn"]);
    assert_eq!(d.lines, [format!("listening on unix:{}", sock.display())]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");

    let m = Manager::connect(&format!("unix://{}", sock.display()))
        .await
        .unwrap();
    let l = m.list::<i64>("l").await.unwrap();
    l.push(7).await.unwrap();
    assert_eq!(l.snapshot().await.unwrap(), vec![7]);
    drop((l, m));

    let (code, _) = d.stop_async().await;
    assert_eq!(code, Some(0));
    assert!(!sock.exists(), "the socket file is removed on exit");
}

#[tokio::test]
async fn a_unix_socket_beside_tcp_serves_the_same_objects() {
    let dir = TempDir::new("both");
    let sock = dir.path("p.sock");
    let d = Daemon::start_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--unix",
            sock.to_str().unwrap(),
            "--unix-mode",
            "0660",
            "--log-level",
            "warn",
        ],
        &[],
        2,
    );
    assert_eq!(d.lines[1], format!("listening on unix:{}", sock.display()));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "mode {mode:o}");
    let tcp = Manager::connect(&d.url()).await.unwrap();
    let unix = Manager::connect(&format!("unix:{}", sock.display()))
        .await
        .unwrap();
    tcp.value("shared", &"via tcp".to_owned()).await.unwrap();
    let v = unix
        .value::<String>("shared", &"ignored".into())
        .await
        .unwrap();
    assert_eq!(v.get().await.unwrap(), "via tcp");
}

#[tokio::test]
async fn the_config_file_sets_options_and_flags_override_it() {
    let dir = TempDir::new("config");
    dir.file("token", TOKEN);
    let config = dir.file(
        "procshared.toml",
        "# listen is overridden by the flag below\n\
         listen = \"127.0.0.1:1\"\n\
         unix = \"p.sock\"\n\
         unix_mode = 0o600\n\
         token_file = \"token\"\n\
         keepalive_interval = 1\n\
         keepalive_timeout = 1\n\
         log_level = \"warn\"\n",
    );
    let d = Daemon::start_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("PROCSHARE_LISTEN", "127.0.0.1:2")],
        2,
    );
    assert_ne!(d.port(), "1", "the flag beats the file");
    assert_eq!(
        d.lines[1],
        format!("listening on unix:{}", dir.path("p.sock").display()),
        "relative to the file"
    );
    let err = refused_at_connect(&d.url(), None).await;
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    let m = Manager::builder()
        .url(format!("unix://{}", dir.path("p.sock").display()))
        .token(TOKEN)
        .keepalive_interval(Some(Duration::from_secs(1)))
        .connect()
        .await
        .unwrap();
    m.ping().await.unwrap();
}

#[test]
fn bad_files_are_one_line_errors_that_name_them() {
    let dir = TempDir::new("bad");
    let bad_toml = dir.file(
        "bad.toml",
        "listen = \"127.0.0.1:0\"\nno_such_option = true\n",
    );
    let not_pem = dir.file("not.pem", "hello\n");
    let empty_token = dir.file("token", "\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), bad_toml.display().to_string()],
            "no_such_option",
        ),
        (
            vec![
                "--tls-cert".into(),
                "/nonexistent/server.pem".into(),
                "--tls-key".into(),
                "/nonexistent/server.key".into(),
            ],
            "/nonexistent/server.pem",
        ),
        (
            vec![
                "--tls-cert".into(),
                not_pem.display().to_string(),
                "--tls-key".into(),
                not_pem.display().to_string(),
            ],
            "no PEM certificate",
        ),
        (
            vec!["--token-file".into(), empty_token.display().to_string()],
            "empty",
        ),
        (
            vec!["--client-ca".into(), not_pem.display().to_string()],
            "--tls-cert",
        ),
    ];
    for (args, needle) in cases {
        let mut argv = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        argv.extend(args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (code, err) = refused(&argv);
        assert_eq!(code, Some(2), "{argv:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{argv:?}: {err:?}");
        assert!(err.contains(needle), "{argv:?}: {err}");
    }
}
