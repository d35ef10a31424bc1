//! What the HTTP layer asks of the switch: the [`Switch`] trait and its domain types.
//!
//! These are plain Rust types with no serde: the wire formats live in the endpoint
//! modules, which validate every field before a value of these types exists. So an
//! implementation can trust e.g. that a [`DtmfReq::digits`] holds only `0-9*#A-D`.

use std::future::Future;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::Failure;

/// Which app family sent a call request; decides the media description it speaks
/// (SDP text for iOS and web, a bare RTP endpoint with AMR for Android) and the reply
/// shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Ios,
    Android,
    Web,
}

/// `type` of an auth code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCodeKind {
    Register,
    ResetPwd,
}

/// `type` of register / forget_pwd / modify_pwd: verified by an SMS code or on behalf of
/// the user by a trusted party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterKind {
    Sms,
    Delegate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeReq {
    /// The phone number / account the code is for.
    pub uuid: String,
    pub device_id: String,
    pub kind: AuthCodeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReq {
    pub kind: RegisterKind,
    pub uuid: String,
    pub device_id: String,
    /// Always `Some` for [`RegisterKind::Sms`] (checked at the edge).
    pub auth_code: Option<String>,
    pub name: Option<String>,
    pub pwd: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetPwdReq {
    /// `None` when the client sent no `type` (treat as SMS).
    pub kind: Option<RegisterKind>,
    pub uuid: String,
    pub device_id: String,
    /// Always `Some` unless the kind is [`RegisterKind::Delegate`] (checked at the edge).
    pub auth_code: Option<String>,
    pub pwd: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyPwdReq {
    pub kind: Option<RegisterKind>,
    pub uuid: String,
    pub device_id: String,
    pub old_pwd: String,
    pub pwd: String,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddInfoReq {
    pub uuid: String,
    pub device_id: String,
    /// Free-form profile data, stored as given.
    pub info: serde_json::Map<String, serde_json::Value>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoginReq {
    /// Account name or phone number.
    pub acc: String,
    pub pwd: String,
    pub device_id: String,
    /// `clidata.os_type`, e.g. `android`, `ios`.
    pub os_type: Option<String>,
    pub name: Option<String>,
    pub group_id: Option<String>,
    /// The whole `clidata` object as sent, for the switch to keep.
    pub clidata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoginOk {
    /// The account id the app passes as `uuid` / `user_id` from now on.
    pub uuid: String,
    /// Profile data (what `add_info` stored), sent back as is.
    pub info: serde_json::Value,
    /// A login token bound to account and device; sent as `token` when `Some`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogoutReq {
    pub uuid: String,
    pub device_id: String,
    pub token: Option<String>,
    /// The `clidata` object as sent.
    pub clidata: Option<serde_json::Value>,
}

/// One user asked about in `query_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub acc: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStatusReq {
    pub users: Vec<UserRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Online,
    Offline,
    Unregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub acc: String,
    pub phone: String,
    pub state: Presence,
}

/// The caller's media description in a start request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpParam {
    /// An SDP offer (iOS, web).
    Text(String),
    /// Android: where the app receives RTP (AMR); the server picks the payload mode.
    Endpoint { ip: IpAddr, port: u16 },
}

/// `type` of a start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Straight out through a trunk (no `type`, or any value but `p2p`).
    Direct,
    /// Try the callee's app first (`type: "p2p"`).
    P2p,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StartCallReq {
    pub client: Client,
    pub uuid: String,
    pub caller_phone: Option<String>,
    /// The number called; digits, `*`, `#`, optional leading `+` (separators stripped).
    pub callee: String,
    pub userclass: Option<String>,
    pub sdp: SdpParam,
    pub dev_id: Option<String>,
    pub kind: CallKind,
    pub acc: Option<String>,
    pub clidata: Option<serde_json::Value>,
    pub token: Option<String>,
}

/// RFC 4867 AMR payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    OctetAligned,
    BandwidthEfficient,
}

/// Where the relay takes the Android app's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAnswer {
    pub ip: IpAddr,
    pub port: u16,
    /// e.g. `AMR`.
    pub codec_name: String,
    pub payload_mode: PayloadMode,
    /// The SSRC the relay sends to the app with.
    pub rssrc: u32,
}

/// The switch's side of the media: must match the request's [`SdpParam`] (SDP answer
/// for an SDP offer, relay endpoint for an endpoint); a mismatch is answered as an
/// internal error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAnswer {
    Sdp(String),
    Relay(RelayAnswer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStarted {
    pub session_id: String,
    pub answer: CallAnswer,
}

/// Stop or status of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReq {
    pub client: Client,
    /// The account acting; optional because the seeds' status polls may omit it. The
    /// session id itself is unguessable; when `uuid` is given it must own the session.
    pub uuid: Option<String>,
    pub session_id: String,
    pub token: Option<String>,
}

/// `peer_status` / `state` of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    Idle,
    Ring,
    Hookoff,
    P2pIdle,
    P2pRing,
    P2pHookoff,
    Release,
    /// Callback: the switch is calling `local` (the user's own phone); it rings.
    /// Sent as `a_ringing`.
    ARinging,
    /// Callback: `local` answered; `remote` is being called. Sent as `a_answered`.
    AAnswered,
    /// Callback: `remote` rings. Sent as `b_ringing`.
    BRinging,
    /// Callback: both legs answered and bridged. Sent as `bridged`.
    Bridged,
}

/// Quality estimate per direction and leg, MOS 1.0..4.5; `None` = not measured yet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DetailEval {
    /// app → switch
    pub app_up: Option<f64>,
    /// switch → app
    pub app_down: Option<f64>,
    /// trunk → switch
    pub trunk_up: Option<f64>,
    /// switch → trunk
    pub trunk_down: Option<f64>,
}

