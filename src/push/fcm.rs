//! FCM (HTTP v1 API): `POST {url}/v1/projects/{project_id}/messages:send` with an
//! OAuth2 access token.
//!
//! The access token comes from the service account's JSON key: an RS256-signed JWT
//! assertion (`iss` = client_email, `scope` = firebase.messaging, `aud` = token_uri)
//! is exchanged at `token_uri` (grant type `jwt-bearer`); the token is reused until a
//! minute before it expires.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::apns::transport_reason;
use super::jwt::{now_s, Rs256Key};
use super::{http_client, read_config_file, FcmConfig, PushError, SendOutcome};
use super::{CALLER_HOOKON, P2P_INFORM_CALLED};

/// The OAuth2 scope of the FCM send API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The grant type of a signed JWT assertion (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long before its expiry an access token is replaced, so one never expires in
/// flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The fields of a service account key file this client uses.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3600
}

/// A client for one FCM project and one service account.
#[derive(Debug)]
pub struct FcmClient {
    http: reqwest::Client,
    send_url: String,
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    key: Rs256Key,
    /// The current access token and when to stop using it. An async lock: one task
    /// fetches while the others wait for its result instead of all fetching.
    access: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl FcmClient {
    /// Reads and checks the service account key at once (a bad `[push.fcm]` stops the
    /// start-up).
    pub fn new(config: &FcmConfig) -> Result<FcmClient, PushError> {
        const KEY: &str = "push.fcm.service_account_file";
        let text = read_config_file(KEY, &config.service_account_file)?;
        let bad = |problem: String| PushError::Config {
            key: KEY,
            problem: format!("{}: {problem}", config.service_account_file.display()),
        };
        let sa: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a service account: {e}")))?;
        let key = Rs256Key::from_pem(&sa.private_key).map_err(bad)?;
        if !(config.url.starts_with("https://") || config.url.starts_with("http://")) {
            return Err(PushError::Config {
                key: "push.fcm.url",
                problem: format!("{:?} is not an http(s):// URL", config.url),
            });
        }
        let http = http_client("push.fcm.ca_file", config.ca_file.as_deref(), false)?;
        Ok(FcmClient {
            http,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                config.url.trim_end_matches('/'),
                config.project_id
            ),
            client_email: sa.client_email,
            key_id: sa.private_key_id,
            token_uri: sa.token_uri,
            key,
            access: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token, fetched when there is none or it is about to expire.
    async fn access_token(&self) -> Result<String, SendOutcome> {
        let mut cached = self.access.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let iat = now_s();
        let header = match &self.key_id {
            Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        let assertion = self
            .key
            .sign_jwt(
                &header,
                &json!({
                    "iss": self.client_email,
                    "scope": SCOPE,
                    "aud": self.token_uri,
                    "iat": iat,
                    "exp": iat + 3600,
                }),
            )
            .map_err(|reason| SendOutcome::Retry {
                http_status: None,
                reason,
            })?;
        let sent = self
            .http
            .post(&self.token_uri)
            .form(&[("grant_type", GRANT_TYPE), ("assertion", &assertion)])
            .send()
            .await;
        let response = sent.map_err(|e| SendOutcome::Retry {
            http_status: None,
            reason: format!("token endpoint: {}", transport_reason(&e)),
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if status != 200 {
            let reason = format!(
                "token endpoint: HTTP {status} {}",
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default()
            );
            return Err(if status == 429 || status >= 500 {
                SendOutcome::Retry {
                    http_status: Some(status),
                    reason,
                }
            } else {
                // The account's key was revoked or the clock is far off: retrying
                // with the same assertion would not change the answer.
                SendOutcome::Rejected {
                    http_status: Some(status),
                    reason,
                }
            });
        }
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| SendOutcome::Retry {
            http_status: Some(status),
            reason: format!("token endpoint: bad reply: {e}"),
        })?;
        let lifetime = Duration::from_secs(reply.expires_in).saturating_sub(TOKEN_MARGIN);
        *cached = Some((reply.access_token.clone(), Instant::now() + lifetime));
        Ok(reply.access_token)
    }

    /// One attempt to send `message` (from [`message`]).
    pub async fn send(&self, message: &Value) -> SendOutcome {
        let access = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let sent = self
            .http
            .post(&self.send_url)
            .bearer_auth(access)
            .json(message)
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
        let body = response.bytes().await.unwrap_or_default();
        let reason = error_reason(&body).unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            200 => SendOutcome::Delivered {
                http_status: status,
            },
            // UNREGISTERED comes as 404; SENDER_ID_MISMATCH (403) is a token of
            // another project: dead for us either way.
            404 => SendOutcome::DeadToken {
                http_status: Some(status),
                reason,
            },
            _ if reason == "UNREGISTERED" || reason == "SENDER_ID_MISMATCH" => {
                SendOutcome::DeadToken {
                    http_status: Some(status),
                    reason,
                }
            }
            401 => {
                // The access token was revoked or expired early: fetch a new one.
                *self.access.lock().await = None;
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

/// The most specific reason of an FCM error reply: the `FcmError` `errorCode` of
/// `error.details` (`UNREGISTERED`, ...) when present, else `error.status`.
fn error_reason(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?;
    let code = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|details| {
            details
                .iter()
                .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        });
    code.or_else(|| error.get("status").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The FCM message of a queued event for the registration `token`, or `None` for
/// events that are not pushed (only `p2p_inform_called` and `caller_hookon` are):
/// `{"message":{"token":..,"data":{"event":..,"caller":..,"opdata":..},"android":{"priority":"high"}}}`.
/// FCM data values must be strings, so an `opdata` object travels as its JSON text.
pub fn message(token: &str, event: &Value) -> Option<Value> {
    let kind = event.get("event").and_then(Value::as_str)?;
    if kind != P2P_INFORM_CALLED && kind != CALLER_HOOKON {
        return None;
    }
    let mut data = serde_json::Map::new();
    data.insert("event".to_owned(), json!(kind));
    let caller = event.get("caller").and_then(Value::as_str).unwrap_or("");
    data.insert("caller".to_owned(), json!(caller));
    match event.get("opdata") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            data.insert("opdata".to_owned(), json!(s));
        }
        Some(other) => {
            data.insert("opdata".to_owned(), json!(other.to_string()));
        }
    }
    Some(json!({
        "message": {
            "token": token,
            "data": data,
            "android": {"priority": "high"},
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_string_data() {
        let m = message(
            "tok",
            &json!({"event": "p2p_inform_called", "caller": "1001", "opdata": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(
            m,
            json!({"message": {"token": "tok", "data": {"event": "p2p_inform_called",
                "caller": "1001", "opdata": "{\"a\":1}"}, "android": {"priority": "high"}}})
        );
        let m = message("tok", &json!({"event": "caller_hookon", "caller": "1001"})).unwrap();
        assert_eq!(
            m["message"]["data"],
            json!({"event": "caller_hookon", "caller": "1001"})
        );
        assert_eq!(message("tok", &json!({"event": "login_otherwhere"})), None);
    }

    #[test]
    fn error_reasons_prefer_the_fcm_error_code() {
        let body = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[
            {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(error_reason(body).as_deref(), Some("UNREGISTERED"));
        let body = br#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#;
        assert_eq!(error_reason(body).as_deref(), Some("UNAVAILABLE"));
        assert_eq!(error_reason(b"<html>"), None);
    }
}
