//! Watch, end to end: the real daemon, watchers that are CLI processes or
//! this test's client, writers that are other processes (this test binary
//! re-run as `writer_process`). Nothing sleeps: a watcher is known to be
//! subscribed once it printed (or returned) its `started` event.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;
use procshare::{ChangeKind, Manager, WatchState};
use serde_json::Value as Json;

const WRITER_ENV: &str = "PROCSHARE_TEST_WATCH_WRITER";

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

/// The next change of a watch that must go on, within [`DEADLINE`].
async fn next<V, K>(w: &mut procshare::Watch<V, K>) -> procshare::Change<V, K>
where
    V: serde::de::DeserializeOwned,
    K: serde::de::DeserializeOwned,
{
    tokio::time::timeout(DEADLINE, w.next())
        .await
        .expect("a change within the deadline")
        .expect("the watch goes on")
        .expect("the watch is not over")
}

/// Not a test of its own: the writer process of the tests below, when this
/// binary is run with `PROCSHARE_TEST_WATCH_WRITER=URL TAG N PAD`. It does,
/// for i in 0..N: `d["k{i%7}"] = TAG*100000+i`, `d["total"] += 1`, and
/// `l.push(TAG*100000+i)`; or, with PAD > 0, only `v = i` as a text of PAD
/// bytes.
#[test]
fn writer_process() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let [url, tag, n, pad] = parts[..] else {
        panic!("bad {WRITER_ENV}: {spec:?}")
    };
    let (tag, n, pad): (i64, i64, usize) = (
        tag.parse().unwrap(),
        n.parse().unwrap(),
        pad.parse().unwrap(),
    );
    let m = procshare::blocking::Manager::connect(url).unwrap();
    if pad == 0 {
        let d = m.dict::<String, i64>("d").unwrap();
        let l = m.list::<i64>("l").unwrap();
        for i in 0..n {
            let v = tag * 100_000 + i;
            d.insert(format!("k{}", i % 7), v).unwrap();
            d.fetch_add(&"total".to_owned(), 1).unwrap();
            l.push(v).unwrap();
        }
    } else {
        let v = m.value::<String>("v", &String::new()).unwrap();
        for i in 0..n {
            v.set(&format!("{i:0>pad$}")).unwrap();
        }
    }
}

/// Starts a writer process (see [`writer_process`]).
fn spawn_writer(s: &Server, tag: i64, n: i64, pad: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "writer_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(WRITER_ENV, format!("{} {tag} {n} {pad}", s.url()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run this test binary as a writer")
}

fn finish_ok(child: Child, what: &str) {
    let out = finish_child(child);
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        stderr_of(&out)
    );
}

/// A background `procshare watch` whose stdout lines arrive on a channel.
struct CliWatch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl CliWatch {
    /// Starts `procshare watch ARGS` and waits for its first line (the
    /// watch is then in place on the server).
    fn start(url: &str, args: &[&str]) -> (CliWatch, Json) {
        let mut full = vec!["watch"];
        full.extend_from_slice(args);
        let mut child = spawn_cli_child(url, &full);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = CliWatch { child, lines };
        let first = w.next().expect("the watch printed its first line");
        (w, first)
    }

    /// The next line as JSON; `None` once the process closed stdout.
    fn next(&mut self) -> Option<Json> {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => Some(serde_json::from_str(&line).expect("a JSON line")),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                signal(self.child.id(), "KILL");
                panic!("procshare watch printed nothing within {DEADLINE:?}")
            }
        }
    }

    /// Every remaining line, then the exit.
    fn rest(mut self) -> (Vec<Json>, std::process::Output) {
        let mut lines = Vec::new();
        while let Some(l) = self.next() {
            lines.push(l);
        }
        (lines, finish_child(self.child))
    }
}

