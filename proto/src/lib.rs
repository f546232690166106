//! The procshare wire contract.
//!
//! Everything a client can ask of `procshared` is an [`Op`]: one message
//! type with a `oneof` holding every operation (`DictGet`, `LockAcquire`, …).
//! The unary `Execute` call, `Batch`, and later a session stream all carry
//! the same `Op`, so the server has exactly one path that applies them.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

tonic::include_proto!("procshare.v1");

pub mod codec;
pub mod fields;
pub mod http2;

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("procshare_descriptor");

/// An HTTP/2 setting (an identifier no standard uses, so any other server
/// ignores it, as RFC 9113 §6.5.2 requires) that a client sends in its
/// first SETTINGS frame when the connection will carry nothing but one
/// `Session` stream. procshared serves such a connection itself instead of
/// through its general HTTP/2 stack; its value is 1.
pub const SESSION_ONLY_SETTING: u16 = 0x7073;
