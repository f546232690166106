//! Durability for a data dir: a write-ahead log of the operations the store
//! applied, and snapshots that bound it.
//!
//! On start: load the snapshot (refusing a damaged one), replay the log
//! through the store's own apply path (the same code as live traffic),
//! skipping what the snapshot already holds, stop at the first torn or
//! damaged record (dropping the rest, with a warning), and give back every
//! semaphore permit a session held: sessions do not survive a restart.
//!
//! Why a plain checksummed log file and not an embedded database: the log
//! holds exactly the operations the store applies, in the order it applied
//! them, so recovery is replay with no second data model to keep in step;
//! and a torn tail is found by a checksum and cut off, nothing more.

mod snapshot;
mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procshare_proto as pb;

use super::error::StoreError;
use super::journal::Sink;
use super::val::Val;
use super::{reply, Caller, Store};

/// When the log is fsynced (Redis' `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every reply: nothing acknowledged is ever lost.
    Always,
    /// Once a second: a crash of the machine loses at most about a second
    /// of acknowledged writes; a crash of the process alone loses nothing.
    EverySecond,
    /// When the OS decides: a machine crash may lose more.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "every-second" => Ok(FsyncPolicy::EverySecond),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "unknown fsync policy {other:?}: expected always, every-second or never"
            )),
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySecond => "every-second",
            FsyncPolicy::Never => "never",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Corrupt(String),
    #[error("data dir {0} is in use by another procshared")]
    Locked(PathBuf),
    #[error("the log writer has stopped")]
    Stopped,
}

impl PersistError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        PersistError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Settings of a data dir.
#[derive(Debug, Clone)]
pub struct DurableConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Snapshot (and drop the log) once the log grows past this many bytes.
    pub snapshot_log_bytes: u64,
}

/// What recovery found, for the start-up log line.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub objects: usize,
    pub snapshot_seq: Option<u64>,
    pub replayed: u64,
    pub dropped: Vec<String>,
    pub elapsed: Duration,
}

/// A store's data dir, once open.
pub struct Durability {
    config: DurableConfig,
    wal: Arc<wal::Wal>,
    /// One snapshot at a time.
    snapshotting: tokio::sync::Mutex<()>,
    last_snapshot: parking_lot::Mutex<Option<(u64, u64, u64)>>,
    /// Held open to keep the data dir's lock.
    _lock: std::fs::File,
}

impl Sink for Durability {
    fn append(&self, body: &[u8]) -> u64 {
        self.wal.append(body)
    }

    fn next_seq(&self) -> u64 {
        self.wal.next_seq()
    }
}

fn log_failed(why: Arc<str>) -> StoreError {
    StoreError::Unavailable(format!(
        "the write-ahead log failed ({why}); nothing more is accepted"
    ))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Durability {
    /// Waits until record `seq` is in the log per the fsync policy.
    pub async fn wait_logged(&self, seq: u64) -> Result<(), StoreError> {
        self.wal.wait_logged(seq).await.map_err(log_failed)
    }

    /// Refuses a change once the log has failed, before it is applied: a
    /// change that cannot be logged must not be made in memory either
    /// (the one whose write failed was, and its caller was told so).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match self.wal.failure() {
            None => Ok(()),
            Some(e) => Err(log_failed(e)),
        }
    }

    #[cfg(test)]
    pub fn fail_for_test(&self) {
        self.wal.fail_for_test();
    }

    /// Writes a snapshot now and drops the log it covers.
    pub async fn snapshot(&self, store: &Store) -> Result<pb::OpResult, StoreError> {
        let _one = self.snapshotting.lock().await;
        let internal = |e: PersistError| StoreError::Internal(format!("snapshot failed: {e}"));
        let seq = self.wal.rotate().await.map_err(internal)?;
        let objects = store.save_objects(&|| self.wal.next_seq());
        let count = objects.len();
        let file = pb::SnapshotFile {
            seq,
            objects,
            written_at_ms: now_ms(),
        };
        let dir = self.config.dir.clone();
        let bytes = tokio::task::spawn_blocking(move || snapshot::write(&dir, &file))
            .await
            .map_err(|e| StoreError::Internal(format!("snapshot task: {e}")))?
            .map_err(internal)?;
        self.wal.drop_before(seq).map_err(internal)?;
        *self.last_snapshot.lock() = Some((seq, bytes, now_ms()));
        tracing::info!(seq, bytes, objects = count, "snapshot written");
        Ok(reply::value(&Val::Map(vec![
            (Val::Str("seq".into()), Val::Int(seq as i64)),
            (Val::Str("bytes".into()), Val::Int(bytes as i64)),
            (Val::Str("objects".into()), Val::Int(count as i64)),
        ])))
    }

    /// Whether the log has grown enough to be worth a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.wal.size() > self.config.snapshot_log_bytes
    }

    pub fn stats(&self) -> Vec<(Val, Val)> {
        let s = |k: &str| Val::Str(k.into());
        let mut out = vec![
            (
                s("data_dir"),
                Val::Str(self.config.dir.display().to_string()),
            ),
            (s("fsync"), Val::Str(self.config.fsync.to_string())),
            (s("log_bytes"), Val::Int(self.wal.size() as i64)),
            (s("next_seq"), Val::Int(self.wal.next_seq() as i64)),
        ];
        match *self.last_snapshot.lock() {
            Some((seq, bytes, at)) => out.extend([
                (s("last_snapshot_seq"), Val::Int(seq as i64)),
                (s("last_snapshot_bytes"), Val::Int(bytes as i64)),
                (s("last_snapshot_at_ms"), Val::Int(at as i64)),
            ]),
            None => out.push((s("last_snapshot_seq"), Val::Null)),
        }
        out
    }

    /// Writes out the log and stops its writer (at shutdown).
    pub fn close(&self) {
        self.wal.shutdown();
    }
}