/// Media statistics of the app leg (see the table in API.md). Times in ms, rates 0..1.
/// Values not known yet are 0; non-finite values are sent as 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallStats {
    /// Where the app's media comes from; `None` before the first packet (sent as "").
    pub ip: Option<IpAddr>,
    pub pr: u64,
    pub pl: i64,
    pub jitter: f64,
    pub avg_ij: f64,
    pub lostrate: f64,
    pub rttms: f64,
    pub avgrttms: f64,
    pub down_jitter: f64,
    pub down_lostrate: f64,
    pub total_eval: f64,
    pub detail_eval: DetailEval,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallStatus {
    pub peer_status: PeerStatus,
    /// `None` when there is no media yet; then `stats` is left out of the reply.
    pub stats: Option<CallStats>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfReq {
    pub session_id: String,
    /// 1..=32 of `0-9*#A-D` (lower-case a-d arrive upper-cased).
    pub digits: String,
    pub uuid: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReq {
    pub uuid: String,
    /// The last id of the previous page; 0 for the first page.
    pub start_id: u64,
    /// Page size, 1..=100.
    pub num: u32,
    pub dev_id: Option<String>,
    pub token: Option<String>,
}

/// One call of a history group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCall {
    /// Call kind, e.g. `outbound`, `p2p`, `sip_call_in`, `callback`.
    pub kind: String,
    pub calltime: SystemTime,
    /// `None` if it never rang (sent as "").
    pub ringtime: Option<SystemTime>,
    /// `None` if it was never answered (sent as "").
    pub starttime: Option<SystemTime>,
    /// Seconds talked.
    pub duration: u64,
}

/// Calls grouped by (caller, callee), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryGroup {
    pub id: u64,
    pub caller: String,
    pub callee: String,
    /// Number of calls in the group (may exceed `detail.len()` if the switch caps it).
    pub times: u32,
    pub detail: Vec<HistoryCall>,
}

