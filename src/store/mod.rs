//! Persistent state: accounts, phone bindings, auth codes, logins, call detail records
//! and the push queue (with the devices' provider tokens and delivery records), behind
//! one [`Store`] trait with two back ends.
//!
//! - [`SqliteStore`]: the embedded default (`sqlite://data/softswitch.db`), WAL mode,
//!   `synchronous=NORMAL` (records survive any process crash; see `sqlite.rs`).
//! - [`PgStore`]: `postgres://...`, for deployments that already run PostgreSQL.
//!
//! Both run the *same* SQL text (`$1`-style parameters work on both, times are unix
//! milliseconds in 64-bit integers, JSON documents are text), generated into each
//! back end by one macro (`sql.rs`) so the two cannot drift apart. Queries are built at
//! run time with `sqlx::query`, never the compile-time-checked macros, so building
//! needs no database. Schema migrations are embedded in the binary and applied by
//! [`open`].
//!
//! Callers hold one concrete type, [`AnyStore`], which picks the back end from the
//! URL and delegates.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod migrate;
pub mod postgres;
mod sql;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Everything that can go wrong in the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `[store] url` is not one this build understands.
    #[error("store url {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    /// The directory for the SQLite file could not be created.
    #[error("store directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Applying the embedded schema migrations failed (e.g. the database holds a
    /// newer or modified schema).
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique key is already taken (the argument names which: `account`, `phone`,
    /// `session_id`, ...).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A row this operation refers to does not exist (e.g. binding a phone to an
    /// unknown account).
    #[error("{0} does not exist")]
    NotFound(&'static str),
    /// A stored value could not be decoded (e.g. a JSON column that is not JSON).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// Any other database failure (connection lost, disk full, ...).
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// Maps a database error, turning key violations into [`StoreError::Conflict`] /
    /// [`StoreError::NotFound`] named after `what`, so callers can answer
    /// `already_registered` and the like without parsing driver messages.
    pub(crate) fn from_db(e: sqlx::Error, what: &'static str) -> StoreError {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(what);
            }
            if db.is_foreign_key_violation() {
                return StoreError::NotFound(what);
            }
        }
        StoreError::Db(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

// ---------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------

/// An account to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccount {
    /// The account id apps send as `uuid` (a phone number for self-registration).
    pub uuid: String,
    pub name: String,
    /// Argon2id PHC string; never a plain password.
    pub pwd_hash: String,
    /// Account group, e.g. `app` (self-registered) or `dth` (opened by billing).
    pub group: String,
    pub active: bool,
    pub info: serde_json::Value,
    /// When given, this number is bound to the new account in the same transaction.
    pub phone: Option<String>,
    pub created_ms: i64,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub uuid: String,
    pub name: String,
    #[serde(skip)]
    pub pwd_hash: String,
    pub group: String,
    pub active: bool,
    pub info: serde_json::Value,
    pub created_ms: i64,
}

/// A one-time code to store (only its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuthCode {
    pub phone: String,
    /// `register` or `resetpwd`.
    pub kind: String,
    pub code_hash: String,
    pub device: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// At most `max` codes per phone within the last `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub window_ms: i64,
    pub max: i64,
}

/// A login to record: the account's one current device.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogin {
    pub account: String,
    pub device: String,
    /// SHA-256 of the token (hex); the token itself is never stored.
    pub token_hash: String,
    pub created_ms: i64,
}

/// A stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Login {
    pub account: String,
    pub device: String,
    pub created_ms: i64,
}