impl Store {
    /// Opens (or creates) a data dir and returns the store it holds, ready
    /// for traffic, and what recovery did.
    pub async fn open_durable(
        config: DurableConfig,
        limits: super::StoreLimits,
    ) -> Result<(Arc<Store>, Recovered), PersistError> {
        let started = std::time::Instant::now();
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| PersistError::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| PersistError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(PersistError::Locked(dir));
        }
        let mut recovered = Recovered::default();
        let store = Store::with_limits(limits.clone());
        let mut skip_before: HashMap<String, u64> = HashMap::new();
        let mut next_seq = 1;
        if let Some(snap) = snapshot::read(&dir)? {
            recovered.snapshot_seq = Some(snap.seq);
            next_seq = snap.seq.max(1);
            for o in &snap.objects {
                skip_before.insert(o.name.clone(), o.seq);
            }
            store
                .restore_objects(snap.objects)
                .map_err(|e| PersistError::Corrupt(e.to_string()))?;
        }
        let mut log_size = 0;
        let segs = wal::segments(&dir).map_err(|e| PersistError::io(&dir, e))?;
        let mut damaged = false;
        for (_, path) in segs {
            if damaged {
                // Everything after a damaged record is dropped: the log is
                // only trusted up to its first bad byte.
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                recovered.dropped.push(format!(
                    "{} ({len} bytes) after earlier damage",
                    path.display()
                ));
                std::fs::remove_file(&path).map_err(|e| PersistError::io(&path, e))?;
                continue;
            }
            let mut read =
                wal::SegmentReader::open(&path).map_err(|e| PersistError::io(&path, e))?;
            while let Some(record) = read.next_record() {
                next_seq = next_seq.max(record.seq + 1);
                // An atomic batch is one record holding its operations.
                let seq = record.seq;
                let parts = match record.op {
                    Some(op) => vec![(record.client_id, record.task_id, op)],
                    None => record
                        .batch
                        .into_iter()
                        .filter_map(|r| Some((r.client_id, r.task_id, r.op?)))
                        .collect(),
                };
                for (client_id, task_id, op) in parts {
                    if skip_before.get(&op.name).is_some_and(|s| seq < *s) {
                        continue;
                    }
                    let caller = Caller::new(&client_id, &task_id);
                    // Replayed operations succeeded when they were logged;
                    // one that fails now (an object deleted meanwhile)
                    // changes nothing, as it would then.
                    if let Err(e) = store
                        .apply_with(&caller, op, &super::journal::Recorder::none())
                        .await
                    {
                        tracing::debug!(seq, error = %e, "replayed record had no effect");
                    }
                }
                recovered.replayed += 1;
            }
            if let Some(why) = read.damage() {
                damaged = true;
                recovered.dropped.push(format!("{}: {why}", path.display()));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| PersistError::io(&path, e))?;
                f.set_len(read.good_len())
                    .map_err(|e| PersistError::io(&path, e))?;
                f.sync_all().map_err(|e| PersistError::io(&path, e))?;
            }
            log_size += read.good_len();
        }
        store.release_all_holders();
        for d in &recovered.dropped {
            tracing::warn!("write-ahead log damaged, dropped {d}");
        }
        let wal = wal::Wal::start(&dir, next_seq, config.fsync, log_size)?;
        recovered.objects = store.len();
        recovered.elapsed = started.elapsed();
        let durable = Arc::new(Durability {
            config,
            wal,
            snapshotting: tokio::sync::Mutex::new(()),
            last_snapshot: parking_lot::Mutex::new(None),
            _lock: lock,
        });
        let store = Arc::new(Store {
            limits,
            objects: store.objects,
            durable: Some(durable),
            gate: Default::default(),
        });
        Ok((store, recovered))
    }

    /// The data dir, if this store has one.
    pub fn durability(&self) -> Option<&Arc<Durability>> {
        self.durable.as_ref()
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        self.wal.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto::op::Kind as Op;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("procshare-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &TempDir) -> DurableConfig {
        DurableConfig {
            dir: dir.0.clone(),
            fsync: FsyncPolicy::Always,
            snapshot_log_bytes: u64::MAX,
        }
    }

    fn op(name: &str, kind: Op) -> pb::Op {
        pb::Op {
            name: name.into(),
            kind: Some(kind),
        }
    }

    fn open(kind: pb::Kind, size: u64) -> Op {
        Op::Open(pb::Open {
            kind: kind as i32,
            size,
            ..Default::default()
        })
    }

    fn int(i: i64) -> Option<pb::Value> {
        Some(Val::Int(i).to_wire())
    }

    async fn run(store: &Store, name: &str, kind: Op) -> pb::OpResult {
        store
            .apply(&Caller::new("c", ""), op(name, kind))
            .await
            .unwrap()
    }

    /// Writes a little of everything.
    async fn fill(store: &Store) {
        run(store, "d", open(pb::Kind::Dict, 0)).await;
        run(
            store,
            "d",
            Op::DictSet(pb::DictSet {
                key: int(1),
                value: int(10),
            }),
        )
        .await;
        run(
            store,
            "d",
            Op::DictFetchAdd(pb::DictFetchAdd {
                key: int(1),
                delta: int(5),
            }),
        )
        .await;
        run(store, "q", open(pb::Kind::JoinableQueue, 0)).await;
        for i in 0..3 {
            run(
                store,
                "q",
                Op::QueuePut(pb::QueuePut {
                    value: int(i),
                    blocking: true,
                    timeout_secs: None,
                }),
            )
            .await;
        }
        run(
            store,
            "q",
            Op::QueueGet(pb::QueueGet {
                blocking: true,
                timeout_secs: Some(1.0),
            }),
        )
        .await;
        run(store, "s", open(pb::Kind::BoundedSemaphore, 2)).await;
        run(
            store,
            "s",
            Op::SemaphoreAcquire(pb::SemaphoreAcquire {
                blocking: true,
                timeout_secs: None,
            }),
        )
        .await;
        run(store, "e", open(pb::Kind::Event, 0)).await;
        run(store, "e", Op::EventSet(pb::EventSet {})).await;
        run(store, "l", open(pb::Kind::Lock, 0)).await;
        run(
            store,
            "l",
            Op::LockAcquire(pb::LockAcquire {
                blocking: true,
                timeout_secs: None,
            }),
        )
        .await;
    }

    async fn check(store: &Store) {
        let got = run(store, "d", Op::DictGet(pb::DictGet { key: int(1) })).await;
        assert_eq!(as_maybe(got), Some(Val::Int(15)));
        let got = run(
            store,
            "q",
            Op::QueueGet(pb::QueueGet {
                blocking: false,
                timeout_secs: None,
            }),
        )
        .await;
        assert_eq!(
            as_value(got),
            Val::Int(1),
            "the first item was taken before the restart"
        );
        let d = as_value(run(store, "q", Op::Describe(pb::Describe {})).await);
        assert!(format!("{d:?}").contains("\"unfinished\""));
        // The permit's holder was a session: the restart gave it back.
        assert_eq!(
            as_count(run(store, "s", Op::SemaphoreValue(pb::SemaphoreValue {})).await),
            2
        );
        assert!(as_flag(
            run(store, "e", Op::EventIsSet(pb::EventIsSet {})).await
        ));
        assert!(
            !as_flag(run(store, "l", Op::LockLocked(pb::LockLocked {})).await),
            "locks come back free"
        );
    }

    #[tokio::test]
    async fn once_the_log_has_failed_changes_are_refused_before_they_are_made() {
        let dir = TempDir::new("failed");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        fill(&store).await;
        store.durability().unwrap().fail_for_test();
        let caller = Caller::new("c", "");
        let set = |v: i64| {
            op(
                "d",
                Op::DictSet(pb::DictSet {
                    key: int(1),
                    value: int(v),
                }),
            )
        };
        let err = store.apply(&caller, set(99)).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("a test broke the disk"), "{err}");
        let err = store
            .apply_atomic(vec![(caller.clone(), set(98))], usize::MAX, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let put = Op::QueuePut(pb::QueuePut {
            value: int(7),
            blocking: true,
            timeout_secs: None,
        });
        let err = store.apply(&caller, op("q", put)).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        // Nothing changed in memory, and reads are still answered.
        let got = run(&store, "d", Op::DictGet(pb::DictGet { key: int(1) })).await;
        assert_eq!(as_maybe(got), Some(Val::Int(15)));
        let q = as_value(run(&store, "q", Op::Describe(pb::Describe {})).await);
        let Val::Map(figures) = q else {
            panic!("{q:?}")
        };
        let len = figures.iter().find(|(k, _)| *k == Val::Str("len".into()));
        assert_eq!(
            len.map(|(_, v)| v),
            Some(&Val::Int(2)),
            "as filled: {figures:?}"
        );
    }

    #[tokio::test]
    async fn state_survives_a_restart_through_the_log() {
        let dir = TempDir::new("log");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        fill(&store).await;
        drop(store);
        let (store, recovered) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        assert!(recovered.replayed > 0);
        assert!(recovered.dropped.is_empty());
        check(&store).await;
    }

    #[tokio::test]
    async fn state_survives_through_a_snapshot_and_the_log_after_it() {
        let dir = TempDir::new("snap");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        fill(&store).await;
        run(&store, "", Op::Snapshot(pb::Snapshot {})).await;
        run(
            &store,
            "d",
            Op::DictFetchAdd(pb::DictFetchAdd {
                key: int(1),
                delta: int(100),
            }),
        )
        .await;
        drop(store);
        let (store, recovered) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        assert!(recovered.snapshot_seq.is_some());
        assert_eq!(recovered.replayed, 1, "only the record after the snapshot");
        let got = run(&store, "d", Op::DictGet(pb::DictGet { key: int(1) })).await;
        assert_eq!(as_maybe(got), Some(Val::Int(115)));
        run(
            &store,
            "d",
            Op::DictFetchAdd(pb::DictFetchAdd {
                key: int(1),
                delta: int(-115),
            }),
        )
        .await;
        drop(store);
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        let got = run(&store, "d", Op::DictGet(pb::DictGet { key: int(1) })).await;
        assert_eq!(as_maybe(got), Some(Val::Int(0)));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = TempDir::new("torn");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        run(
            &store,
            "v",
            Op::Open(pb::Open {
                kind: pb::Kind::Value as i32,
                ..Default::default()
            }),
        )
        .await;
        run(&store, "v", Op::ValueSet(pb::ValueSet { value: int(7) })).await;
        drop(store);
        // Half a record at the end, as a power cut would leave it.
        let (_, last) = wal::segments(&dir.0).unwrap().pop().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (store, recovered) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        assert_eq!(recovered.dropped.len(), 1, "{:?}", recovered.dropped);
        let got = run(&store, "v", Op::ValueGet(pb::ValueGet {})).await;
        assert_eq!(as_value(got), Val::Int(7));
    }

    #[tokio::test]
    async fn a_flipped_byte_drops_that_record_and_after() {
        let dir = TempDir::new("flip");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        run(
            &store,
            "v",
            Op::Open(pb::Open {
                kind: pb::Kind::Value as i32,
                ..Default::default()
            }),
        )
        .await;
        run(&store, "v", Op::ValueSet(pb::ValueSet { value: int(1) })).await;
        run(&store, "v", Op::ValueSet(pb::ValueSet { value: int(2) })).await;
        drop(store);
        let (_, last) = wal::segments(&dir.0).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        std::fs::write(&last, &bytes).unwrap();
        let (store, recovered) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        assert_eq!(recovered.dropped.len(), 1);
        let got = run(&store, "v", Op::ValueGet(pb::ValueGet {})).await;
        assert_eq!(as_value(got), Val::Int(1), "never half a record");
    }

    #[tokio::test]
    async fn a_damaged_snapshot_is_refused() {
        let dir = TempDir::new("badsnap");
        let (store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        fill(&store).await;
        run(&store, "", Op::Snapshot(pb::Snapshot {})).await;
        drop(store);
        let p = snapshot::path(&dir.0);
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x55;
        std::fs::write(&p, &bytes).unwrap();
        let err = Store::open_durable(config(&dir), Default::default())
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, PersistError::Corrupt(_)), "{err}");
    }

    #[tokio::test]
    async fn one_data_dir_one_server() {
        let dir = TempDir::new("lock");
        let (_store, _) = Store::open_durable(config(&dir), Default::default())
            .await
            .unwrap();
        let err = Store::open_durable(config(&dir), Default::default())
            .await
            .err()
            .expect("locked");
        assert!(matches!(err, PersistError::Locked(_)), "{err}");
    }

    #[tokio::test]
    async fn snapshot_needs_a_data_dir() {
        let store = Store::new();
        let r = store
            .apply(&Caller::new("c", ""), op("", Op::Snapshot(pb::Snapshot {})))
            .await;
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
    }
}
