//! Push to apps: the long poll a device keeps open for its events, and the
//! registration of a third-party push channel (Baidu) for when it is not open.

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::accounts::device_id;
use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::p2p::string_or_object;
use crate::params::{bounded, de, either, lenient_phone, non_empty, MAX_ID_BYTES};
use crate::reply::{OkReply, OkStatus};
use crate::switch::{PushPollOk, PushPollReq, PushRegisterReq};
use crate::{Failure, Reason, Switch};

pub(crate) const PUSH_SERVICE: &str = "/channel/push_service";
const BAIDU_REGISTER: &str = "/lwork/mobile/baidu_push_register";

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![
        Endpoint::new(
            Verb::Post,
            PUSH_SERVICE,
            push_service::<S>,
            Doc {
                operation_id: "push_service",
                tag: "push",
                summary: "Long poll for the device's events",
                description: "Held open until events are queued for the device, then \
                              answered with them (`data`, oldest first, each an object \
                              with `event` and `seq`). After the idle timeout (default \
                              30 s) the answer is `data: [{\"event\":\"shake_hand\"}]`; \
                              poll again. Send `seq` = the highest `seq` seen so far: \
                              events after it are returned, so a reply lost with a \
                              broken connection is delivered again. `gap: true` means \
                              events after that `seq` expired before they could be \
                              delivered. Not cut at the generic request timeout: a poll \
                              gets the idle timeout + 10 s, and long polls have their \
                              own in-flight limit. `unlogined`: the device has no live \
                              login (log in, then poll again).",
                request: schema_of::<PushPollWire>,
                reply: schema_of::<PushPollReply>,
                reasons: &[Reason::Unlogined],
            },
        )
        .long_poll(),
        Endpoint::new(
            Verb::Post,
            BAIDU_REGISTER,
            baidu_push_register::<S>,
            Doc {
                operation_id: "baidu_push_register",
                tag: "push",
                summary: "Register a Baidu push channel for the device",
                description: "`user_id` and `channel_id` are the ids Baidu Cloud Push \
                              gave the app when it bound (here `user_id` is Baidu's, \
                              not an alias of `uuid`); `account` is the lwork account \
                              and `caller` the device's own phone number. Events are \
                              then also pushed to that channel.",
                request: schema_of::<PushRegisterWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::NoLogind],
            },
        ),
    ]
}

// ---- wire types -------------------------------------------------------------------

/// POST /channel/push_service
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PushPollWire {
    /// The account the app logged in with.
    #[serde(deserialize_with = "de::string")]
    acc: String,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// The device's own phone number; ignored when it is not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    self_phone: Option<String>,
    /// The highest event `seq` this device has seen (resume after a lost reply).
    /// Alias: `last_seq`.
    #[serde(default, deserialize_with = "de::opt_uint")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    seq: Option<i64>,
    /// Alias of `seq`.
    #[serde(default, deserialize_with = "de::opt_uint")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    last_seq: Option<i64>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// `event` of a push event.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only: events are built by the switch
pub(crate) enum PushEventKind {
    /// An incoming call: `caller`, `opdata`.
    P2pInformCalled,
    /// The caller hung up before the app answered: `caller`.
    CallerHookon,
    /// The account logged in on another device; this one is logged out.
    LoginOtherwhere,
    /// Nothing happened within the idle timeout: poll again.
    ShakeHand,
}

/// One event of a long poll reply (built by the switch; further fields may appear).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: events are built by the switch
pub(crate) struct PushEvent {
    event: PushEventKind,
    /// Sequence number in the device's queue; absent on `shake_hand`.
    seq: Option<i64>,
    /// `p2p_inform_called`, `caller_hookon`: who calls.
    caller: Option<String>,
    #[schema(schema_with = event_opdata_schema)]
    opdata: Option<Value>,
}

fn event_opdata_schema() -> RefOr<Schema> {
    string_or_object(
        "`p2p_inform_called`: the token to hand to p2p_ringing / p2p_answer / \
         p2p_reject / p2p_poll. A string, or for a call from a trunk (sip_call_in) an \
         object `{event: \"sip_call_in\", caller, callee, session_id, ip, port, \
         codec_name, payload_mode, rssrc}` with which the app can start media at once. \
         Send it back as received."
            .to_owned(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PushPollReply {
    status: OkStatus,
    /// The events, oldest first; `[{"event":"shake_hand"}]` after the idle timeout.
    #[schema(value_type = Vec<PushEvent>)]
    data: Vec<Value>,
    /// Present (and true) only when events after the client's `seq` were lost.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gap: bool,
}

/// POST /lwork/mobile/baidu_push_register
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PushRegisterWire {
    /// The device's own phone number; ignored when it is not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    caller: Option<String>,
    /// The lwork account.
    #[serde(deserialize_with = "de::string")]
    account: String,
    /// Baidu Cloud Push user id (not the lwork `uuid`).
    #[serde(deserialize_with = "de::string")]
    user_id: String,
    /// Baidu Cloud Push channel id.
    #[serde(deserialize_with = "de::string")]
    channel_id: String,
    /// The lwork device id. Alias: `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

// ---- conversions ------------------------------------------------------------------

impl TryFrom<PushPollWire> for PushPollReq {
    type Error = Failure;
    fn try_from(w: PushPollWire) -> Result<Self, Failure> {
        let device_id = bounded("device_id", device_id(w.device_id, w.dev_id)?, MAX_ID_BYTES)?;
        Ok(PushPollReq {
            acc: bounded("acc", non_empty("acc", w.acc)?, MAX_ID_BYTES)?,
            device_id,
            self_phone: lenient_phone("self_phone", w.self_phone),
            last_seq: w.seq.or(w.last_seq),
            token: w.token,
        })
    }
}

impl TryFrom<PushRegisterWire> for PushRegisterReq {
    type Error = Failure;
    fn try_from(w: PushRegisterWire) -> Result<Self, Failure> {
        let required = |name: &str, v: String| bounded(name, non_empty(name, v)?, MAX_ID_BYTES);
        let device_id = match (w.device_id, w.dev_id) {
            (None, None) => None,
            (a, b) => Some(bounded(
                "device_id",
                either("device_id", "dev_id", a, b)?,
                MAX_ID_BYTES,
            )?),
        };
        Ok(PushRegisterReq {
            caller: lenient_phone("caller", w.caller),
            account: required("account", w.account)?,
            user_id: required("user_id", w.user_id)?,
            channel_id: required("channel_id", w.channel_id)?,
            device_id,
            token: w.token,
        })
    }
}

fn poll_reply(ok: PushPollOk) -> PushPollReply {
    PushPollReply {
        status: OkStatus::Ok,
        data: ok.events,
        gap: ok.gap,
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn push_service<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: PushPollWire| async {
        Ok(poll_reply(st.switch.push_poll(w.try_into()?).await?))
    })
    .await
}

async fn baidu_push_register<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: PushRegisterWire| async {
        st.switch.push_register(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_only_when_true() {
        let r = poll_reply(PushPollOk {
            events: vec![serde_json::json!({"event": "shake_hand"})],
            gap: false,
        });
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some(r#"{"status":"ok","data":[{"event":"shake_hand"}]}"#)
        );
        let r = poll_reply(PushPollOk {
            events: Vec::new(),
            gap: true,
        });
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some(r#"{"status":"ok","data":[],"gap":true}"#)
        );
    }
}
