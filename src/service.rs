//! The switch as the HTTP façade sees it: [`api::Switch`] implemented over
//! the accounts, the store, the call registry and the SIP loop.
//!
//! ```text
//!  api route ─▶ Service ─┬─ accounts / store (async, sqlx)
//!                        ├─ Registry (status polls: a map lookup)
//!                        └─ Command ─▶ SIP loop (B2bua) ─▶ INVITE / relay legs
//! ```
//!
//! Business failures are decided here and mapped to API.md reasons at this
//! edge only (`AccountError`/`AppCallError` → `api::Failure`).

use crate::accounts::{AccountError, Accounts, CodeKind, StatusQuery};
use crate::b2bua::{
    media_timed_out, AppAnswer, AppCallError, AppMedia, Command, StartApp, StartCallback, StartP2p,
};
use crate::cdr::{CdrEvent, CdrSink};
use crate::push::{Provider, PushError, PushHub};
use crate::registry::{self, CallKind, CallView, PeerStatus, Registry};
use crate::store::{self, now_ms, AnyStore, CallRecordEnd, CallRecordStart, Store};
use api::{
    AddInfoReq, AuthCodeKind, AuthCodeReq, CallAnswer, CallStarted, CallStatus, CallbackReq,
    CallbackStopReq, DetailEval, DtmfReq, Failure, ForgetPwdReq, HistoryCall, HistoryGroup,
    HistoryReq, LoginOk, LoginReq, LogoutReq, ModifyPwdReq, OpdataReq, P2pAnswerReq, P2pRejectReq,
    PayloadMode, Presence, PushPollOk, PushPollReq, PushRegisterReq, QueryStatusReq, RegisterReq,
    RelayAnswer, SdpParam, SessionReq, StartCallReq, UserState,
};
use media::driver::MediaDriver;
use sip::sdp::SessionDescription;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// How long a successful login check is trusted for status polls (a poll
/// many times a second must not cost a database query each).
const LOGIN_CACHE: Duration = Duration::from_secs(2);

/// Settings of the service from the config file.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub node: String,
    /// The AMR payload mode chosen for Android apps.
    pub app_octet_aligned: bool,
    /// Concurrent calls one account may have (a phone has one).
    pub max_calls_per_account: usize,
}