/// `POST /channel/push_service`: one long poll of a device's push queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPollReq {
    /// The account (as the app logged in with it).
    pub acc: String,
    pub device_id: String,
    /// The device's own phone number, normalized like a callee number (`None` when not
    /// sent, or when what was sent is not a phone number: a bad value here must not
    /// cost the app its incoming calls).
    pub self_phone: Option<String>,
    /// `seq` of the last event the client saw (it reconnects after a lost reply): the
    /// poll returns the events after it. `None`: everything not yet delivered.
    pub last_seq: Option<i64>,
    pub token: Option<String>,
}

/// The answer to one long poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PushPollOk {
    /// The events, oldest first, each a JSON object carrying its `event` and `seq`
    /// fields (built by the switch, sent as is). When nothing arrives within the idle
    /// timeout the switch answers `[{"event":"shake_hand"}]` itself.
    pub events: Vec<serde_json::Value>,
    /// Events between the client's `last_seq` and the first event returned were
    /// dropped (expired or over the queue bound); sent as `"gap": true`.
    pub gap: bool,
}

/// `POST /lwork/mobile/baidu_push_register`: a third-party push channel for a device
/// (Baidu Cloud Push: the app binds, gets `user_id` + `channel_id` from Baidu, and
/// hands them over; the switch pushes to that channel when the long poll is not open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegisterReq {
    /// The device's own phone number (normalized like a callee number; `None` when not
    /// sent or not a phone number).
    pub caller: Option<String>,
    /// The lwork account the device is logged in as.
    pub account: String,
    /// Baidu's user id of the app install (not the lwork `uuid`).
    pub user_id: String,
    /// Baidu's channel id of the device.
    pub channel_id: String,
    /// The lwork device id, when sent (`device_id` / `dev_id`).
    pub device_id: Option<String>,
    pub token: Option<String>,
}

/// `p2p_ringing` and `p2p_poll`: the callee's side of an incoming app call, named by
/// the opdata of its `p2p_inform_called` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpdataReq {
    /// 1..=4096 bytes, as the switch issued it. When the app sent it as a JSON object
    /// (sip_call_in opdata), this is that object's compact JSON text (keys in sorted
    /// order): parse it rather than compare it byte for byte.
    pub opdata: String,
    pub token: Option<String>,
}

/// `p2p_reject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2pRejectReq {
    /// As [`OpdataReq::opdata`].
    pub opdata: String,
    /// `reason: busy` (SIP 486 to a trunk caller); otherwise a decline (603).
    pub busy: bool,
    pub token: Option<String>,
}

/// `p2p_answer` (Android: `sdp` is `{ip, port}`) and `ip2p_answer` (iOS: SDP text).
/// Answered with a [`CallStarted`] whose media matches `sdp` as for [`StartCallReq`].
#[derive(Debug, Clone, PartialEq)]
pub struct P2pAnswerReq {
    /// [`Client::Android`] for `p2p_answer`, [`Client::Ios`] for `ip2p_answer`.
    pub client: Client,
    /// As [`OpdataReq::opdata`].
    pub opdata: String,
    /// Normalized phone numbers, when sent.
    pub caller_phone: Option<String>,
    pub callee_phone: Option<String>,
    pub sdp: SdpParam,
    pub userclass: Option<String>,
    /// The `clidata` object as sent.
    pub clidata: Option<serde_json::Value>,
    pub token: Option<String>,
}

/// `POST /lwork/mobile/callback`: the switch calls `local`, then `remote`, and bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackReq {
    /// The account placing (and paying for) the callback.
    pub uuid: String,
    /// The user's own phone, called first. Normalized as [`StartCallReq::callee`].
    pub local: String,
    /// The party called once `local` answered. Normalized likewise.
    pub remote: String,
    pub dev_id: Option<String>,
    pub token: Option<String>,
}

/// `DELETE /lwork/mobile/callback`: ends both legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackStopReq {
    pub session_id: String,
    /// When given, it must own the session.
    pub uuid: Option<String>,
    pub token: Option<String>,
}

