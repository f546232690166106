//! The write-ahead log: segment files of checksummed records.
//!
//! A record is framed as `len: u32 LE | crc32(payload): u32 LE | payload`,
//! where the payload is a `LogRecord`. A segment is named by the seq of its
//! first record (`00000000000000000042.wal`). Appending only copies the
//! record into a buffer (it is called with an object locked). Then the
//! call waits until its record is safe, which depends on the policy:
//! - `always`: safe once fsynced. A writer thread writes the buffer out,
//!   fsyncs, and wakes the calls whose records it holds.
//! - `every-second` and `never`: safe once the OS has it (a crash of the
//!   process loses nothing; the writer thread fsyncs once a second, or
//!   never). The call writes the buffer out itself, everything pending with
//!   its own record, so calls that come together share one `write`, as
//!   Redis writes its append-only file from its own loop. Handing each
//!   record to the writer thread cost two thread wake-ups and a task per
//!   durable write.
//!
//! Whoever writes holds [`Wal::out`] while taking the buffer and writing
//! it, so records reach the file in seq order, and publishes how far the
//! log is safe before letting go.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Where a rotation's first seq (or its failure) goes.
type Rotation = oneshot::Sender<std::io::Result<u64>>;

struct Pending {
    bytes: Vec<u8>,
    /// The seq of the last record appended (in `bytes`, or written).
    last: u64,
    rotate: Option<Rotation>,
    shutdown: bool,
}

pub struct Wal {
    dir: PathBuf,
    policy: FsyncPolicy,
    pending: Mutex<Pending>,
    /// Wakes the writer thread: for every append (`always`), for a first
    /// write since the last fsync (`every-second`), for a rotation or the
    /// shutdown. Notified with `pending` held (see [`Wal::note_unsynced`]).
    wake: Condvar,
    next_seq: AtomicU64,
    progress: Mutex<Progress>,
    /// The open segment, held by whoever writes to it.
    out: Mutex<Out>,
    /// Written since the last fsync began.
    unsynced: AtomicBool,
    /// Set once the log has failed (`Progress::failed` says why), read
    /// before every durable change.
    broken: AtomicBool,
    /// Bytes in the log files now.
    size: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Times the writer thread went to wait with nothing to do.
    #[cfg(test)]
    idle_waits: AtomicU64,
}