/// The CLI watcher sees every change of a writer in another process, in
/// the writer's order, with seq counting up without a gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_cli_watch_sees_every_change_of_another_process_in_order() {
    let s = Server::start();
    let m = manager(&s).await;
    m.dict::<String, i64>("d").await.unwrap();
    m.list::<i64>("l").await.unwrap();
    let n = 200;
    // d changes twice per step (set, fetch-add), l once.
    let (dw, d_first) = CliWatch::start(&s.url(), &["d", "--count", &(2 * n).to_string()]);
    let (lw, l_first) = CliWatch::start(&s.url(), &["l", "--count", &n.to_string()]);
    assert_eq!(d_first["event"], "started", "{d_first}");
    assert_eq!(l_first["event"], "started", "{l_first}");
    finish_ok(spawn_writer(&s, 1, n, 0), "the writer");

    let (d_lines, d_out) = dw.rest();
    let (l_lines, l_out) = lw.rest();
    assert!(d_out.status.success(), "{}", stderr_of(&d_out));
    assert!(l_out.status.success(), "{}", stderr_of(&l_out));
    assert_eq!(d_lines.len(), 2 * n as usize);
    assert_eq!(l_lines.len(), n as usize);
    let d_base = d_first["seq"].as_u64().unwrap();
    for (i, pair) in d_lines.chunks(2).enumerate() {
        let v = 100_000 + i as i64;
        assert_eq!(pair[0]["seq"], d_base + 2 * i as u64 + 1, "{}", pair[0]);
        assert_eq!(pair[0]["event"], "key_set");
        assert_eq!(pair[0]["key"], format!("k{}", i % 7));
        assert_eq!(pair[0]["value"], v);
        assert_eq!(pair[1]["seq"], d_base + 2 * i as u64 + 2, "{}", pair[1]);
        assert_eq!(pair[1]["key"], "total");
        assert_eq!(pair[1]["value"], i as i64 + 1);
    }
    let l_base = l_first["seq"].as_u64().unwrap();
    for (i, e) in l_lines.iter().enumerate() {
        assert_eq!(e["seq"], l_base + i as u64 + 1, "{e}");
        assert_eq!(e["event"], "pushed");
        assert_eq!(e["value"], 100_000 + i as i64);
    }
}

/// A dict replayed from the events of a watch.
fn apply_dict(model: &mut HashMap<String, i64>, kind: ChangeKind<i64, String>) {
    match kind {
        ChangeKind::KeySet { key, value } => {
            model.insert(key, value);
        }
        ChangeKind::KeyRemoved { key, .. } => {
            model.remove(&key);
        }
        ChangeKind::Snapshot(WatchState::Dict(entries)) => *model = entries.into_iter().collect(),
        other => panic!("unexpected dict change {other:?}"),
    }
}

/// Two writer processes at once: each watcher's events, applied in order to
/// the snapshot it started from, give exactly the final state.
#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_writers_events_agree_with_the_final_state() {
    let s = Server::start();
    let m = manager(&s).await;
    let d = m.dict::<String, i64>("d").await.unwrap();
    d.insert("seeded".into(), -1).await.unwrap();
    let l = m.list::<i64>("l").await.unwrap();
    let mut dw = d.watch_from_snapshot().await.unwrap();
    let mut lw = l.watch_from_snapshot().await.unwrap();

    let n = 150;
    let writers = [spawn_writer(&s, 1, n, 0), spawn_writer(&s, 2, n, 0)];
    for w in writers {
        finish_ok(w, "a writer");
    }

    let first = next(&mut dw).await;
    let mut model = HashMap::new();
    let mut seq = first.seq;
    apply_dict(&mut model, first.kind);
    assert_eq!(model, HashMap::from([("seeded".to_owned(), -1)]));
    for _ in 0..(2 * 2 * n) {
        let c = next(&mut dw).await;
        assert_eq!(c.seq, seq + 1, "no gap in seq");
        seq = c.seq;
        apply_dict(&mut model, c.kind);
    }
    let real: HashMap<String, i64> = d.snapshot().await.unwrap();
    assert_eq!(model, real);
    assert_eq!(real["total"], 2 * n);

    let first = next(&mut lw).await;
    let ChangeKind::Snapshot(WatchState::List(mut items)) = first.kind else {
        panic!("expected a list snapshot, got {first:?}")
    };
    assert!(items.is_empty());
    let mut seq = first.seq;
    for _ in 0..(2 * n) {
        let c = next(&mut lw).await;
        assert_eq!(c.seq, seq + 1, "no gap in seq");
        seq = c.seq;
        match c.kind {
            ChangeKind::Pushed(v) => items.push(v),
            other => panic!("unexpected list change {other:?}"),
        }
    }
    assert_eq!(items, l.snapshot().await.unwrap());
    // Each writer's pushes, within the interleaving, keep its order.
    for tag in [1, 2] {
        let mine: Vec<i64> = items
            .iter()
            .copied()
            .filter(|v| v / 100_000 == tag)
            .collect();
        assert_eq!(mine, (0..n).map(|i| tag * 100_000 + i).collect::<Vec<_>>());
    }
}

