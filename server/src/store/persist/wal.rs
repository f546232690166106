//! The write-ahead log: segment files of checksummed records, written by one
//! thread.
//!
//! A record is framed as `len: u32 LE | crc32(payload): u32 LE | payload`,
//! where the payload is a `LogRecord`. A segment is named by the seq of its
//! first record (`00000000000000000042.wal`). Appending only copies the
//! record into a buffer (it is called with an object locked); the writer
//! thread writes the buffer out, fsyncs as the policy says, and publishes
//! how far the log is safe, which is what replies wait for.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use procshare_proto::{self as pb, fields};
use prost::Message;
use tokio::sync::oneshot;

use super::{FsyncPolicy, PersistError};

const FRAME_HEADER: usize = 8;
/// `LogRecord.seq` in `proto/procshare.proto`.
const SEQ_FIELD: u32 = 1;
/// The writer keeps the buffer it wrote for the next appends, up to this
/// size (a burst of large records should not pin its peak for good).
const KEPT_BUFFER: usize = 4 << 20;
/// A record larger than this is corruption, not data.
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// How far the log is safe (per the fsync policy), or why it stopped.
/// How far the writer got, and the calls waiting for it, by the seq they
/// wait for. Each is woken once, when its own record is safe: a watch
/// channel woke every waiting call at every write, which under 64 clients
/// cost more than the writes themselves.
struct Progress {
    logged: u64,
    failed: Option<Arc<str>>,
    /// By seq, lowest first. Calls register in about the order their
    /// records were appended, so a new one goes at or near the back and the
    /// writer wakes them from the front (a map of lists cost two
    /// allocations per durable write).
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Progress {
    fn new(logged: u64) -> Self {
        Progress {
            logged,
            failed: None,
            waiting: VecDeque::new(),
        }
    }

    /// A receiver that hears when record `seq` is safe (or the log failed).
    fn wait_for(&mut self, seq: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let at = self
            .waiting
            .iter()
            .rposition(|&(s, _)| s <= seq)
            .map_or(0, |i| i + 1);
        self.waiting.insert(at, (seq, tx));
        rx
    }

    /// Wakes the calls whose records are now safe, or all of them on failure.
    fn wake(&mut self) {
        let all = self.failed.is_some();
        while let Some((seq, _)) = self.waiting.front() {
            if !all && *seq > self.logged {
                break;
            }
            if let Some((_, tx)) = self.waiting.pop_front() {
                let _ = tx.send(());
            }
        }
    }
}

struct Pending {
    bytes: Vec<u8>,
    /// The seq of the last record in `bytes`.
    last: u64,
    rotate: Option<oneshot::Sender<std::io::Result<u64>>>,
    shutdown: bool,
}

pub struct Wal {
    dir: PathBuf,
    pending: Mutex<Pending>,
    wake: Condvar,
    next_seq: AtomicU64,
    progress: Mutex<Progress>,
    /// Bytes in the log files now.
    size: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Segments in `dir`, oldest first, by their first seq.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one segment's records one at a time (so that replaying a long log
/// holds one decoded record, not all of them), stopping at the first torn or
/// damaged one.
pub struct SegmentReader {
    bytes: Vec<u8>,
    at: usize,
    damage: Option<String>,
}

impl SegmentReader {
    pub fn open(path: &Path) -> std::io::Result<SegmentReader> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        Ok(SegmentReader {
            bytes,
            at: 0,
            damage: None,
        })
    }

    /// The next good record; `None` at the end or at damage (see
    /// [`SegmentReader::damage`]).
    pub fn next_record(&mut self) -> Option<pb::LogRecord> {
        if self.damage.is_some() || self.at == self.bytes.len() {
            return None;
        }
        let (bytes, at) = (&self.bytes, self.at);
        let why = 'bad: {
            if bytes.len() - at < FRAME_HEADER {
                break 'bad format!("a torn record header at byte {at}");
            }
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            if len > MAX_RECORD || bytes.len() - at - FRAME_HEADER < len {
                break 'bad format!("a torn record of {len} bytes at byte {at}");
            }
            let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
            if crc32fast::hash(payload) != crc {
                break 'bad format!("a checksum mismatch at byte {at}");
            }
            match pb::LogRecord::decode(payload) {
                Ok(r) => {
                    self.at += FRAME_HEADER + len;
                    return Some(r);
                }
                Err(e) => format!("an undecodable record at byte {at}: {e}"),
            }
        };
        self.damage = Some(format!(
            "{why} ({} bytes dropped)",
            self.bytes.len() - self.at
        ));
        None
    }

    /// Where the good records end.
    pub fn good_len(&self) -> u64 {
        self.at as u64
    }

