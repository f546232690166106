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

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("procshare_descriptor");