pub struct Service {
    accounts: Accounts<AnyStore>,
    store: AnyStore,
    push: PushHub<AnyStore>,
    registry: Arc<Registry>,
    commands: mpsc::Sender<Command>,
    cdr: CdrSink,
    cfg: ServiceConfig,
    /// account → device → when its login was last found current. Nested so a
    /// poll looks it up by `&str` without building a key.
    logins: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Service {
    pub fn new(
        accounts: Accounts<AnyStore>,
        store: AnyStore,
        push: PushHub<AnyStore>,
        registry: Arc<Registry>,
        commands: mpsc::Sender<Command>,
        cdr: CdrSink,
        cfg: ServiceConfig,
    ) -> Service {
        Service {
            accounts,
            store,
            push,
            registry,
            commands,
            cdr,
            cfg,
            logins: Mutex::new(HashMap::new()),
        }
    }

    /// `no_logind` unless the request proves the login: a token naming
    /// `account`'s current login, or `device` being its current device.
    /// Knowing an account's number is not enough to act for it.
    async fn authorize(
        &self,
        account: &str,
        device: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), Failure> {
        if let Some(token) = token {
            let login = self.accounts.check_token(token).await.map_err(failure)?;
            return if login.account == account {
                Ok(())
            } else {
                Err(Failure::NoLogind)
            };
        }
        let now = Instant::now();
        if self
            .cached_logins()
            .get(account)
            .and_then(|devices| devices.get(device.unwrap_or_default()))
            .is_some_and(|at| now.saturating_duration_since(*at) < LOGIN_CACHE)
        {
            return Ok(());
        }
        let Some(device) = device else {
            return Err(Failure::NoLogind);
        };
        self.accounts
            .check_login(account, device)
            .await
            .map_err(failure)?;
        let mut cache = self.cached_logins();
        if cache.len() > 100_000 {
            cache.retain(|_, devices| {
                devices.retain(|_, at| now.saturating_duration_since(*at) < LOGIN_CACHE);
                !devices.is_empty()
            });
        }
        cache
            .entry(account.to_owned())
            .or_default()
            .insert(device.to_owned(), now);
        Ok(())
    }

    /// For requests whose capability is an unguessable id the switch issued
    /// (an opdata, a session id handed to the callee): the account must
    /// still be logged in somewhere, or show its token.
    async fn authorize_holder(&self, account: &str, token: Option<&str>) -> Result<(), Failure> {
        if token.is_some() {
            return self.authorize(account, None, token).await;
        }
        match self.store.get_login(account).await.map_err(store_fault)? {
            Some(_) => Ok(()),
            None => Err(Failure::NoLogind),
        }
    }

    fn cached_logins(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Instant>>> {
        self.logins.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget_login(&self, account: &str) {
        self.cached_logins().remove(account);
    }

    /// The session, if `uuid` (when given) owns it and its login is current.
    async fn session(
        &self,
        session_id: &str,
        uuid: Option<&str>,
        token: Option<&str>,
    ) -> Result<Arc<CallView>, Failure> {
        let view = self
            .registry
            .get(session_id)
            .ok_or(Failure::SessionNotExist)?;
        match uuid {
            Some(u) if !view.involves(u) => return Err(Failure::SessionNotExist),
            // The callee of an app-to-app call acts from whatever device
            // it is logged in on (the session id was handed to it).
            Some(u) if u != view.account => self.authorize_holder(u, token).await?,
            // Calls to an app (sip_call_in) were not started from a device.
            _ if view.device.is_none() && token.is_none() => {
                self.authorize_holder(&view.account, token).await?
            }
            _ => {
                self.authorize(&view.account, view.device.as_deref(), token)
                    .await?
            }
        }
        Ok(view)
    }

    /// May `account` place a call now: logged in on this device (or by
    /// token), active, and not over its concurrent calls.
    async fn may_call(
        &self,
        account: &str,
        device: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), Failure> {
        self.authorize(account, device, token).await?;
        let record = self
            .store
            .get_account(account)
            .await
            .map_err(store_fault)?
            .ok_or(Failure::NoLogind)?;
        if !record.active {
            return Err(Failure::NotActived);
        }
        if self.registry.live_for_account(account) >= self.cfg.max_calls_per_account {
            return Err(Failure::Busy);
        }
        Ok(())
    }

    /// Writes the live record and registers the session (before any
    /// signalling goes out).
    async fn open_session(
        &self,
        view: CallView,
        kind: store::CallKind,
        caller: &str,
        callee: &str,
    ) -> Result<Arc<CallView>, Failure> {
        let id = self
            .store
            .insert_live(&CallRecordStart {
                session_id: view.session_id.clone(),
                account: Some(view.account.clone()),
                peer_account: view.peer_account.clone(),
                caller: caller.to_owned(),
                callee: callee.to_owned(),
                kind,
                trunk: None,
                call_ms: now_ms(),
                node: self.cfg.node.clone(),
            })
            .await
            .map_err(store_fault)?;
        self.cdr.send(CdrEvent::Known {
            session_id: view.session_id.clone(),
            id,
        });
        let view = Arc::new(view);
        self.registry.insert(Arc::clone(&view));
        Ok(view)
    }

    /// A session refused before any signalling: its record ends at once.
    fn refused(&self, view: &CallView, e: &AppCallError) {
        view.release(Instant::now());
        let outcome = match e {
            AppCallError::NoTrunk(_) | AppCallError::NoCodec => store::Outcome::Rejected,
            _ => store::Outcome::Failed,
        };
        self.cdr.send(CdrEvent::End {
            session_id: view.session_id.clone(),
            end: CallRecordEnd {
                ring_ms: None,
                answer_ms: None,
                end_ms: now_ms(),
                outcome,
                sip_status: None,
                codecs: String::new(),
                quality: None,
                trunk: None,
            },
        });
    }

    /// The reply to a start: the app's answer, or the refusal (its record
    /// ends at once).
    fn started(
        &self,
        view: &CallView,
        started: Result<AppAnswer, AppCallError>,
    ) -> Result<CallStarted, Failure> {
        match started {
            Ok(answer) => Ok(CallStarted {
                session_id: view.session_id.clone(),
                answer: call_answer(answer),
            }),
            Err(e) => {
                self.refused(view, &e);
                Err(call_failure(e))
            }
        }
    }

    async fn start_p2p(
        &self,
        req: StartCallReq,
        session_id: String,
        caller: String,
        callee_account: String,
        media: AppMedia,
    ) -> Result<CallStarted, Failure> {
        let callee_online = self
            .store
            .get_login(&callee_account)
            .await
            .map_err(store_fault)?
            .is_some();
        let view = CallView::new(
            session_id.clone(),
            req.uuid.clone(),
            req.dev_id.clone(),
            CallKind::P2p,
        )
        .with_peer_account(callee_account.clone());
        let view = self
            .open_session(view, store::CallKind::P2p, &caller, &req.callee)
            .await?;
        let octet_aligned = self.cfg.app_octet_aligned;
        let started = self
            .command(|reply| {
                Command::StartP2p(Box::new(StartP2p {
                    view: Arc::clone(&view),
                    caller,
                    callee: req.callee.clone(),
                    callee_account,
                    callee_online,
                    media,
                    octet_aligned,
                    reply,
                }))
            })
            .await;
        self.started(&view, started)
    }

    /// The session an opdata names, if the acting app may use it: the
    /// callee's account must have a live login.
    async fn opdata_session(
        &self,
        opdata: &str,
        token: Option<&str>,
    ) -> Result<Arc<CallView>, Failure> {
        let session = crate::b2bua::opdata_session(opdata).ok_or(Failure::SessionNotExist)?;
        let view = self
            .registry
            .get(&session)
            .ok_or(Failure::SessionNotExist)?;
        if !view.opdata_matches(opdata) {
            return Err(Failure::SessionNotExist);
        }
        let callee = view
            .peer_account
            .clone()
            .unwrap_or_else(|| view.account.clone());
        self.authorize_holder(&callee, token).await?;
        Ok(view)
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, AppCallError>>) -> Command,
    ) -> Result<T, AppCallError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| AppCallError::ShuttingDown)?;
        rx.await.map_err(|_| AppCallError::ShuttingDown)?
    }
}

