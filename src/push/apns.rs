//! APNs: VoIP pushes over HTTP/2 with token-based authentication.
//!
//! `POST {url}/3/device/{token}` with `authorization: bearer <JWT>`, `apns-topic`,
//! `apns-push-type: voip`, `apns-priority: 10` and `apns-expiration`. The JWT is ES256
//! with the team's `.p8` key, header `{alg, kid}`, claims `{iss: team id, iat}`. Apple
//! refuses tokens older than an hour and answers `TooManyProviderTokenUpdates` to a
//! sender that makes new ones more often than every 20 minutes, so one token is
//! reused for [`JWT_REFRESH`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::jwt::{now_s, Es256Key};
use super::{http_client, read_config_file, ApnsConfig, PushError, SendOutcome};
use super::{CALLER_HOOKON, P2P_INFORM_CALLED};

/// How long one provider token is used: inside Apple's 20–60 minute window.
pub const JWT_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Apple's lower bound between two new provider tokens.
const JWT_MIN_AGE: Duration = Duration::from_secs(20 * 60);

/// A client for one APNs endpoint and one signing key.
#[derive(Debug)]
pub struct ApnsClient {
    http: reqwest::Client,
    base: String,
    key: Es256Key,
    key_id: String,
    team_id: String,
    topic: String,
    expiration: Duration,
    /// The current provider token and when it was made.
    jwt: Mutex<Option<(String, Instant)>>,
}

impl ApnsClient {
    /// Reads and checks the key at once, so a bad `[push.apns]` stops the start-up
    /// instead of failing every call later.
    pub fn new(config: &ApnsConfig) -> Result<ApnsClient, PushError> {
        let pem = read_config_file("push.apns.key_file", &config.key_file)?;
        let key = Es256Key::from_pem(&pem).map_err(|problem| PushError::Config {
            key: "push.apns.key_file",
            problem: format!("{}: {problem}", config.key_file.display()),
        })?;
        if !(config.url.starts_with("https://") || config.url.starts_with("http://")) {
            return Err(PushError::Config {
                key: "push.apns.url",
                problem: format!("{:?} is not an http(s):// URL", config.url),
            });
        }
        // HTTP/2 only: APNs speaks nothing else (over TLS this restricts ALPN to h2;
        // over plain http it is h2c with prior knowledge).
        let http = http_client("push.apns.ca_file", config.ca_file.as_deref(), true)?;
        Ok(ApnsClient {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic: config.topic.clone(),
            expiration: Duration::from_secs(config.expiration_s),
            jwt: Mutex::new(None),
        })
    }

