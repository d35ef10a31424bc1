//! Request ids, the request timeout, the in-flight limit and panic containment.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{reply, Failure};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request id kept; longer ones are replaced, so a client cannot
/// blow up log lines.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Takes the client's `x-request-id` when it is sane, else makes one; puts it on the
/// request, in the tracing span every log line of the request carries, and on the
/// response.
pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned();
    let value = match given {
        Some(v) => v,
        None => {
            // 128 random bits in hex: always a valid header value.
            let id = format!("{:032x}", rand::random::<u128>());
            match HeaderValue::from_str(&id) {
                Ok(v) => v,
                Err(_) => HeaderValue::from_static("unknown"),
            }
        }
    };
    req.headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), value.clone());
    let span = tracing::info_span!(
        "api",
        request_id = %String::from_utf8_lossy(value.as_bytes()),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
    });
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
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
pub(crate) async fn guard(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    // Refuse rather than queue: a queued request would only time out later.
    let Ok(_permit) = Arc::clone(&guard.in_flight).try_acquire_owned() else {
        return reply::failure(
            &Failure::Unavailable(format!("too many {} in flight", guard.class)),
            false,
        );
    };
    let run = CatchUnwind(Box::pin(next.run(req)));
    match tokio::time::timeout(guard.timeout, run).await {
        Ok(Ok(response)) => response,
        Ok(Err(())) => reply::failure(
            &Failure::Internal("request handler panicked".to_owned()),
            false,
        ),
        Err(_) => {
            tracing::warn!(timeout = ?guard.timeout, "request timed out");
            reply::failure(&Failure::Timeout, false)
        }
    }
}

/// Polls a future, catching a panic as `Err(())`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        // The future is dropped right after a panic, never polled again, so no broken
        // state of it can be observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