impl api::Switch for Service {
    async fn auth_code(&self, req: AuthCodeReq) -> Result<(), Failure> {
        let kind = match req.kind {
            AuthCodeKind::Register => CodeKind::Register,
            AuthCodeKind::ResetPwd => CodeKind::ResetPwd,
        };
        self.accounts
            .auth_code(&req.uuid, &req.device_id, kind)
            .await
            .map_err(failure)
    }

    async fn register(&self, req: RegisterReq) -> Result<(), Failure> {
        // Self-registration is always proven by the SMS code; delegated
        // accounts are opened through the operations interface.
        let code = req.auth_code.as_deref().ok_or(Failure::BadAuthCode)?;
        let name = req.name.as_deref().unwrap_or(&req.uuid);
        self.accounts
            .register(&req.uuid, &req.device_id, code, name, &req.pwd)
            .await
            .map_err(failure)
    }

    async fn forget_pwd(&self, req: ForgetPwdReq) -> Result<(), Failure> {
        let code = req.auth_code.as_deref().ok_or(Failure::BadAuthCode)?;
        self.forget_login(&req.uuid);
        self.accounts
            .forget_pwd(&req.uuid, &req.device_id, code, &req.pwd)
            .await
            .map_err(failure)
    }

    async fn modify_pwd(&self, req: ModifyPwdReq) -> Result<(), Failure> {
        self.accounts
            .modify_pwd(&req.uuid, &req.old_pwd, &req.pwd)
            .await
            .map_err(failure)
    }

    async fn add_info(&self, req: AddInfoReq) -> Result<(), Failure> {
        if let Some(token) = req.token.as_deref() {
            self.authorize(&req.uuid, None, Some(token)).await?;
        }
        self.accounts
            .add_info(
                &req.uuid,
                &req.device_id,
                serde_json::Value::Object(req.info),
            )
            .await
            .map_err(failure)
    }

    async fn login(&self, req: LoginReq) -> Result<LoginOk, Failure> {
        let ok = self
            .accounts
            .login(&req.acc, &req.pwd, &req.device_id)
            .await
            .map_err(failure)?;
        // The previous device's cached check must not outlive its login,
        // and its open poll hears `login_otherwhere` now.
        self.forget_login(&ok.uuid);
        if let Some(old) = &ok.replaced_device {
            self.push.wake(&ok.uuid, old);
        }
        Ok(LoginOk {
            uuid: ok.uuid,
            info: ok.info,
            token: Some(ok.token),
        })
    }

