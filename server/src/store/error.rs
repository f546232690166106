//! The one error type of the store. It knows nothing about gRPC: the service
//! layer maps each variant to a status code.

use procshare_proto::{ErrorKind, Kind};

/// Why an operation failed. A failed operation changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No object of that name, or no such key / item.
    #[error("{0}")]
    NotFound(String),
    /// The name exists with another kind of object.
    #[error("{name:?} is a {actual}, not a {wanted}")]
    WrongKind {
        name: String,
        wanted: &'static str,
        actual: &'static str,
    },
    /// The request itself is malformed: a bad name, a missing field, a value
    /// of the wrong type for the operation.
    #[error("{0}")]
    InvalidArgument(String),
    /// An index outside the object.
    #[error("{0}")]
    OutOfRange(String),
    /// The caller released something it does not hold.
    #[error("{0}")]
    NotOwner(String),
    /// A blocking operation ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// A non-blocking (or timed-out) get found nothing.
    #[error("{0}")]
    Empty(String),
    /// A non-blocking (or timed-out) put found no room.
    #[error("{0}")]
    Full(String),
    /// A barrier was broken by a timeout, an abort, a reset or a lost waiter.
    #[error("{0}")]
    BrokenBarrier(String),
    /// Asked for something the server does not do (yet).
    #[error("{0}")]
    Unimplemented(String),
    /// The server cannot serve the call now (it is shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// The session named by the request is gone; what it held was given back.
    #[error("{0}")]
    SessionExpired(String),
    /// A server limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A retried mutation was applied the first time, but its answer was
    /// too large to keep for the retry (see `--session-answer-bytes`).
    #[error("{0}")]
    AnswerLost(String),
    /// A bug in the server, reported instead of a panic.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The wire name of this error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::WrongKind { .. } => ErrorKind::WrongKind,
            StoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            StoreError::OutOfRange(_) => ErrorKind::OutOfRange,
            StoreError::NotOwner(_) => ErrorKind::NotOwner,
            StoreError::Timeout(_) => ErrorKind::Timeout,
            StoreError::Empty(_) => ErrorKind::Empty,
            StoreError::Full(_) => ErrorKind::Full,
            StoreError::BrokenBarrier(_) => ErrorKind::BrokenBarrier,
            StoreError::Unimplemented(_) => ErrorKind::Unimplemented,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::SessionExpired(_) => ErrorKind::SessionExpired,
            StoreError::ResourceExhausted(_) => ErrorKind::ResourceExhausted,
            StoreError::AnswerLost(_) => ErrorKind::AnswerLost,
            StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn missing_field(what: &str) -> Self {
        StoreError::InvalidArgument(format!("missing field: {what}"))
    }
}

/// The lowercase name users see for a kind (`dict`, `lock`, …).
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unspecified => "unspecified",
        Kind::Dict => "dict",
        Kind::List => "list",
        Kind::Value => "value",
        Kind::Lock => "lock",
        Kind::Rlock => "rlock",
        Kind::Semaphore => "semaphore",
        Kind::BoundedSemaphore => "bounded_semaphore",
        Kind::Condition => "condition",
        Kind::Event => "event",
        Kind::Barrier => "barrier",
        Kind::Queue => "queue",
        Kind::JoinableQueue => "joinable_queue",
        Kind::Namespace => "namespace",
        Kind::Array => "array",
        Kind::Pipe => "pipe",
        Kind::Pool => "pool",
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
