//! A `Switch` that records every call and answers with canned results, and helpers to
//! send requests through the router without sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use api::*;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    AuthCode(AuthCodeReq),
    Register(RegisterReq),
    ForgetPwd(ForgetPwdReq),
    ModifyPwd(ModifyPwdReq),
    AddInfo(AddInfoReq),
    Login(LoginReq),
    Logout(LogoutReq),
    QueryStatus(QueryStatusReq),
    StartCall(StartCallReq),
    StopCall(SessionReq),
    CallStatus(SessionReq),
    Dtmf(DtmfReq),
    History(HistoryReq),
    PushPoll(PushPollReq),
    PushRegister(PushRegisterReq),
    P2pRinging(OpdataReq),
    P2pAnswer(P2pAnswerReq),
    P2pReject(P2pRejectReq),
    P2pPoll(OpdataReq),
    CallbackStart(CallbackReq),
    CallbackStop(CallbackStopReq),
}

#[derive(Default)]
pub struct Mock {
    pub seen: Mutex<Vec<Seen>>,
    pub fail: Mutex<Option<Failure>>,
    pub delay: Mutex<Option<Duration>>,
    pub panic: AtomicBool,
    /// Answer start requests with the wrong kind of media (SDP for endpoint, ...).
    pub wrong_answer: AtomicBool,
    /// What status requests (and p2p_poll) answer; `hookoff` when unset.
    pub peer_status: Mutex<Option<PeerStatus>>,
    /// Long polls answer with `gap: true`.
    pub gap: AtomicBool,
}

impl Mock {
    async fn hit(&self, seen: Seen) -> Result<(), Failure> {
        self.seen.lock().unwrap().push(seen);
        if self.panic.load(Ordering::SeqCst) {
            panic!("mock switch told to panic");
        }
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        match self.fail.lock().unwrap().clone() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no call seen")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn fail_with(&self, f: Option<Failure>) {
        *self.fail.lock().unwrap() = f;
    }

    pub fn set_delay(&self, d: Option<Duration>) {
        *self.delay.lock().unwrap() = d;
    }

    fn peer_status(&self) -> PeerStatus {
        self.peer_status
            .lock()
            .unwrap()
            .unwrap_or(PeerStatus::Hookoff)
    }

    /// A session answered with the same kind of media as offered (or the other kind
    /// when told to answer wrongly).
    fn started(&self, offer: &SdpParam) -> CallStarted {
        let text = matches!(offer, SdpParam::Text(_)) != self.wrong_answer.load(Ordering::SeqCst);
        CallStarted {
            session_id: "sid-1".into(),
            answer: if text {
                CallAnswer::Sdp(ANSWER_SDP.into())
            } else {
                CallAnswer::Relay(RelayAnswer {
                    ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    port: 30000,
                    codec_name: "AMR".into(),
                    payload_mode: PayloadMode::OctetAligned,
                    rssrc: 12345,
                })
            },
        }
    }
}

/// The events every long poll of the mock answers with.
pub fn push_events() -> Vec<Value> {
    vec![
        json!({"event": "p2p_inform_called", "seq": 5, "caller": "13800138000", "opdata": "op-1"}),
        json!({"event": "caller_hookon", "seq": 6, "caller": "13800138000"}),
    ]
}

pub const ANSWER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n";

pub fn stats() -> CallStats {
    CallStats {
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        pr: 100,
        pl: 2,
        jitter: 3.5,
        avg_ij: 2.5,
        lostrate: 0.02,
        rttms: 40.0,
        avgrttms: 42.5,
        down_jitter: 4.0,
        down_lostrate: 0.01,
        total_eval: 4.1,
        detail_eval: DetailEval {
            app_up: Some(4.2),
            app_down: Some(4.0),
            trunk_up: None,
            trunk_down: None,
        },
    }
}

