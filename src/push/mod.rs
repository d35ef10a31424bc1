//! Push to apps: the long poll each device keeps open for its events
//! (`/channel/push_service`), and wake-ups through the platforms' push services
//! (APNs VoIP pushes for iOS, FCM for Android) for when the app is not running.
//!
//! - [`PushHub`] owns both paths. Every event is first queued durably in the store
//!   (the push queue table, so a restart loses nothing), then the device's open poll is
//!   woken, then, for call events, the device's provider tokens are pushed to in the
//!   background with retries, each attempt's outcome recorded.
//! - [`apns`] and [`fcm`] are the provider clients: token-based auth (ES256 JWT from a
//!   `.p8` key; an OAuth2 access token from a service account's RS256 assertion) and
//!   the payloads API.md prescribes.
//!
//! Sequence numbers are the queue's own (`push_events.seq`): increasing over the whole
//! table, never reused (also across restarts), so increasing per device too. A client
//! sends back the highest it saw (`last_seq`) and gets what came after; `gap` tells it
//! that retention removed some of that before it could be delivered.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::store::StoreError;

pub mod apns;
pub mod fcm;
mod hub;
mod jwt;

pub use hub::{split_cloud_device_id, HubOptions, PollOutcome, PushHub, RetryPolicy};

/// `p2p_inform_called {caller, opdata}`: an incoming call (long poll + providers).
pub const P2P_INFORM_CALLED: &str = "p2p_inform_called";
/// `caller_hookon {caller}`: the caller gave up before an answer (long poll +
/// providers).
pub const CALLER_HOOKON: &str = "caller_hookon";
/// The reply to a long poll that saw nothing within the idle timeout (never queued).
pub const SHAKE_HAND: &str = "shake_hand";

/// Everything that can go wrong in the push layer. Provider failures are not here:
/// they happen in the background and end up as delivery records.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event to queue must be a JSON object with a string `event` field.
    #[error("bad push event: {0}")]
    BadEvent(&'static str),
    /// [`PushHub::notify`] without a device, for an account with no current login:
    /// there is no device to address (the caller treats the user as offline).
    #[error("account {0:?} is not logged in on any device")]
    NotLoggedIn(String),
    /// A provider token that cannot be one (empty, too long, bad characters).
    #[error("bad {provider} push token: {problem}")]
    BadToken {
        provider: &'static str,
        problem: &'static str,
    },
    /// A `[push]` setting is unusable (unreadable key file, malformed key, ...);
    /// `key` names it as in the config file.
    #[error("{key}: {problem}")]
    Config { key: &'static str, problem: String },
}

/// A push service a device can register a token with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Apple Push Notification service (VoIP pushes).
    Apns,
    /// Firebase Cloud Messaging (HTTP v1 API).
    Fcm,
    /// Baidu Cloud Push: channels are stored (`baidu_push_register`), nothing is
    /// delivered to it (no client for its API; the long poll still gets everything).
    Baidu,
}

impl Provider {
    /// The name stored in `push_tokens.provider` and `push_deliveries.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
            Provider::Baidu => "baidu",
        }
    }

    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "apns" => Some(Provider::Apns),
            "fcm" => Some(Provider::Fcm),
            "baidu" => Some(Provider::Baidu),
            _ => None,
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------

/// `[push]` (OPERATIONS.md), field for field, plus optional keys with defaults. It
/// deserializes from the same TOML as `config::PushConfig`, so the config layer may
/// embed this type directly.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// A poll with nothing to deliver is answered `shake_hand` after this.
    pub long_poll_timeout_s: u64,
    /// How long queued events are kept, delivered or not, for clients resuming with
    /// `last_seq`, and how long delivery records are kept. Default 24 h.
    pub retention_s: u64,
    /// `None`: no APNs delivery.
    pub apns: Option<ApnsConfig>,
    /// `None`: no FCM delivery.
    pub fcm: Option<FcmConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            long_poll_timeout_s: 30,
            retention_s: 24 * 3600,
            apns: None,
            fcm: None,
        }
    }
}

impl PushConfig {
    pub fn long_poll_timeout(&self) -> Duration {
        Duration::from_secs(self.long_poll_timeout_s)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_s)
    }
}

fn default_apns_url() -> String {
    "https://api.push.apple.com".to_owned()
}

fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".to_owned()
}

fn default_apns_expiration_s() -> u64 {
    30
}

/// `[push.apns]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// `https://...`: TLS, HTTP/2 negotiated by ALPN, as the real service.
    /// `http://...`: HTTP/2 without TLS ("prior knowledge"), for local stand-ins only.
    #[serde(default = "default_apns_url")]
    pub url: String,
    /// The `.p8` signing key (PKCS#8 PEM, EC P-256) from the Apple developer account.
    pub key_file: PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id with `.voip`.
    pub topic: String,
    /// Extra PEM root certificate(s) to trust (a test stand-in's CA); the public roots
    /// are always trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `apns-expiration`: APNs keeps trying an offline phone this long (a call push is
    /// useless once the caller gave up). 0 = deliver now or never.
    #[serde(default = "default_apns_expiration_s")]
    pub expiration_s: u64,
}

/// `[push.fcm]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    #[serde(default = "default_fcm_url")]
    pub url: String,
    pub project_id: String,
    /// The service account's JSON key (`client_email`, `private_key`, `token_uri`).
    pub service_account_file: PathBuf,
    /// Extra PEM root certificate(s) to trust, for the send and the token endpoint.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------
// What a provider said
// ---------------------------------------------------------------------------------

/// The outcome of one attempt to hand a push to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted.
    Delivered { http_status: u16 },
    /// The token is dead (app uninstalled, token rotated, wrong app; `http_status`
    /// `None`: refused before sending, it cannot be a token): forget it.
    DeadToken {
        http_status: Option<u16>,
        reason: String,
    },
    /// Worth trying again later (throttled, provider trouble, no answer, credentials
    /// just refreshed).
    Retry {
        http_status: Option<u16>,
        reason: String,
    },
    /// Refused for good for a reason other than the token (bad payload, bad topic,
    /// bad credentials): retrying would not help.
    Rejected {
        http_status: Option<u16>,
        reason: String,
    },
}

/// Reads a file the config names, mapping failure to [`PushError::Config`].
fn read_config_file(key: &'static str, path: &std::path::Path) -> Result<String, PushError> {
    std::fs::read_to_string(path).map_err(|e| PushError::Config {
        key,
        problem: format!("{}: {e}", path.display()),
    })
}

/// Builds the HTTP client of a provider: rustls with the public roots, plus `ca_file`
/// when given; bounded connect and request times so a stuck provider cannot pile up
/// tasks.
fn http_client(
    key: &'static str,
    ca_file: Option<&std::path::Path>,
    http2_only: bool,
) -> Result<reqwest::Client, PushError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15));
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| PushError::Config {
            key,
            problem: format!("{}: {e}", path.display()),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| PushError::Config {
            key,
            problem: format!("{}: {e}", path.display()),
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| PushError::Config {
        key,
        problem: format!("HTTP client: {e}"),
    })
}
