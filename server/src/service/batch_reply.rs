//! Room in the reply of a plain `Batch` call.
//!
//! Each answer of a batch may be under `--max-message-bytes` while the
//! reply that carries them all is over it: tonic then refuses to send the
//! reply, and the client gets an error for a call whose mutations were
//! applied. So the answers are counted as they come. A read whose answer
//! does not fit is answered `ResourceExhausted` (it changed nothing); a
//! mutation is not applied unless there is room left for the largest
//! answer one can have (a value of `--max-value-bytes`: the old value of a
//! set, the item of a queue get), and is answered `ResourceExhausted`,
//! not applied, otherwise. The client sends what was refused again, in
//! another batch.

use procshare_proto as pb;
use prost::Message;

use super::status::to_response;
use crate::store::StoreError;

/// What carrying one answer adds to a reply, at most: the `Response`
/// around the result (its request id, the outcome's tag and length) and
/// its own tag and length in the `BatchResponse`.
pub const ENVELOPE: usize = 24;

/// The most a short error below takes in a reply, envelope included:
/// every operation of a batch gets an answer, so this much is kept for
/// each one not answered yet.
const SHORT: usize = 128;

const NO_ROOM: &str = "not applied: no room left in the batch's reply (--max-message-bytes)";
const READ_TOO_LARGE: &str = "answer too large for the batch's reply (--max-message-bytes)";
const MUTATION_TOO_LARGE: &str =
    "applied, but its answer was too large for the batch's reply (--max-message-bytes)";

/// The room left in one batch's reply.
pub struct Room {
    left: usize,
    /// Operations not answered yet.
    owed: usize,
    /// Room a mutation needs before it is applied.
    reserve: usize,
}

impl Room {
    /// The reply of `ops` operations, at most `limit` bytes, whose
    /// mutations' answers are at most `largest_value` bytes; an error if
    /// even short answers to that many operations would not fit.
    pub fn new(ops: usize, limit: usize, largest_value: usize) -> Result<Room, StoreError> {
        let most = limit / SHORT;
        if ops > most {
            return Err(StoreError::ResourceExhausted(format!(
                "a batch of {ops} operations: its reply could not carry that many answers \
                 within {limit} bytes (--max-message-bytes); send at most {most} per batch"
            )));
        }
        Ok(Room {
            left: limit,
            owed: ops,
            reserve: largest_value.saturating_add(ENVELOPE),
        })
    }

    /// Room for the next answer, the others' short answers kept aside.
    fn spare(&self) -> usize {
        self.left
            .saturating_sub(self.owed.saturating_sub(1).saturating_mul(SHORT))
    }

    /// Why the next operation, a mutation, may not be applied, if it may
    /// not: there must be room for the largest answer it can have.
    pub fn refuse_mutation(&self) -> Option<StoreError> {
        (self.spare() < self.reserve).then(|| StoreError::ResourceExhausted(NO_ROOM.into()))
    }

    /// The response to request `request_id`, the next operation, its room
    /// taken; an answer that does not fit is replaced by a short error (a
    /// read's: it changed nothing; a mutation's: it was applied).
    /// `result_size`: the encoded size of a successful result, if known.
    pub fn answer(
        &mut self,
        request_id: u64,
        mutated: bool,
        outcome: Result<pb::OpResult, StoreError>,
        result_size: Option<usize>,
    ) -> pb::Response {
        let known = result_size.filter(|_| outcome.is_ok());
        let mut response = to_response(request_id, outcome);
        let mut size = match known {
            // The result, plus the `Response` around it and its place in
            // the reply: within `ENVELOPE`.
            Some(n) => n + ENVELOPE,
            None => response.encoded_len() + ENVELOPE,
        };
        if size > self.spare() {
            let why = if mutated {
                StoreError::AnswerLost(MUTATION_TOO_LARGE.into())
            } else {
                StoreError::ResourceExhausted(READ_TOO_LARGE.into())
            };
            response = to_response(request_id, Err(why));
            size = response.encoded_len() + ENVELOPE;
            debug_assert!(size <= SHORT);
        }
        self.left = self.left.saturating_sub(size);
        self.owed = self.owed.saturating_sub(1);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procshare_proto::op_result::Kind;

    fn value(n: usize) -> Result<pb::OpResult, StoreError> {
        Ok(pb::OpResult {
            kind: Some(Kind::Value(pb::Value {
                kind: Some(pb::value::Kind::Bytes(vec![1; n])),
            })),
        })
    }

    fn size_of(n: usize) -> usize {
        value(n).map_or(0, |r| r.encoded_len())
    }

    fn is_ok(r: &pb::Response) -> bool {
        matches!(r.outcome, Some(pb::response::Outcome::Ok(_)))
    }

    fn kind(r: &pb::Response) -> i32 {
        match &r.outcome {
            Some(pb::response::Outcome::Error(e)) => e.kind,
            _ => 0,
        }
    }

    #[test]
    fn answers_are_sent_while_they_fit_and_refused_after() {
        // 6 operations: 5 × 128 bytes kept aside for the others.
        let mut room = Room::new(6, 10_000, 1_000).unwrap();
        assert!(is_ok(&room.answer(1, false, value(4_000), None)));
        assert!(is_ok(&room.answer(
            2,
            false,
            value(3_500),
            Some(size_of(3_500))
        )));
        assert!(room.refuse_mutation().is_none(), "~2,000 bytes left");
        let read = room.answer(3, false, value(4_000), None);
        assert_eq!(kind(&read), pb::ErrorKind::ResourceExhausted as i32);
        let set = room.answer(4, true, value(2_100), None);
        assert_eq!(kind(&set), pb::ErrorKind::AnswerLost as i32);
        assert!(
            is_ok(&room.answer(5, false, value(1_300), None)),
            "a smaller one still fits"
        );
        let e = room
            .refuse_mutation()
            .expect("no room for a mutation's answer");
        assert!(e.to_string().contains("--max-message-bytes"), "{e}");
        assert!(Room::new(10_000 / 128 + 1, 10_000, 1_000).is_err());
    }

    #[test]
    fn what_was_sent_stays_within_the_limit() {
        let limit = 50_000;
        let mut room = Room::new(200, limit, 2_000).unwrap();
        let mut reply = pb::BatchResponse::default();
        for i in 0..200 {
            let mutated = i % 3 == 0;
            if mutated {
                if let Some(e) = room.refuse_mutation() {
                    reply.responses.push(room.answer(i, false, Err(e), None));
                    continue;
                }
            }
            let size = if mutated {
                2_000
            } else {
                100 * (i as usize % 17)
            };
            reply
                .responses
                .push(room.answer(i, mutated, value(size), None));
        }
        assert_eq!(reply.responses.len(), 200, "every operation answered");
        assert!(reply.encoded_len() <= limit, "{}", reply.encoded_len());
        assert!(reply.responses.iter().filter(|r| is_ok(r)).count() > 20);
    }
}