    /// Why reading stopped before the end, if it did.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Starts a log whose next record gets `next_seq`, in a new segment, with
    /// its writer thread.
    pub fn start(
        dir: &Path,
        next_seq: u64,
        policy: FsyncPolicy,
        size: u64,
    ) -> Result<Arc<Wal>, PersistError> {
        let path = segment_path(dir, next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PersistError::io(&path, e))?;
        fsync_dir(dir).map_err(|e| PersistError::io(dir, e))?;
        let wal = Arc::new(Wal {
            dir: dir.to_owned(),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                last: next_seq.saturating_sub(1),
                rotate: None,
                shutdown: false,
            }),
            wake: Condvar::new(),
            next_seq: AtomicU64::new(next_seq),
            progress: Mutex::new(Progress::new(next_seq.saturating_sub(1))),
            size: AtomicU64::new(size),
            writer: Mutex::new(None),
        });
        let writer = wal.clone();
        let handle = std::thread::Builder::new()
            .name("procshare-wal".into())
            .spawn(move || writer.write_loop(file, policy))
            .map_err(|e| PersistError::io(dir, e))?;
        *wal.writer.lock() = Some(handle);
        Ok(wal)
    }

    /// Appends a record; see [`crate::store::journal::Sink::append`].
    pub fn append(&self, body: &[u8]) -> u64 {
        let mut p = self.pending.lock();
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        // A LogRecord is its seq field followed by the rest: protobuf
        // fields may come in any order. Framed in place, in the buffer the
        // writer hands back (no payload built first, no buffer regrown).
        let out = &mut p.bytes;
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        fields::put_u64(SEQ_FIELD, seq, out);
        out.extend_from_slice(body);
        let payload = &out[start + FRAME_HEADER..];
        let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
        p.last = seq;
        drop(p);
        self.wake.notify_one();
        seq
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Waits until record `seq` is safe per the policy.
    pub async fn wait_logged(&self, seq: u64) -> Result<(), Arc<str>> {
        let rx = {
            let mut p = self.progress.lock();
            if p.logged >= seq {
                return Ok(());
            }
            if let Some(e) = &p.failed {
                return Err(e.clone());
            }
            p.wait_for(seq)
        };
        // Woken when the record is safe, or the log failed (then dropped
        // unsent, or sent after `failed` was set).
        let _ = rx.await;
        let p = self.progress.lock();
        match &p.failed {
            _ if p.logged >= seq => Ok(()),
            Some(e) => Err(e.clone()),
            None => Err(Arc::from("the log writer stopped")),
        }
    }

    /// Ends the current segment (everything appended so far goes to it) and
    /// starts a new one; returns the first seq of the new segment.
    pub async fn rotate(&self) -> Result<u64, PersistError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().rotate = Some(tx);
        self.wake.notify_one();
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(PersistError::io(&self.dir, e)),
            Err(_) => Err(PersistError::Stopped),
        }
    }

    /// Deletes the segments that start before `seq` (a snapshot covers them).
    pub fn drop_before(&self, seq: u64) -> Result<(), PersistError> {
        let segs = segments(&self.dir).map_err(|e| PersistError::io(&self.dir, e))?;
        for (first, path) in segs {
            if first < seq {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&path).map_err(|e| PersistError::io(&path, e))?;
                self.size.fetch_sub(len.min(self.size()), Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Writes out what is pending, fsyncs, and stops the writer; waits for
    /// it to finish.
    pub fn shutdown(&self) {
        self.pending.lock().shutdown = true;
        self.wake.notify_one();
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }

    fn fail(&self, what: String) {
        tracing::error!("write-ahead log: {what}");
        let mut p = self.progress.lock();
        p.failed = Some(what.into());
        p.wake();
    }

    fn write_loop(&self, mut file: File, policy: FsyncPolicy) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut bytes = Vec::new();
        loop {
            if bytes.capacity() > KEPT_BUFFER {
                bytes = Vec::new();
            }
            bytes.clear();
            let (last, rotate, shutdown) = {
                let mut p = self.pending.lock();
                while p.bytes.is_empty() && p.rotate.is_none() && !p.shutdown {
                    let tick = match policy {
                        FsyncPolicy::EverySecond if unsynced => Duration::from_millis(200),
                        _ => Duration::from_secs(3600),
                    };
                    if self.wake.wait_for(&mut p, tick).timed_out() && unsynced {
                        break;
                    }
                }
                std::mem::swap(&mut p.bytes, &mut bytes);
                (p.last, p.rotate.take(), p.shutdown)
            };
            if !bytes.is_empty() {
                if let Err(e) = file.write_all(&bytes) {
                    self.fail(format!("cannot write: {e}"));
                    return;
                }
                self.size.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                unsynced = true;
            }
            let sync_now = match policy {
                FsyncPolicy::Always => unsynced,
                FsyncPolicy::EverySecond => {
                    unsynced
                        && (last_sync.elapsed() >= Duration::from_secs(1)
                            || rotate.is_some()
                            || shutdown)
                }
                FsyncPolicy::Never => unsynced && (rotate.is_some() || shutdown),
            };
            if sync_now {
                if let Err(e) = file.sync_data() {
                    self.fail(format!("cannot fsync: {e}"));
                    return;
                }
                last_sync = Instant::now();
                unsynced = false;
            }
            if !bytes.is_empty() {
                let mut p = self.progress.lock();
                p.logged = p.logged.max(last);
                p.wake();
            }
            if let Some(done) = rotate {
                let first = last + 1;
                let path = segment_path(&self.dir, first);
                let opened = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|f| fsync_dir(&self.dir).map(|()| f));
                match opened {
                    Ok(f) => {
                        file = f;
                        let _ = done.send(Ok(first));
                    }
                    Err(e) => {
                        let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        self.fail(format!("cannot start segment {}: {e}", path.display()));
                        return;
                    }
                }
            }
            if shutdown {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calls_whose_records_are_safe_are_woken() {
        let mut p = Progress::new(0);
        // Out of order, as tasks on two threads may register.
        let mut rx = [2, 1, 3, 2].map(|seq| p.wait_for(seq));
        let order: Vec<u64> = p.waiting.iter().map(|w| w.0).collect();
        assert_eq!(order, [1, 2, 2, 3]);
        p.logged = 2;
        p.wake();
        let woken = rx
            .iter_mut()
            .map(|r| r.try_recv().is_ok())
            .collect::<Vec<_>>();
        assert_eq!(woken, [true, true, false, true]);
        assert_eq!(p.waiting.iter().map(|w| w.0).collect::<Vec<_>>(), [3]);
        p.failed = Some("disk gone".into());
        p.wake();
        assert!(rx[2].try_recv().is_ok(), "a failure wakes everyone");
        assert!(p.waiting.is_empty());
    }
}
