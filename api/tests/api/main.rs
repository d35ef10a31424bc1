#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The HTTP layer's own tests: the router driven through `tower::ServiceExt::oneshot`
//! against a recording `Switch`.

mod envelope;
mod layers;
mod malformed;
mod mock;
mod openapi;
mod params;
mod replies;
mod routes;
