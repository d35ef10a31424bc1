//! The callee's side of an incoming call (app-to-app p2p, or sip_call_in from a
//! trunk): ringing, answer (Android and iOS spellings), reject, and the caller's state.
//! Every request names the call by the `opdata` of its `p2p_inform_called` event.

use axum::extract::{Request, State};
use axum::response::Response;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::accounts::Clidata;
use crate::calls::{
    endpoint, peer_status, relay_reply, sdp_reply, sdp_text, EndpointWire, PeerStatusWire,
    StartRelayReply, StartSdpReply,
};
use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::params::{de, lenient_phone, non_empty};
use crate::reply::{OkReply, OkStatus};
use crate::switch::{Client, OpdataReq, P2pAnswerReq, P2pRejectReq};
use crate::{Failure, Reason, Switch};

/// Largest opdata accepted (the switch issues a few hundred bytes at most).
pub(crate) const MAX_OPDATA_BYTES: usize = 4096;

const CALLEE_REASONS: &[Reason] = &[Reason::AlreadyCallRealPhone, Reason::SessionNotExist];

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/p2p_ringing",
            ringing::<S>,
            Doc {
                operation_id: "p2p_ringing",
                tag: "p2p",
                summary: "The callee's app is alerting",
                description: "The caller then sees `p2p_ring` (a trunk caller gets 180 \
                              Ringing).",
                request: schema_of::<OpdataWire>,
                reply: schema_of::<OkReply>,
                reasons: CALLEE_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/p2p_answer",
            answer_android::<S>,
            Doc {
                operation_id: "p2p_answer",
                tag: "p2p",
                summary: "Answer an incoming call (Android)",
                description: "`sdp` is the app's RTP endpoint `{ip, port}` (AMR); the \
                              reply is that of an Android call start. \
                              `already_call_real_phone`: the call went to the callee's \
                              real phone meanwhile.",
                request: schema_of::<P2pAnswerWire>,
                reply: schema_of::<StartRelayReply>,
                reasons: CALLEE_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/ip2p_answer",
            answer_ios::<S>,
            Doc {
                operation_id: "ip2p_answer",
                tag: "p2p",
                summary: "Answer an incoming call (iOS)",
                description: "`sdp` is an SDP offer; the reply carries the answer SDP.",
                request: schema_of::<Ip2pAnswerWire>,
                reply: schema_of::<StartSdpReply>,
                reasons: CALLEE_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/p2p_reject",
            reject::<S>,
            Doc {
                operation_id: "p2p_reject",
                tag: "p2p",
                summary: "Reject an incoming call",
                description: "`reason: busy` answers a trunk caller 486 Busy Here; \
                              otherwise (default `decline`) 603 Decline.",
                request: schema_of::<P2pRejectWire>,
                reply: schema_of::<OkReply>,
                reasons: CALLEE_REASONS,
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/p2p_poll",
            poll::<S>,
            Doc {
                operation_id: "p2p_poll",
                tag: "p2p",
                summary: "State of the caller's side",
                description: "`peer_status` of the call as the caller sees it (`release` \
                              once the caller hung up). Cheap enough to poll often.",
                request: schema_of::<OpdataWire>,
                reply: schema_of::<P2pPollReply>,
                reasons: &[Reason::SessionNotExist],
            },
        ),
    ]
}

// ---- opdata -----------------------------------------------------------------------

/// `opdata` as sent: a string (or a number, taken as its text), or the JSON object of
/// a sip_call_in event, taken as its compact JSON text.
fn opdata<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(m) => serde_json::to_string(&m).map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected a string or a JSON object")),
    }
}

/// A string or a JSON object (an opdata), with its description.
pub(crate) fn string_or_object(description: String) -> RefOr<Schema> {
    let one_of = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Object))
        .description(Some(description));
    RefOr::T(Schema::OneOf(one_of.build()))
}

fn opdata_schema() -> RefOr<Schema> {
    string_or_object(format!(
        "The opdata of the p2p_inform_called event, sent back as received: a string, \
         or (a call from a trunk) an object. At most {MAX_OPDATA_BYTES} bytes."
    ))
}

fn checked_opdata(opdata: String) -> Result<String, Failure> {
    let opdata = non_empty("opdata", opdata)?;
    if opdata.len() > MAX_OPDATA_BYTES {
        return Err(Failure::bad_request(
            "opdata",
            format!("longer than {MAX_OPDATA_BYTES} bytes"),
        ));
    }
    Ok(opdata)
}

// ---- wire types -------------------------------------------------------------------