/// What kind of call a record describes (DESIGN.md call kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallKind {
    /// App → trunk.
    Outbound,
    /// Trunk → trunk.
    Transit,
    /// App → app (possibly falling back to the trunk).
    P2p,
    /// Trunk → app.
    SipCallIn,
    /// Switch calls both parties over the trunk.
    Callback,
    /// A `/dapi` channel.
    Channel,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Outbound => "outbound",
            CallKind::Transit => "transit",
            CallKind::P2p => "p2p",
            CallKind::SipCallIn => "sip_call_in",
            CallKind::Callback => "callback",
            CallKind::Channel => "channel",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// It was answered and then hung up by either side.
    Answered,
    /// The caller gave up before an answer (CANCEL / stop).
    Cancelled,
    /// The callee refused (486/603/p2p_reject).
    Rejected,
    /// The callee was busy (486 specifically, when the call layer tells it apart).
    Busy,
    /// The trunk or the switch failed to set the call up (4xx/5xx, no route, ...).
    Failed,
    /// A SIP transaction timed out (no response from the far end).
    Timeout,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// An answered call lost its media (no RTP for `media_timeout_s`).
    MediaTimeout,
    /// The account ran out of prepaid minutes during the call.
    NoMinutes,
    /// Ended by a graceful shutdown of the switch.
    Shutdown,
    /// Found still live at start-up after the previous process died.
    SwitchRestart,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::NoAnswer => "no_answer",
            Outcome::MediaTimeout => "media_timeout",
            Outcome::NoMinutes => "no_minutes",
            Outcome::Shutdown => "shutdown",
            Outcome::SwitchRestart => "switch_restart",
        }
    }
}

/// What is known when a call starts; written as a `live` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecordStart {
    /// Unique across nodes and restarts.
    pub session_id: String,
    /// The account the call belongs to (caller's for outbound/p2p/callback, callee's
    /// for sip_call_in); `None` for transit.
    pub account: Option<String>,
    /// The other account of an app-to-app call, so it shows in both histories.
    pub peer_account: Option<String>,
    pub caller: String,
    pub callee: String,
    pub kind: CallKind,
    pub trunk: Option<String>,
    pub call_ms: i64,
    /// The switch process that owns the call (see [`Store::close_stale`]).
    pub node: String,
}

/// What is known when a call ends.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecordEnd {
    /// Kept if [`Store::set_ringing`] already recorded one.
    pub ring_ms: Option<i64>,
    /// Kept if [`Store::set_answered`] already recorded one.
    pub answer_ms: Option<i64>,
    pub end_ms: i64,
    pub outcome: Outcome,
    /// Final SIP status of the call's set-up (200, 486, 487, ...).
    pub sip_status: Option<u16>,
    /// Negotiated codecs, e.g. `app=AMR trunk=PCMA`.
    pub codecs: String,
    /// Final quality figures (the status `stats` object).
    pub quality: Option<serde_json::Value>,
    /// The trunk, if it was chosen after the call started (p2p fallback); otherwise
    /// the start's value is kept.
    pub trunk: Option<String>,
}

/// Everything one batch of the call-record writer has for one call, written in
/// one go by [`Store::write_call_records`]: the live row (`start`) or the row
/// already known (`id`), then the first ring and answer times, then the end.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallRecordWrite {
    /// Insert this live row (its id comes back).
    pub start: Option<CallRecordStart>,
    /// Or update this existing row.
    pub id: Option<i64>,
    /// Kept only if the row has none yet (as [`Store::set_ringing`]).
    pub ring_ms: Option<i64>,
    /// Kept only if the row has none yet (as [`Store::set_answered`]).
    pub answer_ms: Option<i64>,
    /// Closes the row (as [`Store::finalize`]).
    pub end: Option<CallRecordEnd>,
}

/// A stored call detail record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub id: i64,
    pub session_id: String,
    pub account: Option<String>,
    pub peer_account: Option<String>,
    pub caller: String,
    pub callee: String,
    pub kind: String,
    pub trunk: Option<String>,
    pub call_ms: i64,
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Billable seconds: answer to end, partial seconds rounded up; 0 if unanswered.
    pub duration_s: i64,
    pub outcome: Option<String>,
    pub sip_status: Option<i64>,
    pub codecs: String,
    pub quality: Option<serde_json::Value>,
    /// `live` or `ended`.
    pub state: String,
    pub node: String,
}

impl CallRecord {
    pub fn is_live(&self) -> bool {
        self.state == STATE_LIVE
    }
}

pub(crate) const STATE_LIVE: &str = "live";
pub(crate) const STATE_ENDED: &str = "ended";

/// One line of `/lwork/mobile/call_history`: all ended calls between one caller and
/// one callee.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryGroup {
    /// The id of the group's newest call: the `start_id` for the next page when this
    /// is the last group of a page.
    pub id: i64,
    pub caller: String,
    pub callee: String,
    /// Number of calls in the group (all of them, not just those in `detail`).
    pub times: i64,
    /// The group's newest calls, newest first, at most [`HISTORY_MAX_DETAIL`].
    pub detail: Vec<HistoryItem>,
}

