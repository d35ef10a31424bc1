//! Parameters from the query string, a form or JSON; lenient numbers; aliases.

use std::net::{IpAddr, Ipv4Addr};

use api::*;
use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::mock::*;

#[tokio::test]
async fn every_route_takes_json_form_and_query() {
    let (app, mock) = app();
    for case in cases() {
        for how in ["json", "form", "query"] {
            let r = match how {
                "json" => send_json(&app, case.method, case.path, &case.body).await,
                "form" => send_form(&app, case.method, case.path, &case.body).await,
                _ => send_query(&app, case.method, case.path, &case.body).await,
            };
            assert_eq!(
                r.status, 200,
                "{} {} as {how}: {:?}",
                case.method, case.path, r.body
            );
            assert_eq!(r.body["status"], "ok");
        }
        // The same domain request whichever way the parameters came.
        let seen = mock.seen.lock().unwrap().clone();
        let n = seen.len();
        assert_eq!(seen[n - 1], seen[n - 2], "{} {}", case.method, case.path);
        assert_eq!(seen[n - 2], seen[n - 3], "{} {}", case.method, case.path);
    }
}

#[tokio::test]
async fn numbers_as_strings_in_a_query() {
    let (app, mock) = app();
    let r = send(
        &app,
        "POST",
        "/lwork/mobile/call_history?uuid=u-1&start_id=0&num=10",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::History(h) = mock.last() else {
        panic!()
    };
    assert_eq!((h.uuid.as_str(), h.start_id, h.num), ("u-1", 0, 10));
    // Default page size, and empty values meaning "not given".
    send(
        &app,
        "POST",
        "/lwork/mobile/call_history?uuid=u-1&start_id=&num=",
        None,
        Vec::new(),
    )
    .await;
    let Seen::History(h) = mock.last() else {
        panic!()
    };
    assert_eq!((h.start_id, h.num), (0, 20));
}

#[tokio::test]
async fn body_wins_over_query_and_unknown_fields_are_ignored() {
    let (app, mock) = app();
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/call_history?num=5&uuid=from-query",
        &json!({"num": 10, "whatever": [1, {"x": null}], "t": "123"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::History(h) = mock.last() else {
        panic!()
    };
    assert_eq!((h.uuid.as_str(), h.num), ("from-query", 10));
}

#[tokio::test]
async fn json_without_or_with_odd_content_type() {
    let (app, mock) = app();
    let body = br#"{"session_id":"s","num":"1"}"#.to_vec();
    for ct in [
        None,
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/vnd.x+json"),
    ] {
        let r = send(&app, "POST", "/lwork/mobile/voip/dtmf", ct, body.clone()).await;
        assert_eq!(r.status, 200, "{ct:?}: {:?}", r.body);
    }
    // A form without a content type.
    let r = send(
        &app,
        "POST",
        "/lwork/mobile/voip/dtmf",
        None,
        "session_id=s&num=2",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::Dtmf(d) = mock.last() else { panic!() };
    assert_eq!(d.digits, "2");
}

#[tokio::test]
async fn start_requests_become_domain_requests() {
    let (app, mock) = app();
    let ios = json!({"user_id": "u-9", "callee_phone": "+86 138-0013-8000", "sdp": OFFER, "device_id": "d9", "type": "p2p", "token": "tk"});
    let r = send_json(&app, "POST", IOS, &ios).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::StartCall(StartCallReq {
            client: Client::Ios,
            uuid: "u-9".into(),
            caller_phone: None,
            callee: "+8613800138000".into(),
            userclass: None,
            sdp: SdpParam::Text(OFFER.into()),
            dev_id: Some("d9".into()),
            kind: CallKind::P2p,
            acc: None,
            clidata: None,
            token: Some("tk".into()),
        })
    );

    let android = json!({"uuid": "u-9", "phone": 13800138000u64, "sdp": {"ip": "10.0.0.2", "port": "4000"}, "clidata": {"os_type": "android"}});
    let r = send_json(&app, "POST", ANDROID, &android).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::StartCall(s) = mock.last() else {
        panic!()
    };
    assert_eq!(s.client, Client::Android);
    assert_eq!(s.callee, "13800138000");
    assert_eq!(s.kind, CallKind::Direct);
    assert_eq!(
        s.sdp,
        SdpParam::Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            port: 4000
        }
    );
    assert_eq!(s.clidata, Some(json!({"os_type": "android"})));

    // Web: a jQuery-style form.
    let r = send(
        &app,
        "POST",
        "/lwork/mobile/fzdvoip/",
        Some("application/x-www-form-urlencoded"),
        format!(
            "uuid=u-9&phone=10086&userclass=web&t=1&sdp={}",
            form_value(OFFER)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::StartCall(s) = mock.last() else {
        panic!()
    };
    assert_eq!(
        (s.client, s.callee.as_str(), s.userclass.as_deref()),
        (Client::Web, "10086", Some("web"))
    );
    assert_eq!(s.sdp, SdpParam::Text(OFFER.into()));
}

fn form_value(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)])
        .unwrap()
        .trim_start_matches("x=")
        .to_owned()
}

#[tokio::test]
async fn first_alias_wins_when_both_are_given() {
    let (app, mock) = app();
    send_json(
        &app,
        "POST",
        IOS,
        &json!({"uuid": "a", "user_id": "b", "phone": "1", "callee_phone": "2", "sdp": OFFER}),
    )
    .await;
    let Seen::StartCall(s) = mock.last() else {
        panic!()
    };
    assert_eq!((s.uuid.as_str(), s.callee.as_str()), ("a", "1"));
    send_json(&app, "POST", ANDROID, &json!({"uuid": "a", "user_id": "b", "phone": "1", "callee_phone": "2", "sdp": {"ip": "::1", "port": 9}})).await;
    let Seen::StartCall(s) = mock.last() else {
        panic!()
    };
    assert_eq!((s.uuid.as_str(), s.callee.as_str()), ("b", "2"));
}

#[tokio::test]
async fn bearer_token_is_a_token_parameter() {
    let (app, mock) = app();
    let req = Request::builder()
        .method("GET")
        .uri(format!("{WEB}?session_id=s1"))
        .header("authorization", "Bearer abc")
        .body(Body::empty())
        .unwrap();
    let r = send_req(&app, req).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::CallStatus(SessionReq {
            client: Client::Web,
            uuid: None,
            session_id: "s1".into(),
            token: Some("abc".into())
        })
    );
    // An explicit parameter beats the header.
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("{IOS}?session_id=s1&token=param"))
        .header("authorization", "Bearer abc")
        .body(Body::empty())
        .unwrap();
    send_req(&app, req).await;
    let Seen::StopCall(s) = mock.last() else {
        panic!()
    };
    assert_eq!((s.client, s.token.as_deref()), (Client::Ios, Some("param")));
}

