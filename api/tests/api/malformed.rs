//! Table-driven malformed input against every route: always a JSON 4xx with
//! `status: failed` and a reason, never a 5xx, and the switch is never called.

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::mock::*;

const LIMIT: usize = 4096;

fn small_app() -> (axum::Router, std::sync::Arc<Mock>) {
    let mut cfg = api::ApiConfig::default();
    cfg.body_limit = LIMIT;
    app_with(cfg)
}

fn check(what: &str, r: &Resp) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: HTTP {} {:?}",
        r.status,
        r.body
    );
    assert_eq!(
        r.body["status"],
        "failed",
        "{what}: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    assert!(
        r.body["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {:?}",
        r.body
    );
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/json",
        "{what}"
    );
    assert!(r.headers.contains_key("x-request-id"), "{what}");
}

fn detail(r: &Resp) -> &str {
    r.body["detail"].as_str().unwrap_or("")
}

#[tokio::test]
async fn missing_fields_and_wrong_types() {
    let (app, mock) = small_app();
    for case in cases() {
        let what = |s: &str| format!("{} {} {s}", case.method, case.path);
        let obj = case.body.as_object().unwrap();

        let r = send_json(&app, case.method, case.path, &json!({})).await;
        check(&what("empty object"), &r);
        assert_eq!(r.body["reason"], "bad_request");

        for field in case.required {
            let mut body = obj.clone();
            body.remove(*field);
            let r = send_json(&app, case.method, case.path, &Value::Object(body)).await;
            check(&what(&format!("without {field}")), &r);
            assert!(
                detail(&r).starts_with(&format!("{field}: missing")),
                "{}: {:?}",
                what(field),
                r.body
            );
        }

        for field in obj.keys().filter(|k| *k != "t") {
            for wrong in [json!(true), json!([1])] {
                let mut body = obj.clone();
                body.insert(field.clone(), wrong.clone());
                let r = send_json(&app, case.method, case.path, &Value::Object(body)).await;
                check(&what(&format!("{field}={wrong}")), &r);
                assert_eq!(r.body["reason"], "bad_request");
                assert!(
                    detail(&r).starts_with(&format!("{field}:")),
                    "{}: {:?}",
                    what(field),
                    r.body
                );
            }
        }
    }
    assert_eq!(mock.count(), 0, "a malformed request reached the switch");
}