/// One call inside a [`HistoryGroup`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    pub id: i64,
    /// The call kind (`outbound`, `p2p`, ...): the `type` field of API.md.
    pub kind: String,
    pub call_ms: i64,
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub duration_s: i64,
    pub outcome: Option<String>,
}

/// Most groups one history page returns, whatever `num` asks for.
pub const HISTORY_MAX_GROUPS: i64 = 100;
/// Most calls listed in one group's `detail` (its `times` still counts all).
pub const HISTORY_MAX_DETAIL: i64 = 50;

/// A queued event for one device of an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushEvent {
    pub seq: i64,
    pub account: String,
    pub device: String,
    pub event: serde_json::Value,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

/// What one long-poll check takes from a device's queue ([`Store::claim_events`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaimedEvents {
    /// Oldest first.
    pub events: Vec<PushEvent>,
    /// The highest seq ever issued to the device (still queued or removed by
    /// retention); 0 if none.
    pub last_issued: i64,
    /// The highest seq of the device that retention removed; 0 if none.
    pub purged_through: i64,
}

/// A device's token at a push provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushToken {
    pub account: String,
    pub device: String,
    /// `apns`, `fcm` or `baidu`.
    pub provider: String,
    pub token: String,
    pub updated_ms: i64,
}

/// One attempt to hand an event to a push provider, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushDelivery {
    pub account: String,
    pub device: String,
    pub provider: String,
    /// The event's seq in the push queue.
    pub seq: i64,
    /// 1 for the first try.
    pub attempt: i64,
    /// `ok`, `retry` (failed, tried again), `failed` (failed, gave up), `dropped` (the
    /// token is dead and was removed) or `rejected` (refused for another reason).
    pub status: String,
    /// The provider's HTTP status; `None` when no answer came (connect error, timeout).
    pub http_status: Option<i64>,
    /// The provider's reason (`BadDeviceToken`, `UNREGISTERED`, ...) or the transport
    /// error.
    pub reason: Option<String>,
    pub created_ms: i64,
}

/// A recorded delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushDelivery {
    pub id: i64,
    pub account: String,
    pub device: String,
    pub provider: String,
    pub seq: i64,
    pub attempt: i64,
    pub status: String,
    pub http_status: Option<i64>,
    pub reason: Option<String>,
    pub created_ms: i64,
}

// ---------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------