    async fn logout(&self, req: LogoutReq) -> Result<(), Failure> {
        self.forget_login(&req.uuid);
        self.accounts
            .logout(&req.uuid, &req.device_id)
            .await
            .map_err(failure)?;
        // A logged-out device gets no more pushes.
        if let Err(e) = self.push.unregister_device(&req.uuid, &req.device_id).await {
            tracing::warn!(error = %e, "push tokens of a logged-out device kept");
        }
        Ok(())
    }

    async fn push_poll(&self, req: PushPollReq) -> Result<PushPollOk, Failure> {
        if let Some(token) = req.token.as_deref() {
            self.authorize(&req.acc, None, Some(token)).await?;
        }
        let out = self
            .push
            .poll_session(
                &req.acc,
                &req.device_id,
                req.last_seq,
                self.push.long_poll_timeout(),
            )
            .await
            .map_err(push_fault)?;
        if out.unlogined {
            return Err(Failure::Unlogined);
        }
        let events = if out.events.is_empty() {
            vec![serde_json::json!({"event": crate::push::SHAKE_HAND})]
        } else {
            out.events
        };
        Ok(PushPollOk {
            events,
            gap: out.gap,
        })
    }

    async fn push_register(&self, req: PushRegisterReq) -> Result<(), Failure> {
        self.authorize(&req.account, req.device_id.as_deref(), req.token.as_deref())
            .await?;
        let device = match req.device_id {
            Some(d) => d,
            None => self
                .store
                .get_login(&req.account)
                .await
                .map_err(store_fault)?
                .map(|l| l.device)
                .ok_or(Failure::NoLogind)?,
        };
        self.push
            .register_token(&req.account, &device, Provider::Baidu, &req.channel_id)
            .await
            .map_err(push_fault)
    }

    async fn query_status(&self, req: QueryStatusReq) -> Result<Vec<UserState>, Failure> {
        let users: Vec<StatusQuery> = req
            .users
            .into_iter()
            .map(|u| StatusQuery {
                acc: u.acc,
                phone: u.phone,
            })
            .collect();
        let states = self.accounts.query_status(&users).await.map_err(failure)?;
        Ok(states
            .into_iter()
            .map(|s| UserState {
                acc: s.acc,
                phone: s.phone,
                state: match s.state {
                    crate::accounts::Presence::Online => Presence::Online,
                    crate::accounts::Presence::Offline => Presence::Offline,
                    crate::accounts::Presence::Unregistered => Presence::Unregistered,
                },
            })
            .collect())
    }

    async fn start_call(&self, req: StartCallReq) -> Result<CallStarted, Failure> {
        self.may_call(&req.uuid, req.dev_id.as_deref(), req.token.as_deref())
            .await?;
        let media = match &req.sdp {
            SdpParam::Text(text) => AppMedia::Sdp(Box::new(
                SessionDescription::parse(text.as_bytes()).map_err(|_| Failure::BadSdp)?,
            )),
            SdpParam::Endpoint { ip, port } => AppMedia::Endpoint(SocketAddr::new(*ip, *port)),
        };
        if let AppMedia::Sdp(offer) = &media {
            if offer.audio_destination().is_none() {
                return Err(Failure::BadSdp);
            }
        }
        let session_id = registry::new_session_id(&self.cfg.node);
        let caller = req.caller_phone.clone().unwrap_or_else(|| req.uuid.clone());
        // type p2p to a number an account owns: that app is tried first.
        let callee_account = match req.kind {
            api::CallKind::P2p => self
                .store
                .account_for_phone(&req.callee)
                .await
                .map_err(store_fault)?
                .filter(|b| *b != req.uuid),
            api::CallKind::Direct => None,
        };
        if let Some(callee_account) = callee_account {
            return self
                .start_p2p(req, session_id, caller, callee_account, media)
                .await;
        }
        // The record exists before any SIP leaves: a crash from here on
        // still leaves it (closed at the next start).
        let view = self
            .open_session(
                CallView::new(
                    session_id.clone(),
                    req.uuid.clone(),
                    req.dev_id.clone(),
                    CallKind::Outbound,
                ),
                store::CallKind::Outbound,
                &caller,
                &req.callee,
            )
            .await?;
        let octet_aligned = self.cfg.app_octet_aligned;
        let started = self
            .command(|reply| {
                Command::StartApp(Box::new(StartApp {
                    view: Arc::clone(&view),
                    caller,
                    callee: req.callee.clone(),
                    media,
                    octet_aligned,
                    reply,
                }))
            })
            .await;
        self.started(&view, started)
    }

