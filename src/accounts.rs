//! Accounts (API.md "Accounts"): SMS auth codes, registration, login bound to one
//! device, logout, password reset and change, account info, presence.
//!
//! Security decisions, and why:
//! - Passwords are stored only as Argon2id PHC strings (salted, slow by design).
//!   Hashing and verifying run on the blocking pool so they never stall the runtime.
//! - A login on an unknown account still verifies against a dummy hash, so response
//!   time does not tell which accounts exist beyond what API.md's `not_registered`
//!   reason already says.
//! - Auth codes are 6 digits from the OS CSPRNG, stored hashed, single-use, expiring,
//!   rate-limited per phone when issued, and retired after a few wrong guesses (six
//!   digits alone would fall to a million requests).
//! - Login tokens are 256 random bits; the store keeps only their SHA-256.
//! - An inactive account answers `not_actived` only after the password checked out,
//!   so the flag is not revealed to someone without the password.
//!
//! Times come from an injectable clock (unix ms) so tests can age codes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{
    AnyStore, Login, NewAccount, NewAuthCode, NewLogin, RateLimit, Store, StoreError,
};

/// Failures of account operations. The first group are the business reasons of
/// API.md (`reason()` gives the wire spelling); the rest are server faults.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("rate_limited")]
    RateLimited,
    #[error("already_registered")]
    AlreadyRegistered,
    #[error("not_registered")]
    NotRegistered,
    #[error("bad_auth_code")]
    BadAuthCode,
    #[error("bad_password")]
    BadPassword,
    #[error("not_actived")]
    NotActived,
    #[error("no_logind")]
    NoLogind,
    /// The number is bound to another account (operations interface).
    #[error("phone_taken")]
    PhoneTaken,
    /// A field is empty or too long; names the field.
    #[error("bad_request: {0}")]
    BadRequest(String),
    /// The SMS gateway could not be reached or refused the message.
    #[error("sms gateway: {0}")]
    Sms(String),
    /// Password hashing failed (bad parameters, or the blocking task died).
    #[error("password hashing: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccountError {
    /// The `reason` string of the HTTP failure reply.
    pub fn reason(&self) -> &'static str {
        match self {
            AccountError::RateLimited => "rate_limited",
            AccountError::AlreadyRegistered => "already_registered",
            AccountError::NotRegistered => "not_registered",
            AccountError::BadAuthCode => "bad_auth_code",
            AccountError::BadPassword => "bad_password",
            AccountError::NotActived => "not_actived",
            AccountError::NoLogind => "no_logind",
            AccountError::PhoneTaken => "phone_taken",
            AccountError::BadRequest(_) => "bad_request",
            AccountError::Sms(_) => "sms_failed",
            AccountError::Hash(_) | AccountError::Store(_) => "internal_error",
        }
    }

    /// True for faults of the server (HTTP 5xx, logged), false for the caller's.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            AccountError::Sms(_) | AccountError::Hash(_) | AccountError::Store(_)
        )
    }
}

/// What an auth code is for (API.md `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Register,
    ResetPwd,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Register => "register",
            CodeKind::ResetPwd => "resetpwd",
        }
    }

    /// Parses the API's `type` field.
    pub fn parse(s: &str) -> Option<CodeKind> {
        match s {
            "register" => Some(CodeKind::Register),
            "resetpwd" => Some(CodeKind::ResetPwd),
            _ => None,
        }
    }
}

/// Argon2id cost parameters. Verification reads the parameters from each stored hash,
/// so raising these later keeps old passwords working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
}

impl Default for HashCost {
    /// The argon2 crate's defaults (OWASP's minimum for Argon2id: 19 MiB, t=2, p=1).
    fn default() -> Self {
        HashCost {
            m_kib: Params::DEFAULT_M_COST,
            t: Params::DEFAULT_T_COST,
            p: Params::DEFAULT_P_COST,
        }
    }
}

