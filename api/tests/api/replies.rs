//! Wire formats of the replies, exactly as API.md writes them, and the mapping of
//! failures to HTTP statuses.

use std::sync::atomic::Ordering;

use api::*;
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
        (Failure::Unlogined, 200, "unlogined"),
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
    for case in cases().iter().filter(|c| {
        c.method == "POST" && [IOS, ANDROID, WEB_START, P2P_ANSWER, IP2P_ANSWER].contains(&c.path)
    }) {
        let r = send_case(&app, case, case.path).await;
        assert_failed(&r, 500, "internal");
    }
}

fn case(method: &str, path: &str) -> Case {
    cases()
        .into_iter()
        .find(|c| c.method == method && c.path == path)
        .unwrap()
}

#[tokio::test]
async fn part_two_replies_have_the_exact_shapes() {
    let (app, mock) = app();

    let r = send_case(&app, &case("POST", PUSH), PUSH).await;
    assert_eq!(r.body, json!({"status": "ok", "data": push_events()}));
    assert!(
        r.raw.starts_with(br#"{"status":"ok","data":["#),
        "{:?}",
        r.body
    );
    mock.gap.store(true, Ordering::SeqCst);
    let r = send_case(&app, &case("POST", PUSH), PUSH).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "data": push_events(), "gap": true})
    );

    let r = send_case(&app, &case("POST", P2P_ANSWER), P2P_ANSWER).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "session_id": "sid-1", "ip": "192.0.2.1", "port": 30000,
               "codec_name": "AMR", "payload_mode": "octet-aligned", "rssrc": 12345})
    );
    let r = send_case(&app, &case("POST", IP2P_ANSWER), IP2P_ANSWER).await;
    assert_eq!(
        r.body,
        json!({"status": "ok", "session_id": "sid-1", "sdp": ANSWER_SDP})
    );

    let r = send_case(&app, &case("POST", CALLBACK), CALLBACK).await;
    assert_eq!(r.raw, br#"{"status":"ok","session_id":"cb-1"}"#);

    for (method, path) in [
        ("POST", BAIDU),
        ("POST", P2P_RINGING),
        ("POST", P2P_REJECT),
        ("DELETE", CALLBACK),
    ] {
        let r = send_case(&app, &case(method, path), path).await;
        assert_eq!(r.raw, br#"{"status":"ok"}"#, "{method} {path}");
    }

    let r = send_case(&app, &case("POST", P2P_POLL), P2P_POLL).await;
    assert_eq!(r.raw, br#"{"status":"ok","peer_status":"hookoff"}"#);
}

/// Every state, old and new (callback), spelled exactly, on every status route.
#[tokio::test]
async fn every_peer_status_is_spelled_exactly() {
    let (app, mock) = app();
    let states = [
        (PeerStatus::Idle, "idle"),
        (PeerStatus::Ring, "ring"),
        (PeerStatus::Hookoff, "hookoff"),
        (PeerStatus::P2pIdle, "p2p_idle"),
        (PeerStatus::P2pRing, "p2p_ring"),
        (PeerStatus::P2pHookoff, "p2p_hookoff"),
        (PeerStatus::Release, "release"),
        (PeerStatus::ARinging, "a_ringing"),
        (PeerStatus::AAnswered, "a_answered"),
        (PeerStatus::BRinging, "b_ringing"),
        (PeerStatus::Bridged, "bridged"),
    ];
    for (state, text) in states {
        *mock.peer_status.lock().unwrap() = Some(state);
        for path in [IOS, ANDROID] {
            let r = send_query(&app, "GET", path, &json!({"session_id": "cb-1"})).await;
            assert_eq!(r.body["peer_status"], text, "{path}");
        }
        let r = send_query(&app, "GET", WEB, &json!({"session_id": "cb-1"})).await;
        assert_eq!(r.body["state"], text);
        let r = send_case(&app, &case("POST", P2P_POLL), P2P_POLL).await;
        assert_eq!(r.body, json!({"status": "ok", "peer_status": text}));
    }
}

/// What a switch that does not implement part 2 yet answers: the trait's defaults.
#[tokio::test]
async fn unimplemented_switch_methods_are_503() {
    struct Part1Only;
    impl Switch for Part1Only {
        async fn auth_code(&self, _: AuthCodeReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn register(&self, _: RegisterReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn forget_pwd(&self, _: ForgetPwdReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn modify_pwd(&self, _: ModifyPwdReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn add_info(&self, _: AddInfoReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn login(&self, _: LoginReq) -> Result<LoginOk, Failure> {
            Err(Failure::BadPassword)
        }
        async fn logout(&self, _: LogoutReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn query_status(&self, _: QueryStatusReq) -> Result<Vec<UserState>, Failure> {
            Ok(Vec::new())
        }
        async fn start_call(&self, _: StartCallReq) -> Result<CallStarted, Failure> {
            Err(Failure::NoTrunk)
        }
        async fn stop_call(&self, _: SessionReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn call_status(&self, _: SessionReq) -> Result<CallStatus, Failure> {
            Err(Failure::SessionNotExist)
        }
        async fn dtmf(&self, _: DtmfReq) -> Result<(), Failure> {
            Ok(())
        }
        async fn call_history(&self, _: HistoryReq) -> Result<Vec<HistoryGroup>, Failure> {
            Ok(Vec::new())
        }
    }
    let app = api::router(std::sync::Arc::new(Part1Only), api::ApiConfig::default());
    for path in [
        PUSH,
        BAIDU,
        P2P_RINGING,
        P2P_ANSWER,
        IP2P_ANSWER,
        P2P_REJECT,
        P2P_POLL,
        CALLBACK,
    ] {
        for c in cases().iter().filter(|c| c.path == path) {
            let r = send_case(&app, c, c.path).await;
            assert_failed(&r, 503, "unavailable");
        }
    }
}
