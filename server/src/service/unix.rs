//! The Unix domain socket: same-host clients skip TCP and TLS. Its file is
//! created with the requested mode (0600 by default: only the daemon's user
//! may connect) and removed when the server stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The default mode of the socket file: the owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// A bound Unix socket; its file is removed on drop.
#[derive(Debug)]
pub struct UnixSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl UnixSocket {
    /// Binds `path` with file mode `mode`. A stale socket file (one nobody
    /// listens on) is replaced; a live one, or any other kind of file, is an
    /// error.
    pub fn bind(path: &Path, mode: u32) -> io::Result<UnixSocket> {
        let shown = path.display();
        if mode & !0o777 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unix socket mode {mode:o} is not a permission mode (0000 to 0777)"),
            ));
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another process is listening on {shown}"),
                    ));
                }
                std::fs::remove_file(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot remove the stale socket {shown}: {e}"),
                    )
                })?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{shown} exists and is not a socket; refusing to replace it"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot inspect {shown}: {e}"),
                ))
            }
        }
        // Bind under a umask that lets nobody else in, so there is no moment
        // when the socket is open to others; then set the mode asked for.
        // SAFETY: umask only swaps the process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let listener = bound
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {shown}: {e}")))?;
        let socket = UnixSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot set the mode of {shown}: {e}"))
        })?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, once; the file stays until `self` is dropped.
    pub(crate) fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "procshare-unix-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn mode_stale_files_and_cleanup() {
        let d = dir();
        let p = d.join("s.sock");
        let s = UnixSocket::bind(&p, DEFAULT_MODE).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A live socket is not taken over.
        let e = UnixSocket::bind(&p, DEFAULT_MODE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(s);
        assert!(!p.exists(), "removed on drop");

        // A stale socket file (its listener gone without cleanup) is replaced.
        let std_listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
        drop(std_listener);
        let s = UnixSocket::bind(&p, 0o660).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(s);

        // A regular file is never removed.
        let f = d.join("file");
        std::fs::write(&f, "keep me").unwrap();
        let e = UnixSocket::bind(&f, DEFAULT_MODE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep me");
        let e = UnixSocket::bind(&d.join("x"), 0o1777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
