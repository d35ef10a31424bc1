//! Operator HTTP endpoints (`/healthz`, `/metrics`), request counting middleware and
//! the HTTP server loop with bounded graceful shutdown.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How long in-flight requests (e.g. long polls) may run on after shutdown starts.
/// Bounded so the process exits within the 10 s OPERATIONS.md allows.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Route label for requests no route matched; the raw path is never a label value,
/// scanners would create a series per probed URL.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Reports whether the switch can serve (SIP, media and store up); `Err` carries the
/// reason shown to the operator.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the operator endpoints need.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub health: HealthCheck,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

/// The complete operator router: endpoints, JSON 404/405 and request counting.
/// To serve it together with other routers, merge [`operator_routes`] with them and
/// wrap the result in [`with_fallbacks`] and [`count_requests`] instead, so every
/// route is counted once.
pub fn router(state: HttpState) -> Router {
    let metrics = Arc::clone(&state.metrics);
    count_requests(with_fallbacks(operator_routes(state)), metrics)
}

/// `/healthz` and `/metrics` (with and without trailing slash), nothing else.
pub fn operator_routes(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/", get(healthz))
        .route("/metrics", get(metrics))
        .route("/metrics/", get(metrics))
        .with_state(state)
}

/// JSON answers for unknown routes (404) and wrong methods (405), in the
/// `{"status":"failed","reason":...}` shape every endpoint uses.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Counts every request into `http_requests_total{route,status}`.
pub fn count_requests(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(CountLayer(metrics))
}

/// The counting middleware as a plain tower service: it runs on every request, so it
/// boxes nothing and copies no route text (the matched route is an `Arc<str>`).
#[derive(Clone)]
struct CountLayer(Arc<Metrics>);

impl<S> Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> CountService<S> {
        CountService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
struct CountService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for CountService<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CountFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        CountFuture {
            inner: self.inner.call(request),
            route,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

struct CountFuture<F> {
    inner: F,
    route: Option<MatchedPath>,
    metrics: Arc<Metrics>,
}

impl<F, E> Future for CountFuture<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(result) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        if let Ok(response) = &result {
            let route = this
                .route
                .as_ref()
                .map_or(UNMATCHED_ROUTE, |p| route_label(p.as_str()));
            this.metrics.http_request(route, response.status().as_u16());
        }
        Poll::Ready(result)
    }
}

/// `/healthz/` and `/healthz` are one route for counting purposes.
fn route_label(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// The `{"status":..., "reason":...}` body, with `status` first as API.md writes it.
#[derive(Debug, Serialize)]
struct StatusBody<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn status_json(code: StatusCode, status: &str, reason: Option<&str>) -> Response {
    (code, Json(StatusBody { status, reason })).into_response()
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let mut response = match (state.health)() {
        Ok(()) => status_json(StatusCode::OK, "ok", None),
        Err(reason) => status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(&reason),
        ),
    };
    no_store(&mut response);
    response
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        state.metrics.render(),
    )
        .into_response();
    no_store(&mut response);
    response
}

/// Probes and scrapes must see the live state, never a cached copy.
fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn not_found() -> Response {
    status_json(StatusCode::NOT_FOUND, "failed", Some("not_found"))
}

async fn method_not_allowed() -> Response {
    status_json(
        StatusCode::METHOD_NOT_ALLOWED,
        "failed",
        Some("method_not_allowed"),
    )
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
/// gives in-flight requests [`DEFAULT_SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grace(listener, router, shutdown, DEFAULT_SHUTDOWN_GRACE).await
}

/// [`serve`] with an explicit grace period; requests still running after it are
/// dropped (their connections closed) so shutdown cannot hang on a long poll.
pub async fn serve_with_grace(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        })
        .into_future();
    let deadline = async move {
        // Err means the sender is gone without a signal: the server ended on its own.
        if stopping_rx.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(?grace, "http: requests still running after the shutdown grace period, closing them");
            Ok(())
        }
    }
}

