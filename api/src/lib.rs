//! The HTTP façade (the "lwork" JSON API, see API.md) over the `Switch` trait.
//!
//! The endpoint families are added by the HTTP façade issue; the operator
//! endpoints (`/healthz`, `/metrics`) live in the root crate for now.