/// A watcher that reads nothing while thousands of changes go by does not
/// hold the writer up (the writer process finishes first); it then learns
/// it lagged, and gets a snapshot equal to the real state, after which
/// changes follow on without a gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_watcher_lags_and_resyncs_without_blocking_the_writer() {
    let s = Server::start();
    let m = manager(&s).await;
    let v = m.value::<String>("v", &String::new()).await.unwrap();
    let mut w = v.watch().await.unwrap();
    let started = next(&mut w).await;
    assert_eq!(started.kind, ChangeKind::Started);

    // 9 MB of changes to a 3 kB value: more than the transport buffers
    // (HTTP/2 windows, the server's queue, the feed) hold for a watcher that
    // does not read, so the feed must overflow.
    let (n, pad) = (3000, 3000);
    finish_ok(spawn_writer(&s, 0, n, pad), "the writer");

    let text = |i: u64| format!("{i:0>pad$}");
    let real = v.get().await.unwrap();
    assert_eq!(real, text(n as u64 - 1), "the writer was never blocked");
    let mut seq = started.seq;
    let mut lagged = None;
    loop {
        let c = next(&mut w).await;
        match c.kind {
            ChangeKind::ValueSet(value) => {
                assert!(lagged.is_none(), "a change between lagged and snapshot");
                assert_eq!(c.seq, seq + 1, "no gap before the lag");
                assert_eq!(value, text(c.seq - started.seq - 1));
                seq = c.seq;
            }
            ChangeKind::Lagged { missed } => {
                assert_eq!(missed, c.seq - seq, "missed counts the gap");
                lagged = Some(missed);
            }
            ChangeKind::Snapshot(WatchState::Value(value)) => {
                assert!(lagged.is_some(), "the snapshot follows `lagged`");
                assert_eq!(c.seq, started.seq + n as u64);
                assert_eq!(value, real);
                seq = c.seq;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(lagged.unwrap() > 0);
    v.set(&"after".to_owned()).await.unwrap();
    let after = next(&mut w).await;
    assert_eq!(after.seq, seq + 1);
    assert_eq!(after.kind, ChangeKind::ValueSet("after".to_owned()));
}

/// A snapshot larger than the server's largest message comes in parts
/// (the client asks for them and joins them): a dict, a list and a queue of
/// ~200 kB each against `--max-message-bytes 65536`, each whole and in
/// order, then the next change without a gap. A raw client that does not
/// ask for parts gets RESOURCE_EXHAUSTED instead of a broken stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_over_the_message_limit_comes_in_parts() {
    use procshare::wire::{procshare_client::ProcshareClient, WatchRequest};
    let s = Server::start_with(&["--max-message-bytes", "65536", "--max-value-bytes", "16384"]);
    let m = manager(&s).await;
    let item = |i: usize| format!("{i:0>2000}");
    let d = m.dict::<String, String>("d").await.unwrap();
    let l = m.list::<String>("l").await.unwrap();
    let q = m.queue::<String>("q", 0).await.unwrap();
    for i in 0..100 {
        d.insert(format!("k{i}"), item(i)).await.unwrap();
        l.push(item(i)).await.unwrap();
        q.put(item(i)).await.unwrap();
    }
    let items: Vec<String> = (0..100).map(item).collect();

    let mut w = d.watch_from_snapshot().await.unwrap();
    let snap = next(&mut w).await;
    let ChangeKind::Snapshot(WatchState::Dict(entries)) = snap.kind else {
        panic!("{:?}", snap.kind)
    };
    let got: HashMap<String, String> = entries.into_iter().collect();
    let want: HashMap<String, String> = (0..100).map(|i| (format!("k{i}"), item(i))).collect();
    assert_eq!(got, want);
    d.insert("new".to_owned(), "v".to_owned()).await.unwrap();
    let change = next(&mut w).await;
    assert_eq!(change.seq, snap.seq + 1, "no gap after the parts");
    assert_eq!(
        change.kind,
        ChangeKind::KeySet {
            key: "new".to_owned(),
            value: "v".to_owned()
        }
    );

    let mut w = l.watch_from_snapshot().await.unwrap();
    let snap = next(&mut w).await;
    assert_eq!(
        snap.kind,
        ChangeKind::Snapshot(WatchState::List(items.clone()))
    );
    let mut w = q.watch_from_snapshot().await.unwrap();
    let snap = next(&mut w).await;
    let ChangeKind::Snapshot(WatchState::Queue {
        items: got,
        unfinished,
    }) = snap.kind
    else {
        panic!("{:?}", snap.kind)
    };
    assert!(got == items, "the queue's items in order");
    assert_eq!(unfinished, 100, "every part carries the count");

    let mut raw = ProcshareClient::connect(s.url()).await.unwrap();
    let request = WatchRequest {
        client_id: String::new(),
        name: "d".into(),
        snapshot: true,
        parts: false,
    };
    let mut events = raw.watch(request).await.unwrap().into_inner();
    let err = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("an answer within the deadline")
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("--max-message-bytes"),
        "{}",
        err.message()
    );
}