/// The operator endpoints in OpenAPI form, merged into the app API's
/// `/openapi.json` so one document describes every route (OPERATIONS.md).
pub fn operator_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
    use utoipa::openapi::{ResponseBuilder, ResponsesBuilder};
    let mut paths = Paths::new();
    let op = |summary: &str, ok: &str, failure: Option<&str>| {
        let mut responses =
            ResponsesBuilder::new().response("200", ResponseBuilder::new().description(ok));
        if let Some(f) = failure {
            responses = responses.response("503", ResponseBuilder::new().description(f));
        }
        OperationBuilder::new()
            .summary(Some(summary))
            .tag("operations")
            .responses(responses.build())
            .build()
    };
    paths.add_path_operation(
        "/healthz",
        vec![HttpMethod::Get],
        op(
            "Liveness: SIP, media and store are up",
            "`{\"status\":\"ok\"}`",
            Some("`{\"status\":\"failed\",\"reason\":...}` naming what is down"),
        ),
    );
    paths.add_path_operation(
        "/metrics",
        vec![HttpMethod::Get],
        op(
            "Prometheus text exposition (SIP, calls, RTP relay, HTTP)",
            "text/plain; version=0.0.4",
            None,
        ),
    );
    utoipa::openapi::OpenApiBuilder::new().paths(paths).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Reply {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        healthy: Arc<AtomicBool>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(extra: Option<Router>, grace: Duration) -> Server {
        let metrics = Arc::new(Metrics::new());
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        let state = HttpState {
            metrics: Arc::clone(&metrics),
            health: Arc::new(move || {
                if flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("store down".to_owned())
                }
            }),
        };
        let app = match extra {
            Some(extra) => count_requests(
                with_fallbacks(operator_routes(state).merge(extra)),
                Arc::clone(&metrics),
            ),
            None => router(state),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_grace(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        Server {
            addr,
            metrics,
            healthy,
            stop: Some(stop),
            task,
        }
    }

    #[tokio::test]
    async fn healthz_ok_and_unavailable() {
        let s = start(None, DEFAULT_SHUTDOWN_GRACE).await;
        let r = request(s.addr, "GET", "/healthz").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, r#"{"status":"ok"}"#);
        assert!(
            r.headers.contains("content-type: application/json"),
            "{}",
            r.headers
        );
        assert!(r.headers.contains("cache-control: no-store"));
        let r = request(s.addr, "GET", "/healthz/").await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"status":"ok"}"#));
        s.healthy.store(false, Ordering::SeqCst);
        let r = request(s.addr, "GET", "/healthz").await;
        assert_eq!(r.status, 503);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"status": "unavailable", "reason": "store down"})
        );
    }

    #[tokio::test]
    async fn metrics_endpoint_and_request_counting() {
        let s = start(None, DEFAULT_SHUTDOWN_GRACE).await;
        s.metrics.calls_active.set(7);
        request(s.addr, "GET", "/healthz").await;
        request(s.addr, "GET", "/healthz/").await;
        request(s.addr, "GET", "/nope/123").await;
        request(s.addr, "POST", "/healthz").await;
        let r = request(s.addr, "GET", "/metrics/").await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers
                .contains("content-type: text/plain; version=0.0.4"),
            "{}",
            r.headers
        );
        assert!(r.body.contains("\ncalls_active 7\n"), "{}", r.body);
        assert!(
            r.body
                .contains("http_requests_total{route=\"/healthz\",status=\"200\"} 2\n"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("http_requests_total{route=\"/healthz\",status=\"405\"} 1\n"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"),
            "{}",
            r.body
        );
        // The scrape itself is counted after it renders.
        let r = request(s.addr, "GET", "/metrics").await;
        assert!(
            r.body
                .contains("http_requests_total{route=\"/metrics\",status=\"200\"} 1\n"),
            "{}",
            r.body
        );
    }

    #[tokio::test]
    async fn unknown_route_and_wrong_method_are_json() {
        let s = start(None, DEFAULT_SHUTDOWN_GRACE).await;
        let r = request(s.addr, "GET", "/does-not-exist").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.body, r#"{"status":"failed","reason":"not_found"}"#);
        let r = request(s.addr, "DELETE", "/metrics").await;
        assert_eq!(r.status, 405);
        assert_eq!(
            r.body,
            r#"{"status":"failed","reason":"method_not_allowed"}"#
        );
    }

    #[tokio::test]
    async fn graceful_shutdown_returns() {
        let mut s = start(None, DEFAULT_SHUTDOWN_GRACE).await;
        assert_eq!(request(s.addr, "GET", "/healthz").await.status, 200);
        s.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(3), s.task).await;
        result.unwrap().unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_long_requests_beyond_grace() {
        let slow = Router::new().route(
            "/slow/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        );
        let mut s = start(Some(slow), Duration::from_millis(200)).await;
        let addr = s.addr;
        let pending = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /slow/1 HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf).await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.stop.take().unwrap().send(()).unwrap();
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(3), s.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        pending.abort();
    }

    #[test]
    fn route_labels() {
        assert_eq!(route_label("/healthz/"), "/healthz");
        assert_eq!(route_label("/healthz"), "/healthz");
        assert_eq!(route_label("/"), "/");
    }
}