/// Settings of the accounts layer. `sms_url` is `[sms] url` of OPERATIONS.md; the
/// rest have defaults that suit production.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountsConfig {
    /// Auth codes are POSTed here as JSON `{"phone","code","type"}`; `None` writes
    /// them to the log (development).
    pub sms_url: Option<String>,
    /// Whole-request timeout of the SMS hook.
    pub sms_timeout: Duration,
    /// How long a code stays valid.
    pub code_ttl: Duration,
    /// At most one code per phone within this interval.
    pub code_min_interval: Duration,
    /// At most this many codes per phone per hour.
    pub code_max_per_hour: u32,
    /// Wrong guesses after which the phone's open codes stop working.
    pub code_max_attempts: u32,
    /// Group of self-registered accounts.
    pub app_group: String,
    pub hash_cost: HashCost,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            sms_url: None,
            sms_timeout: Duration::from_secs(5),
            code_ttl: Duration::from_secs(600),
            code_min_interval: Duration::from_secs(60),
            code_max_per_hour: 5,
            code_max_attempts: 5,
            app_group: "app".to_owned(),
            hash_cost: HashCost::default(),
        }
    }
}

/// Where auth codes go.
#[derive(Clone)]
pub enum SmsSender {
    /// No gateway configured: the code is written to the log.
    Log,
    /// POST JSON `{"phone","code","type"}` to `url`.
    Http {
        client: reqwest::Client,
        url: String,
    },
}

impl fmt::Debug for SmsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmsSender::Log => f.write_str("SmsSender::Log"),
            SmsSender::Http { url, .. } => write!(f, "SmsSender::Http({url})"),
        }
    }
}

#[derive(Serialize)]
struct SmsBody<'a> {
    phone: &'a str,
    code: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl SmsSender {
    pub fn new(url: Option<&str>, timeout: Duration) -> Result<SmsSender, AccountError> {
        let Some(url) = url else {
            return Ok(SmsSender::Log);
        };
        // Refuse a malformed URL at start-up rather than at the first user's request.
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => {
                return Err(AccountError::Sms(format!(
                    "[sms] url {url:?}: scheme {:?} is not http or https",
                    u.scheme()
                )))
            }
            Err(e) => return Err(AccountError::Sms(format!("[sms] url {url:?}: {e}"))),
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AccountError::Sms(format!("cannot build HTTP client: {e}")))?;
        Ok(SmsSender::Http {
            client,
            url: url.to_owned(),
        })
    }

    /// Delivers one code. A non-2xx answer is a failure: the user would otherwise wait
    /// for a message that never comes.
    pub async fn send(&self, phone: &str, code: &str, kind: CodeKind) -> Result<(), AccountError> {
        match self {
            SmsSender::Log => {
                tracing::info!(
                    phone,
                    code,
                    kind = kind.as_str(),
                    "auth code ([sms] url not set)"
                );
                Ok(())
            }
            SmsSender::Http { client, url } => {
                let body = SmsBody {
                    phone,
                    code,
                    kind: kind.as_str(),
                };
                let resp = client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| AccountError::Sms(format!("POST {url}: {e}")))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(AccountError::Sms(format!("POST {url}: HTTP {status}")))
                }
            }
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginOk {
    /// The account id (`uuid` of the reply), also when logging in by a bound phone.
    pub uuid: String,
    pub info: serde_json::Value,
    /// The login token (256 bits, hex); only its hash is stored.
    pub token: String,
    /// The device whose login this one replaced (it was sent `login_otherwhere`).
    pub replaced_device: Option<String>,
}

/// One entry of a `query_status` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusQuery {
    pub acc: String,
    pub phone: String,
}

/// Presence of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Has a live login.
    Online,
    /// Registered, not logged in.
    Offline,
    Unregistered,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Offline => "offline",
            Presence::Unregistered => "unregistered",
        }
    }
}

/// One entry of a `query_status` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserStatus {
    pub acc: String,
    pub phone: String,
    pub state: Presence,
}

/// Unix-ms clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Longest uuid, phone, device id or name accepted (bytes).
const MAX_ID_LEN: usize = 128;
/// Longest password accepted (bytes): bounds the hashing input.
const MAX_PWD_LEN: usize = 1024;
/// Most users one `query_status` may ask about.
pub const MAX_STATUS_QUERY: usize = 500;

/// The event queued for a device whose login was taken over.
pub const LOGIN_OTHERWHERE: &str = "login_otherwhere";

