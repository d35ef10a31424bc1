//! Every route answers, with and without a trailing slash, and a wrong method is a JSON 405.

use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::mock::*;

#[tokio::test]
async fn every_route_answers_with_and_without_trailing_slash() {
    let (app, mock) = app();
    for case in cases() {
        for path in [case.path.to_owned(), format!("{}/", case.path)] {
            let before = mock.count();
            let r = send_case(&app, &case, &path).await;
            assert_eq!(r.status, 200, "{} {path}: {:?}", case.method, r.body);
            assert_eq!(
                r.body["status"], "ok",
                "{} {path}: {:?}",
                case.method, r.body
            );
            assert_eq!(mock.count(), before + 1, "{} {path}", case.method);
        }
    }
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let (app, mock) = app();
    for (method, path) in [
        ("GET", "/lwork/mobile/login"),
        ("PUT", IOS),
        ("PATCH", "/lwork/mobile/voip/calls/"),
        ("POST", WEB),
        ("DELETE", "/lwork/mobile/call_history"),
        ("POST", "/openapi.json"),
        ("GET", PUSH),
        ("GET", "/lwork/mobile/p2p_answer/"),
        ("PUT", CALLBACK),
        ("GET", CALLBACK),
    ] {
        let r = send(&app, method, path, None, Vec::new()).await;
        assert_failed(&r, 405, "method_not_allowed");
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn paths_are_case_sensitive_and_unlisted_prefixes_are_not_served() {
    let (app, _) = app();
    for path in [
        "/LWORK/mobile/login",
        "/mobile/login",
        "/lwork/voices1/voip/icalls",
        "/lwork/mobile/login//",
    ] {
        let r = send_json(&app, "POST", path, &json!({})).await;
        assert_eq!(r.status, 404, "{path}");
    }
}

/// The root crate merges this router with its operator routes and then adds the
/// fallbacks; that must not panic and must keep both sets of routes.
#[tokio::test]
async fn merges_with_an_operator_router() {
    let (api, _) = app();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "nf") })
        .method_not_allowed_fallback(|| async {
            (axum::http::StatusCode::METHOD_NOT_ALLOWED, "mna")
        });
    assert_eq!(
        send(&app, "GET", "/healthz", None, Vec::new()).await.status,
        200
    );
    assert_eq!(
        send(&app, "GET", "/nope", None, Vec::new()).await.status,
        404
    );
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        &json!({"session_id": "s", "num": "1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    // Our own JSON 405 wins over the root's for our paths.
    let r = send(&app, "GET", "/lwork/mobile/voip/dtmf", None, Vec::new()).await;
    assert_failed(&r, 405, "method_not_allowed");
}