    async fn stop_call(&self, req: SessionReq) -> Result<(), Failure> {
        let view = self
            .session(&req.session_id, req.uuid.as_deref(), req.token.as_deref())
            .await?;
        if view.status() == PeerStatus::Release {
            return Ok(());
        }
        let session_id = req.session_id;
        match self
            .command(|reply| Command::Stop { session_id, reply })
            .await
        {
            // Ended meanwhile: stopping an ended call is done.
            Ok(()) | Err(AppCallError::NotFound) => Ok(()),
            Err(e) => Err(call_failure(e)),
        }
    }

    async fn call_status(&self, req: SessionReq) -> Result<CallStatus, Failure> {
        let view = self
            .session(&req.session_id, req.uuid.as_deref(), req.token.as_deref())
            .await?;
        let status = view.status();
        let stats = view.stats();
        let has_media = stats.pr > 0 || matches!(status, PeerStatus::Hookoff | PeerStatus::Release);
        Ok(CallStatus {
            peer_status: api_status(status),
            stats: has_media.then(|| api_stats(&stats)),
        })
    }

    async fn dtmf(&self, req: DtmfReq) -> Result<(), Failure> {
        let view = self
            .session(&req.session_id, req.uuid.as_deref(), req.token.as_deref())
            .await?;
        if view.status() == PeerStatus::Release {
            return Err(Failure::SessionNotExist);
        }
        let session_id = req.session_id;
        let digits = req.digits;
        self.command(|reply| Command::Dtmf {
            session_id,
            digits,
            reply,
        })
        .await
        .map_err(call_failure)
    }

    async fn call_history(&self, req: HistoryReq) -> Result<Vec<HistoryGroup>, Failure> {
        self.authorize(&req.uuid, req.dev_id.as_deref(), req.token.as_deref())
            .await?;
        let start_id = i64::try_from(req.start_id).unwrap_or(i64::MAX);
        let groups = self
            .store
            .history(&req.uuid, start_id, i64::from(req.num))
            .await
            .map_err(store_fault)?;
        Ok(groups
            .into_iter()
            .map(|g| HistoryGroup {
                id: u64::try_from(g.id).unwrap_or(0),
                caller: g.caller,
                callee: g.callee,
                times: u32::try_from(g.times).unwrap_or(u32::MAX),
                detail: g
                    .detail
                    .into_iter()
                    .map(|d| HistoryCall {
                        kind: d.kind,
                        calltime: system_time(d.call_ms),
                        ringtime: d.ring_ms.map(system_time),
                        starttime: d.answer_ms.map(system_time),
                        duration: u64::try_from(d.duration_s).unwrap_or(0),
                    })
                    .collect(),
            })
            .collect())
    }
    async fn p2p_ringing(&self, req: OpdataReq) -> Result<(), Failure> {
        self.opdata_session(&req.opdata, req.token.as_deref())
            .await?;
        let opdata = req.opdata;
        self.command(|reply| Command::P2pRinging { opdata, reply })
            .await
            .map_err(call_failure)
    }

    async fn p2p_answer(&self, req: P2pAnswerReq) -> Result<CallStarted, Failure> {
        let view = self
            .opdata_session(&req.opdata, req.token.as_deref())
            .await?;
        let media = match &req.sdp {
            SdpParam::Text(text) => AppMedia::Sdp(Box::new(
                SessionDescription::parse(text.as_bytes()).map_err(|_| Failure::BadSdp)?,
            )),
            SdpParam::Endpoint { ip, port } => AppMedia::Endpoint(SocketAddr::new(*ip, *port)),
        };
        let opdata = req.opdata;
        let octet_aligned = self.cfg.app_octet_aligned;
        let answer = self
            .command(|reply| Command::P2pAnswer {
                opdata,
                media,
                octet_aligned,
                reply,
            })
            .await
            .map_err(call_failure)?;
        Ok(CallStarted {
            session_id: view.session_id.clone(),
            answer: call_answer(answer),
        })
    }

