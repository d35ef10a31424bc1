//! The crate's one error type: every way a request can fail, named as API.md names it.
//!
//! [`Failure`] is what handlers and the [`Switch`](crate::Switch) return; [`Reason`] is its
//! field-less wire code (`"no_logind"`, ...). The HTTP status a reason maps to is decided
//! only in the response layer (`reply.rs`), so the call layer never thinks in HTTP.

use serde::Serialize;
use utoipa::ToSchema;

/// Why a request failed. One variant per `reason` string of API.md, plus the protocol
/// faults of the HTTP layer itself.
///
/// Business failures (`NoLogind` ... `Unlogined`) are answered with HTTP 200,
/// as the apps expect; see [`Reason`] for the wire strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// A parameter is missing, of the wrong type or out of range (HTTP 400).
    #[error("bad request: {field}: {detail}")]
    BadRequest { field: String, detail: String },
    /// The `data_enc` envelope does not decode to a JSON object (HTTP 400).
    #[error("data_enc does not decode")]
    BadDataEnc,
    /// The request body is larger than the configured limit (HTTP 413).
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The login token is invalid, expired or bound to another account/device (HTTP 401).
    #[error("bad or expired login token")]
    BadToken,
    /// Too many requests, e.g. auth codes for one number (HTTP 429).
    #[error("rate limited")]
    RateLimited,
    /// The account has no live login on this device.
    #[error("not logged in")]
    NoLogind,
    /// The account exists but is not activated.
    #[error("account not activated")]
    NotActived,
    #[error("wrong password")]
    BadPassword,
    #[error("wrong, expired or used auth code")]
    BadAuthCode,
    #[error("already registered")]
    AlreadyRegistered,
    #[error("not registered")]
    NotRegistered,
    /// No such session, or it is not the caller's.
    #[error("session does not exist")]
    SessionNotExist,
    /// The prepaid balance is zero.
    #[error("no minutes left")]
    NoMinutes,
    #[error("unusable SDP")]
    BadSdp,
    #[error("no codec in common")]
    NoCodec,
    #[error("busy")]
    Busy,
    /// No trunk routes the number, or none is reachable.
    #[error("no trunk for the number")]
    NoTrunk,
    /// A p2p call already fell back to the callee's real phone.
    #[error("already calling the real phone")]
    AlreadyCallRealPhone,
    /// A push long poll from a device without a live login (the push family's spelling
    /// of `no_logind`; the app then logs in again).
    #[error("not logged in (push)")]
    Unlogined,
    /// The path exists but not for this method (HTTP 405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request did not finish within the configured timeout (HTTP 504).
    #[error("request timed out")]
    Timeout,
    /// The switch cannot take the request now: overloaded or shutting down (HTTP 503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A real server fault (HTTP 500). The text is logged with the request id and never
    /// sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Failure {
    /// A [`Failure::BadRequest`] for `field`.
    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure::BadRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The field-less code of this failure.
    pub fn kind(&self) -> Reason {
        match self {
            Failure::BadRequest { .. } => Reason::BadRequest,
            Failure::BadDataEnc => Reason::BadDataEnc,
            Failure::TooLarge { .. } => Reason::TooLarge,
            Failure::BadToken => Reason::BadToken,
            Failure::RateLimited => Reason::RateLimited,
            Failure::NoLogind => Reason::NoLogind,
            Failure::NotActived => Reason::NotActived,
            Failure::BadPassword => Reason::BadPassword,
            Failure::BadAuthCode => Reason::BadAuthCode,
            Failure::AlreadyRegistered => Reason::AlreadyRegistered,
            Failure::NotRegistered => Reason::NotRegistered,
            Failure::SessionNotExist => Reason::SessionNotExist,
            Failure::NoMinutes => Reason::NoMinutes,
            Failure::BadSdp => Reason::BadSdp,
            Failure::NoCodec => Reason::NoCodec,
            Failure::Busy => Reason::Busy,
            Failure::NoTrunk => Reason::NoTrunk,
            Failure::AlreadyCallRealPhone => Reason::AlreadyCallRealPhone,
            Failure::Unlogined => Reason::Unlogined,
            Failure::MethodNotAllowed => Reason::MethodNotAllowed,
            Failure::Timeout => Reason::Timeout,
            Failure::Unavailable(_) => Reason::Unavailable,
            Failure::Internal(_) => Reason::Internal,
        }
    }

    /// The snake_case `reason` string sent to the client.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// The `reason` strings of `{"status":"failed","reason":...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    BadRequest,
    BadDataEnc,
    TooLarge,
    BadToken,
    RateLimited,
    NoLogind,
    NotActived,
    BadPassword,
    BadAuthCode,
    AlreadyRegistered,
    NotRegistered,
    SessionNotExist,
    NoMinutes,
    BadSdp,
    NoCodec,
    Busy,
    NoTrunk,
    AlreadyCallRealPhone,
    Unlogined,
    MethodNotAllowed,
    Timeout,
    Unavailable,
    Internal,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: &'static [Reason] = &[
        Reason::BadRequest,
        Reason::BadDataEnc,
        Reason::TooLarge,
        Reason::BadToken,
        Reason::RateLimited,
        Reason::NoLogind,
        Reason::NotActived,
        Reason::BadPassword,
        Reason::BadAuthCode,
        Reason::AlreadyRegistered,
        Reason::NotRegistered,
        Reason::SessionNotExist,
        Reason::NoMinutes,
        Reason::BadSdp,
        Reason::NoCodec,
        Reason::Busy,
        Reason::NoTrunk,
        Reason::AlreadyCallRealPhone,
        Reason::Unlogined,
        Reason::MethodNotAllowed,
        Reason::Timeout,
        Reason::Unavailable,
        Reason::Internal,
    ];

    /// The wire string; the same text serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::BadDataEnc => "bad_data_enc",
            Reason::TooLarge => "too_large",
            Reason::BadToken => "bad_token",
            Reason::RateLimited => "rate_limited",
            Reason::NoLogind => "no_logind",
            Reason::NotActived => "not_actived",
            Reason::BadPassword => "bad_password",
            Reason::BadAuthCode => "bad_auth_code",
            Reason::AlreadyRegistered => "already_registered",
            Reason::NotRegistered => "not_registered",
            Reason::SessionNotExist => "session_not_exist",
            Reason::NoMinutes => "no_minutes",
            Reason::BadSdp => "bad_sdp",
            Reason::NoCodec => "no_codec",
            Reason::Busy => "busy",
            Reason::NoTrunk => "no_trunk",
            Reason::AlreadyCallRealPhone => "already_call_real_phone",
            Reason::Unlogined => "unlogined",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert!(seen.insert(r.as_str()), "duplicate {r}");
        }
    }
}
