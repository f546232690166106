//! [`Error`], the one error type of the client.

use procshare_proto::ErrorKind;
use tonic::{Code, Status};

/// Why a call failed. Every variant carries the server's (or the client's)
/// message, which names the object involved.
///
/// ```
/// # async fn demo(m: procshare::Manager) -> procshare::Result<()> {
/// let lock = m.lock("printer").await?;
/// match lock.acquire_timeout(std::time::Duration::from_millis(50)).await {
///     Ok(token) => println!("got it, token {token}"),
///     Err(procshare::Error::Timeout(msg)) => println!("busy: {msg}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// No such object, key or item.
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is taken by an object of another kind.
    #[error("wrong kind: {0}")]
    WrongKind(String),
    /// The request was malformed or a value had the wrong type.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An index outside a list or array.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Released something this client does not hold.
    #[error("not owner: {0}")]
    NotOwner(String),
    /// A wait or the call's deadline ran out.
    #[error("timeout: {0}")]
    Timeout(String),
    /// A non-blocking get found nothing.
    #[error("empty: {0}")]
    Empty(String),
    /// A non-blocking put found no room.
    #[error("full: {0}")]
    Full(String),
    /// A barrier was broken by a timeout, an abort or a reset.
    #[error("broken barrier: {0}")]
    BrokenBarrier(String),
    /// A server limit was hit.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// Missing or wrong credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The credentials do not allow the call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The server cannot be reached or is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The server does not support the call.
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// A value could not be converted to or from the requested Rust type.
    #[error("serialization: {0}")]
    Serde(String),
    /// The server answered something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// This client's session ended (its lease ran out, or the server
    /// restarted): the locks and permits it held were given back.
    #[error("session expired: {0}")]
    SessionExpired(String),
    /// A call was retried after its connection broke; the server had
    /// applied it the first time, but its answer was too large to keep for
    /// the retry (`procshared --session-answer-bytes`). It was not applied
    /// again: what it returned (a queue's item, a popped value) is gone.
    #[error("answer lost: {0}")]
    AnswerLost(String),
    /// A bug on the server side.
    #[error("internal: {0}")]
    Internal(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn from_kind(kind: ErrorKind, message: String) -> Error {
        match kind {
            ErrorKind::NotFound => Error::NotFound(message),
            ErrorKind::WrongKind => Error::WrongKind(message),
            ErrorKind::InvalidArgument => Error::InvalidArgument(message),
            ErrorKind::OutOfRange => Error::OutOfRange(message),
            ErrorKind::NotOwner => Error::NotOwner(message),
            ErrorKind::Timeout => Error::Timeout(message),
            ErrorKind::Empty => Error::Empty(message),
            ErrorKind::Full => Error::Full(message),
            ErrorKind::BrokenBarrier => Error::BrokenBarrier(message),
            ErrorKind::ResourceExhausted => Error::ResourceExhausted(message),
            ErrorKind::Unimplemented => Error::Unimplemented(message),
            ErrorKind::Unavailable => Error::Unavailable(message),
            ErrorKind::SessionExpired => Error::SessionExpired(message),
            ErrorKind::AnswerLost => Error::AnswerLost(message),
            ErrorKind::Internal | ErrorKind::Unspecified => Error::Internal(message),
        }
    }

    /// Is this a timeout (of a wait or of the call)?
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        let message = status.message().to_owned();
        let kind = status
            .metadata()
            .get("procshare-error")
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorKind::from_str_name);
        if let Some(kind) = kind {
            return Error::from_kind(kind, message);
        }
        match status.code() {
            Code::NotFound => Error::NotFound(message),
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::OutOfRange => Error::OutOfRange(message),
            Code::DeadlineExceeded => Error::Timeout(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::Unauthenticated => Error::Unauthenticated(message),
            Code::PermissionDenied => Error::PermissionDenied(message),
            Code::Unavailable | Code::Cancelled => Error::Unavailable(message),
            // tonic reports a connection lost mid-call as UNKNOWN.
            Code::Unknown if message.contains("transport") || message.contains("connection") => {
                Error::Unavailable(message)
            }
            Code::Unimplemented => Error::Unimplemented(message),
            Code::DataLoss => Error::AnswerLost(message),
            _ => Error::Internal(format!("{:?}: {message}", status.code())),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Serde(e.to_string())
    }
}