    async fn p2p_reject(&self, req: P2pRejectReq) -> Result<(), Failure> {
        self.opdata_session(&req.opdata, req.token.as_deref())
            .await?;
        let (opdata, busy) = (req.opdata, req.busy);
        self.command(|reply| Command::P2pReject {
            opdata,
            busy,
            reply,
        })
        .await
        .map_err(call_failure)
    }

    async fn p2p_poll(&self, req: OpdataReq) -> Result<api::PeerStatus, Failure> {
        let view = self
            .opdata_session(&req.opdata, req.token.as_deref())
            .await?;
        Ok(api_status(view.status()))
    }

    async fn callback_start(&self, req: CallbackReq) -> Result<String, Failure> {
        self.may_call(&req.uuid, req.dev_id.as_deref(), req.token.as_deref())
            .await?;
        let session_id = registry::new_session_id(&self.cfg.node);
        let view = self
            .open_session(
                CallView::new(
                    session_id.clone(),
                    req.uuid.clone(),
                    req.dev_id.clone(),
                    CallKind::Callback,
                ),
                store::CallKind::Callback,
                &req.local,
                &req.remote,
            )
            .await?;
        let started = self
            .command(|reply| {
                Command::StartCallback(Box::new(StartCallback {
                    view: Arc::clone(&view),
                    local: req.local.clone(),
                    remote: req.remote.clone(),
                    reply,
                }))
            })
            .await;
        match started {
            Ok(()) => Ok(session_id),
            Err(e) => {
                self.refused(&view, &e);
                Err(call_failure(e))
            }
        }
    }

    async fn callback_stop(&self, req: CallbackStopReq) -> Result<(), Failure> {
        api::Switch::stop_call(
            self,
            SessionReq {
                client: api::Client::Android,
                uuid: req.uuid,
                session_id: req.session_id,
                token: req.token,
            },
        )
        .await
    }
}

