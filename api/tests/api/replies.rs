//! Wire formats of the replies, exactly as API.md writes them, and the mapping of
//! failures to HTTP statuses.

use std::sync::atomic::Ordering;

use api::Failure;
use serde_json::json;

use crate::mock::*;

#[tokio::test]
async fn ok_replies_have_the_exact_shapes() {
    let (app, _) = app();
    let by_path = |method: &str, path: &str| {
        cases()
            .into_iter()
            .find(|c| c.method == method && c.path == path)
            .unwrap()
    };

    let r = send_case(&app, &by_path("POST", IOS), IOS).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "session_id": "sid-1", "sdp": ANSWER_SDP})
    );
    assert!(
        r.raw.starts_with(br#"{"status":"ok","#),
        "status goes first"
    );
    let r = send_case(&app, &by_path("POST", WEB_START), WEB_START).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "session_id": "sid-1", "sdp": ANSWER_SDP})
    );

    let r = send_case(&app, &by_path("POST", ANDROID), ANDROID).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "session_id": "sid-1", "ip": "192.0.2.1", "port": 30000,
               "codec_name": "AMR", "payload_mode": "octet-aligned", "rssrc": 12345})
    );

    let stats = json!({"ip": "203.0.113.7", "pr": 100, "pl": 2, "jitter": 3.5, "avgIJ": 2.5,
        "lostrate": 0.02, "rttms": 40.0, "avgrttms": 42.5, "down_jitter": 4.0,
        "down_lostrate": 0.01, "total_eval": 4.1,
        "detail_eval": {"app_to_switch": 4.2, "switch_to_app": 4.0}});
    for path in [IOS, ANDROID] {
        let r = send_case(&app, &by_path("GET", path), path).await;
        assert_eq!(
            r.body,
            json!({"status": "ok", "peer_status": "hookoff", "stats": stats})
        );
    }
    let r = send_case(&app, &by_path("GET", WEB), WEB).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "state": "hookoff", "stats": stats})
    );

    for (method, path) in [
        ("DELETE", IOS),
        ("DELETE", WEB),
        ("POST", "/lwork/mobile/voip/dtmf"),
        ("POST", "/lwork/sms/auth_code"),
    ] {
        let r = send_case(&app, &by_path(method, path), path).await;
        assert_eq!(r.raw, br#"{"status":"ok"}"#, "{method} {path}");
    }

    let r = send_case(
        &app,
        &by_path("POST", "/lwork/mobile/call_history"),
        "/lwork/mobile/call_history",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "history": [{"id": 7, "caller": "13788927293", "callee": "888888", "times": 2, "detail": [
            {"type": "outbound", "calltime": "2015-5-22 16:28:40", "ringtime": "2015-5-22 16:28:45", "starttime": "2015-5-22 16:28:49", "duration": 1},
            {"type": "outbound", "calltime": "2015-5-23 16:28:49", "ringtime": "", "starttime": "", "duration": 0}
        ]}]})
    );

    let r = send_case(
        &app,
        &by_path("POST", "/lwork/mobile/login"),
        "/lwork/mobile/login",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "uuid": "u-1", "info": {"nick": "x"}, "token": "tok-1"})
    );
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");

    let r = send_case(
        &app,
        &by_path("POST", "/lwork/mobile/query_status"),
        "/lwork/mobile/query_status",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "data": [{"acc": "alice", "phone": "13800138000", "state": "online"}, {"acc": "bob", "phone": "", "state": "online"}]})
    );
}

#[tokio::test]
async fn history_times_in_a_configured_zone() {
    let mut cfg = api::ApiConfig::default();
    cfg.history_utc_offset_secs = 8 * 3600;
    let (app, _) = app_with(cfg);
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/call_history",
        &json!({"uuid": "u"}),
    )
    .await;
    assert_eq!(
        r.body["history"][0]["detail"][0]["starttime"],
        "2015-5-23 00:28:49"
    );
}

#[tokio::test]
async fn failures_map_to_statuses_on_every_route() {
    let table = [
        (Failure::NoLogind, 200, "no_logind"),
        (Failure::NotActived, 200, "not_actived"),
        (Failure::BadPassword, 200, "bad_password"),
        (Failure::BadAuthCode, 200, "bad_auth_code"),
        (Failure::AlreadyRegistered, 200, "already_registered"),
        (Failure::NotRegistered, 200, "not_registered"),
        (Failure::SessionNotExist, 200, "session_not_exist"),
        (Failure::NoMinutes, 200, "no_minutes"),
        (Failure::BadSdp, 200, "bad_sdp"),
        (Failure::NoCodec, 200, "no_codec"),
        (Failure::Busy, 200, "busy"),
        (Failure::NoTrunk, 200, "no_trunk"),
        (
            Failure::AlreadyCallRealPhone,
            200,
            "already_call_real_phone",
        ),
        (Failure::RateLimited, 429, "rate_limited"),
        (Failure::BadToken, 401, "bad_token"),
        (
            Failure::bad_request("uuid", "unknown account"),
            400,
            "bad_request",
        ),
        (
            Failure::Unavailable("shutting down".into()),
            503,
            "unavailable",
        ),
        (Failure::Timeout, 504, "timeout"),
        (
            Failure::Internal("db password wrong at /etc/x".into()),
            500,
            "internal",
        ),
    ];
    let (app, mock) = app();
    for (failure, status, reason) in table {
        mock.fail_with(Some(failure.clone()));
        for case in cases() {
            let r = send_case(&app, &case, case.path).await;
            assert_failed(&r, status, reason);
            if reason == "bad_request" {
                assert_eq!(r.body["detail"], "uuid: unknown account");
            } else {
                assert_eq!(
                    r.body,
                    json!({"status": "failed", "reason": reason}),
                    "{failure:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn switch_answering_the_wrong_media_kind_is_an_internal_fault() {
    let (app, mock) = app();
    mock.wrong_answer.store(true, Ordering::SeqCst);
    for case in cases()
        .iter()
        .filter(|c| c.method == "POST" && [IOS, ANDROID, WEB_START].contains(&c.path))
    {
        let r = send_case(&app, case, case.path).await;
        assert_failed(&r, 500, "internal");
    }
}
