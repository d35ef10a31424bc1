//! Calls from an app to a phone number: start, stop and status in the iOS, Android and
//! web spellings, and DTMF.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::accounts::Clidata;
use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::params::{de, either, non_empty, phone};
use crate::reply::{OkReply, OkStatus};
use crate::switch::{
    CallAnswer, CallKind, CallStarted, CallStats, CallStatus, Client, DetailEval, DtmfReq,
    PayloadMode, PeerStatus, SdpParam, SessionReq, StartCallReq,
};
use crate::{Failure, Reason, Switch};

const IOS: &str = "/lwork/mobile/voip/icalls";
const ANDROID: &str = "/lwork/mobile/voip/calls";
const WEB_START: &str = "/lwork/mobile/fzdvoip";
const WEB_SESSION: &str = "/lwork/voices1/fzdvoip";

/// Largest SDP accepted; real offers are a few hundred bytes.
const MAX_SDP_BYTES: usize = 16 * 1024;
/// Most DTMF digits in one request.
const MAX_DTMF_DIGITS: usize = 32;

const START_REASONS: &[Reason] = &[
    Reason::NoLogind,
    Reason::NotActived,
    Reason::NoMinutes,
    Reason::BadSdp,
    Reason::NoCodec,
    Reason::Busy,
    Reason::NoTrunk,
];
const SESSION_REASONS: &[Reason] = &[Reason::SessionNotExist, Reason::NoLogind];

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![
        Endpoint::new(
            Verb::Post,
            IOS,
            start_sdp::<S, IosClient>,
            Doc {
                operation_id: "ios_start_call",
                tag: "calls",
                summary: "Start a call to a phone number (iOS)",
                description: "`sdp` is an SDP offer; the reply carries the answer SDP. \
                              `type: p2p` tries the callee's app first.",
                request: schema_of::<StartSdpWire>,
                reply: schema_of::<StartSdpReply>,
                reasons: START_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Delete,
            IOS,
            stop::<S, IosClient>,
            Doc {
                operation_id: "ios_stop_call",
                tag: "calls",
                summary: "End a call (iOS)",
                description: "Cancels (CANCEL) or ends (BYE) the dialog.",
                request: schema_of::<SessionWire>,
                reply: schema_of::<OkReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Get,
            IOS,
            status::<S, IosClient>,
            Doc {
                operation_id: "ios_call_status",
                tag: "calls",
                summary: "Call state and media statistics (iOS)",
                description: "Cheap enough to poll many times a second. Also the status of a \
                              callback session (`a_ringing`, `a_answered`, `b_ringing`, \
                              `bridged`, `release`).",
                request: schema_of::<SessionWire>,
                reply: schema_of::<StatusReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            ANDROID,
            start_android::<S>,
            Doc {
                operation_id: "android_start_call",
                tag: "calls",
                summary: "Start a call to a phone number (Android)",
                description: "`sdp` is the app's RTP endpoint `{ip, port}` (AMR); the \
                              reply names the relay endpoint, payload mode and SSRC.",
                request: schema_of::<StartEndpointWire>,
                reply: schema_of::<StartRelayReply>,
                reasons: START_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Delete,
            ANDROID,
            stop::<S, AndroidClient>,
            Doc {
                operation_id: "android_stop_call",
                tag: "calls",
                summary: "End a call (Android)",
                description: "Cancels (CANCEL) or ends (BYE) the dialog.",
                request: schema_of::<SessionWire>,
                reply: schema_of::<OkReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Get,
            ANDROID,
            status::<S, AndroidClient>,
            Doc {
                operation_id: "android_call_status",
                tag: "calls",
                summary: "Call state and media statistics (Android)",
                description: "Cheap enough to poll many times a second. Also the status of a \
                              callback session (`a_ringing`, `a_answered`, `b_ringing`, \
                              `bridged`, `release`).",
                request: schema_of::<SessionWire>,
                reply: schema_of::<StatusReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            WEB_START,
            start_sdp::<S, WebClient>,
            Doc {
                operation_id: "web_start_call",
                tag: "calls",
                summary: "Start a call to a phone number (web)",
                description: "`sdp` is an SDP offer; the reply carries the answer SDP.",
                request: schema_of::<StartSdpWire>,
                reply: schema_of::<StartSdpReply>,
                reasons: START_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Delete,
            WEB_SESSION,
            stop::<S, WebClient>,
            Doc {
                operation_id: "web_stop_call",
                tag: "calls",
                summary: "End a call (web)",
                description: "Parameters usually in the query string.",
                request: schema_of::<SessionWire>,
                reply: schema_of::<OkReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Get,
            WEB_SESSION,
            status::<S, WebClient>,
            Doc {
                operation_id: "web_call_status",
                tag: "calls",
                summary: "Call state and media statistics (web)",
                description: "As the app status, with `state` in place of `peer_status`; also \
                              the status of a callback session.",
                request: schema_of::<SessionWire>,
                reply: schema_of::<WebStatusReply>,
                reasons: SESSION_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/voip/dtmf",
            dtmf::<S>,
            Doc {
                operation_id: "dtmf",
                tag: "calls",
                summary: "Send DTMF digits",
                description: "`num` is 1 to 32 of `0-9*#A-D`, sent in order as RFC 4733 \
                              events (or SIP INFO when the trunk offered no \
                              telephone-event).",
                request: schema_of::<DtmfWire>,
                reply: schema_of::<OkReply>,
                reasons: SESSION_REASONS,
            },
        ),
    ]
}

// ---- clients as types, so one generic handler serves each spelling -----------------

pub(crate) trait ClientKind: Send + Sync + 'static {
    const CLIENT: Client;
}
pub(crate) struct IosClient;
pub(crate) struct AndroidClient;
pub(crate) struct WebClient;
impl ClientKind for IosClient {
    const CLIENT: Client = Client::Ios;
}
impl ClientKind for AndroidClient {
    const CLIENT: Client = Client::Android;
}
impl ClientKind for WebClient {
    const CLIENT: Client = Client::Web;
}

// ---- wire types -------------------------------------------------------------------

/// Start request of iOS (`/voip/icalls`) and web (`/fzdvoip`): `sdp` is SDP text.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StartSdpWire {
    /// Account id from login. Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    caller_phone: Option<String>,
    /// The number to call. Required: this or its alias `callee_phone`.
    #[serde(default, deserialize_with = "de::opt_string")]
    phone: Option<String>,
    /// Alias of `phone`.
    #[serde(default, deserialize_with = "de::opt_string")]
    callee_phone: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    userclass: Option<String>,
    /// SDP offer.
    sdp: String,
    /// Alias: `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Alias of `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// `p2p`: try the callee's app first.
    #[serde(default, rename = "type", deserialize_with = "de::opt_string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    acc: Option<String>,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// The Android app's RTP endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EndpointWire {
    #[serde(deserialize_with = "de::string")]
    ip: String,
    #[serde(deserialize_with = "de::uint")]
    port: u16,
}

/// Start request of Android (`/voip/calls`): `sdp` is `{ip, port}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StartEndpointWire {
    /// Account id from login. Required: this or its alias `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Alias of `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    caller_phone: Option<String>,
    /// The number to call. Required: this or its alias `phone`.
    #[serde(default, deserialize_with = "de::opt_string")]
    callee_phone: Option<String>,
    /// Alias of `callee_phone`.
    #[serde(default, deserialize_with = "de::opt_string")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    userclass: Option<String>,
    /// Where the app receives RTP (an object, or in a form its JSON text).
    #[serde(deserialize_with = "de::json")]
    sdp: EndpointWire,
    /// Alias: `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Alias of `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// `p2p`: try the callee's app first.
    #[serde(default, rename = "type", deserialize_with = "de::opt_string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    acc: Option<String>,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StartSdpReply {
    status: OkStatus,
    session_id: String,
    /// Answer SDP.
    sdp: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PayloadModeWire {
    OctetAligned,
    BandwidthEfficient,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StartRelayReply {
    status: OkStatus,
    session_id: String,
    /// Relay address the app sends RTP to.
    ip: String,
    port: u16,
    /// e.g. `AMR`.
    codec_name: String,
    /// RFC 4867 payload format.
    payload_mode: PayloadModeWire,
    /// SSRC the relay sends to the app with.
    rssrc: u32,
}

/// Stop and status requests. `t` (cache buster) is accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SessionWire {
    /// Account id; when given it must own the session. Alias: `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    #[serde(deserialize_with = "de::string")]
    session_id: String,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PeerStatusWire {
    Idle,
    Ring,
    Hookoff,
    P2pIdle,
    P2pRing,
    P2pHookoff,
    Release,
    /// Callback: the user's own phone (`local`) rings.
    #[serde(rename = "a_ringing")]
    ARinging,
    /// Callback: `local` answered; `remote` is being called.
    #[serde(rename = "a_answered")]
    AAnswered,
    /// Callback: `remote` rings.
    #[serde(rename = "b_ringing")]
    BRinging,
    /// Callback: both legs talk.
    #[serde(rename = "bridged")]
    Bridged,
}

/// Quality estimate (MOS) per direction and leg; absent when not measured yet.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetailEvalWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    app_to_switch: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switch_to_app: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trunk_to_switch: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switch_to_trunk: Option<f64>,
}

/// An address written as its text, or `""` when unknown, straight into the reply
/// (no `String` built per poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpText(Option<IpAddr>);

impl Serialize for IpText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_str(""),
        }
    }
}

/// Media statistics of the app leg (API.md). Times in ms, rates 0..1.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsWire {
    /// Where the app's media comes from; "" before the first packet.
    #[schema(value_type = String)]
    ip: IpText,
    /// Packets received from the app.
    pr: u64,
    /// Packets lost from the app (RFC 3550: expected - received; may be negative).
    pl: i64,
    jitter: f64,
    #[serde(rename = "avgIJ")]
    avg_ij: f64,
    lostrate: f64,
    rttms: f64,
    avgrttms: f64,
    down_jitter: f64,
    down_lostrate: f64,
    /// MOS 1.0..4.5 (ITU-T G.107 E-model).
    total_eval: f64,
    detail_eval: DetailEvalWire,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusReply {
    status: OkStatus,
    peer_status: PeerStatusWire,
    /// Absent before there is media.
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<StatsWire>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebStatusReply {
    status: OkStatus,
    state: PeerStatusWire,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<StatsWire>,
}

/// POST /lwork/mobile/voip/dtmf
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct DtmfWire {
    #[serde(deserialize_with = "de::string")]
    session_id: String,
    /// 1 to 32 of `0-9*#A-D`.
    #[serde(deserialize_with = "de::string")]
    num: String,
    /// Alias: `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

// ---- conversions ------------------------------------------------------------------

fn call_kind(kind: Option<String>) -> CallKind {
    // Unknown types are plain trunk calls: old apps send values the seeds never list.
    match kind.as_deref() {
        Some(k) if k.eq_ignore_ascii_case("p2p") => CallKind::P2p,
        _ => CallKind::Direct,
    }
}

pub(crate) fn opt_phone(name: &str, value: Option<String>) -> Result<Option<String>, Failure> {
    value.map(|v| phone(name, &v)).transpose()
}

pub(crate) fn sdp_text(sdp: String) -> Result<SdpParam, Failure> {
    if sdp.trim().is_empty() {
        return Err(Failure::bad_request("sdp", "must not be empty"));
    }
    if sdp.len() > MAX_SDP_BYTES {
        return Err(Failure::bad_request(
            "sdp",
            format!("longer than {MAX_SDP_BYTES} bytes"),
        ));
    }
    Ok(SdpParam::Text(sdp))
}

pub(crate) fn endpoint(e: EndpointWire) -> Result<SdpParam, Failure> {
    let ip: IpAddr =
        e.ip.trim()
            .parse()
            .map_err(|_| Failure::bad_request("sdp.ip", "expected an IP address"))?;
    if e.port == 0 {
        return Err(Failure::bad_request("sdp.port", "must be 1..=65535"));
    }
    Ok(SdpParam::Endpoint { ip, port: e.port })
}

impl StartSdpWire {
    fn into_domain(self, client: Client) -> Result<StartCallReq, Failure> {
        Ok(StartCallReq {
            client,
            uuid: non_empty("uuid", either("uuid", "user_id", self.uuid, self.user_id)?)?,
            caller_phone: opt_phone("caller_phone", self.caller_phone)?,
            callee: phone(
                "phone",
                &either("phone", "callee_phone", self.phone, self.callee_phone)?,
            )?,
            userclass: self.userclass,
            sdp: sdp_text(self.sdp)?,
            dev_id: self.dev_id.or(self.device_id),
            kind: call_kind(self.kind),
            acc: self.acc,
            clidata: self.clidata.map(Value::Object),
            token: self.token,
        })
    }
}

impl StartEndpointWire {
    fn into_domain(self) -> Result<StartCallReq, Failure> {
        Ok(StartCallReq {
            client: Client::Android,
            uuid: non_empty(
                "user_id",
                either("user_id", "uuid", self.user_id, self.uuid)?,
            )?,
            caller_phone: opt_phone("caller_phone", self.caller_phone)?,
            callee: phone(
                "callee_phone",
                &either("callee_phone", "phone", self.callee_phone, self.phone)?,
            )?,
            userclass: self.userclass,
            sdp: endpoint(self.sdp)?,
            dev_id: self.dev_id.or(self.device_id),
            kind: call_kind(self.kind),
            acc: self.acc,
            clidata: self.clidata.map(Value::Object),
            token: self.token,
        })
    }
}

impl SessionWire {
    fn into_domain(self, client: Client) -> Result<SessionReq, Failure> {
        Ok(SessionReq {
            client,
            uuid: self.uuid.or(self.user_id),
            session_id: non_empty("session_id", self.session_id)?,
            token: self.token,
        })
    }
}

fn dtmf_digits(num: &str) -> Result<String, Failure> {
    let digits: String = num.trim().to_ascii_uppercase();
    let ok = !digits.is_empty()
        && digits.len() <= MAX_DTMF_DIGITS
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'));
    if ok {
        Ok(digits)
    } else {
        Err(Failure::bad_request(
            "num",
            format!("expected 1 to {MAX_DTMF_DIGITS} of 0-9 * # A-D"),
        ))
    }
}

impl TryFrom<DtmfWire> for DtmfReq {
    type Error = Failure;
    fn try_from(w: DtmfWire) -> Result<Self, Failure> {
        Ok(DtmfReq {
            session_id: non_empty("session_id", w.session_id)?,
            digits: dtmf_digits(&w.num)?,
            uuid: w.uuid.or(w.user_id),
            token: w.token,
        })
    }
}

pub(crate) fn peer_status(s: PeerStatus) -> PeerStatusWire {
    match s {
        PeerStatus::Idle => PeerStatusWire::Idle,
        PeerStatus::Ring => PeerStatusWire::Ring,
        PeerStatus::Hookoff => PeerStatusWire::Hookoff,
        PeerStatus::P2pIdle => PeerStatusWire::P2pIdle,
        PeerStatus::P2pRing => PeerStatusWire::P2pRing,
        PeerStatus::P2pHookoff => PeerStatusWire::P2pHookoff,
        PeerStatus::Release => PeerStatusWire::Release,
        PeerStatus::ARinging => PeerStatusWire::ARinging,
        PeerStatus::AAnswered => PeerStatusWire::AAnswered,
        PeerStatus::BRinging => PeerStatusWire::BRinging,
        PeerStatus::Bridged => PeerStatusWire::Bridged,
    }
}

/// JSON has no NaN or infinity (serde_json would write `null`); the apps want numbers.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn stats(s: CallStats) -> StatsWire {
    let DetailEval {
        app_up,
        app_down,
        trunk_up,
        trunk_down,
    } = s.detail_eval;
    StatsWire {
        ip: IpText(s.ip),
        pr: s.pr,
        pl: s.pl,
        jitter: finite(s.jitter),
        avg_ij: finite(s.avg_ij),
        lostrate: finite(s.lostrate),
        rttms: finite(s.rttms),
        avgrttms: finite(s.avgrttms),
        down_jitter: finite(s.down_jitter),
        down_lostrate: finite(s.down_lostrate),
        total_eval: finite(s.total_eval),
        detail_eval: DetailEvalWire {
            app_to_switch: app_up.filter(|x| x.is_finite()),
            switch_to_app: app_down.filter(|x| x.is_finite()),
            trunk_to_switch: trunk_up.filter(|x| x.is_finite()),
            switch_to_trunk: trunk_down.filter(|x| x.is_finite()),
        },
    }
}

pub(crate) fn sdp_reply(started: CallStarted) -> Result<StartSdpReply, Failure> {
    match started.answer {
        CallAnswer::Sdp(sdp) => Ok(StartSdpReply {
            status: OkStatus::Ok,
            session_id: started.session_id,
            sdp,
        }),
        CallAnswer::Relay(_) => Err(Failure::Internal(
            "switch answered a relay endpoint to an SDP offer".to_owned(),
        )),
    }
}

pub(crate) fn relay_reply(started: CallStarted) -> Result<StartRelayReply, Failure> {
    match started.answer {
        CallAnswer::Relay(r) => Ok(StartRelayReply {
            status: OkStatus::Ok,
            session_id: started.session_id,
            ip: r.ip.to_string(),
            port: r.port,
            codec_name: r.codec_name,
            payload_mode: match r.payload_mode {
                PayloadMode::OctetAligned => PayloadModeWire::OctetAligned,
                PayloadMode::BandwidthEfficient => PayloadModeWire::BandwidthEfficient,
            },
            rssrc: r.rssrc,
        }),
        CallAnswer::Sdp(_) => Err(Failure::Internal(
            "switch answered SDP to an endpoint offer".to_owned(),
        )),
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn start_sdp<S: Switch, C: ClientKind>(
    State(st): State<AppState<S>>,
    req: Request,
) -> Response {
    serve(&st, req, |w: StartSdpWire| async {
        let started = st.switch.start_call(w.into_domain(C::CLIENT)?).await?;
        sdp_reply(started)
    })
    .await
}

async fn start_android<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: StartEndpointWire| async {
        let started = st.switch.start_call(w.into_domain()?).await?;
        relay_reply(started)
    })
    .await
}

async fn stop<S: Switch, C: ClientKind>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: SessionWire| async {
        st.switch.stop_call(w.into_domain(C::CLIENT)?).await?;
        Ok(OkReply::OK)
    })
    .await
}

/// App status and web status differ only in the name of one field.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum AnyStatusReply {
    App(StatusReply),
    Web(WebStatusReply),
}

async fn status<S: Switch, C: ClientKind>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: SessionWire| async {
        let CallStatus {
            peer_status: ps,
            stats: s,
        } = st.switch.call_status(w.into_domain(C::CLIENT)?).await?;
        let ps = peer_status(ps);
        let s = s.map(stats);
        Ok(match C::CLIENT {
            Client::Web => AnyStatusReply::Web(WebStatusReply {
                status: OkStatus::Ok,
                state: ps,
                stats: s,
            }),
            Client::Ios | Client::Android => AnyStatusReply::App(StatusReply {
                status: OkStatus::Ok,
                peer_status: ps,
                stats: s,
            }),
        })
    })
    .await
}

async fn dtmf<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: DtmfWire| async {
        st.switch.dtmf(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_digit_rules() {
        assert_eq!(dtmf_digits("12*#abcd").unwrap(), "12*#ABCD");
        for bad in ["", " ", "E", "1 2", "\u{661f}", &"1".repeat(33)] {
            assert!(dtmf_digits(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn call_types() {
        assert_eq!(call_kind(Some("p2p".into())), CallKind::P2p);
        assert_eq!(call_kind(Some("voip".into())), CallKind::Direct);
        assert_eq!(call_kind(None), CallKind::Direct);
    }

    #[test]
    fn non_finite_stats_become_zero() {
        let s = stats(CallStats {
            jitter: f64::NAN,
            rttms: f64::INFINITY,
            detail_eval: DetailEval {
                app_up: Some(f64::NAN),
                ..DetailEval::default()
            },
            ..CallStats::default()
        });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["jitter"], 0.0);
        assert_eq!(json["rttms"], 0.0);
        assert_eq!(json["ip"], "");
        assert_eq!(json["detail_eval"], serde_json::json!({}));
        assert!(json.get("avgIJ").is_some());
    }
}
