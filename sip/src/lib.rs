//! Sans-IO SIP (RFC 3261) for the softswitch.
//!
//! The core does no I/O and reads no clock: inputs are `handle_*` calls carrying
//! bytes and `now: Instant`, outputs are drained with `poll_*`. The tokio drivers
//! (feature `tokio`) are thin tasks that move datagrams and stream frames between
//! sockets and the core.

pub mod auth;
pub mod bytestr;
pub mod endpoint;
pub mod message;
pub mod sdp;
pub mod transaction;

pub use bytestr::ByteStr;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod transport;
