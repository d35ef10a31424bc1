//! The softswitch library: configuration, the call layer (B2BUA) that joins
//! `sip` and `media`, the operator HTTP endpoints, and the runtime.

pub mod accounts;
pub mod b2bua;
pub mod bench;
pub mod cdr;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod push;
pub mod registry;
pub mod service;
pub mod store;
pub mod switch;

pub use switch::{run, Listening, StartError};
