//! Request ids, the request timeout, the in-flight limit and panic containment.
//!
//! These run on every request, so they are plain tower services with their own
//! futures rather than `axum::middleware::from_fn` closures (which box the future,
//! clone the inner service and box it again per request): the hot path of a status
//! poll pays for none of that.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tokio::sync::Semaphore;
use tower::{Layer, Service};
use tracing::Span;

use crate::{reply, Failure};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request id kept; longer ones are replaced, so a client cannot
/// blow up log lines.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's `x-request-id` when it is sane.
fn given_request_id(req: &Request) -> Option<HeaderValue> {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
}

/// 128 random bits as 32 lower-case hex digits: always a valid header value. Written
/// straight into a stack buffer (no formatting machinery, one copy into the value).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = rand::random::<u128>();
    let mut id = [0u8; 32];
    for byte in id.iter_mut().rev() {
        // The low nibble indexes a 16-entry table: `& 0xf` keeps it in range.
        *byte = HEX.get((n & 0xf) as usize).copied().unwrap_or(b'0');
        n >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Takes the client's `x-request-id` when it is sane, else makes one; puts it on the
/// request, in the tracing span every log line of the request carries, and on the
/// response. See [`RequestIdService`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<Request> for RequestIdService<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = given_request_id(&req).unwrap_or_else(new_request_id);
        // The field values are only evaluated when the span is enabled (the
        // production level, info, enables it): `%` of plain `&str`s, nothing
        // allocated here beyond what the subscriber keeps.
        let span = tracing::info_span!(
            "api",
            request_id = %id.to_str().unwrap_or("-"),
            method = %req.method().as_str(),
            path = %req.uri().path(),
        );
        req.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        // The handler's future is created inside the span too: whatever the inner
        // services log while building it carries the id.
        let inner = span.in_scope(|| self.inner.call(req));
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        RequestIdFuture {
            inner,
            span,
            id: Some(id),
            started,
        }
    }
}

/// Runs the inner future inside the request's span, then puts the id on the response.
pub(crate) struct RequestIdFuture<F> {
    inner: F,
    span: Span,
    id: Option<HeaderValue>,
    /// Set only when the "request done" debug line will be written.
    started: Option<Instant>,
}

impl<F, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = {
            let _entered = this.span.enter();
            Pin::new(&mut this.inner).poll(cx)
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        Poll::Ready(result.map(|mut response| {
            if let Some(started) = this.started {
                let _entered = this.span.enter();
                tracing::debug!(
                    status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request done"
                );
            }
            if let Some(id) = this.id.take() {
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            response
        }))
    }
}

/// Limits shared by the requests of one class (ordinary or long poll) of one router.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) timeout: Duration,
    pub(crate) in_flight: Arc<Semaphore>,
    /// Which limit, for the log line when it is reached.
    pub(crate) class: &'static str,
}

/// Sheds load past the in-flight limit (503), bounds each request's time (504), and
/// turns a panic in a handler or in the switch into a logged 500 instead of a dropped
/// connection.
#[derive(Clone, Debug)]
pub(crate) struct GuardLayer(pub(crate) Arc<Guard>);

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct GuardService<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> Service<Request> for GuardService<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Send + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Refuse rather than queue: a queued request would only time out later.
        let Ok(permit) = Arc::clone(&self.guard.in_flight).try_acquire_owned() else {
            let refused = reply::failure(
                &Failure::Unavailable(format!("too many {} in flight", self.guard.class)),
                false,
            );
            return Box::pin(std::future::ready(Ok(refused)));
        };
        let timeout = self.guard.timeout;
        // Called at once (not inside the future): a panic while the handler builds its
        // future is caught here like one while it runs.
        let run = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => fut,
            Err(_) => return Box::pin(std::future::ready(Ok(panicked()))),
        };
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, CatchUnwind(run)).await {
                Ok(Ok(result)) => result,
                Ok(Err(())) => Ok(panicked()),
                Err(_) => {
                    tracing::warn!(?timeout, "request timed out");
                    Ok(reply::failure(&Failure::Timeout, false))
                }
            }
        })
    }
}

fn panicked() -> Response {
    reply::failure(
        &Failure::Internal("request handler panicked".to_owned()),
        false,
    )
}

/// Polls a future, catching a panic as `Err(())`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.get_mut().0;
        // The future is dropped right after a panic, never polled again, so no broken
        // state of it can be observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