/// A watcher of a dict larger than a message that falls behind gets
/// `lagged` and then the dict's whole state, which comes in parts: 2,000
/// changes of 12 kB values (more than the feed and the transport hold for
/// a watcher that reads nothing) to a 1.2 MB dict, against
/// `--max-message-bytes 65536`. Before parts, such a watcher's watch ended
/// with an error at the resync.
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_watcher_of_a_big_dict_resyncs_from_a_snapshot_in_parts() {
    let s = Server::start_with(&["--max-message-bytes", "65536", "--max-value-bytes", "16384"]);
    let watcher = manager(&s).await;
    let writer = manager(&s).await;
    let value = |i: usize| format!("{i:0>12000}");
    let d = writer.dict::<String, String>("d").await.unwrap();
    for i in 0..100 {
        d.insert(format!("k{i}"), value(i)).await.unwrap();
    }
    let mut w = watcher
        .dict::<String, String>("d")
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();
    let started = next(&mut w).await;
    assert_eq!(started.kind, ChangeKind::Started);
    for i in 0..2000 {
        d.insert(format!("k{}", i % 100), value(i)).await.unwrap();
    }
    let want: HashMap<String, String> = (1900..2000)
        .map(|i| (format!("k{}", i % 100), value(i)))
        .collect();
    let mut seq = started.seq;
    let mut lagged = false;
    loop {
        let c = next(&mut w).await;
        match c.kind {
            ChangeKind::KeySet { .. } if !lagged => {
                assert_eq!(c.seq, seq + 1, "no gap before the lag");
                seq = c.seq;
            }
            ChangeKind::Lagged { missed } => {
                assert_eq!(missed, c.seq - seq);
                lagged = true;
            }
            ChangeKind::Snapshot(WatchState::Dict(entries)) if lagged => {
                assert_eq!(c.seq, started.seq + 2000);
                let got: HashMap<String, String> = entries.into_iter().collect();
                assert!(got == want, "the snapshot is the dict's state");
                seq = c.seq;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    d.insert("after".to_owned(), "x".to_owned()).await.unwrap();
    let after = next(&mut w).await;
    assert_eq!(after.seq, seq + 1, "changes go on after the parts");
}

/// A missing object is NOT_FOUND and a lock cannot be watched (WRONG_KIND),
/// through the raw gRPC call, the CLI and the client.
#[tokio::test(flavor = "multi_thread")]
async fn missing_objects_and_unwatchable_kinds_are_refused() {
    use procshare::wire::{procshare_client::ProcshareClient, WatchRequest};
    let s = Server::start();
    let m = manager(&s).await;
    m.lock("lk").await.unwrap();
    let mut raw = ProcshareClient::connect(s.url()).await.unwrap();
    let request = |name: &str| WatchRequest {
        client_id: String::new(),
        name: name.into(),
        snapshot: false,
        parts: false,
    };
    let err = raw.watch(request("nope")).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = raw.watch(request("lk")).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(err.metadata().get("procshare-error").unwrap(), "WRONG_KIND");
    assert!(err.message().contains("is a lock"), "{}", err.message());
    let err = raw.watch(request("")).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    assert!(cli_fails(&s.url(), &["watch", "nope"], 1).contains("not found"));
    assert!(cli_fails(&s.url(), &["watch", "lk"], 1).contains("wrong kind"));

    let d = m.dict::<String, i64>("gone").await.unwrap();
    m.delete("gone").await.unwrap();
    assert!(matches!(
        d.watch().await,
        Err(procshare::Error::NotFound(_))
    ));
}

/// Deleting the object ends every watch with `deleted`: the CLI exits 0,
/// the blocking iterator ends.
#[test]
fn deleting_the_object_ends_the_watch() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let e = m.event("e").unwrap();
    let v = m.value::<i64>("v", &5).unwrap();
    let mut events = e.watch().unwrap();
    let (cli, first) = CliWatch::start(&s.url(), &["v", "--snapshot"]);
    assert_eq!(first["event"], "snapshot");
    assert_eq!(first["value"], 5);
    let first = events.next().unwrap().unwrap();
    assert_eq!(first.kind, ChangeKind::Started);

    e.set().unwrap();
    e.clear().unwrap();
    v.add(2).unwrap();
    m.delete("e").unwrap();
    m.delete("v").unwrap();

    let kinds: Vec<ChangeKind<()>> = events.map(|c| c.unwrap().kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Flag(true),
            ChangeKind::Flag(false),
            ChangeKind::Deleted
        ]
    );
    let (lines, out) = cli.rest();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["value_set", "deleted"]);
    assert_eq!(lines[0]["value"], 7);
}

/// SIGTERM with a watch open: the daemon shuts down cleanly without waiting
/// out its grace period (it logs a warning when it has to), and the watcher
/// is told the server is going.
#[test]
fn sigterm_with_an_open_watch_shuts_down_cleanly() {
    let mut daemon = Command::new(procshared_bin())
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procshared");
    let stdout = daemon.stdout.take().unwrap();
    let line = read_line_within(stdout, DEADLINE).expect("procshared printed no line");
    let url = format!(
        "http://{}",
        line.strip_prefix("listening on ").unwrap().trim()
    );
    assert!(cli(&url, &["queue", "put", "q", "1"]).status.success());
    let (watch, first) = CliWatch::start(&url, &["q"]);
    assert_eq!(first["event"], "started");

    signal(daemon.id(), "TERM");
    let stderr = daemon.stderr.take().unwrap();
    let status = wait_within(&mut daemon, DEADLINE).expect("procshared exits");
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut log).unwrap();
    assert!(
        !log.contains("grace period over"),
        "the open watch held the shutdown up: {log}"
    );
    let (lines, out) = watch.rest();
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("shutting down"),
        "{}",
        stderr_of(&out)
    );
}
