//! The HTTP façade (the "lwork" JSON API of API.md) over the [`Switch`] trait.
//!
//! [`router`] builds an axum router with every endpoint of this crate plus
//! `/openapi.json`; the root crate merges it with its operator routes:
//!
//! ```text
//! let api = api::router(Arc::clone(&switch), api::ApiConfig::default());
//! let app = http::count_requests(
//!     http::with_fallbacks(http::operator_routes(state).merge(api)),
//!     metrics,
//! );
//! ```
//!
//! The router sets no router-level fallback (axum refuses to merge two routers that
//! both have one), so unknown paths get the root's JSON 404. A known path with a wrong
//! method gets a JSON 405 from here.
//!
//! Layout: one module per endpoint family (`accounts`, `calls`, `history`, `push`,
//! `p2p`, `callback`), each
//! returning a table of endpoints from which both the routes and the OpenAPI document
//! are built. A new family is a new module, one line in `endpoints()` and its methods
//! on [`Switch`].
//!
//! Time and load limits are per endpoint class (the table's `Pace`): ordinary requests
//! get [`ApiConfig::request_timeout`] and share [`ApiConfig::max_in_flight`]; the push
//! long poll (`/channel/push_service`) idles by design, so it gets
//! [`ApiConfig::long_poll_timeout`] + [`LONG_POLL_GRACE`] and a separate, larger limit
//! [`ApiConfig::max_long_polls`]: a crowd of idle polls can neither be cut at the
//! generic timeout nor starve calls of permits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::sync::Semaphore;

mod accounts;
mod callback;
mod calls;
mod endpoint;
mod envelope;
mod error;
mod history;
mod layers;
mod openapi;
mod p2p;
mod params;
mod push;
mod reply;
mod switch;

pub use error::{Failure, Reason};
pub use layers::REQUEST_ID_HEADER;
pub use openapi::{openapi, OPENAPI_PATH};
pub use switch::*;

use endpoint::{AppState, Endpoint, Pace};

/// What a long poll may take beyond [`ApiConfig::long_poll_timeout`] (the switch's idle
/// timeout) before it is cut with 504: room for the switch to build its reply late.
pub const LONG_POLL_GRACE: Duration = Duration::from_secs(10);

/// Settings of the HTTP façade. Build with [`ApiConfig::default`] and change fields;
/// more fields will come with later endpoint families.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Largest request body accepted; larger ones get 413 `too_large`.
    pub body_limit: usize,
    /// Longest a request may take, Switch call included; then 504 `timeout` (and the
    /// Switch future is dropped). Not for long polls: see `long_poll_timeout`.
    pub request_timeout: Duration,
    /// Requests handled at once; more get 503 `unavailable` at once rather than queue.
    /// Long polls do not count here: see `max_long_polls`.
    pub max_in_flight: usize,
    /// The push long poll's idle timeout: after it the switch answers `shake_hand`.
    /// The switch keeps its own setting (set both from one value); the façade cuts a
    /// poll with 504 only at this + [`LONG_POLL_GRACE`].
    pub long_poll_timeout: Duration,
    /// Long polls open at once (one per online device); more get 503 `unavailable`.
    /// Separate from `max_in_flight` so idle polls cannot use up its permits.
    pub max_long_polls: usize,
    /// Offset east of UTC, in seconds, of the times in call history replies (API.md
    /// does not name a zone; UTC unless configured).
    pub history_utc_offset_secs: i32,
    /// Merged into the served `/openapi.json`, so the root crate can describe its own
    /// endpoints (`/healthz`, `/metrics`) in the same document.
    pub openapi_extra: Option<utoipa::openapi::OpenApi>,
}

// Manual: utoipa's document type has no `Debug` (without its "debug" feature).
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("long_poll_timeout", &self.long_poll_timeout)
            .field("max_long_polls", &self.max_long_polls)
            .field("history_utc_offset_secs", &self.history_utc_offset_secs)
            .field("openapi_extra", &self.openapi_extra.is_some())
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_in_flight: 4096,
            long_poll_timeout: Duration::from_secs(30),
            max_long_polls: 100_000,
            history_utc_offset_secs: 0,
            openapi_extra: None,
        }
    }
}

/// Every endpoint of the crate, in documentation order.
fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    let mut all = accounts::endpoints::<S>();
    all.extend(calls::endpoints::<S>());
    all.extend(history::endpoints::<S>());
    all.extend(push::endpoints::<S>());
    all.extend(p2p::endpoints::<S>());
    all.extend(callback::endpoints::<S>());
    all
}

/// The API router: every endpoint (each path also with a trailing slash) and
/// `GET /openapi.json`, with request ids on all of them, and the timeout, the
/// in-flight limit and panic containment of its class on every endpoint.
pub fn router<S: Switch>(switch: Arc<S>, cfg: ApiConfig) -> Router {
    let quick = Arc::new(layers::Guard {
        timeout: cfg.request_timeout,
        in_flight: Arc::new(Semaphore::new(
            cfg.max_in_flight.min(Semaphore::MAX_PERMITS),
        )),
        class: "requests",
    });
    let long_poll = Arc::new(layers::Guard {
        timeout: cfg.long_poll_timeout.saturating_add(LONG_POLL_GRACE),
        in_flight: Arc::new(Semaphore::new(
            cfg.max_long_polls.min(Semaphore::MAX_PERMITS),
        )),
        class: "long polls",
    });
    let guarded = |route: MethodRouter<AppState<S>>, pace: Pace| {
        let guard = match pace {
            Pace::Quick => Arc::clone(&quick),
            Pace::LongPoll => Arc::clone(&long_poll),
        };
        route.route_layer(layers::GuardLayer(guard))
    };

    let endpoints = endpoints::<S>();
    let mut document = openapi::document(&endpoints);
    if let Some(extra) = cfg.openapi_extra.clone() {
        document.merge(extra);
    }
    let document: Arc<[u8]> = match document.to_json() {
        Ok(json) => Arc::from(json.into_bytes()),
        Err(e) => {
            tracing::error!(error = %e, "OpenAPI document does not serialize");
            Arc::from(br#"{"status":"failed","reason":"internal"}"#.to_vec())
        }
    };

    let mut by_path: BTreeMap<String, MethodRouter<AppState<S>>> = BTreeMap::new();
    for ep in endpoints {
        // Guarded per endpoint (not per path): one path may mix classes.
        let route = guarded(ep.route, ep.pace);
        for path in [ep.path.to_owned(), format!("{}/", ep.path)] {
            let route = match by_path.remove(&path) {
                Some(existing) => existing.merge(route.clone()),
                None => route.clone(),
            };
            by_path.insert(path, route);
        }
    }
    let serve_document = move || {
        let document = Arc::clone(&document);
        async move {
            let mut response = document.to_vec().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    let document_route = guarded(get(serve_document), Pace::Quick);
    by_path.insert(OPENAPI_PATH.to_owned(), document_route.clone());
    by_path.insert(format!("{OPENAPI_PATH}/"), document_route);

    let state = AppState {
        switch,
        cfg: Arc::new(cfg),
    };
    let mut router = Router::new();
    for (path, route) in by_path {
        // The 405 fallback is outside the guards: it is a constant reply that never
        // reaches the switch.
        router = router.route(&path, route.fallback(method_not_allowed));
    }
    router.with_state(state).layer(layers::RequestIdLayer)
}

async fn method_not_allowed() -> Response {
    reply::failure(&Failure::MethodNotAllowed, false)
}
