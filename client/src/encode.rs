//! A call's request, encoded once into the bytes that go on the wire.
//!
//! A call used to build a `pb::Request` (copying the object's name, the
//! client id and the task id into new strings), copy it again for every
//! attempt (the caller keeps one for a retry), measure it to choose stream
//! or unary, and have tonic encode the copy. Encoding straight from the
//! caller's borrowed parts does all of that in one pass, and a retry
//! resends the same bytes (a `Bytes` clone is a reference count).
//!
//! The bytes are exactly what prost would make of the equivalent
//! `pb::Request` (test below), so the server sees no difference. The
//! `Execute` and `Session` calls here take such bytes ([`PreEncoded`]);
//! the generated client's would take a `pb::Request`.

use procshare_proto::codec::{SliceCodec, SliceDecoder};
use procshare_proto::{self as pb, fields, op::Kind};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, WireType};
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::GrpcMethod;
use tonic::Status;

use crate::connection::Raw;

/// Field numbers of `Request` and `Op` in `proto/procshare.proto`.
mod field {
    pub const CLIENT_ID: u32 = 1;
    pub const REQUEST_ID: u32 = 2;
    pub const OP: u32 = 3;
    pub const TASK_ID: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const ANSWERED_BELOW: u32 = 6;
    pub const OP_NAME: u32 = 1;
}

/// The parts of one call's request.
pub(crate) struct Parts<'a> {
    pub client_id: &'a str,
    pub request_id: u64,
    pub answered_below: u64,
    pub name: &'a str,
    pub task_id: &'a str,
    pub op: &'a Kind,
}

impl Parts<'_> {
    fn op_len(&self) -> usize {
        fields::str_len(field::OP_NAME, self.name) + self.op.encoded_len()
    }

    /// The request's bytes.
    pub fn encode(&self) -> Bytes {
        let op_len = self.op_len();
        let len = fields::str_len(field::CLIENT_ID, self.client_id)
            + fields::u64_len(field::REQUEST_ID, self.request_id)
            + fields::message_len(field::OP, op_len)
            + fields::str_len(field::TASK_ID, self.task_id)
            + fields::u64_len(field::ANSWERED_BELOW, self.answered_below);
        let mut buf = BytesMut::with_capacity(len);
        fields::put_str(field::CLIENT_ID, self.client_id, &mut buf);
        fields::put_u64(field::REQUEST_ID, self.request_id, &mut buf);
        fields::put_message_header(field::OP, op_len, &mut buf);
        fields::put_str(field::OP_NAME, self.name, &mut buf);
        self.op.encode(&mut buf);
        fields::put_str(field::TASK_ID, self.task_id, &mut buf);
        fields::put_u64(field::ANSWERED_BELOW, self.answered_below, &mut buf);
        debug_assert_eq!(buf.len(), len);
        buf.freeze()
    }
}

/// The cancellation of the call `request_id` on the session stream.
pub(crate) fn cancel(request_id: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    fields::put_u64(field::REQUEST_ID, request_id, &mut buf);
    encode_key(field::CANCEL, WireType::Varint, &mut buf);
    encode_varint(1, &mut buf);
    buf.freeze()
}

/// The codec of calls whose requests are already encoded; their answers
/// are `D` (`Response`; `BatchResponse` for `Batch`).
#[derive(Debug)]
pub(crate) struct PreEncoded<D = pb::Response>(PhantomData<fn() -> D>);

impl<D> Default for PreEncoded<D> {
    fn default() -> Self {
        PreEncoded(PhantomData)
    }
}

impl<D: Message + Default + Send + 'static> Codec for PreEncoded<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = BytesEncoder;
    type Decoder = SliceDecoder<D>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceCodec::<pb::Request, D>::default().decoder()
    }
}

/// Puts encoded bytes in the message as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

/// As the generated client's `ready` step: a channel that cannot take the
/// call is UNKNOWN (what the generated code says too).
async fn ready(raw: &mut Raw) -> Result<(), Status> {
    raw.ready()
        .await
        .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))
}

/// `Execute`, with an encoded request.
pub(crate) async fn execute(raw: Raw, request: Bytes) -> Result<pb::Response, Status> {
    unary(raw, "Execute", "/procshare.v1.Procshare/Execute", request).await
}

/// `Batch`, with an encoded `BatchRequest`: a retry resends the same bytes.
pub(crate) async fn batch(raw: Raw, request: Bytes) -> Result<pb::BatchResponse, Status> {
    unary(raw, "Batch", "/procshare.v1.Procshare/Batch", request).await
}

/// The unary call `method` (at `path`) with an encoded request.
async fn unary<D: Message + Default + Send + 'static>(
    mut raw: Raw,
    method: &'static str,
    path: &'static str,
    request: Bytes,
) -> Result<D, Status> {
    ready(&mut raw).await?;
    let mut req = tonic::Request::new(request);
    req.extensions_mut()
        .insert(GrpcMethod::new("procshare.v1.Procshare", method));
    let path = PathAndQuery::from_static(path);
    Ok(raw
        .unary(req, path, PreEncoded::default())
        .await?
        .into_inner())
}

/// Opens the session stream, whose requests are encoded.
pub(crate) async fn session(
    mut raw: Raw,
    requests: impl tokio_stream::Stream<Item = Bytes> + Send + 'static,
) -> Result<Streaming<pb::Response>, Status> {
    ready(&mut raw).await?;
    let mut req = tonic::Request::new(requests);
    req.extensions_mut()
        .insert(GrpcMethod::new("procshare.v1.Procshare", "Session"));
    let path = PathAndQuery::from_static("/procshare.v1.Procshare/Session");
    Ok(raw
        .streaming(req, path, PreEncoded::default())
        .await?
        .into_inner())
}

// proto3 leaves out a field at its default value; so do these.

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn as_message(p: &Parts<'_>) -> pb::Request {
        pb::Request {
            client_id: p.client_id.to_owned(),
            request_id: p.request_id,
            answered_below: p.answered_below,
            op: Some(pb::Op {
                name: p.name.to_owned(),
                kind: Some(p.op.clone()),
            }),
            task_id: p.task_id.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn the_bytes_are_those_of_the_message() {
        let long = "n".repeat(300);
        let value = |k| Some(pb::Value { kind: Some(k) });
        let ops = [
            Kind::DictGet(pb::DictGet {
                key: value(pb::value::Kind::Str("k".into())),
            }),
            Kind::DictSet(pb::DictSet {
                key: value(pb::value::Kind::Int(-3)),
                value: value(pb::value::Kind::Bytes(vec![7u8; 70_000])),
            }),
            Kind::ValueGet(pb::ValueGet {}),
        ];
        for op in &ops {
            for (client_id, name, task_id) in [
                ("c1", "d", ""),
                ("", "", "t"),
                ("session-0123456789abcdef", long.as_str(), "task 9"),
            ] {
                for (request_id, answered_below) in [(0, 0), (1, 0), (300, 299), (u64::MAX, 1)] {
                    let parts = Parts {
                        client_id,
                        request_id,
                        answered_below,
                        name,
                        task_id,
                        op,
                    };
                    let bytes = parts.encode();
                    assert_eq!(bytes.as_ref(), as_message(&parts).encode_to_vec());
                    assert_eq!(pb::Request::decode(bytes).unwrap(), as_message(&parts));
                }
            }
        }
    }

    #[test]
    fn a_cancel_is_the_message_with_cancel_set() {
        let m = pb::Request {
            request_id: 42,
            cancel: true,
            ..Default::default()
        };
        assert_eq!(cancel(42).as_ref(), m.encode_to_vec());
    }
}