#[tokio::test]
async fn structured_fields_as_json_text_in_forms() {
    let (app, mock) = app();
    let r = send_form(
        &app,
        "POST",
        "/lwork/mobile/query_status",
        &json!({"users": [{"acc": "a", "phone": 1}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "ok", "data": [{"acc": "a", "phone": "1", "state": "online"}]})
    );
    let Seen::QueryStatus(q) = mock.last() else {
        panic!()
    };
    assert_eq!(
        q.users,
        vec![UserRef {
            acc: "a".into(),
            phone: "1".into()
        }]
    );

    send_form(
        &app,
        "POST",
        "/lwork/mobile/add_info",
        &json!({"uuid": "u", "device_id": "d", "info": {"k": [1]}}),
    )
    .await;
    let Seen::AddInfo(a) = mock.last() else {
        panic!()
    };
    assert_eq!(serde_json::Value::Object(a.info), json!({"k": [1]}));
}

#[tokio::test]
async fn accounts_become_domain_requests() {
    let (app, mock) = app();
    send_json(
        &app,
        "POST",
        "/lwork/sms/auth_code",
        &json!({"uuid": 13800138000u64, "dev_id": "d", "type": "resetpwd"}),
    )
    .await;
    assert_eq!(
        mock.last(),
        Seen::AuthCode(AuthCodeReq {
            uuid: "13800138000".into(),
            device_id: "d".into(),
            kind: AuthCodeKind::ResetPwd
        })
    );

    // A delegate registration needs no auth code.
    let r = send_json(
        &app,
        "POST",
        "/lwork/mobile/register",
        &json!({"type": "delegate", "uuid": "u", "device_id": "d", "pwd": "p"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::Register(RegisterReq {
            kind: RegisterKind::Delegate,
            uuid: "u".into(),
            device_id: "d".into(),
            auth_code: None,
            name: None,
            pwd: "p".into()
        })
    );

    send_json(&app, "POST", "/lwork/mobile/login", &json!({"acc": "alice", "pwd": "p", "device_id": "d", "clidata": {"os_type": "ios", "v": 2}})).await;
    let Seen::Login(l) = mock.last() else {
        panic!()
    };
    assert_eq!(
        (l.acc.as_str(), l.os_type.as_deref()),
        ("alice", Some("ios"))
    );
    assert_eq!(l.clidata, Some(json!({"os_type": "ios", "v": 2})));
}

#[tokio::test]
async fn push_requests_become_domain_requests() {
    let (app, mock) = app();
    let r = send_json(
        &app,
        "POST",
        PUSH,
        &json!({"acc": "alice", "dev_id": "d1", "self_phone": "+86 138-0013-8000", "seq": "42", "token": "tk"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::PushPoll(PushPollReq {
            acc: "alice".into(),
            device_id: "d1".into(),
            self_phone: Some("+8613800138000".into()),
            last_seq: Some(42),
            token: Some("tk".into()),
        })
    );
    // The seed's request (no seq); an own number that is not one is ignored, not fatal.
    let r = send_form(
        &app,
        "POST",
        "/channel/push_service/",
        &json!({"acc": "alice", "device_id": "d1", "self_phone": "unknown"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let Seen::PushPoll(p) = mock.last() else {
        panic!()
    };
    assert_eq!((p.self_phone, p.last_seq), (None, None));
    // `last_seq` is an alias of `seq`.
    send_query(
        &app,
        "POST",
        PUSH,
        &json!({"acc": "a", "device_id": "d", "last_seq": 0}),
    )
    .await;
    let Seen::PushPoll(p) = mock.last() else {
        panic!()
    };
    assert_eq!(p.last_seq, Some(0));

    let r = send_json(
        &app,
        "POST",
        BAIDU,
        &json!({"caller": 13800138000u64, "account": "alice", "user_id": 1234567890123u64, "channel_id": "4032912734829"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::PushRegister(PushRegisterReq {
            caller: Some("13800138000".into()),
            account: "alice".into(),
            user_id: "1234567890123".into(),
            channel_id: "4032912734829".into(),
            device_id: None,
            token: None,
        })
    );
}

#[tokio::test]
async fn p2p_requests_become_domain_requests() {
    let (app, mock) = app();
    // opdata as a string: handed over as sent.
    send_json(&app, "POST", P2P_RINGING, &json!({"opdata": " op 1 "})).await;
    assert_eq!(
        mock.last(),
        Seen::P2pRinging(OpdataReq {
            opdata: " op 1 ".into(),
            token: None
        })
    );
    // opdata as an object (sip_call_in): its compact JSON text, keys sorted.
    send_json(
        &app,
        "POST",
        P2P_POLL,
        &json!({"opdata": {"port": 1, "event": "sip_call_in"}}),
    )
    .await;
    let Seen::P2pPoll(p) = mock.last() else {
        panic!()
    };
    assert_eq!(p.opdata, r#"{"event":"sip_call_in","port":1}"#);
    // The same opdata sent as an object or as its JSON text in a form is the same request.
    send_form(
        &app,
        "POST",
        P2P_POLL,
        &json!({"opdata": {"port": 1, "event": "sip_call_in"}}),
    )
    .await;
    assert_eq!(mock.last(), Seen::P2pPoll(p));

    for (body, busy) in [
        (json!({"opdata": "o"}), false),
        (json!({"opdata": "o", "reason": "decline"}), false),
        (json!({"opdata": "o", "reason": "Busy"}), true),
        (json!({"opdata": "o", "reason": ""}), false),
    ] {
        let r = send_json(&app, "POST", P2P_REJECT, &body).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.body);
        assert_eq!(
            mock.last(),
            Seen::P2pReject(P2pRejectReq {
                opdata: "o".into(),
                busy,
                token: None
            }),
            "{body}"
        );
    }

    let r = send_json(
        &app,
        "POST",
        P2P_ANSWER,
        &json!({"caller_phone": "alice", "callee_phone": "139 0000 0000", "sdp": {"ip": "10.0.0.2", "port": "4000"}, "opdata": "op-1", "clidata": {"os_type": "android"}, "token": "tk"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::P2pAnswer(P2pAnswerReq {
            client: Client::Android,
            opdata: "op-1".into(),
            caller_phone: None,
            callee_phone: Some("13900000000".into()),
            sdp: SdpParam::Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                port: 4000
            },
            userclass: None,
            clidata: Some(json!({"os_type": "android"})),
            token: Some("tk".into()),
        })
    );
    let r = send_json(
        &app,
        "POST",
        IP2P_ANSWER,
        &json!({"sdp": OFFER, "opdata": "op-2", "userclass": "game"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::P2pAnswer(P2pAnswerReq {
            client: Client::Ios,
            opdata: "op-2".into(),
            caller_phone: None,
            callee_phone: None,
            sdp: SdpParam::Text(OFFER.into()),
            userclass: Some("game".into()),
            clidata: None,
            token: None,
        })
    );
}

#[tokio::test]
async fn callback_requests_become_domain_requests() {
    let (app, mock) = app();
    let r = send_json(
        &app,
        "POST",
        CALLBACK,
        &json!({"user_id": "u-1", "local": 13900000000u64, "remote": "+86 (138) 0013-8000", "device_id": "d1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::CallbackStart(CallbackReq {
            uuid: "u-1".into(),
            local: "13900000000".into(),
            remote: "+8613800138000".into(),
            dev_id: Some("d1".into()),
            token: None,
        })
    );
    // Web pages send DELETE parameters in the query string.
    let r = send(
        &app,
        "DELETE",
        "/lwork/mobile/callback/?session_id=cb-1&t=9",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        mock.last(),
        Seen::CallbackStop(CallbackStopReq {
            session_id: "cb-1".into(),
            uuid: None,
            token: None,
        })
    );
}
