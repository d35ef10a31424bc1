//! Request ids, the timeout, the in-flight limit and panic containment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::mock::*;

fn dtmf_request(id: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/lwork/mobile/voip/dtmf")
        .header("content-type", "application/json");
    if let Some(id) = id {
        b = b.header("x-request-id", id);
    }
    b.body(Body::from(r#"{"session_id":"s","num":"1"}"#))
        .unwrap()
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let (app, _) = app();
    let r = send_req(&app, dtmf_request(Some("abc-123"))).await;
    assert_eq!(r.headers.get("x-request-id").unwrap(), "abc-123");

    let a = send_req(&app, dtmf_request(None)).await;
    let b = send_req(&app, dtmf_request(None)).await;
    let a = a
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let b = b
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);

    // Unusable ids are replaced.
    let long = "x".repeat(200);
    let r = send_req(&app, dtmf_request(Some(&long))).await;
    assert_eq!(r.headers.get("x-request-id").unwrap().len(), 32);

    // Also on failures, 405s and the document.
    let r = send(&app, "GET", "/lwork/mobile/voip/dtmf", None, Vec::new()).await;
    assert!(r.headers.contains_key("x-request-id"));
    let r = send(&app, "GET", "/openapi.json", None, Vec::new()).await;
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn slow_switch_times_out_as_json_504() {
    let mut cfg = api::ApiConfig::default();
    cfg.request_timeout = Duration::from_millis(50);
    let (app, mock) = app_with(cfg);
    mock.set_delay(Some(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let r = send_req(&app, dtmf_request(None)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_failed(&r, 504, "timeout");
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_panicking_switch_is_a_json_500() {
    let (app, mock) = app();
    mock.panic.store(true, Ordering::SeqCst);
    let r = send_req(&app, dtmf_request(None)).await;
    assert_failed(&r, 500, "internal");
    assert_eq!(r.body, json!({"status": "failed", "reason": "internal"}));
    // The router still serves afterwards.
    mock.panic.store(false, Ordering::SeqCst);
    assert_eq!(send_req(&app, dtmf_request(None)).await.status, 200);
}

#[tokio::test]
async fn past_the_in_flight_limit_is_503_not_a_queue() {
    let mut cfg = api::ApiConfig::default();
    cfg.max_in_flight = 1;
    let (app, mock) = app_with(cfg);
    *mock.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let first = {
        let app = app.clone();
        tokio::spawn(async move { send_req(&app, dtmf_request(None)).await })
    };
    // Let the first one get its permit.
    while mock.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = send_req(&app, dtmf_request(None)).await;
    assert_failed(&r, 503, "unavailable");
    assert_eq!(first.await.unwrap().status, 200);
    // The permit came back.
    *mock.delay.lock().unwrap() = None;
    assert_eq!(send_req(&app, dtmf_request(None)).await.status, 200);
}

#[tokio::test]
async fn concurrent_requests_do_not_interfere() {
    let (app, mock) = app();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"session_id": format!("s{i}"), "num": "1"});
                let r = send_json(&app, "POST", "/lwork/mobile/voip/dtmf", &body).await;
                assert_eq!(r.status, 200);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(mock.count(), 50);
}

fn push_request() -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(PUSH)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"acc":"alice","device_id":"d1"}"#))
        .unwrap()
}

#[tokio::test]
async fn the_long_poll_is_not_cut_at_the_generic_timeout() {
    let mut cfg = api::ApiConfig::default();
    cfg.request_timeout = Duration::from_millis(50);
    cfg.long_poll_timeout = Duration::from_millis(50);
    let (app, mock) = app_with(cfg);
    // Longer than the generic timeout, well within the long poll's (50 ms + grace).
    mock.set_delay(Some(Duration::from_millis(300)));
    let r = send_req(&app, push_request()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["data"], json!(push_events()));
    // An ordinary request with the same delay is cut.
    let r = send_req(&app, dtmf_request(None)).await;
    assert_failed(&r, 504, "timeout");
}

#[tokio::test(start_paused = true)]
async fn the_long_poll_is_cut_after_its_own_timeout_plus_grace() {
    let mut cfg = api::ApiConfig::default();
    cfg.request_timeout = Duration::from_secs(1);
    cfg.long_poll_timeout = Duration::from_secs(30);
    let (app, mock) = app_with(cfg);
    // The switch answering late, within the grace: still delivered.
    mock.set_delay(Some(Duration::from_secs(30) + api::LONG_POLL_GRACE / 2));
    let started = tokio::time::Instant::now();
    let r = send_req(&app, push_request()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(started.elapsed() > Duration::from_secs(30));
    // A switch that never answers: 504 at timeout + grace, not before.
    mock.set_delay(Some(Duration::from_secs(3600)));
    let started = tokio::time::Instant::now();
    let r = send_req(&app, push_request()).await;
    assert_failed(&r, 504, "timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) + api::LONG_POLL_GRACE,
        "{took:?}"
    );
    assert!(
        took < Duration::from_secs(30) + api::LONG_POLL_GRACE * 2,
        "{took:?}"
    );
}

#[tokio::test]
async fn idle_long_polls_do_not_use_up_the_request_permits() {
    let mut cfg = api::ApiConfig::default();
    cfg.max_in_flight = 1;
    cfg.max_long_polls = 2;
    let (app, mock) = app_with(cfg);
    mock.set_delay(Some(Duration::from_millis(400)));
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send_req(&app, push_request()).await })
        })
        .collect();
    while mock.count() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Both long-poll permits are taken: a third poll is refused at once...
    let r = send_req(&app, push_request()).await;
    assert_failed(&r, 503, "unavailable");
    // ...while an ordinary request still gets the one request permit.
    mock.set_delay(None);
    let r = send_req(&app, dtmf_request(None)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for p in polls {
        assert_eq!(p.await.unwrap().status, 200);
    }
    // The long-poll permits came back.
    assert_eq!(send_req(&app, push_request()).await.status, 200);
}

#[tokio::test]
async fn a_panicking_long_poll_is_a_json_500() {
    let (app, mock) = app();
    mock.panic.store(true, Ordering::SeqCst);
    let r = send_req(&app, push_request()).await;
    assert_failed(&r, 500, "internal");
    assert!(r.headers.contains_key("x-request-id"));
}