/// The accounts service over a store.
pub struct Accounts<S: Store = AnyStore> {
    store: S,
    sms: SmsSender,
    cfg: AccountsConfig,
    argon: Argon2<'static>,
    clock: Clock,
    /// Hash verified against when the account does not exist (timing equalisation).
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl<S: Store> fmt::Debug for Accounts<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("sms", &self.sms)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Accounts<S> {
    pub fn new(store: S, cfg: AccountsConfig) -> Result<Accounts<S>, AccountError> {
        let sms = SmsSender::new(cfg.sms_url.as_deref(), cfg.sms_timeout)?;
        let c = cfg.hash_cost;
        let params = Params::new(c.m_kib, c.t, c.p, None)
            .map_err(|e| AccountError::Hash(format!("bad Argon2 parameters: {e}")))?;
        Ok(Accounts {
            store,
            sms,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            cfg,
            clock: Arc::new(crate::store::now_ms),
            dummy_hash: tokio::sync::OnceCell::new(),
        })
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    // --- auth codes ----------------------------------------------------------------

    /// `POST /lwork/sms/auth_code`: sends a fresh code to `phone` for `kind`.
    pub async fn auth_code(
        &self,
        phone: &str,
        device: &str,
        kind: CodeKind,
    ) -> Result<(), AccountError> {
        check_id("uuid", phone)?;
        check_len("device_id", device)?;
        let registered = self.is_registered(phone).await?;
        match kind {
            CodeKind::Register if registered => return Err(AccountError::AlreadyRegistered),
            CodeKind::ResetPwd if !registered => return Err(AccountError::NotRegistered),
            _ => {}
        }
        let code = format!("{:06}", OsRng.gen_range(0..1_000_000u32));
        let now = self.now();
        let new = NewAuthCode {
            phone: phone.to_owned(),
            kind: kind.as_str().to_owned(),
            code_hash: code_hash(phone, kind, &code),
            device: device.to_owned(),
            created_ms: now,
            expires_ms: now.saturating_add(duration_ms(self.cfg.code_ttl)),
        };
        let limits = [
            RateLimit {
                window_ms: duration_ms(self.cfg.code_min_interval),
                max: 1,
            },
            RateLimit {
                window_ms: 3_600_000,
                max: i64::from(self.cfg.code_max_per_hour),
            },
        ];
        if !self.store.issue_auth_code(&new, &limits).await? {
            return Err(AccountError::RateLimited);
        }
        // A failed send leaves the stored code counting against the rate limit: a
        // flapping gateway must not turn into unlimited retries (and SMS costs).
        self.sms.send(phone, &code, kind).await
    }

    /// Uses up a code; `bad_auth_code` when wrong, expired, used or guessed at too often.
    async fn consume_code(
        &self,
        phone: &str,
        kind: CodeKind,
        code: &str,
    ) -> Result<(), AccountError> {
        let ok = self
            .store
            .consume_auth_code(
                phone,
                kind.as_str(),
                &code_hash(phone, kind, code.trim()),
                self.now(),
                i64::from(self.cfg.code_max_attempts),
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(AccountError::BadAuthCode)
        }
    }

    /// An account with this uuid exists, or the number is bound to one.
    async fn is_registered(&self, phone: &str) -> Result<bool, AccountError> {
        Ok(self.store.get_account(phone).await?.is_some()
            || self.store.account_for_phone(phone).await?.is_some())
    }

    // --- register / passwords ------------------------------------------------------

    /// `POST /lwork/mobile/register`: creates the account `uuid` (a phone number, which
    /// it then owns) after checking the `register` code sent to it.
    pub async fn register(
        &self,
        uuid: &str,
        device: &str,
        auth_code: &str,
        name: &str,
        pwd: &str,
    ) -> Result<(), AccountError> {
        check_id("uuid", uuid)?;
        check_len("device_id", device)?;
        check_len("name", name)?;
        check_pwd("pwd", pwd)?;
        if self.is_registered(uuid).await? {
            return Err(AccountError::AlreadyRegistered);
        }
        self.consume_code(uuid, CodeKind::Register, auth_code)
            .await?;
        let pwd_hash = self.hash_password(pwd).await?;
        let new = NewAccount {
            uuid: uuid.to_owned(),
            name: name.to_owned(),
            pwd_hash,
            group: self.cfg.app_group.clone(),
            active: true,
            info: serde_json::json!({}),
            phone: Some(uuid.to_owned()),
            created_ms: self.now(),
        };
        match self.store.create_account(&new).await {
            Ok(()) => Ok(()),
            // Lost a race with another registration of the same number.
            Err(StoreError::Conflict(_)) => Err(AccountError::AlreadyRegistered),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /lwork/mobile/forget_pwd`: sets a new password after checking the
    /// `resetpwd` code, and ends every login of the account (whoever knew the old
    /// password is out).
    pub async fn forget_pwd(
        &self,
        uuid: &str,
        device: &str,
        auth_code: &str,
        pwd: &str,
    ) -> Result<(), AccountError> {
        check_id("uuid", uuid)?;
        check_len("device_id", device)?;
        check_pwd("pwd", pwd)?;
        if self.store.get_account(uuid).await?.is_none() {
            return Err(AccountError::NotRegistered);
        }
        self.consume_code(uuid, CodeKind::ResetPwd, auth_code)
            .await?;
        let pwd_hash = self.hash_password(pwd).await?;
        if !self.store.set_password(uuid, &pwd_hash).await? {
            return Err(AccountError::NotRegistered);
        }
        self.store.delete_logins(uuid).await?;
        Ok(())
    }

    /// `POST /lwork/mobile/modify_pwd`: changes the password given the old one. An
    /// unknown account also answers `bad_password` (API.md lists no other reason).
    pub async fn modify_pwd(
        &self,
        uuid: &str,
        old_pwd: &str,
        pwd: &str,
    ) -> Result<(), AccountError> {
        check_id("uuid", uuid)?;
        check_pwd("pwd", pwd)?;
        let account = self.store.get_account(uuid).await?;
        let stored = account.as_ref().map(|a| a.pwd_hash.clone());
        if !self.verify_or_dummy(old_pwd, stored).await? || account.is_none() {
            return Err(AccountError::BadPassword);
        }
        let pwd_hash = self.hash_password(pwd).await?;
        if !self.store.set_password(uuid, &pwd_hash).await? {
            return Err(AccountError::BadPassword);
        }
        Ok(())
    }

    // --- login ---------------------------------------------------------------------

    /// `POST /lwork/mobile/login`: `acc` is the account id or a number bound to it.
    /// Replaces any login of the account on another device, which is sent
    /// `login_otherwhere` and from then on answers `no_logind`.
    pub async fn login(&self, acc: &str, pwd: &str, device: &str) -> Result<LoginOk, AccountError> {
        check_id("acc", acc)?;
        check_id("device_id", device)?;
        if pwd.len() > MAX_PWD_LEN {
            return Err(AccountError::BadPassword);
        }
        let mut account = self.store.get_account(acc).await?;
        if account.is_none() {
            if let Some(owner) = self.store.account_for_phone(acc).await? {
                account = self.store.get_account(&owner).await?;
            }
        }
        let stored = account.as_ref().map(|a| a.pwd_hash.clone());
        let password_ok = self.verify_or_dummy(pwd, stored).await?;
        let Some(account) = account else {
            return Err(AccountError::NotRegistered);
        };
        if !password_ok {
            return Err(AccountError::BadPassword);
        }
        if !account.active {
            return Err(AccountError::NotActived);
        }
        let token = random_token();
        let now = self.now();
        let previous = self
            .store
            .put_login(&NewLogin {
                account: account.uuid.clone(),
                device: device.to_owned(),
                token_hash: token_hash(&token),
                created_ms: now,
            })
            .await
            .map_err(|e| match e {
                // Deleted between the read and the write.
                StoreError::NotFound(_) => AccountError::NotRegistered,
                other => other.into(),
            })?;
        let replaced_device = previous.map(|p| p.device).filter(|d| d != device);
        if let Some(old) = &replaced_device {
            self.store
                .enqueue_event(
                    &account.uuid,
                    old,
                    &serde_json::json!({ "event": LOGIN_OTHERWHERE }),
                    now,
                )
                .await?;
            tracing::info!(account = %account.uuid, old_device = %old, new_device = %device,
                "login moved to another device");
        }
        Ok(LoginOk {
            uuid: account.uuid,
            info: account.info,
            token,
            replaced_device,
        })
    }

    /// `POST /lwork/mobile/logout`: ends the login if it is on `device`; succeeds in
    /// any case (logging out twice, or after being replaced, is not an error).
    pub async fn logout(&self, uuid: &str, device: &str) -> Result<(), AccountError> {
        self.store.delete_login(uuid, device).await?;
        Ok(())
    }

    /// The guard of every call that acts for an account: `no_logind` unless the
    /// account's current login is on `device`.
    pub async fn check_login(&self, account: &str, device: &str) -> Result<(), AccountError> {
        match self.store.get_login(account).await? {
            Some(login) if login.device == device => Ok(()),
            _ => Err(AccountError::NoLogind),
        }
    }

    /// The login a token belongs to, if it is still the account's current one.
    pub async fn check_token(&self, token: &str) -> Result<Login, AccountError> {
        self.store
            .login_by_token(&token_hash(token))
            .await?
            .ok_or(AccountError::NoLogind)
    }

    // --- info / presence -----------------------------------------------------------

    /// `POST /lwork/mobile/add_info`: merges `info`'s fields into the account's info
    /// (a non-object replaces it). Needs a live login on `device`.
    pub async fn add_info(
        &self,
        uuid: &str,
        device: &str,
        info: serde_json::Value,
    ) -> Result<(), AccountError> {
        self.check_login(uuid, device).await?;
        let Some(account) = self.store.get_account(uuid).await? else {
            return Err(AccountError::NoLogind);
        };
        let merged = match (account.info, info) {
            (serde_json::Value::Object(mut old), serde_json::Value::Object(new)) => {
                old.extend(new);
                serde_json::Value::Object(old)
            }
            (_, new) => new,
        };
        if self.store.set_info(uuid, &merged).await? {
            Ok(())
        } else {
            Err(AccountError::NoLogind)
        }
    }

    /// `POST /lwork/mobile/query_status`: each user is looked up by `acc` (account id)
    /// and, failing that, by `phone` (bound number).
    pub async fn query_status(
        &self,
        users: &[StatusQuery],
    ) -> Result<Vec<UserStatus>, AccountError> {
        if users.len() > MAX_STATUS_QUERY {
            return Err(AccountError::BadRequest(format!(
                "users: at most {MAX_STATUS_QUERY} per request"
            )));
        }
        let mut out = Vec::with_capacity(users.len());
        for q in users {
            let mut uuid = None;
            if !q.acc.is_empty() && self.store.get_account(&q.acc).await?.is_some() {
                uuid = Some(q.acc.clone());
            }
            if uuid.is_none() && !q.phone.is_empty() {
                uuid = self.store.account_for_phone(&q.phone).await?;
            }
            let state = match uuid {
                None => Presence::Unregistered,
                Some(u) => {
                    if self.store.get_login(&u).await?.is_some() {
                        Presence::Online
                    } else {
                        Presence::Offline
                    }
                }
            };
            out.push(UserStatus {
                acc: q.acc.clone(),
                phone: q.phone.clone(),
                state,
            });
        }
        Ok(out)
    }

    // --- operations interface ------------------------------------------------------

    /// Opens an account for the billing system (group `dth`, ...). `already_registered`
    /// if the id is taken.
    pub async fn open_account(
        &self,
        group: &str,
        account: &str,
        pwd: &str,
        active: bool,
    ) -> Result<(), AccountError> {
        check_id("account", account)?;
        check_len("group", group)?;
        check_pwd("pwd", pwd)?;
        let pwd_hash = self.hash_password(pwd).await?;
        let new = NewAccount {
            uuid: account.to_owned(),
            name: String::new(),
            pwd_hash,
            group: group.to_owned(),
            active,
            info: serde_json::json!({}),
            phone: None,
            created_ms: self.now(),
        };
        match self.store.create_account(&new).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(AccountError::AlreadyRegistered),
            Err(e) => Err(e.into()),
        }
    }

    /// Activates or deactivates an account. A deactivated account cannot log in; its
    /// current login is ended so calls stop at once.
    pub async fn set_active(&self, account: &str, active: bool) -> Result<(), AccountError> {
        if !self.store.set_active(account, active).await? {
            return Err(AccountError::NotRegistered);
        }
        if !active {
            self.store.delete_logins(account).await?;
        }
        Ok(())
    }

    /// Binds a phone number to an account (`phone_taken` if another owns it).
    pub async fn bind_phone(&self, account: &str, phone: &str) -> Result<(), AccountError> {
        check_id("phone", phone)?;
        match self.store.bind_phone(phone, account, self.now()).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(AccountError::PhoneTaken),
            Err(StoreError::NotFound(_)) => Err(AccountError::NotRegistered),
            Err(e) => Err(e.into()),
        }
    }

    // --- hashing -------------------------------------------------------------------

    async fn hash_password(&self, pwd: &str) -> Result<String, AccountError> {
        let argon = self.argon.clone();
        let pwd = pwd.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            let salt =
                SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
            argon
                .hash_password(pwd.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AccountError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
    }

    /// Verifies `pwd` against `stored`, or against a dummy hash of the same cost when
    /// there is no account, so both paths take the same time. A stored value that is
    /// not a valid PHC string never verifies.
    async fn verify_or_dummy(
        &self,
        pwd: &str,
        stored: Option<String>,
    ) -> Result<bool, AccountError> {
        let (hash, real) = match stored {
            Some(h) => (h, true),
            None => {
                let dummy = self
                    .dummy_hash
                    .get_or_try_init(|| self.hash_password("dummy password for timing"))
                    .await?;
                (dummy.clone(), false)
            }
        };
        let argon = self.argon.clone();
        let pwd = pwd.to_owned();
        let ok = tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
            Ok(parsed) => argon.verify_password(pwd.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        })
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?;
        Ok(ok && real)
    }
}

// --- helpers -----------------------------------------------------------------------

fn check_len(field: &str, value: &str) -> Result<(), AccountError> {
    if value.len() > MAX_ID_LEN {
        return Err(AccountError::BadRequest(format!(
            "{field}: longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_id(field: &str, value: &str) -> Result<(), AccountError> {
    if value.trim().is_empty() {
        return Err(AccountError::BadRequest(format!("{field}: empty")));
    }
    check_len(field, value)
}

fn check_pwd(field: &str, value: &str) -> Result<(), AccountError> {
    if value.is_empty() {
        return Err(AccountError::BadRequest(format!("{field}: empty")));
    }
    if value.len() > MAX_PWD_LEN {
        return Err(AccountError::BadRequest(format!(
            "{field}: longer than {MAX_PWD_LEN} bytes"
        )));
    }
    Ok(())
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // Separator so ("ab","c") and ("a","bc") differ.
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// What the store keeps of a code: bound to phone and kind, so a code sent for one
/// purpose cannot be used for another.
fn code_hash(phone: &str, kind: CodeKind, code: &str) -> String {
    sha256_hex(&[phone, kind.as_str(), code])
}

/// What the store keeps of a login token.
pub fn token_hash(token: &str) -> String {
    sha256_hex(&[token])
}

/// 256 random bits from the OS CSPRNG, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn code_hash_binds_phone_and_kind() {
        let h = code_hash("1", CodeKind::Register, "123456");
        assert_ne!(h, code_hash("1", CodeKind::ResetPwd, "123456"));
        assert_ne!(h, code_hash("2", CodeKind::Register, "123456"));
        assert_eq!(h, code_hash("1", CodeKind::Register, "123456"));
    }

    #[test]
    fn reasons_are_api_spellings() {
        assert_eq!(AccountError::NoLogind.reason(), "no_logind");
        assert_eq!(AccountError::NotActived.reason(), "not_actived");
        assert!(!AccountError::BadPassword.is_server_fault());
        assert!(AccountError::Sms("x".into()).is_server_fault());
        assert_eq!(CodeKind::parse("resetpwd"), Some(CodeKind::ResetPwd));
        assert_eq!(CodeKind::parse("x"), None);
    }

    #[test]
    fn sms_url_is_checked_up_front() {
        let t = Duration::from_secs(1);
        assert!(matches!(SmsSender::new(None, t), Ok(SmsSender::Log)));
        assert!(SmsSender::new(Some("http://127.0.0.1:9000/sms"), t).is_ok());
        assert!(SmsSender::new(Some("not a url"), t).is_err());
        assert!(SmsSender::new(Some("ftp://x/sms"), t).is_err());
    }

    #[test]
    fn check_helpers() {
        assert!(check_id("uuid", " ").is_err());
        assert!(check_id("uuid", &"1".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("uuid", "13800000000").is_ok());
        assert!(check_pwd("pwd", "").is_err());
    }
}