/// p2p_ringing, p2p_poll
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct OpdataWire {
    #[serde(deserialize_with = "opdata")]
    #[schema(schema_with = opdata_schema)]
    opdata: String,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// p2p_reject
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct P2pRejectWire {
    #[serde(deserialize_with = "opdata")]
    #[schema(schema_with = opdata_schema)]
    opdata: String,
    /// `busy` or `decline` (the default).
    #[serde(default, deserialize_with = "de::opt_string")]
    reason: Option<String>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// p2p_answer (Android): `sdp` is `{ip, port}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct P2pAnswerWire {
    /// Informational; ignored when not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    caller_phone: Option<String>,
    /// Informational; ignored when not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    callee_phone: Option<String>,
    /// Where the app receives RTP (an object, or in a form its JSON text).
    #[serde(deserialize_with = "de::json")]
    sdp: EndpointWire,
    #[serde(default, deserialize_with = "de::opt_string")]
    userclass: Option<String>,
    #[serde(deserialize_with = "opdata")]
    #[schema(schema_with = opdata_schema)]
    opdata: String,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// ip2p_answer (iOS): `sdp` is an SDP offer.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Ip2pAnswerWire {
    /// Informational; ignored when not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    caller_phone: Option<String>,
    /// Informational; ignored when not a phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    callee_phone: Option<String>,
    /// SDP offer.
    #[serde(deserialize_with = "de::string")]
    sdp: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    userclass: Option<String>,
    #[serde(deserialize_with = "opdata")]
    #[schema(schema_with = opdata_schema)]
    opdata: String,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct P2pPollReply {
    status: OkStatus,
    /// The caller's side of the call.
    peer_status: PeerStatusWire,
}

// ---- conversions ------------------------------------------------------------------

impl TryFrom<OpdataWire> for OpdataReq {
    type Error = Failure;
    fn try_from(w: OpdataWire) -> Result<Self, Failure> {
        Ok(OpdataReq {
            opdata: checked_opdata(w.opdata)?,
            token: w.token,
        })
    }
}

impl TryFrom<P2pRejectWire> for P2pRejectReq {
    type Error = Failure;
    fn try_from(w: P2pRejectWire) -> Result<Self, Failure> {
        let busy = match w.reason.as_deref().map(str::trim) {
            None => false,
            Some(r) if r.eq_ignore_ascii_case("decline") => false,
            Some(r) if r.eq_ignore_ascii_case("busy") => true,
            Some(_) => return Err(Failure::bad_request("reason", "expected busy or decline")),
        };
        Ok(P2pRejectReq {
            opdata: checked_opdata(w.opdata)?,
            busy,
            token: w.token,
        })
    }
}

impl TryFrom<P2pAnswerWire> for P2pAnswerReq {
    type Error = Failure;
    fn try_from(w: P2pAnswerWire) -> Result<Self, Failure> {
        Ok(P2pAnswerReq {
            client: Client::Android,
            opdata: checked_opdata(w.opdata)?,
            caller_phone: lenient_phone("caller_phone", w.caller_phone),
            callee_phone: lenient_phone("callee_phone", w.callee_phone),
            sdp: endpoint(w.sdp)?,
            userclass: w.userclass,
            clidata: w.clidata.map(Value::Object),
            token: w.token,
        })
    }
}

impl TryFrom<Ip2pAnswerWire> for P2pAnswerReq {
    type Error = Failure;
    fn try_from(w: Ip2pAnswerWire) -> Result<Self, Failure> {
        Ok(P2pAnswerReq {
            client: Client::Ios,
            opdata: checked_opdata(w.opdata)?,
            caller_phone: lenient_phone("caller_phone", w.caller_phone),
            callee_phone: lenient_phone("callee_phone", w.callee_phone),
            sdp: sdp_text(w.sdp)?,
            userclass: w.userclass,
            clidata: w.clidata.map(Value::Object),
            token: w.token,
        })
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn ringing<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: OpdataWire| async {
        st.switch.p2p_ringing(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn answer_android<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: P2pAnswerWire| async {
        relay_reply(st.switch.p2p_answer(w.try_into()?).await?)
    })
    .await
}

async fn answer_ios<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: Ip2pAnswerWire| async {
        sdp_reply(st.switch.p2p_answer(w.try_into()?).await?)
    })
    .await
}

async fn reject<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: P2pRejectWire| async {
        st.switch.p2p_reject(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn poll<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: OpdataWire| async {
        let ps = st.switch.p2p_poll(w.try_into()?).await?;
        Ok(P2pPollReply {
            status: OkStatus::Ok,
            peer_status: peer_status(ps),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<OpdataReq, Failure> {
        let Value::Object(m) = v else {
            return Err(Failure::Internal("not an object".into()));
        };
        crate::params::parse::<OpdataWire>(m)?.try_into()
    }

    #[test]
    fn opdata_string_object_or_number() {
        assert_eq!(
            parse(json!({"opdata": "abc"})).map(|r| r.opdata),
            Ok("abc".into())
        );
        assert_eq!(
            parse(json!({"opdata": 12})).map(|r| r.opdata),
            Ok("12".into())
        );
        assert_eq!(
            parse(json!({"opdata": {"event": "sip_call_in", "port": 4000, "caller": "1"}}))
                .map(|r| r.opdata),
            Ok(r#"{"caller":"1","event":"sip_call_in","port":4000}"#.into())
        );
        for bad in [
            json!(null),
            json!(true),
            json!([1]),
            json!(""),
            json!("x".repeat(4097)),
        ] {
            assert!(
                matches!(parse(json!({"opdata": bad})), Err(Failure::BadRequest { ref field, .. }) if field == "opdata"),
                "{bad}"
            );
        }
        assert!(parse(json!({"opdata": "x".repeat(4096)})).is_ok());
    }
}
