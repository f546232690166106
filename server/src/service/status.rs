//! Store errors on the wire: a gRPC status code, plus the precise
//! [`ErrorKind`] in the `procshare-error` metadata entry (several kinds share
//! a status code, e.g. WRONG_KIND and NOT_OWNER are both FAILED_PRECONDITION).

use procshare_proto::{self as pb, ErrorKind};
use tonic::{Code, Status};

use crate::store::StoreError;

/// The metadata key that carries the [`ErrorKind`] name of a failed call.
pub const ERROR_KIND_KEY: &str = "procshare-error";

pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::WrongKind | ErrorKind::NotOwner | ErrorKind::BrokenBarrier => {
            Code::FailedPrecondition
        }
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Empty | ErrorKind::Full | ErrorKind::ResourceExhausted => {
            Code::ResourceExhausted
        }
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::SessionExpired => Code::NotFound,
        ErrorKind::AnswerLost => Code::DataLoss,
        ErrorKind::Internal | ErrorKind::Unspecified => Code::Internal,
    }
}

/// A store error as a gRPC status.
pub fn to_status(err: &StoreError) -> Status {
    let kind = err.kind();
    let mut status = Status::new(code_of(kind), err.to_string());
    if let Ok(v) = kind.as_str_name().parse() {
        status.metadata_mut().insert(ERROR_KIND_KEY, v);
    }
    status
}

/// A store error inside a batch response.
/// The response carrying one operation's outcome, in a batch or on the
/// session stream (where a failure is data, not a status).
pub fn to_response(request_id: u64, outcome: Result<pb::OpResult, StoreError>) -> pb::Response {
    pb::Response {
        request_id,
        outcome: Some(match outcome {
            Ok(result) => pb::response::Outcome::Ok(result),
            Err(e) => pb::response::Outcome::Error(to_wire(&e)),
        }),
    }
}

pub fn to_wire(err: &StoreError) -> pb::Error {
    pb::Error {
        kind: err.kind() as i32,
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_travels_in_metadata() {
        let s = to_status(&StoreError::NotOwner("lock \"l\" is not held".into()));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.metadata().get(ERROR_KIND_KEY).unwrap(), "NOT_OWNER");
        assert_eq!(s.message(), "lock \"l\" is not held");
    }
}