/// What the endpoints of later families answer until the switch implements them.
fn not_implemented<T>() -> Result<T, Failure> {
    Err(Failure::Unavailable("not implemented".into()))
}

/// What the HTTP layer calls; implemented by the call layer.
///
/// Every future must be `Send` and should be cancel-safe: when a request hits the
/// configured timeout or the client goes away, the future is dropped. Status polls
/// (`call_status`) arrive many times a second per call, so they should answer from a
/// snapshot, not a round trip through a task.
///
/// Return a [`Failure`] business variant for what the user did wrong or cannot do;
/// [`Failure::Internal`] only for real faults (logged with the request id, sent as 500).
pub trait Switch: Send + Sync + 'static {
    fn auth_code(&self, req: AuthCodeReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn register(&self, req: RegisterReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn forget_pwd(&self, req: ForgetPwdReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn modify_pwd(&self, req: ModifyPwdReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn add_info(&self, req: AddInfoReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn login(&self, req: LoginReq) -> impl Future<Output = Result<LoginOk, Failure>> + Send;
    fn logout(&self, req: LogoutReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn query_status(
        &self,
        req: QueryStatusReq,
    ) -> impl Future<Output = Result<Vec<UserState>, Failure>> + Send;
    fn start_call(
        &self,
        req: StartCallReq,
    ) -> impl Future<Output = Result<CallStarted, Failure>> + Send;
    fn stop_call(&self, req: SessionReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn call_status(
        &self,
        req: SessionReq,
    ) -> impl Future<Output = Result<CallStatus, Failure>> + Send;
    fn dtmf(&self, req: DtmfReq) -> impl Future<Output = Result<(), Failure>> + Send;
    fn call_history(
        &self,
        req: HistoryReq,
    ) -> impl Future<Output = Result<Vec<HistoryGroup>, Failure>> + Send;

    /// One long poll: wait for events after `last_seq` (or the undelivered ones) up to
    /// the idle timeout, then answer `[{"event":"shake_hand"}]`. [`Failure::Unlogined`]
    /// when the device has no live login.
    ///
    /// The future is dropped when the client goes away, or after
    /// `ApiConfig::long_poll_timeout` + [`LONG_POLL_GRACE`](crate::LONG_POLL_GRACE)
    /// (504); and a returned reply can still be lost with the connection. So marking
    /// events delivered when they are returned is not enough on its own: a client that
    /// lost a reply polls again with the `last_seq` it really saw, and should get those
    /// events again.
    fn push_poll(
        &self,
        req: PushPollReq,
    ) -> impl Future<Output = Result<PushPollOk, Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// Stores a third-party push channel for the device.
    fn push_register(
        &self,
        req: PushRegisterReq,
    ) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// The callee's app is alerting (180 to a trunk caller, `p2p_ring` to an app caller).
    fn p2p_ringing(&self, req: OpdataReq) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// The callee answers; [`Failure::AlreadyCallRealPhone`] once the call fell back to
    /// the real phone, [`Failure::SessionNotExist`] for an unknown or ended opdata.
    fn p2p_answer(
        &self,
        req: P2pAnswerReq,
    ) -> impl Future<Output = Result<CallStarted, Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// The callee rejects (486 when busy, else 603, to a trunk caller).
    fn p2p_reject(&self, req: P2pRejectReq) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// State of the caller's side, as the callee sees it. Polled often: answer from a
    /// snapshot.
    fn p2p_poll(&self, req: OpdataReq) -> impl Future<Output = Result<PeerStatus, Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// Places a callback; returns its `session_id` (whose status the status routes read:
    /// `a_ringing` → `a_answered` → `b_ringing` → `bridged` → `release`).
    fn callback_start(
        &self,
        req: CallbackReq,
    ) -> impl Future<Output = Result<String, Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
    /// Ends both legs of a callback.
    fn callback_stop(
        &self,
        req: CallbackStopReq,
    ) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            let _ = req;
            not_implemented()
        }
    }
}
