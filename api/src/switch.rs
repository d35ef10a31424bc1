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
}
