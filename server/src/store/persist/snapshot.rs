//! The snapshot file: `PSNAP1\n | crc32(body): u32 LE | body`, where the body
//! is a `SnapshotFile`. Written to a temporary file, fsynced, then renamed
//! over the old one, so a crash leaves either the old snapshot or the new.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use procshare_proto as pb;
use prost::Message;

use super::PersistError;

const MAGIC: &[u8] = b"PSNAP1\n";

pub fn path(dir: &Path) -> PathBuf {
    dir.join("snapshot")
}

pub fn write(dir: &Path, snap: &pb::SnapshotFile) -> Result<u64, PersistError> {
    let body = snap.encode_to_vec();
    let tmp = dir.join("snapshot.tmp");
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let mut f = File::create(&tmp).map_err(|e| PersistError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| PersistError::io(&tmp, e))?;
    f.sync_all().map_err(|e| PersistError::io(&tmp, e))?;
    let target = path(dir);
    std::fs::rename(&tmp, &target).map_err(|e| PersistError::io(&target, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PersistError::io(dir, e))?;
    Ok(bytes.len() as u64)
}

/// The snapshot in `dir`, if there is one. A damaged one is an error: better
/// to refuse to start than to start with half the data.
pub fn read(dir: &Path) -> Result<Option<pb::SnapshotFile>, PersistError> {
    let p = path(dir);
    let mut bytes = Vec::new();
    match File::open(&p) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| PersistError::io(&p, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PersistError::io(&p, e)),
    };
    let corrupt = |why: &str| PersistError::Corrupt(format!("snapshot {}: {why}", p.display()));
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt("not a procshare snapshot"))?;
    if rest.len() < 4 {
        return Err(corrupt("truncated"));
    }
    let (crc, body) = rest.split_at(4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt("checksum mismatch"));
    }
    pb::SnapshotFile::decode(body)
        .map(Some)
        .map_err(|e| corrupt(&format!("undecodable: {e}")))
}
