//! Crash tests with real processes: clients write to a `procshared` with a
//! data dir and `--fsync always`; the test kills it with SIGKILL at random
//! points, restarts it, and checks that every acknowledged write is there
//! and nothing is there twice. Then the same with a log whose last bytes
//! were cut off or flipped, as a power cut would leave it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use procshare::Manager;

const DEADLINE: Duration = Duration::from_secs(60);
const WRITERS: u64 = 4;

struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_procshared"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "warn",
                "--fsync",
                "always",
            ])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start procshared");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("procshared announced itself");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("announce line")
            .to_owned();
        Daemon {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("procshare-crash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// A small deterministic generator, so a failing run can be repeated.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What the writers saw acknowledged: per writer, the items pushed.
type Acked = Arc<parking_lot_free::Acked>;

mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Acked {
        pub pushed: Mutex<Vec<Vec<u64>>>,
    }
}

/// Writer `k` pushes `"k:i"` for i = start.. to the list and sets dict
/// entry `"k"` to i, one at a time, recording each acknowledged push, until
/// the server goes away.
async fn writer(url: String, k: u64, start: u64, acked: Acked, total: Arc<AtomicU64>) {
    let Ok(m) = Manager::builder()
        .url(url)
        .call_timeout(Duration::from_secs(5))
        .connect()
        .await
    else {
        return;
    };
    let (Ok(list), Ok(dict)) = (
        m.list::<String>("log").await,
        m.dict::<String, u64>("last").await,
    ) else {
        return;
    };
    for i in start.. {
        if list.push(format!("{k}:{i}")).await.is_err() {
            return;
        }
        acked.pushed.lock().unwrap()[k as usize].push(i);
        total.fetch_add(1, Ordering::SeqCst);
        if dict.insert(k.to_string(), i).await.is_err() {
            return;
        }
    }
}

/// Checks the restarted server: every acknowledged push is in the list
/// exactly once, and nothing is there twice.
async fn check(url: &str, acked: &Acked) -> Vec<u64> {
    let m = Manager::connect(url).await.unwrap();
    let log: Vec<String> = m
        .list::<String>("log")
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for item in &log {
        assert!(seen.insert(item.clone()), "{item} is in the log twice");
    }
    let pushed = acked.pushed.lock().unwrap().clone();
    let mut next = vec![0; WRITERS as usize];
    for (k, items) in pushed.iter().enumerate() {
        for i in items {
            assert!(
                seen.contains(&format!("{k}:{i}")),
                "acknowledged push {k}:{i} was lost"
            );
        }
        // Writers resume after the highest item present, acknowledged or not.
        next[k] = log
            .iter()
            .filter_map(|s| s.strip_prefix(&format!("{k}:")))
            .filter_map(|i| i.parse::<u64>().ok())
            .max()
            .map_or(0, |i| i + 1);
    }
    let last = m.dict::<String, u64>("last").await.unwrap();
    for k in 0..WRITERS {
        if let Some(v) = last.get(&k.to_string()).await.unwrap() {
            assert!(
                seen.contains(&format!("{k}:{v}")),
                "dict points at {k}:{v}, which is not in the log"
            );
        }
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = temp_dir("kill");
    let acked: Acked = Arc::default();
    acked
        .pushed
        .lock()
        .unwrap()
        .resize(WRITERS as usize, Vec::new());
    let mut rand = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut next = vec![0; WRITERS as usize];
    for round in 0..4 {
        let daemon = Daemon::start(&dir);
        if round > 0 {
            next = check(&daemon.url, &acked).await;
        }
        let total = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|k| {
                tokio::spawn(writer(
                    daemon.url.clone(),
                    k,
                    next[k as usize],
                    acked.clone(),
                    total.clone(),
                ))
            })
            .collect();
        // Kill at a random point: after a random number of acknowledged writes.
        let target = 50 + next_rand(&mut rand) % 400;
        let end = Instant::now() + DEADLINE;
        while total.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < end,
                "writers stalled at {}",
                total.load(Ordering::SeqCst)
            );
            tokio::task::yield_now().await;
        }
        daemon.kill9();
        for t in tasks {
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("writer noticed")
                .unwrap();
        }
    }
    let daemon = Daemon::start(&dir);
    check(&daemon.url, &acked).await;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The newest log segment in `dir`.
fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a log segment")
}

/// After damage at the end of the log, the server starts with a prefix of
/// what was written: per writer, items 0..n with no gap and no duplicate.
async fn check_prefix(url: &str) -> HashMap<u64, u64> {
    let m = Manager::connect(url).await.unwrap();
    let log: Vec<String> = m
        .list::<String>("log")
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    let mut per_writer: HashMap<u64, Vec<u64>> = HashMap::new();
    for item in &log {
        let (k, i) = item.split_once(':').unwrap();
        per_writer
            .entry(k.parse().unwrap())
            .or_default()
            .push(i.parse().unwrap());
    }
    per_writer
        .into_iter()
        .map(|(k, items)| {
            let expected: Vec<u64> = (0..items.len() as u64).collect();
            assert_eq!(items, expected, "writer {k}: not a clean prefix");
            (k, items.len() as u64)
        })
        .collect()
}

async fn write_some(url: &str, n: u64) {
    let m = Manager::connect(url).await.unwrap();
    let list = m.list::<String>("log").await.unwrap();
    for i in 0..n {
        list.push(format!("0:{i}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_cut_short_or_flipped_keeps_everything_before() {
    for (tag, damage) in [("cut", 0u8), ("flip", 1u8)] {
        let dir = temp_dir(tag);
        let daemon = Daemon::start(&dir);
        write_some(&daemon.url, 100).await;
        daemon.kill9();
        let seg = last_segment(&dir);
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        if damage == 0 {
            bytes.truncate(n - 5);
        } else {
            bytes[n - 3] ^= 0x40;
        }
        std::fs::write(&seg, &bytes).unwrap();
        let daemon = Daemon::start(&dir);
        let counts = check_prefix(&daemon.url).await;
        assert_eq!(
            counts.get(&0),
            Some(&99),
            "{tag}: the damaged last record is dropped, the 99 before kept"
        );
        // And it goes on from there.
        let m = Manager::connect(&daemon.url).await.unwrap();
        m.list::<String>("log")
            .await
            .unwrap()
            .push("0:99".into())
            .await
            .unwrap();
        daemon.kill9();
        let daemon = Daemon::start(&dir);
        assert_eq!(check_prefix(&daemon.url).await.get(&0), Some(&100));
        drop(daemon);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_on_request_then_restart() {
    let dir = temp_dir("snap");
    let daemon = Daemon::start(&dir);
    write_some(&daemon.url, 50).await;
    let m = Manager::connect(&daemon.url).await.unwrap();
    let r = m
        .execute(
            "",
            procshare::wire::op::Kind::Snapshot(procshare::wire::Snapshot {}),
        )
        .await
        .unwrap();
    assert!(format!("{r:?}").contains("seq"));
    write_some(&daemon.url, 10).await;
    drop(m);
    daemon.kill9();
    let daemon = Daemon::start(&dir);
    let m = Manager::connect(&daemon.url).await.unwrap();
    assert_eq!(
        m.list::<String>("log").await.unwrap().len().await.unwrap(),
        60
    );
    // A server without a data dir refuses a snapshot with a clear error.
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
