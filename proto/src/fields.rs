//! Encoding single protobuf fields from borrowed parts, byte for byte as
//! prost encodes the same message (proto3: a field at its default value is
//! left out).
//!
//! Both ends encode some messages by hand rather than through a built
//! message, so as not to copy strings into one first: the client a call's
//! `Request` (`client/src/encode.rs`), the server a `LogRecord` for the
//! write-ahead log (`server/src/store/journal.rs`). Each keeps a test that
//! holds its bytes equal to prost's.

use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

/// The encoded length of string field `tag` holding `s`.
pub fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// The encoded length of `uint64` field `tag` holding `v`.
pub fn u64_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

/// The encoded length of a message field `tag` whose body is `len` bytes
/// (an embedded message is encoded even when empty).
pub fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Puts string field `tag`.
pub fn put_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

/// Puts `uint64` field `tag`.
pub fn put_u64(tag: u32, v: u64, buf: &mut impl BufMut) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// Puts the key and length of message field `tag`; its `len` bytes of
/// body follow.
pub fn put_message_header(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}