    /// The provider token to send now: the cached one while younger than
    /// [`JWT_REFRESH`], else a new one.
    fn bearer(&self) -> Result<String, String> {
        let mut cached = self
            .jwt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((jwt, made)) = cached.as_ref() {
            if made.elapsed() < JWT_REFRESH {
                return Ok(jwt.clone());
            }
        }
        let jwt = self.key.sign_jwt(
            &serde_json::json!({"alg": "ES256", "kid": self.key_id}),
            &serde_json::json!({"iss": self.team_id, "iat": now_s()}),
        )?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    /// Apple says the token expired: make a new one next time, unless ours is younger
    /// than Apple allows replacing (then the clocks disagree and a new one would not
    /// help, only earn `TooManyProviderTokenUpdates`).
    fn expire_bearer(&self) {
        let mut cached = self
            .jwt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached
            .as_ref()
            .is_some_and(|(_, made)| made.elapsed() >= JWT_MIN_AGE)
        {
            *cached = None;
        }
    }

    /// One attempt to push `payload` (from [`payload`]) to the device `token`.
    pub async fn send(&self, token: &str, payload: &str) -> SendOutcome {
        // It goes into the URL path: only what a device token can be.
        if !is_device_token(token) {
            return SendOutcome::DeadToken {
                http_status: None,
                reason: "not a hex device token".to_owned(),
            };
        }
        let bearer = match self.bearer() {
            Ok(b) => b,
            Err(reason) => {
                return SendOutcome::Retry {
                    http_status: None,
                    reason,
                }
            }
        };
        let expiration = if self.expiration.is_zero() {
            0
        } else {
            now_s().saturating_add(i64::try_from(self.expiration.as_secs()).unwrap_or(0))
        };
        let sent = self
            .http
            .post(format!("{}/3/device/{token}", self.base))
            .header("authorization", format!("bearer {bearer}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "voip")
            .header("apns-priority", "10")
            .header("apns-expiration", expiration.to_string())
            .header("content-type", "application/json")
            .body(payload.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return SendOutcome::Retry {
                    http_status: None,
                    reason: transport_reason(&e),
                }
            }
        };
        let status = response.status().as_u16();
        // Errors carry `{"reason": "..."}`; success has an empty body.
        let body = response.bytes().await.unwrap_or_default();
        let reason = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            200 => SendOutcome::Delivered {
                http_status: status,
            },
            // Unregistered: the app is gone from the phone, or the token was replaced.
            410 => SendOutcome::DeadToken {
                http_status: Some(status),
                reason,
            },
            400 if matches!(
                reason.as_str(),
                "BadDeviceToken" | "DeviceTokenNotForTopic" | "Unregistered"
            ) =>
            {
                SendOutcome::DeadToken {
                    http_status: Some(status),
                    reason,
                }
            }
            403 if reason == "ExpiredProviderToken" => {
                self.expire_bearer();
                SendOutcome::Retry {
                    http_status: Some(status),
                    reason,
                }
            }
            429 | 500..=599 => SendOutcome::Retry {
                http_status: Some(status),
                reason,
            },
            _ => SendOutcome::Rejected {
                http_status: Some(status),
                reason,
            },
        }
    }
}

/// An APNs device token: hex digits (32 bytes today; Apple says not to assume a
/// length, so anything up to 200 bytes).
pub fn is_device_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 200 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A transport error as one line (the chain of causes: reqwest's own message alone
/// is often just "error sending request").
pub(crate) fn transport_reason(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The `aps` dictionary, fields in the order API.md writes them (a struct keeps
/// declaration order; a `serde_json::Map` would sort the keys).
#[derive(Serialize)]
struct Aps<'a> {
    alert: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    badge: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'a str>,
    event: &'a str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    opdata: Option<&'a Value>,
}

#[derive(Serialize)]
struct Payload<'a> {
    aps: Aps<'a>,
}

/// The APNs payload of a queued event, exactly as API.md shows it, or `None` for
/// events that are not pushed to APNs (only `p2p_inform_called` and `caller_hookon`
/// are):
///
/// - `{"aps":{"alert":caller,"badge":n,"sound":"chime","event":"p2p_inform_called","caller":caller,"opdata":opdata}}`
/// - `{"aps":{"alert":caller,"event":"caller_hookon","caller":caller}}`
///
/// `badge` is the number of events waiting for the device (see [`crate::push::PushHub`]).
pub fn payload(event: &Value, badge: i64) -> Option<String> {
    let kind = event.get("event").and_then(Value::as_str)?;
    let caller = event.get("caller").and_then(Value::as_str).unwrap_or("");
    let aps = match kind {
        P2P_INFORM_CALLED => Aps {
            alert: caller,
            badge: Some(badge),
            sound: Some("chime"),
            event: P2P_INFORM_CALLED,
            caller,
            // Always present for this event; `null` if the call layer left it out.
            opdata: Some(event.get("opdata").unwrap_or(&Value::Null)),
        },
        CALLER_HOOKON => Aps {
            alert: caller,
            badge: None,
            sound: None,
            event: CALLER_HOOKON,
            caller,
            opdata: None,
        },
        _ => return None,
    };
    serde_json::to_string(&Payload { aps }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_are_exactly_api_md() {
        let called =
            json!({"event": "p2p_inform_called", "caller": "8613800138000", "opdata": "op1"});
        assert_eq!(
            payload(&called, 2).unwrap(),
            r#"{"aps":{"alert":"8613800138000","badge":2,"sound":"chime","event":"p2p_inform_called","caller":"8613800138000","opdata":"op1"}}"#
        );
        let sip = json!({"event": "p2p_inform_called", "caller": "1", "opdata": {"event": "sip_call_in", "port": 4000}});
        assert_eq!(
            payload(&sip, 1).unwrap(),
            r#"{"aps":{"alert":"1","badge":1,"sound":"chime","event":"p2p_inform_called","caller":"1","opdata":{"event":"sip_call_in","port":4000}}}"#
        );
        let hookon = json!({"event": "caller_hookon", "caller": "1001"});
        assert_eq!(
            payload(&hookon, 5).unwrap(),
            r#"{"aps":{"alert":"1001","event":"caller_hookon","caller":"1001"}}"#
        );
        assert_eq!(payload(&json!({"event": "login_otherwhere"}), 1), None);
        assert_eq!(payload(&json!("x"), 1), None);
    }
}