struct Out {
    /// Shared so that the writer thread can fsync it while others write.
    file: Arc<File>,
    /// The bytes last written; swapped with the pending buffer at the next
    /// write, so that appends go into a buffer that has grown already.
    spare: Vec<u8>,
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
            policy,
            out: Mutex::new(Out {
                file: Arc::new(file),
                spare: Vec::new(),
            }),
            unsynced: AtomicBool::new(false),
            broken: AtomicBool::new(false),
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
            #[cfg(test)]
            idle_waits: AtomicU64::new(0),
        });
        let writer = wal.clone();
        let handle = std::thread::Builder::new()
            .name("procshare-wal".into())
            .spawn(move || writer.write_loop())
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
        if self.policy == FsyncPolicy::Always {
            self.wake.notify_one();
        }
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
        if self.policy != FsyncPolicy::Always {
            return self.write_through(seq);
        }
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

    /// Marks the log failed and wakes every waiting call. Called with
    /// `out` held, so that no one writes after a record that was lost.
    fn fail(&self, what: String) {
        tracing::error!("write-ahead log: {what}");
        let mut p = self.progress.lock();
        p.failed = Some(what.into());
        self.broken.store(true, Ordering::SeqCst);
        p.wake();
    }

    /// Why the log failed, if it has: nothing more can be logged.
    pub fn failure(&self) -> Option<Arc<str>> {
        if !self.broken.load(Ordering::SeqCst) {
            return None;
        }
        self.progress.lock().failed.clone()
    }

    /// Fails the log as a failed write would.
    #[cfg(test)]
    pub fn fail_for_test(&self) {
        let _out = self.out.lock();
        self.fail("cannot write: a test broke the disk".into());
    }

    /// Record `seq` is safe, or the log failed: the answer, if either.
    fn settled(&self, seq: u64) -> Option<Result<(), Arc<str>>> {
        let p = self.progress.lock();
        if p.logged >= seq {
            Some(Ok(()))
        } else {
            p.failed.as_ref().map(|e| Err(e.clone()))
        }
    }

    /// Publishes that the records up to `last` are safe.
    fn publish(&self, last: u64) {
        let mut p = self.progress.lock();
        p.logged = p.logged.max(last);
        p.wake();
    }

    /// Writes out everything pending, in one `write`; returns the seq of
    /// the last record appended so far (all of them are in the file now),
    /// and whether there was anything to write.
    fn write_out(&self, out: &mut Out) -> std::io::Result<(u64, bool)> {
        if out.spare.capacity() > KEPT_BUFFER {
            out.spare = Vec::new();
        }
        out.spare.clear();
        let last = {
            let mut p = self.pending.lock();
            std::mem::swap(&mut p.bytes, &mut out.spare);
            p.last
        };
        if out.spare.is_empty() {
            return Ok((last, false));
        }
        (&*out.file).write_all(&out.spare)?;
        self.size
            .fetch_add(out.spare.len() as u64, Ordering::Relaxed);
        Ok((last, true))
    }

    /// `every-second` and `never`: writes record `seq` out (with whatever
    /// else is pending) unless the call before did; safe once written.
    fn write_through(&self, seq: u64) -> Result<(), Arc<str>> {
        if let Some(done) = self.settled(seq) {
            return done;
        }
        let mut out = self.out.lock();
        if let Some(done) = self.settled(seq) {
            return done;
        }
        match self.write_out(&mut out) {
            Ok((last, wrote)) => {
                if wrote {
                    self.note_unsynced();
                }
                self.publish(last);
            }
            Err(e) => self.fail(format!("cannot write: {e}")),
        }
        drop(out);
        self.settled(seq)
            .unwrap_or_else(|| Err(Arc::from("the log writer lost a record")))
    }

    /// Tells the writer thread, on the first write since the last fsync,
    /// that one will be due. The flag is read with `pending` held, so it is
    /// notified with `pending` held: a notification between its check and
    /// its wait would be lost, and the fsync with it.
    fn note_unsynced(&self) {
        if !self.unsynced.swap(true, Ordering::SeqCst) && self.policy == FsyncPolicy::EverySecond {
            let _p = self.pending.lock();
            self.wake.notify_one();
        }
    }

    /// Waits for the writer thread's next work: a rotation, the shutdown,
    /// records to write (`always`), or an fsync that is due
    /// (`every-second`). Returns the rotation asked for, and whether to
    /// stop.
    fn next_work(&self, last_sync: Instant) -> (Option<Rotation>, bool) {
        let mut p = self.pending.lock();
        loop {
            if p.rotate.is_some() || p.shutdown {
                break;
            }
            let tick = match self.policy {
                FsyncPolicy::Always if !p.bytes.is_empty() => break,
                FsyncPolicy::EverySecond if self.unsynced.load(Ordering::SeqCst) => {
                    let left = Duration::from_secs(1).saturating_sub(last_sync.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    left
                }
                _ => {
                    #[cfg(test)]
                    self.idle_waits.fetch_add(1, Ordering::SeqCst);
                    Duration::from_secs(3600)
                }
            };
            self.wake.wait_for(&mut p, tick);
        }
        (p.rotate.take(), p.shutdown)
    }

    /// The writer thread: writes and fsyncs for `always`; fsyncs once a
    /// second for `every-second`; rotates segments and shuts down for all.
    fn write_loop(&self) {
        let mut last_sync = Instant::now();
        loop {
            let (rotate, shutdown) = self.next_work(last_sync);
            let mut out = self.out.lock();
            if self.failure().is_some() {
                // A call's write failed: what is pending must not follow
                // the record that was lost.
                return;
            }
            let (last, wrote) = match self.write_out(&mut out) {
                Ok(w) => w,
                Err(e) => return self.fail(format!("cannot write: {e}")),
            };
            if wrote {
                self.unsynced.store(true, Ordering::SeqCst);
            }
            let ending = rotate.is_some() || shutdown;
            if self.policy != FsyncPolicy::Always {
                // Safe once written (the calls themselves write; these were
                // appended by calls on their way to it).
                self.publish(last);
                if !ending {
                    // The fsync due once a second, with `out` let go: the
                    // others go on writing meanwhile (what they write after
                    // it began is flagged for the next one).
                    let file = out.file.clone();
                    drop(out);
                    self.unsynced.store(false, Ordering::SeqCst);
                    if let Err(e) = file.sync_data() {
                        let _out = self.out.lock();
                        return self.fail(format!("cannot fsync: {e}"));
                    }
                    last_sync = Instant::now();
                    continue;
                }
            }
            // `always` after every write; the others at a rotation or the
            // shutdown, with `out` held: nothing is written to a segment
            // after its last fsync.
            if self.unsynced.swap(false, Ordering::SeqCst) {
                if let Err(e) = out.file.sync_data() {
                    return self.fail(format!("cannot fsync: {e}"));
                }
                last_sync = Instant::now();
            }
            if self.policy == FsyncPolicy::Always {
                self.publish(last);
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
                        out.file = Arc::new(f);
                        let _ = done.send(Ok(first));
                    }
                    Err(e) => {
                        let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        return self.fail(format!("cannot start segment {}: {e}", path.display()));
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
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// A fresh directory for one test's log.
    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("procshare-wal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A log record body (a `LogRecord` without its seq) from client `name`.
    fn body(name: &str) -> Vec<u8> {
        pb::LogRecord {
            client_id: name.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The seqs and names of the records in `dir`'s one segment.
    fn records(dir: &Path) -> Vec<(u64, String)> {
        let segs = segments(dir).unwrap();
        assert_eq!(segs.len(), 1);
        let mut r = SegmentReader::open(&segs[0].1).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record() {
            out.push((rec.seq, rec.client_id));
        }
        assert!(r.damage().is_none(), "{:?}", r.damage());
        out
    }

    fn poll_once(wal: &Wal, seq: u64) -> Poll<Result<(), Arc<str>>> {
        let f = std::pin::pin!(wal.wait_logged(seq));
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn every_second_a_write_is_in_the_file_when_its_wait_returns_at_once() {
        let d = dir("inline");
        let wal = Wal::start(&d, 1, FsyncPolicy::EverySecond, 0).unwrap();
        // The writer thread waits with nothing to do (counted with
        // `pending` held, which it lets go of only by waiting): from now
        // on only a notification makes it fsync.
        let deadline = Instant::now() + Duration::from_secs(30);
        while wal.idle_waits.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the writer thread never waited");
            std::thread::yield_now();
        }
        for i in 1..=3 {
            let seq = wal.append(&body(&format!("r{i}")));
            assert_eq!(seq, i);
            // Written by the waiting call itself, in its first poll.
            assert!(matches!(poll_once(&wal, seq), Poll::Ready(Ok(()))));
            assert_eq!(records(&d).len() as u64, i, "in the file before the answer");
        }
        // The writer thread fsyncs within about a second of a write (a
        // lost notification would leave it waiting an hour).
        while wal.unsynced.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "no fsync after a write");
            std::thread::yield_now();
        }
        wal.shutdown();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn always_a_write_is_in_the_file_when_the_writer_thread_answers_it() {
        let d = dir("always");
        let wal = Wal::start(&d, 1, FsyncPolicy::Always, 0).unwrap();
        let seq = wal.append(&body("r1"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(wal.wait_logged(seq)).unwrap();
        assert_eq!(records(&d), [(1, "r1".to_owned())]);
        wal.shutdown();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_write_fails_its_call_and_nothing_is_written_after_it() {
        let d = dir("fail");
        let wal = Wal::start(&d, 1, FsyncPolicy::EverySecond, 0).unwrap();
        let kept = wal.append(&body("kept"));
        assert!(matches!(poll_once(&wal, kept), Poll::Ready(Ok(()))));
        // The segment cannot be written any more (a read-only handle).
        let seg = segments(&d).unwrap()[0].1.clone();
        wal.out.lock().file = Arc::new(File::open(&seg).unwrap());
        let lost = wal.append(&body("lost"));
        let Poll::Ready(Err(e)) = poll_once(&wal, lost) else {
            panic!("a failed write was answered")
        };
        assert!(e.contains("cannot write"), "{e}");
        // Writable again, the log stays failed: the next call is refused
        // and its record is never written, not by it, not at the shutdown.
        wal.out.lock().file = Arc::new(OpenOptions::new().append(true).open(&seg).unwrap());
        let later = wal.append(&body("later"));
        assert!(matches!(poll_once(&wal, later), Poll::Ready(Err(_))));
        wal.shutdown();
        assert_eq!(records(&d), [(1, "kept".to_owned())]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn calls_writing_at_once_leave_every_record_once_in_seq_order() {
        let d = dir("order");
        let wal = Wal::start(&d, 1, FsyncPolicy::EverySecond, 0).unwrap();
        let (threads, each) = (4, 500);
        std::thread::scope(|s| {
            for t in 0..threads {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..each {
                        let seq = wal.append(&body(&format!("t{t}-{i}")));
                        assert!(matches!(poll_once(wal, seq), Poll::Ready(Ok(()))));
                    }
                });
            }
        });
        wal.shutdown();
        let got = records(&d);
        let seqs: Vec<u64> = got.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (1..=threads * each).collect::<Vec<u64>>());
        for t in 0..threads {
            // Each thread's records in its own order.
            let mine: Vec<&str> = got
                .iter()
                .map(|r| r.1.as_str())
                .filter(|n| n.starts_with(&format!("t{t}-")))
                .collect();
            let want: Vec<String> = (0..each).map(|i| format!("t{t}-{i}")).collect();
            assert_eq!(mine, want);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

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