impl Switch for Mock {
    async fn auth_code(&self, req: AuthCodeReq) -> Result<(), Failure> {
        self.hit(Seen::AuthCode(req)).await
    }
    async fn register(&self, req: RegisterReq) -> Result<(), Failure> {
        self.hit(Seen::Register(req)).await
    }
    async fn forget_pwd(&self, req: ForgetPwdReq) -> Result<(), Failure> {
        self.hit(Seen::ForgetPwd(req)).await
    }
    async fn modify_pwd(&self, req: ModifyPwdReq) -> Result<(), Failure> {
        self.hit(Seen::ModifyPwd(req)).await
    }
    async fn add_info(&self, req: AddInfoReq) -> Result<(), Failure> {
        self.hit(Seen::AddInfo(req)).await
    }
    async fn login(&self, req: LoginReq) -> Result<LoginOk, Failure> {
        self.hit(Seen::Login(req)).await?;
        Ok(LoginOk {
            uuid: "u-1".into(),
            info: json!({"nick": "x"}),
            token: Some("tok-1".into()),
        })
    }
    async fn logout(&self, req: LogoutReq) -> Result<(), Failure> {
        self.hit(Seen::Logout(req)).await
    }
    async fn query_status(&self, req: QueryStatusReq) -> Result<Vec<UserState>, Failure> {
        let users = req.users.clone();
        self.hit(Seen::QueryStatus(req)).await?;
        Ok(users
            .into_iter()
            .map(|u| UserState {
                acc: u.acc,
                phone: u.phone,
                state: Presence::Online,
            })
            .collect())
    }
    async fn start_call(&self, req: StartCallReq) -> Result<CallStarted, Failure> {
        let started = self.started(&req.sdp);
        self.hit(Seen::StartCall(req)).await?;
        Ok(started)
    }
    async fn stop_call(&self, req: SessionReq) -> Result<(), Failure> {
        self.hit(Seen::StopCall(req)).await
    }
    async fn call_status(&self, req: SessionReq) -> Result<CallStatus, Failure> {
        self.hit(Seen::CallStatus(req)).await?;
        Ok(CallStatus {
            peer_status: self.peer_status(),
            stats: Some(stats()),
        })
    }
    async fn dtmf(&self, req: DtmfReq) -> Result<(), Failure> {
        self.hit(Seen::Dtmf(req)).await
    }
    async fn call_history(&self, req: HistoryReq) -> Result<Vec<HistoryGroup>, Failure> {
        self.hit(Seen::History(req)).await?;
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        Ok(vec![HistoryGroup {
            id: 7,
            caller: "13788927293".into(),
            callee: "888888".into(),
            times: 2,
            detail: vec![
                HistoryCall {
                    kind: "outbound".into(),
                    calltime: at(1_432_312_120),
                    ringtime: Some(at(1_432_312_125)),
                    starttime: Some(at(1_432_312_129)),
                    duration: 1,
                },
                HistoryCall {
                    kind: "outbound".into(),
                    calltime: at(1_432_398_529),
                    ringtime: None,
                    starttime: None,
                    duration: 0,
                },
            ],
        }])
    }

    async fn push_poll(&self, req: PushPollReq) -> Result<PushPollOk, Failure> {
        self.hit(Seen::PushPoll(req)).await?;
        Ok(PushPollOk {
            events: push_events(),
            gap: self.gap.load(Ordering::SeqCst),
        })
    }
    async fn push_register(&self, req: PushRegisterReq) -> Result<(), Failure> {
        self.hit(Seen::PushRegister(req)).await
    }
    async fn p2p_ringing(&self, req: OpdataReq) -> Result<(), Failure> {
        self.hit(Seen::P2pRinging(req)).await
    }
    async fn p2p_answer(&self, req: P2pAnswerReq) -> Result<CallStarted, Failure> {
        let started = self.started(&req.sdp);
        self.hit(Seen::P2pAnswer(req)).await?;
        Ok(started)
    }
    async fn p2p_reject(&self, req: P2pRejectReq) -> Result<(), Failure> {
        self.hit(Seen::P2pReject(req)).await
    }
    async fn p2p_poll(&self, req: OpdataReq) -> Result<PeerStatus, Failure> {
        self.hit(Seen::P2pPoll(req)).await?;
        Ok(self.peer_status())
    }
    async fn callback_start(&self, req: CallbackReq) -> Result<String, Failure> {
        self.hit(Seen::CallbackStart(req)).await?;
        Ok("cb-1".into())
    }
    async fn callback_stop(&self, req: CallbackStopReq) -> Result<(), Failure> {
        self.hit(Seen::CallbackStop(req)).await
    }
}

pub fn app() -> (Router, Arc<Mock>) {
    app_with(ApiConfig::default())
}

pub fn app_with(cfg: ApiConfig) -> (Router, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    (api::router(Arc::clone(&mock), cfg), mock)
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

pub async fn send_req(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        raw,
        body,
    }
}

pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Vec<u8>>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    send_req(app, b.body(Body::from(body.into())).unwrap()).await
}

pub async fn send_json(app: &Router, method: &str, uri: &str, body: &Value) -> Resp {
    send(
        app,
        method,
        uri,
        Some("application/json"),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// Form/query encoding of a flat-or-nested object: nested values as their JSON text,
/// as a web page would have to send them.
pub fn form(body: &Value) -> String {
    let pairs: Vec<(String, String)> = body
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_urlencoded::to_string(pairs).unwrap()
}

pub async fn send_form(app: &Router, method: &str, uri: &str, body: &Value) -> Resp {
    send(
        app,
        method,
        uri,
        Some("application/x-www-form-urlencoded"),
        form(body),
    )
    .await
}

pub async fn send_query(app: &Router, method: &str, uri: &str, body: &Value) -> Resp {
    send(
        app,
        method,
        &format!("{uri}?{}", form(body)),
        None,
        Vec::new(),
    )
    .await
}

/// The SDP offer the iOS and web cases send.
pub const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n";

pub const IOS: &str = "/lwork/mobile/voip/icalls";
pub const ANDROID: &str = "/lwork/mobile/voip/calls";
pub const WEB_START: &str = "/lwork/mobile/fzdvoip";
pub const WEB: &str = "/lwork/voices1/fzdvoip";
pub const PUSH: &str = "/channel/push_service";
pub const BAIDU: &str = "/lwork/mobile/baidu_push_register";
pub const P2P_RINGING: &str = "/lwork/mobile/p2p_ringing";
pub const P2P_ANSWER: &str = "/lwork/mobile/p2p_answer";
pub const IP2P_ANSWER: &str = "/lwork/mobile/ip2p_answer";
pub const P2P_REJECT: &str = "/lwork/mobile/p2p_reject";
pub const P2P_POLL: &str = "/lwork/mobile/p2p_poll";
pub const CALLBACK: &str = "/lwork/mobile/callback";

/// A sip_call_in opdata, as the app got it in its p2p_inform_called event.
pub fn sip_opdata() -> Value {
    json!({"event": "sip_call_in", "caller": "13800138000", "callee": "13900000000",
           "session_id": "sid-9", "ip": "192.0.2.1", "port": 30000, "codec_name": "AMR",
           "payload_mode": "octet-aligned", "rssrc": 12345})
}

pub struct Case {
    pub method: &'static str,
    pub path: &'static str,
    /// A complete valid request.
    pub body: Value,
    /// Fields whose absence is a bad_request, with the name the detail must start with.
    pub required: &'static [&'static str],
}

/// One valid request for every endpoint of the crate.
#[rustfmt::skip]
pub fn cases() -> Vec<Case> {
    let session = json!({"uuid": "u-1", "session_id": "sid-1", "t": 1_700_000_000});
    let c = |method, path, body, required| Case {
        method,
        path,
        body,
        required,
    };
    vec![
        c("POST", "/lwork/sms/auth_code",
          json!({"uuid": "13800138000", "device_id": "d1", "type": "register"}),
          &["uuid", "device_id", "type"]),
        c("POST", "/lwork/mobile/register",
          json!({"type": "sms", "uuid": "13800138000", "device_id": "d1", "auth_code": "1234", "name": "n", "pwd": "p"}),
          &["type", "uuid", "device_id", "auth_code", "pwd"]),
        c("POST", "/lwork/mobile/forget_pwd",
          json!({"type": "sms", "uuid": "13800138000", "device_id": "d1", "auth_code": "1234", "pwd": "p", "name": "n"}),
          &["uuid", "device_id", "auth_code", "pwd"]),
        c("POST", "/lwork/mobile/modify_pwd",
          json!({"type": "sms", "uuid": "u-1", "device_id": "d1", "old_pwd": "a", "pwd": "b"}),
          &["uuid", "device_id", "old_pwd", "pwd"]),
        c("POST", "/lwork/mobile/add_info",
          json!({"uuid": "u-1", "device_id": "d1", "info": {"nick": "x", "age": 3}}),
          &["uuid", "device_id", "info"]),
        c("POST", "/lwork/mobile/login",
          json!({"acc": "alice", "pwd": "p", "device_id": "d1", "clidata": {"os_type": "android"}, "name": "n", "group_id": "g"}),
          &["acc", "pwd", "device_id"]),
        c("POST", "/lwork/mobile/logout",
          json!({"uuid": "u-1", "device_id": "d1", "clidata": {"os_type": "android"}}),
          &["uuid", "device_id"]),
        c("POST", "/lwork/mobile/query_status",
          json!({"users": [{"acc": "alice", "phone": "13800138000"}, {"acc": "bob", "phone": ""}]}),
          &["users"]),
        c("POST", IOS,
          json!({"uuid": "u-1", "caller_phone": "13900000000", "phone": "13800138000", "userclass": "game", "sdp": OFFER, "dev_id": "d1", "type": "p2p", "acc": "alice", "clidata": {"os_type": "ios"}}),
          &["uuid", "phone", "sdp"]),
        c("DELETE", IOS, session.clone(), &["session_id"]),
        c("GET", IOS, session.clone(), &["session_id"]),
        c("POST", ANDROID,
          json!({"user_id": "u-1", "caller_phone": "13900000000", "callee_phone": "13800138000", "sdp": {"ip": "10.0.0.2", "port": 4000}, "userclass": "game", "dev_id": "d1", "type": "p2p", "acc": "alice", "clidata": {"os_type": "android"}}),
          &["user_id", "callee_phone", "sdp"]),
        c("DELETE", ANDROID, session.clone(), &["session_id"]),
        c("GET", ANDROID, session.clone(), &["session_id"]),
        c("POST", WEB_START,
          json!({"uuid": "u-1", "phone": "13800138000", "userclass": "web", "sdp": OFFER, "t": 1}),
          &["uuid", "phone", "sdp"]),
        c("DELETE", WEB, session.clone(), &["session_id"]),
        c("GET", WEB, session, &["session_id"]),
        c("POST", "/lwork/mobile/voip/dtmf",
          json!({"session_id": "sid-1", "num": "12#"}),
          &["session_id", "num"]),
        c("POST", "/lwork/mobile/call_history",
          json!({"uuid": "u-1", "start_id": 0, "num": 10}),
          &["uuid"]),
        c("POST", PUSH,
          json!({"acc": "alice", "device_id": "d1", "self_phone": "13800138000", "seq": 4}),
          &["acc", "device_id"]),
        c("POST", BAIDU,
          json!({"caller": "13800138000", "account": "alice", "user_id": "b-user-1", "channel_id": "4032912734829", "device_id": "d1"}),
          &["account", "user_id", "channel_id"]),
        c("POST", P2P_RINGING, json!({"opdata": "op-1"}), &["opdata"]),
        c("POST", P2P_ANSWER,
          json!({"caller_phone": "13800138000", "callee_phone": "13900000000", "sdp": {"ip": "10.0.0.2", "port": 4000}, "userclass": "game", "opdata": sip_opdata(), "clidata": {"os_type": "android"}}),
          &["sdp", "opdata"]),
        c("POST", IP2P_ANSWER,
          json!({"caller_phone": "13800138000", "callee_phone": "13900000000", "sdp": OFFER, "userclass": "game", "opdata": "op-1", "clidata": {"os_type": "ios"}}),
          &["sdp", "opdata"]),
        c("POST", P2P_REJECT, json!({"opdata": "op-1", "reason": "busy"}), &["opdata"]),
        c("POST", P2P_POLL, json!({"opdata": sip_opdata()}), &["opdata"]),
        c("POST", CALLBACK,
          json!({"uuid": "u-1", "local": "13900000000", "remote": "+86 138-0013-8000", "dev_id": "d1"}),
          &["uuid", "local", "remote"]),
        c("DELETE", CALLBACK, json!({"session_id": "cb-1", "uuid": "u-1"}), &["session_id"]),
    ]
}

/// The params of a case the way its client sends them: query string for GET (and web
/// DELETE), JSON otherwise.
pub async fn send_case(app: &Router, case: &Case, path: &str) -> Resp {
    if case.method == "GET" {
        send_query(app, case.method, path, &case.body).await
    } else {
        send_json(app, case.method, path, &case.body).await
    }
}

pub fn assert_failed(r: &Resp, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["status"], "failed", "{:?}", r.body);
    assert_eq!(r.body["reason"], reason, "{:?}", r.body);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/json",
        "{:?}",
        r.body
    );
}
