//! The gRPC codec of every procshare call: prost messages, decoded from
//! one contiguous slice.
//!
//! tonic hands a decoder the message's bytes as a [`DecodeBuf`], a view of
//! its receive buffer. prost decoding through that view moves the
//! buffer's cursor after every field, and a `BytesMut` cursor move costs
//! about twenty instructions: a batch of small operations spent more time
//! advancing cursors than applying them. The bytes of one message are
//! always contiguous there, so this codec decodes from the plain slice
//! (whose cursor is a pointer bump) and moves tonic's cursor once.
//! Encoding is prost's, as in `tonic_prost::ProstCodec`.

use std::marker::PhantomData;

use prost::bytes::Buf;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

/// A [`Codec`] for prost messages, like `tonic_prost::ProstCodec` but
/// decoding from a contiguous slice; named by the generated client and
/// server (`codec_path` in `build.rs`).
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder { _pd: PhantomData }
    }
}

/// The decoding half of [`SliceCodec`].
#[derive(Debug, Clone)]
pub struct SliceDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let chunk = buf.chunk();
        let decoded = if chunk.len() == len {
            let m = U::decode(chunk);
            buf.advance(len);
            m
        } else {
            // Not seen with tonic 0.14 (its buffer is one `BytesMut`), but
            // a view in pieces still decodes, the slow way.
            U::decode(buf)
        };
        // gRPC's status code for a message that does not parse.
        decoded
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{op, value, DictSet, Op, Request, Value};
    use http_body_util::Full;
    use prost::bytes::Bytes;
    use tonic::codec::Streaming;

    /// `payload` as the body of a gRPC call: one uncompressed message.
    fn framed(payload: &[u8]) -> Full<Bytes> {
        let mut body = vec![0u8];
        body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        body.extend_from_slice(payload);
        Full::new(Bytes::from(body))
    }

    async fn decode(payload: &[u8]) -> Result<Option<Request>, Status> {
        let decoder = SliceCodec::<Request, Request>::default().decoder();
        let mut stream = Streaming::new_request(decoder, framed(payload), None, None);
        stream.message().await
    }

    #[tokio::test]
    async fn a_message_decodes_as_prost_encoded_it_and_garbage_is_internal() {
        let request = Request {
            client_id: "c".into(),
            request_id: 7,
            op: Some(Op {
                name: "dé".into(),
                kind: Some(op::Kind::DictSet(DictSet {
                    key: Some(Value {
                        kind: Some(value::Kind::Int(-1)),
                    }),
                    value: Some(Value {
                        kind: Some(value::Kind::Bytes(vec![0, 1, 2])),
                    }),
                })),
            }),
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        assert_eq!(decode(&bytes).await.ok().flatten(), Some(request));
        // Cut short inside the op: refused, as prost refuses it.
        let status = decode(&bytes[..bytes.len() - 2]).await.err();
        assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Internal));
        // A varint that never ends.
        let status = decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]).await.err();
        assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Internal));
    }
}
