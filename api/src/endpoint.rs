//! One table drives both the router and the OpenAPI document: every endpoint module
//! returns [`Endpoint`]s (verb, path, handler, documentation), so a route cannot exist
//! without its documentation or the other way round.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::Response;
use axum::routing::{self, MethodRouter};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::{params, reply, ApiConfig, Failure, Reason, Switch};

/// What every handler gets: the switch and the configuration.
pub(crate) struct AppState<S> {
    pub(crate) switch: Arc<S>,
    pub(crate) cfg: Arc<ApiConfig>,
}

// Manual impl: a derive would demand `S: Clone`, and the switch is shared by `Arc`.
impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            switch: Arc::clone(&self.switch),
            cfg: Arc::clone(&self.cfg),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Delete,
}

/// A named schema with the schemas it refers to.
pub(crate) struct TypeSchema {
    pub(crate) name: String,
    pub(crate) schema: RefOr<Schema>,
    pub(crate) deps: Vec<(String, RefOr<Schema>)>,
}

pub(crate) fn schema_of<T: ToSchema>() -> TypeSchema {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    TypeSchema {
        name: T::name().into_owned(),
        schema: T::schema(),
        deps,
    }
}

/// Documentation of one endpoint.
pub(crate) struct Doc {
    pub(crate) operation_id: &'static str,
    pub(crate) tag: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) description: &'static str,
    pub(crate) request: fn() -> TypeSchema,
    pub(crate) reply: fn() -> TypeSchema,
    /// Business failures this endpoint answers with (besides the ones every endpoint
    /// may give: bad_request, bad_data_enc, too_large, ...).
    pub(crate) reasons: &'static [Reason],
}

/// How long an endpoint may take, and which in-flight limit it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// `ApiConfig::request_timeout`, `ApiConfig::max_in_flight`.
    Quick,
    /// A long poll that idles by design: `ApiConfig::long_poll_timeout` +
    /// [`LONG_POLL_GRACE`](crate::LONG_POLL_GRACE), and its own limit
    /// `ApiConfig::max_long_polls`, so idle polls neither get cut at the generic timeout
    /// nor use up the permits of ordinary requests.
    LongPoll,
}

pub(crate) struct Endpoint<S> {
    pub(crate) verb: Verb,
    /// The canonical path; the router also serves it with a trailing slash.
    pub(crate) path: &'static str,
    pub(crate) route: MethodRouter<AppState<S>>,
    pub(crate) doc: Doc,
    pub(crate) pace: Pace,
}

impl<S: Switch> Endpoint<S> {
    pub(crate) fn new<H, T>(verb: Verb, path: &'static str, handler: H, doc: Doc) -> Self
    where
        H: Handler<T, AppState<S>>,
        T: 'static,
    {
        let route = match verb {
            Verb::Get => routing::get(handler),
            Verb::Post => routing::post(handler),
            Verb::Delete => routing::delete(handler),
        };
        Endpoint {
            verb,
            path,
            route,
            doc,
            pace: Pace::Quick,
        }
    }

    /// Marks the endpoint a long poll (see [`Pace::LongPoll`]).
    pub(crate) fn long_poll(mut self) -> Self {
        self.pace = Pace::LongPoll;
        self
    }
}

/// The common shape of every handler: extract and merge the parameters, deserialize
/// them into the wire struct `W`, run `f`, and reply (in the envelope when the request
/// came in one).
pub(crate) async fn serve<S, W, R, F, Fut>(st: &AppState<S>, req: Request, f: F) -> Response
where
    W: DeserializeOwned,
    R: Serialize,
    F: FnOnce(W) -> Fut,
    Fut: Future<Output = Result<R, Failure>>,
{
    let params = match params::extract(req, st.cfg.body_limit).await {
        Ok(p) => p,
        Err(e) => return reply::failure(&e, false),
    };
    let enveloped = params.enveloped;
    let result = match params::parse::<W>(params.map) {
        Ok(wire) => f(wire).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => reply::ok(&r, enveloped),
        Err(e) => reply::failure(&e, enveloped),
    }
}
