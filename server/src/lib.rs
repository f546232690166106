//! procshare's server: the object [`store`] and the gRPC [`service`] in
//! front of it. The binary `procshared` is a thin shell around [`serve`].

pub mod service;
pub mod store;

pub use service::{serve, ServerConfig};