fn call_answer(answer: AppAnswer) -> CallAnswer {
    match answer {
        AppAnswer::Sdp(sdp) => CallAnswer::Sdp(sdp),
        AppAnswer::Endpoint {
            ip,
            port,
            codec_name,
            octet_aligned,
            rssrc,
        } => CallAnswer::Relay(RelayAnswer {
            ip,
            port,
            codec_name,
            payload_mode: if octet_aligned {
                PayloadMode::OctetAligned
            } else {
                PayloadMode::BandwidthEfficient
            },
            rssrc,
        }),
    }
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn api_status(s: PeerStatus) -> api::PeerStatus {
    match s {
        PeerStatus::Idle => api::PeerStatus::Idle,
        PeerStatus::Ring => api::PeerStatus::Ring,
        PeerStatus::Hookoff => api::PeerStatus::Hookoff,
        PeerStatus::P2pIdle => api::PeerStatus::P2pIdle,
        PeerStatus::P2pRing => api::PeerStatus::P2pRing,
        PeerStatus::P2pHookoff => api::PeerStatus::P2pHookoff,
        PeerStatus::Release => api::PeerStatus::Release,
        PeerStatus::ARinging => api::PeerStatus::ARinging,
        PeerStatus::AAnswered => api::PeerStatus::AAnswered,
        PeerStatus::BRinging => api::PeerStatus::BRinging,
        PeerStatus::Bridged => api::PeerStatus::Bridged,
    }
}

fn api_stats(s: &registry::CallStats) -> api::CallStats {
    api::CallStats {
        ip: s.ip,
        pr: s.pr,
        pl: s.pl,
        jitter: s.jitter,
        avg_ij: s.avg_ij,
        lostrate: s.lostrate,
        rttms: s.rttms,
        avgrttms: s.avgrttms,
        down_jitter: s.down_jitter,
        down_lostrate: s.down_lostrate,
        total_eval: s.total_eval,
        detail_eval: DetailEval {
            app_up: Some(s.app.up),
            app_down: s.app.down,
            trunk_up: s.trunk.map(|t| t.up),
            trunk_down: s.trunk.and_then(|t| t.down),
        },
    }
}

/// API.md reasons for account failures; server faults are logged and 500.
fn failure(e: AccountError) -> Failure {
    match e {
        AccountError::RateLimited => Failure::RateLimited,
        AccountError::AlreadyRegistered => Failure::AlreadyRegistered,
        AccountError::NotRegistered => Failure::NotRegistered,
        AccountError::BadAuthCode => Failure::BadAuthCode,
        AccountError::BadPassword => Failure::BadPassword,
        AccountError::NotActived => Failure::NotActived,
        AccountError::NoLogind => Failure::NoLogind,
        AccountError::PhoneTaken => Failure::AlreadyRegistered,
        AccountError::BadRequest(detail) => {
            let (field, detail) = detail
                .split_once(':')
                .map(|(f, d)| (f.trim().to_owned(), d.trim().to_owned()))
                .unwrap_or_else(|| ("request".to_owned(), detail.clone()));
            Failure::BadRequest { field, detail }
        }
        AccountError::Sms(e) => Failure::Unavailable(format!("sms gateway: {e}")),
        e @ (AccountError::Hash(_) | AccountError::Store(_)) => Failure::Internal(e.to_string()),
    }
}

fn push_fault(e: PushError) -> Failure {
    match e {
        PushError::NotLoggedIn(_) => Failure::Unlogined,
        e => Failure::Internal(e.to_string()),
    }
}

fn store_fault(e: store::StoreError) -> Failure {
    Failure::Internal(e.to_string())
}

fn call_failure(e: AppCallError) -> Failure {
    match e {
        AppCallError::NoTrunk(_) => Failure::NoTrunk,
        AppCallError::NoCodec => Failure::NoCodec,
        AppCallError::NoPorts => Failure::Busy,
        AppCallError::ShuttingDown => Failure::Unavailable("shutting down".to_owned()),
        AppCallError::NotFound => Failure::SessionNotExist,
        AppCallError::NotAnswered => Failure::bad_request("session_id", "the call is not answered"),
        AppCallError::AlreadyCallRealPhone => Failure::AlreadyCallRealPhone,
    }
}

/// Keeps every live session's `stats` fresh from the relay (so a status
/// poll is a map lookup), ends calls whose app went silent, and forgets
/// sessions released long ago. Runs until the relay is gone.
pub fn spawn_stats_refresher(
    registry: Arc<Registry>,
    media: Weak<MediaDriver>,
    commands: mpsc::Sender<Command>,
    media_timeout: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let views = registry.live();
            for view in views {
                let refs = view.media();
                let Some((app, trunk)) = refs.legs else {
                    continue;
                };
                // Upgraded per call and dropped before the next await, so
                // shutdown can take the driver back.
                let Some(driver) = media.upgrade() else {
                    return;
                };
                let app_counters = driver.counters_of(app).await;
                let trunk_counters = driver.counters_of(trunk).await.ok();
                drop(driver);
                let Ok(app_counters) = app_counters else {
                    continue;
                };
                view.set_stats(registry::CallStats::from_legs(
                    &app_counters,
                    trunk_counters.as_ref(),
                ));
                if media_timed_out(
                    refs.answered_at,
                    app_counters.last_rtp_at,
                    media_timeout,
                    Instant::now(),
                ) && view.take_timeout()
                {
                    let _ = commands
                        .send(Command::MediaTimeout {
                            session_id: view.session_id.clone(),
                        })
                        .await;
                }
            }
            registry.sweep(Instant::now());
        }
    })
}

/// Sends app events through the push hub (long poll + providers) without
/// making the SIP loop wait.
pub struct HubNotifier {
    hub: PushHub<AnyStore>,
}

impl HubNotifier {
    pub fn new(hub: PushHub<AnyStore>) -> HubNotifier {
        HubNotifier { hub }
    }
}

impl crate::b2bua::AppNotifier for HubNotifier {
    fn notify(&self, account: &str, event: serde_json::Value) {
        let hub = self.hub.clone();
        let account = account.to_owned();
        tokio::spawn(async move {
            match hub.notify(&account, None, event).await {
                Ok(_) => {}
                Err(PushError::NotLoggedIn(_)) => {
                    tracing::debug!(%account, "push: account not logged in, event not queued")
                }
                Err(e) => tracing::error!(error = %e, %account, "push: event not queued"),
            }
        });
    }
}
