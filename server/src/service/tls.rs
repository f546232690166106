//! TLS with rustls: the server's certificate and key, and optionally the CA
//! whose certificates clients must present (mTLS). The PEM files are read
//! and checked when the server starts, so that a wrong path or a file of the
//! wrong kind is a one-line error then, not a failed handshake later.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { what: &'static str, path: String },
    #[error("{what} {path} is not valid PEM: {reason}")]
    BadPem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the TLS key {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
}

/// The PEM contents of the TLS files, checked. `Debug` leaves the key out.
#[derive(Clone)]
pub struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    cert_path: PathBuf,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert_path)
            .field("key", &"<redacted>")
            .field("mtls", &self.client_ca.is_some())
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.display().to_string(),
        error,
    })
}

/// Checks that `pem` holds at least one certificate and nothing malformed.
fn check_certs(what: &'static str, path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| TlsError::BadPem {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(TlsError::NoCertificate {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(())
}

impl TlsFiles {
    /// Reads and checks the server's certificate chain and key, and the
    /// client CA when mTLS is wanted.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsFiles, TlsError> {
        let cert_pem = read("the TLS certificate", cert)?;
        check_certs("the TLS certificate", cert, &cert_pem)?;
        let key_pem = read("the TLS key", key)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
            path: key.display().to_string(),
        })?;
        let ca_pem = match client_ca {
            Some(ca) => {
                let pem = read("the client CA", ca)?;
                check_certs("the client CA", ca, &pem)?;
                Some(pem)
            }
            None => None,
        };
        Ok(TlsFiles {
            cert: cert_pem,
            key: key_pem,
            client_ca: ca_pem,
            cert_path: cert.to_path_buf(),
        })
    }

    /// Does the server require client certificates?
    pub fn mtls(&self) -> bool {
        self.client_ca.is_some()
    }

    /// The tonic configuration. With a client CA, a client must present a
    /// certificate signed by it; the handshake fails otherwise.
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        match &self.client_ca {
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false),
            None => config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("procshare-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    #[test]
    fn missing_and_wrong_files_are_named() {
        let nowhere = Path::new("/nonexistent/cert.pem");
        let e = TlsFiles::load(nowhere, nowhere, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
        let junk = temp("junk.pem", "not a pem file\n");
        let e = TlsFiles::load(&junk, &junk, None).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    }
}