/// The repository. Every method is one short transaction (or a single statement), so
/// callers may run them concurrently from any task.
///
/// Times are unix milliseconds supplied by the caller, which keeps the store free of
/// clocks and lets tests run on virtual time.
pub trait Store: Send + Sync + 'static {
    /// A trivial round trip, for `/healthz`.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    // --- accounts --------------------------------------------------------------

    /// Creates an account (and binds `new.phone` when given) atomically.
    /// [`StoreError::Conflict`]`("account")` if the uuid exists, `("phone")` if the
    /// number is bound to another account.
    fn create_account(&self, new: &NewAccount) -> impl Future<Output = StoreResult<()>> + Send;
    fn get_account(&self, uuid: &str) -> impl Future<Output = StoreResult<Option<Account>>> + Send;
    /// `false` if there is no such account.
    fn set_password(
        &self,
        uuid: &str,
        pwd_hash: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Replaces the account's info document. `false` if there is no such account.
    fn set_info(
        &self,
        uuid: &str,
        info: &serde_json::Value,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// `false` if there is no such account.
    fn set_active(
        &self,
        uuid: &str,
        active: bool,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // --- phone numbers ---------------------------------------------------------

    /// Binds `phone` to `account`. Binding it again to the same account is a no-op;
    /// [`StoreError::Conflict`]`("phone")` if another account owns it,
    /// [`StoreError::NotFound`]`("account")` if the account does not exist.
    fn bind_phone(
        &self,
        phone: &str,
        account: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// `false` if the number was not bound.
    fn unbind_phone(&self, phone: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The account that owns `phone`.
    fn account_for_phone(
        &self,
        phone: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    fn phones_of(&self, account: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    // --- auth codes ------------------------------------------------------------

    /// Stores a code unless one of `limits` is already reached for its phone, checked
    /// and inserted under one lock so concurrent requests cannot both slip under a
    /// limit. `false` = rate limited, nothing stored.
    fn issue_auth_code(
        &self,
        code: &NewAuthCode,
        limits: &[RateLimit],
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Codes issued to `phone` after `since_ms`.
    fn count_auth_codes(
        &self,
        phone: &str,
        since_ms: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Uses up the newest unexpired, unused code of this phone and kind whose hash is
    /// `code_hash` and that has seen fewer than `max_attempts` wrong guesses. `true`
    /// exactly once per code, even under concurrency; on success every other open
    /// code of the same phone and kind is retired too. A miss counts as a wrong guess
    /// against every open code of the phone and kind.
    fn consume_auth_code(
        &self,
        phone: &str,
        kind: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // --- logins ----------------------------------------------------------------

    /// Makes `login` the account's one current login and returns the one it replaced
    /// (possibly on the same device). [`StoreError::NotFound`]`("account")` for an
    /// unknown account.
    fn put_login(
        &self,
        login: &NewLogin,
    ) -> impl Future<Output = StoreResult<Option<Login>>> + Send;
    fn get_login(&self, account: &str) -> impl Future<Output = StoreResult<Option<Login>>> + Send;
    fn login_by_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Login>>> + Send;
    /// Removes the account's login if it is on `device`. `false` if it was not.
    fn delete_login(
        &self,
        account: &str,
        device: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes the account's login whatever the device (password reset).
    fn delete_logins(&self, account: &str) -> impl Future<Output = StoreResult<u64>> + Send;

    // --- call detail records ---------------------------------------------------

    /// Writes the `live` row of a starting call; returns its id.
    /// [`StoreError::Conflict`]`("session_id")` if the session already has a record.
    fn insert_live(&self, start: &CallRecordStart)
        -> impl Future<Output = StoreResult<i64>> + Send;
    /// Records the first ring time of a live call (so a crash still knows it).
    fn set_ringing(&self, id: i64, ms: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records the answer time of a live call: a call that was up when the process
    /// died is then still billed up to the last heartbeat.
    fn set_answered(&self, id: i64, ms: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Applies a batch of call-record writes in one transaction (all or
    /// nothing), in order; returns each write's row id (the inserted one for
    /// a `start`, `id` otherwise; `None` for a write with neither). An end
    /// closes only a live row, like [`Store::finalize`].
    fn write_call_records(
        &self,
        batch: &[CallRecordWrite],
    ) -> impl Future<Output = StoreResult<Vec<Option<i64>>>> + Send;
    /// Notes that `node` is alive at `now_ms` (call every few seconds).
    fn heartbeat(&self, node: &str, now_ms: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Closes a live record. Idempotent: `true` for the one call that closed it,
    /// `false` if it was already ended (or does not exist).
    fn finalize(
        &self,
        id: i64,
        end: &CallRecordEnd,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// At start-up: closes `node`'s records still `live` from a previous process with
    /// outcome `switch_restart`, ending at the node's last heartbeat (never before the
    /// call's own last known time, never after `now_ms`). Returns how many.
    fn close_stale(&self, node: &str, now_ms: i64)
        -> impl Future<Output = StoreResult<u64>> + Send;
    fn get_call(&self, id: i64) -> impl Future<Output = StoreResult<Option<CallRecord>>> + Send;
    fn get_call_by_session(
        &self,
        session_id: &str,
    ) -> impl Future<Output = StoreResult<Option<CallRecord>>> + Send;
    /// Ended records of `account` (either side) with `from_ms <= call_ms < to_ms`,
    /// oldest first, at most `limit` (operations "query call details").
    fn list_calls(
        &self,
        account: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CallRecord>>> + Send;
    /// One page of call history: ended calls of `account` (either side) grouped by
    /// (caller, callee), groups ordered by their newest call, newest first; only groups
    /// whose newest id is below `start_id` (0 = from the top); at most `num` groups
    /// (capped at [`HISTORY_MAX_GROUPS`]).
    fn history(
        &self,
        account: &str,
        start_id: i64,
        num: i64,
    ) -> impl Future<Output = StoreResult<Vec<HistoryGroup>>> + Send;

    // --- push queue ------------------------------------------------------------

    /// Queues `event` for one device of an account; returns its sequence number
    /// (increasing over the whole table, never reused). Enqueues for one device are
    /// serialised, so a device's events commit in seq order (a reader that has seen
    /// seq n never later finds a smaller one appear).
    fn enqueue_event(
        &self,
        account: &str,
        device: &str,
        event: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Undelivered events of the device with `seq > after_seq`, oldest first.
    fn pending_events(
        &self,
        account: &str,
        device: &str,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<PushEvent>>> + Send;
    /// Marks the device's events up to `up_to_seq` delivered; returns how many.
    fn mark_delivered(
        &self,
        account: &str,
        device: &str,
        up_to_seq: i64,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// One long-poll check of a device's queue, at most `limit` events, oldest first,
    /// marking the undelivered ones among them delivered in the same transaction.
    ///
    /// - `after_seq` `None`, or beyond the device's last issued seq (the number does
    ///   not come from this queue): the undelivered events. Each is returned by
    ///   exactly one call, even to concurrent callers in several processes.
    /// - `after_seq` `Some(n)`: every retained event with `seq > n`, delivered before
    ///   or not (the client says it did not see them).
    fn claim_events(
        &self,
        account: &str,
        device: &str,
        after_seq: Option<i64>,
        limit: i64,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<ClaimedEvents>> + Send;
    /// Undelivered events of the device.
    fn count_pending_events(
        &self,
        account: &str,
        device: &str,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Retention: removes queued events and delivery records created before
    /// `before_ms`, remembering per device the highest seq removed (see
    /// [`ClaimedEvents::purged_through`]). Returns how many events were removed.
    fn purge_events(&self, before_ms: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // --- push provider tokens and deliveries ---------------------------------------

    /// Stores `token` of `provider` for the device, replacing the device's previous
    /// token of that provider and taking the token away from any other device.
    fn put_push_token(
        &self,
        account: &str,
        device: &str,
        provider: &str,
        token: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The device's tokens, ordered by provider.
    fn push_tokens(
        &self,
        account: &str,
        device: &str,
    ) -> impl Future<Output = StoreResult<Vec<PushToken>>> + Send;
    /// Forgets a token (the provider said it is dead). `false` if it was not stored.
    fn delete_push_token(
        &self,
        provider: &str,
        token: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Forgets every token of a device (it logged out); returns how many.
    fn delete_device_tokens(
        &self,
        account: &str,
        device: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Records one delivery attempt; returns its id.
    fn record_push_delivery(
        &self,
        delivery: &NewPushDelivery,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The device's most recent delivery attempts (at most `limit`), oldest first.
    fn push_deliveries(
        &self,
        account: &str,
        device: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<PushDelivery>>> + Send;
}

// ---------------------------------------------------------------------------------
// AnyStore
// ---------------------------------------------------------------------------------

/// The store the process runs with, chosen by [`open`] from the configured URL.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the store named by `url` and brings its schema up to date.
///
/// - `sqlite://path` (relative to the working directory), `sqlite:///abs/path`,
///   `sqlite:path` or `sqlite::memory:`: the file and its directory are created when
///   missing.
/// - `postgres://user@host[:port]/db` (or `postgresql://`): the database must exist.
pub async fn open(url: &str) -> StoreResult<AnyStore> {
    if url.starts_with("sqlite:") {
        Ok(AnyStore::Sqlite(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(AnyStore::Postgres(PgStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl {
            url: url.to_owned(),
            problem: "expected sqlite://PATH or postgres://...".to_owned(),
        })
    }
}

impl AnyStore {
    /// `sqlite` or `postgres`, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection, waiting for queries in flight (graceful shutdown;
    /// SQLite checkpoints its WAL when the last connection closes).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        impl Store for AnyStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                        AnyStore::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    fn ping(&self) -> StoreResult<()>;
    fn create_account(&self, new: &NewAccount) -> StoreResult<()>;
    fn get_account(&self, uuid: &str) -> StoreResult<Option<Account>>;
    fn set_password(&self, uuid: &str, pwd_hash: &str) -> StoreResult<bool>;
    fn set_info(&self, uuid: &str, info: &serde_json::Value) -> StoreResult<bool>;
    fn set_active(&self, uuid: &str, active: bool) -> StoreResult<bool>;
    fn bind_phone(&self, phone: &str, account: &str, now_ms: i64) -> StoreResult<()>;
    fn unbind_phone(&self, phone: &str) -> StoreResult<bool>;
    fn account_for_phone(&self, phone: &str) -> StoreResult<Option<String>>;
    fn phones_of(&self, account: &str) -> StoreResult<Vec<String>>;
    fn issue_auth_code(&self, code: &NewAuthCode, limits: &[RateLimit]) -> StoreResult<bool>;
    fn count_auth_codes(&self, phone: &str, since_ms: i64) -> StoreResult<i64>;
    fn consume_auth_code(
        &self,
        phone: &str,
        kind: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: i64
    ) -> StoreResult<bool>;
    fn put_login(&self, login: &NewLogin) -> StoreResult<Option<Login>>;
    fn get_login(&self, account: &str) -> StoreResult<Option<Login>>;
    fn login_by_token(&self, token_hash: &str) -> StoreResult<Option<Login>>;
    fn delete_login(&self, account: &str, device: &str) -> StoreResult<bool>;
    fn delete_logins(&self, account: &str) -> StoreResult<u64>;
    fn insert_live(&self, start: &CallRecordStart) -> StoreResult<i64>;
    fn set_ringing(&self, id: i64, ms: i64) -> StoreResult<bool>;
    fn set_answered(&self, id: i64, ms: i64) -> StoreResult<bool>;
    fn write_call_records(&self, batch: &[CallRecordWrite]) -> StoreResult<Vec<Option<i64>>>;
    fn heartbeat(&self, node: &str, now_ms: i64) -> StoreResult<()>;
    fn finalize(&self, id: i64, end: &CallRecordEnd) -> StoreResult<bool>;
    fn close_stale(&self, node: &str, now_ms: i64) -> StoreResult<u64>;
    fn get_call(&self, id: i64) -> StoreResult<Option<CallRecord>>;
    fn get_call_by_session(&self, session_id: &str) -> StoreResult<Option<CallRecord>>;
    fn list_calls(
        &self,
        account: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64
    ) -> StoreResult<Vec<CallRecord>>;
    fn history(&self, account: &str, start_id: i64, num: i64) -> StoreResult<Vec<HistoryGroup>>;
    fn enqueue_event(
        &self,
        account: &str,
        device: &str,
        event: &serde_json::Value,
        now_ms: i64
    ) -> StoreResult<i64>;
    fn pending_events(
        &self,
        account: &str,
        device: &str,
        after_seq: i64,
        limit: i64
    ) -> StoreResult<Vec<PushEvent>>;
    fn mark_delivered(
        &self,
        account: &str,
        device: &str,
        up_to_seq: i64,
        now_ms: i64
    ) -> StoreResult<u64>;
    fn claim_events(
        &self,
        account: &str,
        device: &str,
        after_seq: Option<i64>,
        limit: i64,
        now_ms: i64
    ) -> StoreResult<ClaimedEvents>;
    fn count_pending_events(&self, account: &str, device: &str) -> StoreResult<i64>;
    fn purge_events(&self, before_ms: i64) -> StoreResult<u64>;
    fn put_push_token(
        &self,
        account: &str,
        device: &str,
        provider: &str,
        token: &str,
        now_ms: i64
    ) -> StoreResult<()>;
    fn push_tokens(&self, account: &str, device: &str) -> StoreResult<Vec<PushToken>>;
    fn delete_push_token(&self, provider: &str, token: &str) -> StoreResult<bool>;
    fn delete_device_tokens(&self, account: &str, device: &str) -> StoreResult<u64>;
    fn record_push_delivery(&self, delivery: &NewPushDelivery) -> StoreResult<i64>;
    fn push_deliveries(
        &self,
        account: &str,
        device: &str,
        limit: i64
    ) -> StoreResult<Vec<PushDelivery>>;
}

// ---------------------------------------------------------------------------------
// Node liveness
// ---------------------------------------------------------------------------------

/// Start-up step of a switch process: closes the records its previous incarnation
/// left `live` (ending at that incarnation's last heartbeat), then records the first
/// heartbeat of this one. The order matters: a heartbeat first would overwrite the
/// time the old process was last seen alive and over-bill its orphaned calls.
/// Returns how many records were closed.
pub async fn recover_node<S: Store>(store: &S, node: &str, now_ms: i64) -> StoreResult<u64> {
    let closed = store.close_stale(node, now_ms).await?;
    if closed > 0 {
        tracing::warn!(
            node,
            closed,
            "closed call records left live by a previous process"
        );
    }
    store.heartbeat(node, now_ms).await?;
    Ok(closed)
}

/// Keeps `node`'s heartbeat fresh every `every` until the task is aborted. A failed
/// beat is logged and retried at the next tick: a database blip must not take calls
/// down, and the only cost of a missed beat is a slightly earlier end time should the
/// process die right then.
pub fn spawn_heartbeat<S: Store + Clone>(
    store: S,
    node: String,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = store.heartbeat(&node, now_ms()).await {
                tracing::warn!(node = %node, error = %e, "store heartbeat failed");
            }
        }
    })
}

// ---------------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------------

/// Wall-clock now as unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Billable seconds from answer to end: partial seconds round up (per-second billing
/// as carriers do it); 0 when unanswered or when the clock went backwards.
pub fn billable_seconds(answer_ms: Option<i64>, end_ms: i64) -> i64 {
    match answer_ms {
        Some(a) if end_ms > a => (end_ms - a).saturating_add(999) / 1000,
        _ => 0,
    }
}

/// Formats unix milliseconds as API.md's `YYYY-M-D HH:MM:SS` (month and day without
/// leading zeros, as the original apps expect), shifted by `utc_offset_s` seconds.
pub fn api_time(ms: i64, utc_offset_s: i32) -> String {
    let secs = ms.div_euclid(1000).saturating_add(i64::from(utc_offset_s));
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y}-{m}-{d} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), so no date crate is needed for one format.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_time_formats_like_the_seed() {
        // 2015-05-22 16:28:49 UTC
        assert_eq!(api_time(1_432_312_129_000, 0), "2015-5-22 16:28:49");
        assert_eq!(api_time(0, 0), "1970-1-1 00:00:00");
        assert_eq!(api_time(1_432_312_129_000, 8 * 3600), "2015-5-23 00:28:49");
        // Leap day and a pre-epoch instant.
        assert_eq!(api_time(951_782_400_000, 0), "2000-2-29 00:00:00");
        assert_eq!(api_time(-1000, 0), "1969-12-31 23:59:59");
    }

    #[test]
    fn billable_seconds_round_up() {
        assert_eq!(billable_seconds(None, 10_000), 0);
        assert_eq!(billable_seconds(Some(1_000), 1_000), 0);
        assert_eq!(billable_seconds(Some(1_000), 1_001), 1);
        assert_eq!(billable_seconds(Some(1_000), 11_000), 10);
        assert_eq!(billable_seconds(Some(5_000), 1_000), 0);
    }

    #[tokio::test]
    async fn open_sqlite_url_creates_dirs_and_sets_durability_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("softswitch.db");
        let store = open(&format!("sqlite://{}", path.display())).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert!(path.exists());
        let AnyStore::Sqlite(s) = &store else {
            panic!("not sqlite")
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        store.close().await;
    }

    #[tokio::test]
    async fn open_sqlite_memory_and_recover_node() {
        let store = open("sqlite::memory:").await.unwrap();
        let start = CallRecordStart {
            session_id: "s".into(),
            account: None,
            peer_account: None,
            caller: "1".into(),
            callee: "2".into(),
            kind: CallKind::Transit,
            trunk: None,
            call_ms: 1_000,
            node: "n".into(),
        };
        let id = store.insert_live(&start).await.unwrap();
        store.set_answered(id, 2_000).await.unwrap();
        store.heartbeat("n", 9_000).await.unwrap();
        assert_eq!(recover_node(&store, "n", 50_000).await.unwrap(), 1);
        let rec = store.get_call(id).await.unwrap().unwrap();
        assert_eq!(
            rec.end_ms,
            Some(9_000),
            "ends at the old heartbeat, not now"
        );
        assert_eq!(rec.duration_s, 7);
        assert_eq!(recover_node(&store, "n", 60_000).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn open_rejects_unknown_scheme() {
        let err = open("mysql://x").await.err();
        assert!(matches!(err, Some(StoreError::BadUrl { .. })), "{err:?}");
    }
}
