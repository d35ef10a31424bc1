//! Accounts: auth codes, registration, passwords, profile, login/logout, presence.

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::params::{de, either, non_empty};
use crate::reply::{OkReply, OkStatus};
use crate::switch::{
    AddInfoReq, AuthCodeKind, AuthCodeReq, ForgetPwdReq, LoginReq, LogoutReq, ModifyPwdReq,
    Presence, QueryStatusReq, RegisterKind, RegisterReq, UserRef,
};
use crate::{Failure, Reason, Switch};

/// Most users one `query_status` may ask about.
const MAX_QUERY_USERS: usize = 500;

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![
        Endpoint::new(
            Verb::Post,
            "/lwork/sms/auth_code",
            auth_code::<S>,
            Doc {
                operation_id: "auth_code",
                tag: "accounts",
                summary: "Send an SMS auth code",
                description: "Sends a code for registration (`register`) or a password \
                              reset (`resetpwd`). Codes expire, are single-use and are \
                              rate-limited per number.",
                request: schema_of::<AuthCodeWire>,
                reply: schema_of::<OkReply>,
                reasons: &[
                    Reason::RateLimited,
                    Reason::AlreadyRegistered,
                    Reason::NotRegistered,
                ],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/register",
            register::<S>,
            Doc {
                operation_id: "register",
                tag: "accounts",
                summary: "Register an account",
                description: "`auth_code` is required for `type: sms`.",
                request: schema_of::<RegisterWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::BadAuthCode, Reason::AlreadyRegistered],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/forget_pwd",
            forget_pwd::<S>,
            Doc {
                operation_id: "forget_pwd",
                tag: "accounts",
                summary: "Reset a forgotten password with an auth code",
                description: "`type` defaults to `sms`; `auth_code` is required for `sms`.",
                request: schema_of::<ForgetPwdWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::BadAuthCode, Reason::NotRegistered],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/modify_pwd",
            modify_pwd::<S>,
            Doc {
                operation_id: "modify_pwd",
                tag: "accounts",
                summary: "Change the password",
                description: "",
                request: schema_of::<ModifyPwdWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::BadPassword, Reason::NoLogind],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/add_info",
            add_info::<S>,
            Doc {
                operation_id: "add_info",
                tag: "accounts",
                summary: "Store profile data",
                description: "`info` is any JSON object (or, in a form, its JSON text); \
                              login returns it.",
                request: schema_of::<AddInfoWire>,
                reply: schema_of::<OkReply>,
                reasons: &[Reason::NoLogind],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/login",
            login::<S>,
            Doc {
                operation_id: "login",
                tag: "accounts",
                summary: "Log in on a device",
                description: "Returns the account id (`uuid`) and profile (`info`), and a \
                              `token` bound to account and device that later requests \
                              may send as `token` (or `Authorization: Bearer`). Logging \
                              in on a second device pushes `login_otherwhere` to the \
                              first.",
                request: schema_of::<LoginWire>,
                reply: schema_of::<LoginReply>,
                reasons: &[
                    Reason::BadPassword,
                    Reason::NotActived,
                    Reason::NotRegistered,
                ],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/logout",
            logout::<S>,
            Doc {
                operation_id: "logout",
                tag: "accounts",
                summary: "Log out a device",
                description: "",
                request: schema_of::<LogoutWire>,
                reply: schema_of::<OkReply>,
                reasons: &[],
            },
        ),
        Endpoint::new(
            Verb::Post,
            "/lwork/mobile/query_status",
            query_status::<S>,
            Doc {
                operation_id: "query_status",
                tag: "accounts",
                summary: "Presence of users",
                description: "At most 500 users per request; each needs `acc` or `phone`.",
                request: schema_of::<QueryStatusWire>,
                reply: schema_of::<QueryStatusReply>,
                reasons: &[],
            },
        ),
    ]
}

// ---- wire types -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthCodeType {
    Register,
    Resetpwd,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RegisterType {
    Sms,
    Delegate,
}

impl From<RegisterType> for RegisterKind {
    fn from(t: RegisterType) -> Self {
        match t {
            RegisterType::Sms => RegisterKind::Sms,
            RegisterType::Delegate => RegisterKind::Delegate,
        }
    }
}

/// POST /lwork/sms/auth_code
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AuthCodeWire {
    /// The phone number / account. Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    #[serde(rename = "type")]
    kind: AuthCodeType,
}

/// POST /lwork/mobile/register
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RegisterWire {
    #[serde(rename = "type")]
    kind: RegisterType,
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Required for `type: sms`.
    #[serde(default, deserialize_with = "de::opt_string")]
    auth_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pwd: String,
}

/// POST /lwork/mobile/forget_pwd
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ForgetPwdWire {
    #[serde(default, rename = "type")]
    kind: Option<RegisterType>,
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Required unless `type: delegate`.
    #[serde(default, deserialize_with = "de::opt_string")]
    auth_code: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pwd: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    name: Option<String>,
}

/// POST /lwork/mobile/modify_pwd
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ModifyPwdWire {
    #[serde(default, rename = "type")]
    kind: Option<RegisterType>,
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    #[serde(deserialize_with = "de::string")]
    old_pwd: String,
    #[serde(deserialize_with = "de::string")]
    pwd: String,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// POST /lwork/mobile/add_info
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AddInfoWire {
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    #[serde(deserialize_with = "de::object")]
    #[schema(value_type = Object)]
    info: Map<String, Value>,
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

/// `clidata` of login/logout/start: what the app says about itself.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: clidata is read as a free-form object
pub(crate) struct Clidata {
    /// e.g. `android`, `ios`.
    os_type: Option<String>,
}

/// POST /lwork/mobile/login
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginWire {
    /// Account name or phone number.
    #[serde(deserialize_with = "de::string")]
    acc: String,
    #[serde(deserialize_with = "de::string")]
    pwd: String,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "de::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    group_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginReply {
    status: OkStatus,
    uuid: String,
    /// Profile data as stored by add_info.
    #[schema(value_type = Object)]
    info: Value,
    /// Login token bound to account and device (extension to the seeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// POST /lwork/mobile/logout
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LogoutWire {
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Required: this or its alias `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Alias of `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
    #[serde(default, deserialize_with = "de::opt_object")]
    #[schema(value_type = Option<Clidata>)]
    clidata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UserRefWire {
    #[serde(default, deserialize_with = "de::opt_string")]
    acc: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    phone: Option<String>,
}

/// POST /lwork/mobile/query_status
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct QueryStatusWire {
    /// The users, as an array (or, in a form, its JSON text).
    #[serde(deserialize_with = "de::json")]
    users: Vec<UserRefWire>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PresenceWire {
    Online,
    Offline,
    Unregistered,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserStateWire {
    acc: String,
    phone: String,
    state: PresenceWire,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueryStatusReply {
    status: OkStatus,
    data: Vec<UserStateWire>,
}

// ---- conversions ------------------------------------------------------------------

pub(crate) fn uuid(a: Option<String>, b: Option<String>) -> Result<String, Failure> {
    non_empty("uuid", either("uuid", "user_id", a, b)?)
}

pub(crate) fn device_id(a: Option<String>, b: Option<String>) -> Result<String, Failure> {
    non_empty("device_id", either("device_id", "dev_id", a, b)?)
}

/// `auth_code` is what proves an SMS registration; a delegate vouches instead.
fn require_auth_code(kind: RegisterKind, code: Option<String>) -> Result<Option<String>, Failure> {
    match (kind, code) {
        (RegisterKind::Sms, None) => Err(Failure::bad_request(
            "auth_code",
            "missing (required for type sms)",
        )),
        (_, code) => Ok(code),
    }
}

impl TryFrom<AuthCodeWire> for AuthCodeReq {
    type Error = Failure;
    fn try_from(w: AuthCodeWire) -> Result<Self, Failure> {
        Ok(AuthCodeReq {
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            kind: match w.kind {
                AuthCodeType::Register => AuthCodeKind::Register,
                AuthCodeType::Resetpwd => AuthCodeKind::ResetPwd,
            },
        })
    }
}

impl TryFrom<RegisterWire> for RegisterReq {
    type Error = Failure;
    fn try_from(w: RegisterWire) -> Result<Self, Failure> {
        let kind = RegisterKind::from(w.kind);
        Ok(RegisterReq {
            kind,
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            auth_code: require_auth_code(kind, w.auth_code)?,
            name: w.name,
            pwd: non_empty("pwd", w.pwd)?,
        })
    }
}

impl TryFrom<ForgetPwdWire> for ForgetPwdReq {
    type Error = Failure;
    fn try_from(w: ForgetPwdWire) -> Result<Self, Failure> {
        let kind = w.kind.map(RegisterKind::from);
        Ok(ForgetPwdReq {
            kind,
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            auth_code: require_auth_code(kind.unwrap_or(RegisterKind::Sms), w.auth_code)?,
            pwd: non_empty("pwd", w.pwd)?,
            name: w.name,
        })
    }
}

impl TryFrom<ModifyPwdWire> for ModifyPwdReq {
    type Error = Failure;
    fn try_from(w: ModifyPwdWire) -> Result<Self, Failure> {
        Ok(ModifyPwdReq {
            kind: w.kind.map(RegisterKind::from),
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            old_pwd: w.old_pwd,
            pwd: non_empty("pwd", w.pwd)?,
            token: w.token,
        })
    }
}

impl TryFrom<AddInfoWire> for AddInfoReq {
    type Error = Failure;
    fn try_from(w: AddInfoWire) -> Result<Self, Failure> {
        Ok(AddInfoReq {
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            info: w.info,
            token: w.token,
        })
    }
}

impl TryFrom<LoginWire> for LoginReq {
    type Error = Failure;
    fn try_from(w: LoginWire) -> Result<Self, Failure> {
        let os_type = match w.clidata.as_ref().and_then(|c| c.get("os_type")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Failure::bad_request("clidata.os_type", "expected a string")),
        };
        Ok(LoginReq {
            acc: non_empty("acc", w.acc)?,
            pwd: w.pwd,
            device_id: device_id(w.device_id, w.dev_id)?,
            os_type,
            name: w.name,
            group_id: w.group_id,
            clidata: w.clidata.map(Value::Object),
        })
    }
}

impl TryFrom<LogoutWire> for LogoutReq {
    type Error = Failure;
    fn try_from(w: LogoutWire) -> Result<Self, Failure> {
        Ok(LogoutReq {
            uuid: uuid(w.uuid, w.user_id)?,
            device_id: device_id(w.device_id, w.dev_id)?,
            token: w.token,
            clidata: w.clidata.map(Value::Object),
        })
    }
}

impl TryFrom<QueryStatusWire> for QueryStatusReq {
    type Error = Failure;
    fn try_from(w: QueryStatusWire) -> Result<Self, Failure> {
        if w.users.len() > MAX_QUERY_USERS {
            return Err(Failure::bad_request(
                "users",
                format!("at most {MAX_QUERY_USERS} users per request"),
            ));
        }
        let users = w
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                if u.acc.is_none() && u.phone.is_none() {
                    Err(Failure::bad_request(
                        format!("users[{i}]"),
                        "needs acc or phone",
                    ))
                } else {
                    Ok(UserRef {
                        acc: u.acc.unwrap_or_default(),
                        phone: u.phone.unwrap_or_default(),
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(QueryStatusReq { users })
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn auth_code<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: AuthCodeWire| async {
        st.switch.auth_code(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn register<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: RegisterWire| async {
        st.switch.register(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn forget_pwd<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: ForgetPwdWire| async {
        st.switch.forget_pwd(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn modify_pwd<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: ModifyPwdWire| async {
        st.switch.modify_pwd(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn add_info<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: AddInfoWire| async {
        st.switch.add_info(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn login<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: LoginWire| async {
        let ok = st.switch.login(w.try_into()?).await?;
        Ok(LoginReply {
            status: OkStatus::Ok,
            uuid: ok.uuid,
            info: ok.info,
            token: ok.token,
        })
    })
    .await
}

async fn logout<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: LogoutWire| async {
        st.switch.logout(w.try_into()?).await?;
        Ok(OkReply::OK)
    })
    .await
}

async fn query_status<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    serve(&st, req, |w: QueryStatusWire| async {
        let states = st.switch.query_status(w.try_into()?).await?;
        Ok(QueryStatusReply {
            status: OkStatus::Ok,
            data: states
                .into_iter()
                .map(|s| UserStateWire {
                    acc: s.acc,
                    phone: s.phone,
                    state: match s.state {
                        Presence::Online => PresenceWire::Online,
                        Presence::Offline => PresenceWire::Offline,
                        Presence::Unregistered => PresenceWire::Unregistered,
                    },
                })
                .collect(),
        })
    })
    .await
}
