//! Callback: a two-leg call placed by the switch (the user's own phone first, then the
//! other party, bridged). Its status is read through the call status routes.

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::uuid;
use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::params::{de, non_empty, phone};
use crate::reply::{OkReply, OkStatus};
use crate::switch::{CallbackReq, CallbackStopReq};
use crate::{Failure, Reason, Switch};

const CALLBACK: &str = "/lwork/mobile/callback";

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![
        Endpoint::new(
            Verb::Post,
            CALLBACK,
            start::<S>,
            Doc {
                operation_id: "callback_start",
                tag: "callback",
                summary: "Place a callback",
                description: "The switch calls `local` (the user's own phone) over the \
                              trunk; when it answers, calls `remote` and bridges the \
                              two. Its status is read with the call status routes \
                              (`GET /lwork/mobile/voip/calls?session_id=...`): \
                              `a_ringing`, `a_answered`, `b_ringing`, `bridged`, \
                              `release`.",
                request: schema_of::<CallbackWire>,
                reply: schema_of::<CallbackReply>,
                reasons: &[
                    Reason::NoLogind,
                    Reason::NotActived,
                    Reason::NoMinutes,
                    Reason::Busy,
                    Reason::NoTrunk,
                ],
            },
        ),
        Endpoint::new(
            Verb::Delete,
            CALLBACK,
            stop::<S>,
            Doc {
                operation_id: "callback_stop",
                tag: "callback",
                summary: "End a callback",
                description: "Ends both legs.",
                request: schema_of::<CallbackStopWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::SessionNotExist, Reason::NoLogind],
            },
        ),
    ]
}

// ---- wire types -------------------------------------------------------------------

/// POST /lwork/mobile/callback
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CallbackWire {
    /// Account id from login. Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// The user's own phone, called first.
    #[serde(deserialize_with = "de::string")]
    local: String,
    /// The other party, called once `local` answered.
    #[serde(deserialize_with = "de::string")]
    remote: String,
    /// Alias: `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Alias of `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallbackReply {
    status: OkStatus,
    session_id: String,
}

/// DELETE /lwork/mobile/callback
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CallbackStopWire {
    #[serde(deserialize_with = "de::string")]
    session_id: String,
    /// Account id; when given it must own the session. Alias: `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

// ---- conversions ------------------------------------------------------------------

impl TryFrom<CallbackWire> for CallbackReq {
    type Error = Failure;
    fn try_from(w: CallbackWire) -> Result<Self, Failure> {
        Ok(CallbackReq {
            uuid: uuid(w.uuid, w.user_id)?,
            local: phone("local", &w.local)?,
            remote: phone("remote", &w.remote)?,
            dev_id: w.dev_id.or(w.device_id),
            token: w.token,
        })
    }
}

impl TryFrom<CallbackStopWire> for CallbackStopReq {
    type Error = Failure;
    fn try_from(w: CallbackStopWire) -> Result<Self, Failure> {
        Ok(CallbackStopReq {
            session_id: non_empty("session_id", w.session_id)?,
            uuid: w.uuid.or(w.user_id),
            token: w.token,
        })
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn start<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: CallbackWire| async {
        let session_id = st.switch.callback_start(w.try_into()?).await?;
        Ok(CallbackReply {
            status: OkStatus::Ok,
            session_id,
        })
    })
    .await
}

async fn stop<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: CallbackStopWire| async {
        st.switch.callback_stop(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}
