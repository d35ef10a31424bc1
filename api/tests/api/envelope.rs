//! The data_enc envelope: requests in body, form and query; replies decoded the way an
//! app does it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::mock::*;

/// 7 arbitrary characters + base64(plain).
fn wrap(plain: &Value) -> String {
    format!("Xy9$%q!{}", STANDARD.encode(plain.to_string()))
}

/// Drops the 2 characters after the 3rd and base64-decodes.
fn unwrap_reply(r: &Resp) -> Value {
    let keys: Vec<_> = r.body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["data_enc"], "{:?}", r.body);
    let y = r.body["data_enc"].as_str().unwrap();
    let b64 = format!("{}{}", &y[..3], &y[5..]);
    serde_json::from_slice(&STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn round_trip_on_every_route() {
    let (app, _) = app();
    for case in cases() {
        let env = json!({"data_enc": wrap(&case.body)});
        let r = if case.method == "GET" {
            send_query(&app, case.method, case.path, &env).await
        } else {
            send_json(&app, case.method, case.path, &env).await
        };
        assert_eq!(r.status, 200, "{} {}: {:?}", case.method, case.path, r.body);
        let plain = unwrap_reply(&r);
        assert_eq!(
            plain["status"], "ok",
            "{} {}: {plain}",
            case.method, case.path
        );
    }
}

#[tokio::test]
async fn reply_content_matches_the_plain_reply() {
    let (app, _) = app();
    let body = json!({"acc": "alice", "pwd": "p", "device_id": "d"});
    let plain = send_json(&app, "POST", "/lwork/mobile/login", &body)
        .await
        .body;
    let r = send_form(
        &app,
        "POST",
        "/lwork/mobile/login/",
        &json!({"data_enc": wrap(&body)}),
    )
    .await;
    assert_eq!(unwrap_reply(&r), plain);
    assert_eq!(
        plain,
        json!({"status": "ok", "uuid": "u-1", "info": {"nick": "x"}, "token": "tok-1"})
    );
    // Two replies to the same request differ in their junk characters only (usually).
    let again = send_form(
        &app,
        "POST",
        "/lwork/mobile/login/",
        &json!({"data_enc": wrap(&body)}),
    )
    .await;
    assert_eq!(unwrap_reply(&again), plain);
}

#[tokio::test]
async fn failures_inside_an_envelope_are_enveloped() {
    let (app, mock) = app();
    // Decodes, but a field is missing: still answered in the envelope.
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        &json!({"data_enc": wrap(&json!({"num": "1"}))}),
    )
    .await;
    assert_eq!(r.status, 400);
    let plain = unwrap_reply(&r);
    assert_eq!(
        plain,
        json!({"status": "failed", "reason": "bad_request", "detail": "session_id: missing"})
    );
    // A business failure.
    mock.fail_with(Some(api::Failure::SessionNotExist));
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        &json!({"data_enc": wrap(&json!({"num": "1", "session_id": "s"}))}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        unwrap_reply(&r),
        json!({"status": "failed", "reason": "session_not_exist"})
    );
}

#[tokio::test]
async fn form_encoded_plus_signs_and_line_breaks_survive() {
    let (app, mock) = app();
    // base64 of this text contains '+' and '/'.
    let body = json!({"session_id": "s>>>?", "num": "1"});
    let b64 = STANDARD.encode(body.to_string());
    assert!(b64.contains('+') || b64.contains('/'), "{b64}");
    // A sloppy client: '+' not percent-encoded (becomes a space), lines wrapped.
    let x = format!("1234567{}\n", b64.replace("=", ""));
    let raw = format!("data_enc={}", x.replace('\n', "%0A").replace('/', "%2F"));
    let r = send(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        Some("application/x-www-form-urlencoded"),
        raw,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let crate::mock::Seen::Dtmf(d) = mock.last() else {
        panic!()
    };
    assert_eq!(d.session_id, "s>>>?");
}

#[tokio::test]
async fn undecodable_envelopes_are_bad_data_enc() {
    let (app, mock) = app();
    for env in [
        json!({"data_enc": "short"}),
        json!({"data_enc": "1234567%%%notbase64"}),
        json!({"data_enc": 12345678}),
        json!({"data_enc": {"a": 1}}),
        json!({"data_enc": format!("1234567{}", STANDARD.encode("[1,2]"))}),
        json!({"data_enc": format!("1234567{}", STANDARD.encode("not json"))}),
    ] {
        for case in cases() {
            let r = send_json(&app, case.method, case.path, &env).await;
            assert_failed(&r, 400, "bad_data_enc");
            assert_eq!(
                r.body,
                json!({"status": "failed", "reason": "bad_data_enc"})
            );
        }
    }
    assert_eq!(mock.count(), 0);
}
