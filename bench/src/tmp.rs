//! Fresh temporary directories (data dirs, the Unix socket), removed when
//! dropped, and the size of a directory on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

pub struct TempDir(PathBuf);

impl TempDir {
    /// `parent/procshare-bench-PID-N-label`, created empty.
    pub fn new(parent: &Path, label: &str) -> Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(
            "procshare-bench-{}-{n}-{label}",
            std::process::id()
        ));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "procshare-bench: warning: cannot remove {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Bytes of the files under `dir` (their lengths).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