#[tokio::test]
async fn bodies_that_are_not_json_or_forms() {
    let (app, mock) = small_app();
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        (
            "broken json",
            Some("application/json"),
            b"{\"uuid\": ".to_vec(),
        ),
        ("json array", Some("application/json"), b"[1,2,3]".to_vec()),
        (
            "json string",
            Some("application/json"),
            b"\"hello\"".to_vec(),
        ),
        ("json null", Some("application/json"), b"null".to_vec()),
        (
            "plain text as json",
            Some("application/json"),
            b"uuid=1".to_vec(),
        ),
        (
            "invalid utf-8",
            Some("application/json"),
            vec![b'{', 0xff, 0xfe, b'}'],
        ),
        ("unlabelled broken json", None, b"{nope".to_vec()),
        (
            "text/plain garbage",
            Some("text/plain"),
            b"hello there".to_vec(),
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\n\r\n--x--".to_vec(),
        ),
        (
            "deep nesting",
            Some("application/json"),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
    ];
    for case in cases() {
        for (what, ct, body) in &bodies {
            let r = send(&app, case.method, case.path, *ct, body.clone()).await;
            check(&format!("{} {} {what}", case.method, case.path), &r);
        }
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let (app, mock) = small_app();
    let big = json!({"pad": "x".repeat(LIMIT + 1)})
        .to_string()
        .into_bytes();
    for case in cases() {
        // Declared up front.
        let req = Request::builder()
            .method(case.method)
            .uri(case.path)
            .header("content-type", "application/json")
            .header("content-length", big.len().to_string())
            .body(Body::from(big.clone()))
            .unwrap();
        let r = send_req(&app, req).await;
        check("declared", &r);
        assert_eq!(r.status, 413);
        assert_eq!(r.body, json!({"status": "failed", "reason": "too_large"}));
        // Not declared (no content-length, as with chunked encoding): found while reading.
        let r = send(
            &app,
            case.method,
            case.path,
            Some("application/x-www-form-urlencoded"),
            big.clone(),
        )
        .await;
        check("streamed", &r);
        assert_eq!(r.status, 413);
    }
    // Exactly at the limit is fine (and then fails on content, not size).
    let at_limit = vec![b' '; LIMIT];
    let r = send(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        Some("application/json"),
        at_limit,
    )
    .await;
    assert_eq!(r.body["reason"], "bad_request");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn bad_values() {
    let (app, mock) = app();
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "POST",
            "/lwork/mobile/voip/dtmf",
            json!({"session_id": "s", "num": "E"}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/voip/dtmf",
            json!({"session_id": "s", "num": ""}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/voip/dtmf",
            json!({"session_id": "s", "num": "1".repeat(33)}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/voip/dtmf",
            json!({"session_id": " ", "num": "1"}),
            "session_id",
        ),
        (
            "POST",
            "/lwork/mobile/call_history",
            json!({"uuid": "u", "num": 0}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/call_history",
            json!({"uuid": "u", "num": 101}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/call_history",
            json!({"uuid": "u", "num": -3}),
            "num",
        ),
        (
            "POST",
            "/lwork/mobile/call_history",
            json!({"uuid": "u", "start_id": "ten"}),
            "start_id",
        ),
        (
            "POST",
            "/lwork/mobile/call_history",
            json!({"uuid": ""}),
            "uuid",
        ),
        (
            "POST",
            IOS,
            json!({"uuid": "u", "phone": "abc", "sdp": OFFER}),
            "phone",
        ),
        (
            "POST",
            IOS,
            json!({"uuid": "u", "phone": "1@evil.com", "sdp": OFFER}),
            "phone",
        ),
        (
            "POST",
            IOS,
            json!({"uuid": "u", "phone": "1", "sdp": ""}),
            "sdp",
        ),
        (
            "POST",
            IOS,
            json!({"uuid": "u", "phone": "1", "sdp": {"ip": "1.2.3.4", "port": 5}}),
            "sdp",
        ),
        (
            "POST",
            IOS,
            json!({"uuid": "u", "phone": "1", "caller_phone": "x", "sdp": OFFER}),
            "caller_phone",
        ),
        (
            "POST",
            ANDROID,
            json!({"uuid": "u", "phone": "1", "sdp": OFFER}),
            "sdp",
        ),
        (
            "POST",
            ANDROID,
            json!({"uuid": "u", "phone": "1", "sdp": {"ip": "nonsense", "port": 5}}),
            "sdp.ip",
        ),
        (
            "POST",
            ANDROID,
            json!({"uuid": "u", "phone": "1", "sdp": {"ip": "1.2.3.4", "port": 0}}),
            "sdp.port",
        ),
        (
            "POST",
            ANDROID,
            json!({"uuid": "u", "phone": "1", "sdp": {"ip": "1.2.3.4", "port": 70000}}),
            "sdp",
        ),
        (
            "POST",
            ANDROID,
            json!({"uuid": "u", "phone": "1", "sdp": {"ip": "1.2.3.4"}}),
            "sdp.port",
        ),
        (
            "POST",
            "/lwork/mobile/register",
            json!({"type": "email", "uuid": "u", "device_id": "d", "pwd": "p"}),
            "type",
        ),
        (
            "POST",
            "/lwork/mobile/register",
            json!({"type": "sms", "uuid": "u", "device_id": "d", "auth_code": "1", "pwd": ""}),
            "pwd",
        ),
        (
            "POST",
            "/lwork/sms/auth_code",
            json!({"type": "login", "uuid": "u", "device_id": "d"}),
            "type",
        ),
        (
            "POST",
            "/lwork/mobile/add_info",
            json!({"uuid": "u", "device_id": "d", "info": "[1]"}),
            "info",
        ),
        (
            "POST",
            "/lwork/mobile/login",
            json!({"acc": "a", "pwd": "p", "device_id": "d", "clidata": {"os_type": 5}}),
            "clidata.os_type",
        ),
        (
            "POST",
            "/lwork/mobile/query_status",
            json!({"users": [{"x": 1}]}),
            "users[0]",
        ),
        (
            "POST",
            "/lwork/mobile/query_status",
            json!({"users": [{"acc": "a"}, {"phone": {}}]}),
            "users",
        ),
        (
            "POST",
            "/lwork/mobile/query_status",
            json!({"users": vec![json!({"acc": "a"}); 501]}),
            "users",
        ),
        ("GET", WEB, json!({"session_id": ""}), "session_id"),
        // push
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": "d", "seq": -1}),
            "seq",
        ),
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": "d", "seq": "ten"}),
            "seq",
        ),
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": "d", "seq": 1.5}),
            "seq",
        ),
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": "d", "seq": u64::MAX}),
            "seq",
        ),
        ("POST", PUSH, json!({"acc": " ", "device_id": "d"}), "acc"),
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": ""}),
            "device_id",
        ),
        (
            "POST",
            PUSH,
            json!({"acc": "a".repeat(257), "device_id": "d"}),
            "acc",
        ),
        (
            "POST",
            PUSH,
            json!({"acc": "a", "device_id": "d", "self_phone": {}}),
            "self_phone",
        ),
        (
            "POST",
            BAIDU,
            json!({"account": "a", "user_id": "u", "channel_id": ""}),
            "channel_id",
        ),
        (
            "POST",
            BAIDU,
            json!({"account": "a", "user_id": "", "channel_id": "c"}),
            "user_id",
        ),
        (
            "POST",
            BAIDU,
            json!({"account": "a", "user_id": "u", "channel_id": "c".repeat(257)}),
            "channel_id",
        ),
        // p2p: opdata
        ("POST", P2P_RINGING, json!({"opdata": ""}), "opdata"),
        ("POST", P2P_RINGING, json!({"opdata": null}), "opdata"),
        (
            "POST",
            P2P_RINGING,
            json!({"opdata": "x".repeat(4097)}),
            "opdata",
        ),
        (
            "POST",
            P2P_POLL,
            json!({"opdata": {"pad": "x".repeat(4096)}}),
            "opdata",
        ),
        ("POST", P2P_REJECT, json!({"opdata": [1, 2]}), "opdata"),
        (
            "POST",
            P2P_REJECT,
            json!({"opdata": "o", "reason": "maybe"}),
            "reason",
        ),
        (
            "POST",
            P2P_ANSWER,
            json!({"opdata": "o", "sdp": OFFER}),
            "sdp",
        ),
        (
            "POST",
            P2P_ANSWER,
            json!({"opdata": "o", "sdp": {"ip": "nonsense", "port": 5}}),
            "sdp.ip",
        ),
        (
            "POST",
            P2P_ANSWER,
            json!({"opdata": "o", "sdp": {"ip": "1.2.3.4", "port": 0}}),
            "sdp.port",
        ),
        (
            "POST",
            P2P_ANSWER,
            json!({"opdata": "o", "sdp": {"ip": "1.2.3.4", "port": 5}, "clidata": "[1]"}),
            "clidata",
        ),
        (
            "POST",
            IP2P_ANSWER,
            json!({"opdata": "o", "sdp": {"ip": "1.2.3.4", "port": 5}}),
            "sdp",
        ),
        (
            "POST",
            IP2P_ANSWER,
            json!({"opdata": "o", "sdp": " "}),
            "sdp",
        ),
        (
            "POST",
            IP2P_ANSWER,
            json!({"opdata": "x".repeat(5000), "sdp": OFFER}),
            "opdata",
        ),
        // callback
        (
            "POST",
            CALLBACK,
            json!({"uuid": "u", "local": "abc", "remote": "1"}),
            "local",
        ),
        (
            "POST",
            CALLBACK,
            json!({"uuid": "u", "local": "1", "remote": "1@evil.com"}),
            "remote",
        ),
        (
            "POST",
            CALLBACK,
            json!({"uuid": "u", "local": "1", "remote": "1;tag=x"}),
            "remote",
        ),
        (
            "POST",
            CALLBACK,
            json!({"uuid": "", "local": "1", "remote": "2"}),
            "uuid",
        ),
        ("DELETE", CALLBACK, json!({"session_id": ""}), "session_id"),
    ];
    for (method, path, body, field) in cases {
        let r = send_json(&app, method, path, &body).await;
        check(&format!("{method} {path} {body}"), &r);
        assert_eq!(r.status, 400);
        assert!(detail(&r).starts_with(field), "{body}: {:?}", r.body);
    }
    assert_eq!(mock.count(), 0);
}
