//! The response layer: the only place that maps a [`Failure`] to an HTTP status, and
//! where replies get their `data_enc` envelope.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{envelope, Failure, Reason};

/// `"status": "ok"`, the first field of every success reply.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) enum OkStatus {
    #[serde(rename = "ok")]
    Ok,
}

/// `{"status":"ok"}`: the reply of operations that return nothing else.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OkReply {
    pub(crate) status: OkStatus,
}

impl OkReply {
    pub(crate) const OK: OkReply = OkReply {
        status: OkStatus::Ok,
    };
}

/// `"status": "failed"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) enum FailedStatus {
    #[serde(rename = "failed")]
    Failed,
}

/// `{"status":"failed","reason":...}`; `detail` only for `bad_request`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FailedReply {
    pub(crate) status: FailedStatus,
    pub(crate) reason: Reason,
    /// `<field>: <what is wrong>`, for `bad_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

/// The `data_enc` envelope, of a request or of a reply.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Envelope {
    /// Request: 7 arbitrary characters + base64(plain JSON body). Reply: base64(plain
    /// JSON reply) with 2 arbitrary characters inserted after its 3rd character.
    pub(crate) data_enc: String,
}

/// The HTTP status of a failure. Business failures are 200: the apps read `reason`.
pub(crate) fn http_status(reason: Reason) -> StatusCode {
    match reason {
        Reason::BadRequest | Reason::BadDataEnc => StatusCode::BAD_REQUEST,
        Reason::BadToken => StatusCode::UNAUTHORIZED,
        Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Reason::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Reason::NoLogind
        | Reason::NotActived
        | Reason::BadPassword
        | Reason::BadAuthCode
        | Reason::AlreadyRegistered
        | Reason::NotRegistered
        | Reason::SessionNotExist
        | Reason::NoMinutes
        | Reason::BadSdp
        | Reason::NoCodec
        | Reason::Busy
        | Reason::NoTrunk
        | Reason::AlreadyCallRealPhone
        | Reason::Unlogined => StatusCode::OK,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Status polls, tokens and account data must never come from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn body(plain: Vec<u8>, enveloped: bool) -> Vec<u8> {
    if enveloped {
        envelope::encode(&plain)
    } else {
        plain
    }
}

/// Room for a typical reply (a status poll with stats is ~300 bytes), so
/// serializing does not grow the buffer step by step.
const REPLY_CAPACITY: usize = 512;

/// A 200 success reply, serialized straight into the body's bytes.
pub(crate) fn ok<T: Serialize>(reply: &T, enveloped: bool) -> Response {
    let mut plain = Vec::with_capacity(REPLY_CAPACITY);
    match serde_json::to_writer(&mut plain, reply) {
        Ok(()) => json_response(StatusCode::OK, body(plain, enveloped)),
        Err(e) => failure(
            &Failure::Internal(format!("reply does not serialize: {e}")),
            enveloped,
        ),
    }
}

/// A failure reply. Faults are logged here, inside the request's span, so the log line
/// carries the request id; their text never reaches the client.
pub(crate) fn failure(failure: &Failure, enveloped: bool) -> Response {
    let reason = failure.kind();
    let detail = match failure {
        Failure::BadRequest { field, detail } => Some(format!("{field}: {detail}")),
        Failure::Internal(msg) => {
            tracing::error!(error = %msg, "internal fault");
            None
        }
        Failure::Unavailable(msg) => {
            tracing::warn!(error = %msg, "unavailable");
            None
        }
        _ => None,
    };
    let plain = FailedReply {
        status: FailedStatus::Failed,
        reason,
        detail,
    };
    // Infallible for this struct; the fallback keeps the "never a panic" promise.
    let plain = serde_json::to_vec(&plain)
        .unwrap_or_else(|_| br#"{"status":"failed","reason":"internal"}"#.to_vec());
    // A client whose envelope did not decode may not read one either.
    let enveloped = enveloped && reason != Reason::BadDataEnc;
    json_response(http_status(reason), body(plain, enveloped))
}
