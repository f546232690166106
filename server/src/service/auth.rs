//! The shared token: procshare's `authkey`. A client proves it knows the
//! token by sending `authorization: Bearer <token>` with every call; a call
//! without it, or with another token, is refused with UNAUTHENTICATED before
//! the service sees it.
//!
//! The token never appears in a log line or a `Debug` output, and it is
//! compared in constant time so that response times say nothing about how
//! much of a guess was right.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use subtle::{Choice, ConstantTimeEq};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata entry that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// Longest token accepted, in bytes: it travels in an HTTP/2 header.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a token could not be loaded. Never contains the token itself.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{origin} is empty; a token needs at least one character")]
    Empty { origin: String },
    #[error("{origin} is {len} bytes long; the limit is {MAX_TOKEN_LEN}")]
    TooLong { origin: String, len: usize },
    #[error(
        "{origin} holds a character that cannot travel in a header: a token is printable ASCII \
         without spaces (e.g. the output of `openssl rand -hex 32`)"
    )]
    BadCharacter { origin: String },
}

/// A shared secret. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from text; `origin` names where it came from, for errors.
    /// Surrounding whitespace (a file's final newline) is dropped.
    pub fn new(text: &str, origin: &str) -> Result<Token, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty {
                origin: origin.to_owned(),
            });
        }
        if t.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                origin: origin.to_owned(),
                len: t.len(),
            });
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadCharacter {
                origin: origin.to_owned(),
            });
        }
        Ok(Token(t.into()))
    }

    /// Reads the token from a file (its first and only line).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Token::new(&text, &format!("the token file {}", path.display()))
    }

    /// Does `presented` equal the token? The time taken depends only on the
    /// token's length, never on where the first difference is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        let mut same: Choice = secret.len().ct_eq(&presented.len());
        for (i, s) in secret.iter().enumerate() {
            let p = presented.get(i).copied().unwrap_or(0);
            same &= s.ct_eq(&p);
        }
        same.into()
    }
}

/// The interceptor in front of every service but the health check: checks
/// the token when the server has one, lets everything through otherwise.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    token: Option<Token>,
}

impl Auth {
    pub fn new(token: Option<Token>) -> Auth {
        Auth { token }
    }

    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.token.is_none() {
            return Ok(());
        }
        let value = request.metadata().get(AUTHORIZATION).map(|v| v.as_bytes());
        self.check_header(value, || {
            request
                .remote_addr()
                .map_or_else(|| "a local client".to_owned(), |a| a.to_string())
        })
    }

    /// Checks the value of a call's `authorization` header (`None`: it has
    /// none); `peer` names the caller in the log line of a refusal.
    pub(super) fn check_header(
        &self,
        value: Option<&[u8]>,
        peer: impl FnOnce() -> String,
    ) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let Some(presented) = value else {
            tracing::warn!(peer = %peer(), "refused a call without a token");
            return Err(Status::unauthenticated(
                "this server requires a token: set PROCSHARE_TOKEN, or pass it to the client \
                 (ManagerBuilder::token, procshare --token)",
            ));
        };
        let presented = strip_bearer(presented).unwrap_or(presented);
        if token.matches(presented) {
            Ok(())
        } else {
            tracing::warn!(peer = %peer(), "refused a call with a wrong token");
            Err(Status::unauthenticated("wrong token"))
        }
    }
}

/// `Bearer <token>` → `<token>` (the scheme name is case-insensitive).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() >= SCHEME.len() && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        Some(value[SCHEME.len()..].trim_ascii_start())
    } else {
        None
    }
}

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn token(t: &str) -> Token {
        Token::new(t, "test").unwrap()
    }

    #[test]
    fn matches_only_the_same_bytes() {
        let t = token("s3cret-token");
        assert!(t.matches(b"s3cret-token"));
        assert!(!t.matches(b"s3cret-tokem"));
        assert!(!t.matches(b"s3cret-token!"));
        assert!(!t.matches(b"s3cret-toke"));
        assert!(!t.matches(b""));
        assert!(!t.matches(b"S3CRET-TOKEN"));
    }

    #[test]
    fn a_file_newline_is_not_part_of_the_token() {
        assert!(token("abc\n").matches(b"abc"));
        assert!(token("  abc\r\n").matches(b"abc"));
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        assert!(matches!(
            Token::new(" \n", "x"),
            Err(TokenError::Empty { .. })
        ));
        let e = Token::new("has space", "x").unwrap_err();
        assert!(matches!(e, TokenError::BadCharacter { .. }));
        assert!(!e.to_string().contains("has space"));
        assert!(matches!(
            Token::new("é", "x"),
            Err(TokenError::BadCharacter { .. })
        ));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            Token::new(&long, "x"),
            Err(TokenError::TooLong { .. })
        ));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = token("hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::new(Some(t))).contains("hunter2"));
    }

    fn with_auth(value: Option<&'static str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(v) = value {
            r.metadata_mut()
                .insert(AUTHORIZATION, MetadataValue::from_static(v));
        }
        r
    }

    #[test]
    fn the_interceptor_checks_the_bearer_token() {
        let mut auth = Auth::new(Some(token("k")));
        assert!(auth.call(with_auth(Some("Bearer k"))).is_ok());
        assert!(auth.call(with_auth(Some("bearer k"))).is_ok());
        let missing = auth.call(with_auth(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        let wrong = auth.call(with_auth(Some("Bearer x"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert_eq!(wrong.message(), "wrong token");
        // Without a token configured, everything passes.
        assert!(Auth::new(None).call(with_auth(None)).is_ok());
    }
}
