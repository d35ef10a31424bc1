//! Calls from an app to a phone number (API.md "Calls from an app to a
//! phone number"): one relay leg facing the app, one SIP UAC leg towards
//! the trunk chosen by the number's prefix.
//!
//! ```text
//!  app ──RTP──▶ [relay leg app] ══ bridge ══ [relay leg trunk] ◀──RTP── trunk
//!  HTTP start ─▶ Command::StartApp ─▶ INVITE ─▶ trunk
//!                 status: idle ─180/183─▶ ring ─200─▶ hookoff ─BYE/fail─▶ release
//! ```
//!
//! The app is answered at once (its HTTP reply carries the relay's SDP or
//! address), before the trunk answers: the app's codec is fixed then, and
//! whatever the trunk picks from our offer, the relay forwards, converts the
//! AMR payload mode or transcodes between the two.

use super::{dtmf_relay_digit, leg_format, parse_sdp, send_dtmf_info, trunk_codecs, B2bua};
use crate::registry::{CallStats, CallView, PeerStatus};
use crate::store::{now_ms, Outcome};
use bytes::Bytes;
use media::driver::{LegHandle, LegKey, MediaDriver};
use media::format::{Encoding, LegFormat};
use media::relay::LegConfig;
use sip::endpoint::{ClientTxnId, Endpoint, Event, LegId, ServerTxnId};
use sip::message::{Method, Request, Response};
use sip::sdp::{self, CodecSpec, SessionDescription};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The AMR payload type used towards Android apps (they are told the codec
/// and mode, not a payload type; 114 is what common VoLTE/Android stacks use).
pub const APP_AMR_PT: u8 = 114;
/// The telephone-event payload type towards Android apps.
pub const APP_DTMF_PT: u8 = 101;
/// RFC 4733 §2.5.1.2 "standard" press length used for HTTP DTMF.
pub const DTMF_DURATION_MS: u32 = 100;

/// How the app described its media.
#[derive(Clone, Debug)]
pub enum AppMedia {
    /// iOS and web: an SDP offer; the answer is an SDP string.
    Sdp(Box<SessionDescription>),
    /// Android: where the app receives RTP; AMR in the server's payload mode.
    Endpoint(SocketAddr),
}

/// What the app is told about the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppAnswer {
    Sdp(String),
    Endpoint {
        ip: IpAddr,
        port: u16,
        codec_name: String,
        octet_aligned: bool,
        rssrc: u32,
    },
}

/// Why an app call could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppCallError {
    #[error("no trunk routes {0}")]
    NoTrunk(String),
    #[error("no codec in common with the app's offer")]
    NoCodec,
    #[error("the relay has no free ports")]
    NoPorts,
    #[error("the switch is shutting down")]
    ShuttingDown,
    #[error("no such session")]
    NotFound,
    #[error("the call is not answered yet")]
    NotAnswered,
    #[error("the callee's phone has been called instead")]
    AlreadyCallRealPhone,
}

/// A request to start an app call (already authorised by the HTTP side).
#[derive(Debug)]
pub struct StartApp {
    pub view: Arc<CallView>,
    pub caller: String,
    pub callee: String,
    pub media: AppMedia,
    /// Android apps: the AMR payload mode the server chose.
    pub octet_aligned: bool,
    pub reply: oneshot::Sender<Result<AppAnswer, AppCallError>>,
}

/// Commands from the HTTP side (and the stats refresher) into the SIP loop.
#[derive(Debug)]
pub enum Command {
    StartApp(Box<StartApp>),
    Stop {
        session_id: String,
        reply: oneshot::Sender<Result<(), AppCallError>>,
    },
    Dtmf {
        session_id: String,
        digits: String,
        reply: oneshot::Sender<Result<(), AppCallError>>,
    },
    /// The app leg sent no RTP for the configured time: the app is gone.
    MediaTimeout {
        session_id: String,
    },
    /// The called app rings (sip_call_in: 180 to the trunk).
    P2pRinging {
        opdata: String,
        reply: oneshot::Sender<Result<(), AppCallError>>,
    },
    P2pAnswer {
        opdata: String,
        media: AppMedia,
        /// The AMR payload mode for an Android callee.
        octet_aligned: bool,
        reply: oneshot::Sender<Result<AppAnswer, AppCallError>>,
    },
    StartP2p(Box<super::p2p::StartP2p>),
    StartCallback(Box<super::callback::StartCallback>),
    P2pReject {
        opdata: String,
        busy: bool,
        reply: oneshot::Sender<Result<(), AppCallError>>,
    },
}

#[derive(Debug)]
pub(super) struct AppCall {
    view: Arc<CallView>,
    b: LegId,
    b_open: bool,
    trunk: String,
    caller: String,
    callee: String,
    offer_to_trunk: SessionDescription,
    app_format: LegFormat,
    trunk_format: Option<LegFormat>,
    media_app: Option<LegHandle>,
    media_trunk: Option<LegHandle>,
    bridged: bool,
    /// Unix ms, for the record.
    call_ms: i64,
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    answered_at: Option<Instant>,
    outcome: Option<Outcome>,
    sip_status: Option<u16>,
    /// HTTP DTMF for a trunk without telephone-event: INFO one digit at a
    /// time, the next once the previous is answered (order on UDP).
    info_queue: VecDeque<char>,
    info_pending: Option<ClientTxnId>,
}

impl AppCall {
    fn codecs(&self) -> String {
        super::codecs_label(&[
            ("app", Some(&self.app_format)),
            ("trunk", self.trunk_format.as_ref()),
        ])
    }
}

/// The SDP encoding name of a relay encoding.
pub(super) fn encoding_name(e: Encoding) -> String {
    match e {
        Encoding::Pcmu => "PCMU".to_owned(),
        Encoding::Pcma => "PCMA".to_owned(),
        Encoding::Amr {
            wideband: false, ..
        } => "AMR".to_owned(),
        Encoding::Amr { wideband: true, .. } => "AMR-WB".to_owned(),
        Encoding::Opus => "opus".to_owned(),
        Encoding::Other { .. } => "other".to_owned(),
    }
}

/// Codecs the relay can take from an app, in our preference order when the
/// app gives no reason to prefer another.
const APP_CODECS: [&str; 5] = ["AMR", "AMR-WB", "opus", "PCMA", "PCMU"];

impl B2bua {
    pub(super) fn owns_app_leg(&self, leg: LegId) -> bool {
        self.app_legs.contains_key(&leg)
    }

    pub async fn handle_command(&mut self, ep: &mut Endpoint, cmd: Command, now: Instant) {
        match cmd {
            Command::StartApp(start) => {
                let StartApp {
                    view,
                    caller,
                    callee,
                    media,
                    octet_aligned,
                    reply,
                } = *start;
                let result = self
                    .start_app(ep, view, caller, callee, media, octet_aligned, now)
                    .await;
                let _ = reply.send(result);
            }
            Command::StartP2p(mut start) => {
                let (tx, _) = oneshot::channel();
                let reply = std::mem::replace(&mut start.reply, tx);
                let result = self.start_p2p(ep, *start, now).await;
                let _ = reply.send(result);
            }
            Command::StartCallback(start) => {
                let super::callback::StartCallback {
                    view,
                    local,
                    remote,
                    reply,
                } = *start;
                let result = self.start_callback(ep, view, local, remote, now).await;
                let _ = reply.send(result);
            }
            Command::Stop { session_id, reply } if self.callback_stop(ep, &session_id, now) => {
                let _ = reply.send(Ok(()));
            }
            Command::P2pRinging { opdata, reply } => {
                let result = match self.p2p_ringing(&opdata) {
                    Some(r) => r,
                    None => self.inbound_ringing(ep, &opdata, now),
                };
                let _ = reply.send(result);
            }
            Command::P2pAnswer {
                opdata,
                media,
                octet_aligned,
                reply,
            } => {
                let result = match self.p2p_answer(&opdata, &media, octet_aligned, now).await {
                    Some(r) => r,
                    None => self.inbound_answer(ep, &opdata, media, now).await,
                };
                let _ = reply.send(result);
            }
            Command::P2pReject {
                opdata,
                busy,
                reply,
            } => {
                let result = match self.p2p_reject(ep, &opdata, now).await {
                    Some(r) => r,
                    None => self.inbound_reject(ep, &opdata, busy, now),
                };
                let _ = reply.send(result);
            }
            Command::Stop { session_id, reply } if self.inbound_stop(ep, &session_id, now) => {
                let _ = reply.send(Ok(()));
            }
            Command::Stop { session_id, reply } if self.p2p_stop(&session_id, None).await => {
                let _ = reply.send(Ok(()));
            }
            Command::Stop { session_id, reply } => {
                let result = match self.sessions.get(&session_id).copied() {
                    Some(id) => {
                        if let Some(call) = self.app_calls.get_mut(&id) {
                            call.outcome.get_or_insert(if call.answer_ms.is_some() {
                                Outcome::Answered
                            } else {
                                Outcome::Cancelled
                            });
                            ep.hangup(call.b, now);
                        }
                        Ok(())
                    }
                    None => Err(AppCallError::NotFound),
                };
                let _ = reply.send(result);
            }
            Command::Dtmf {
                session_id,
                digits,
                reply,
            } => {
                let result = self.app_dtmf(ep, &session_id, &digits, now).await;
                let _ = reply.send(result);
            }
            Command::MediaTimeout { session_id }
                if self
                    .p2p_stop(&session_id, Some(Outcome::MediaTimeout))
                    .await => {}
            Command::MediaTimeout { session_id } => {
                if let Some(call) = self
                    .sessions
                    .get(&session_id)
                    .and_then(|id| self.app_calls.get_mut(id))
                {
                    tracing::info!(session = %session_id, "app sent no media: ending the call");
                    call.outcome.get_or_insert(Outcome::MediaTimeout);
                    ep.hangup(call.b, now);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    async fn start_app(
        &mut self,
        ep: &mut Endpoint,
        view: Arc<CallView>,
        caller: String,
        callee: String,
        app_media: AppMedia,
        octet_aligned: bool,
        now: Instant,
    ) -> Result<AppAnswer, AppCallError> {
        if !self.accepting {
            return Err(AppCallError::ShuttingDown);
        }
        let trunk = self
            .router
            .route(&callee)
            .cloned()
            .ok_or_else(|| AppCallError::NoTrunk(callee.clone()))?;
        let group = self.next_call + 1;
        let (media_app, app_format, reply) = self
            .open_app_leg(group, &app_media, octet_aligned, &trunk.codecs)
            .await?;
        self.dial_trunk(ep, view, caller, callee, media_app, app_format, now)
            .await?;
        Ok(reply)
    }

    /// Opens a relay leg facing an app and decides its codec: Android gets
    /// AMR in `octet_aligned` mode, an SDP offer is answered with its first
    /// codec the relay handles (preferring one in `prefer`). Returns what
    /// the app is told.
    pub(super) async fn open_app_leg(
        &mut self,
        group: u64,
        app_media: &AppMedia,
        octet_aligned: bool,
        prefer: &[String],
    ) -> Result<(LegHandle, LegFormat, AppAnswer), AppCallError> {
        let remote = match app_media {
            AppMedia::Endpoint(addr) => Some(*addr),
            AppMedia::Sdp(offer) => offer.audio_destination(),
        };
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let app_cfg = LegConfig {
            remote,
            // Apps sit behind NAT: learn where their RTP really comes from.
            symmetric: true,
            ..LegConfig::new(any)
        };
        let (media_app, _) = self.media.open_leg(group, app_cfg).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot open a relay leg");
            AppCallError::NoPorts
        })?;
        self.metrics
            .media_ports_free
            .set(self.media.ports_available() as i64);
        match app_leg_answer(
            app_media,
            octet_aligned,
            prefer,
            self.origin(),
            self.media_ip,
            &media_app,
        ) {
            Ok((format, _, reply)) => Ok((media_app, format, reply)),
            Err(e) => {
                self.release_media(media_app).await;
                Err(e)
            }
        }
    }

    /// Calls `callee` through its trunk for the app on `media_app`: opens
    /// the trunk's relay leg on the app leg's loop, offers the app's codec
    /// first, sends the INVITE. On failure the app leg is released.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dial_trunk(
        &mut self,
        ep: &mut Endpoint,
        view: Arc<CallView>,
        caller: String,
        callee: String,
        media_app: LegHandle,
        app_format: LegFormat,
        now: Instant,
    ) -> Result<(), AppCallError> {
        let Some((trunk_name, destination, transport, trunk)) = self
            .router
            .route(&callee)
            .map(|t| t.name.clone())
            .and_then(|name| {
                self.trunk_destination(&name)
                    .map(|(d, t, trunk)| (name, d, t, trunk))
            })
        else {
            self.release_media(media_app).await;
            return Err(AppCallError::NoTrunk(callee));
        };
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        // Same loop as the app leg (legs to be bridged must share one).
        let group = media_app.loop_index() as u64;
        let media_trunk = match self.media.open_leg(group, LegConfig::new(any)).await {
            Ok((leg, _)) => leg,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a relay leg");
                self.release_media(media_app).await;
                return Err(AppCallError::NoPorts);
            }
        };
        // The trunk is offered the app's codec first (no transcoding if it
        // takes it), then the rest of what the trunk speaks.
        let mut codecs = trunk_codecs(&trunk);
        let app_name = encoding_name(app_format.encoding);
        if let Some(pos) = codecs
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(&app_name))
        {
            let first = codecs.remove(pos);
            codecs.insert(0, first);
        }
        let mut offer = sdp::offer(
            self.origin(),
            self.media_ip,
            media_trunk.local().port(),
            &codecs,
        );
        sdp::add_amr_mode_twins(&mut offer);

        let target = super::TrunkTarget {
            trunk: &trunk,
            destination,
            transport,
        };
        let Some(b) = self.invite_trunk(ep, target, &caller, &callee, offer.to_bytes(), 70, now)
        else {
            self.release_media(media_app).await;
            self.release_media(media_trunk).await;
            return Err(AppCallError::NoTrunk(callee));
        };
        self.next_call += 1;
        let id = self.next_call;
        // The live row was written by the HTTP start (CdrEvent::Known).
        let call_ms = now_ms();
        view.set_legs(media_app.key(), media_trunk.key());
        self.sessions.insert(view.session_id.clone(), id);
        self.app_legs.insert(b, id);
        self.app_calls.insert(
            id,
            AppCall {
                view,
                b,
                b_open: true,
                trunk: trunk_name,
                caller,
                callee,
                offer_to_trunk: offer,
                app_format,
                trunk_format: None,
                media_app: Some(media_app),
                media_trunk: Some(media_trunk),
                bridged: false,
                call_ms,
                ring_ms: None,
                answer_ms: None,
                answered_at: None,
                outcome: None,
                sip_status: None,
                info_queue: VecDeque::new(),
                info_pending: None,
            },
        );
        self.metrics.calls_active.set(self.active_calls() as i64);
        Ok(())
    }

    async fn app_dtmf(
        &mut self,
        ep: &mut Endpoint,
        session_id: &str,
        digits: &str,
        now: Instant,
    ) -> Result<(), AppCallError> {
        let id = *self
            .sessions
            .get(session_id)
            .ok_or(AppCallError::NotFound)?;
        let media = Arc::clone(&self.media);
        let call = self.app_calls.get_mut(&id).ok_or(AppCallError::NotFound)?;
        if call.answer_ms.is_none() {
            return Err(AppCallError::NotAnswered);
        }
        let rfc4733 = call
            .trunk_format
            .as_ref()
            .is_some_and(|f| f.dtmf_payload_type.is_some());
        if rfc4733 {
            if let Some(leg) = &call.media_trunk {
                if media.send_dtmf(leg, digits, DTMF_DURATION_MS).await.is_ok() {
                    return Ok(());
                }
            }
        }
        // No telephone-event on the trunk: SIP INFO (application/dtmf-relay).
        call.info_queue.extend(digits.chars());
        send_next_info(ep, call, now);
        Ok(())
    }

    pub(super) async fn app_event(&mut self, ep: &mut Endpoint, ev: Event, now: Instant) {
        match ev {
            Event::Progress { leg, response } => self.app_progress(leg, *response).await,
            Event::Answered { leg, response } => self.app_answered(ep, leg, *response, now).await,
            Event::Failed { leg, status, .. } => {
                if let Some(call) = self.app_call_of(leg) {
                    call.sip_status = Some(status);
                    call.outcome.get_or_insert(match status {
                        487 => Outcome::Cancelled,
                        408 => Outcome::Timeout,
                        486 | 600 | 603 => Outcome::Busy,
                        480 => Outcome::NoAnswer,
                        500..=599 => Outcome::Failed,
                        _ => Outcome::Rejected,
                    });
                }
            }
            Event::Bye { leg } | Event::AckTimeout { leg } | Event::Cancelled { leg } => {
                if matches!(ev, Event::AckTimeout { .. }) {
                    ep.bye(leg, now);
                }
                if let Some(call) = self.app_call_of(leg) {
                    call.outcome.get_or_insert(if call.answer_ms.is_some() {
                        Outcome::Answered
                    } else {
                        Outcome::Failed
                    });
                }
            }
            Event::InDialogRequest { leg, txn, request } => {
                self.app_in_dialog(ep, leg, txn, *request, now).await
            }
            Event::RequestDone { txn, leg, .. } => {
                if let Some(leg) = leg {
                    if let Some(call) = self.app_call_of(leg) {
                        if call.info_pending == Some(txn) {
                            call.info_pending = None;
                            send_next_info(ep, call, now);
                        }
                    }
                }
            }
            Event::LegClosed { leg } => self.app_leg_closed(leg).await,
            Event::Confirmed { .. } | Event::IncomingInvite { .. } => {}
        }
    }

    fn app_call_of(&mut self, leg: LegId) -> Option<&mut AppCall> {
        let id = self.app_legs.get(&leg)?;
        self.app_calls.get_mut(id)
    }

    async fn app_progress(&mut self, leg: LegId, resp: Response) {
        let media = Arc::clone(&self.media);
        let cdr = self.cdr.clone();
        let Some(call) = self.app_call_of(leg) else {
            return;
        };
        if call.ring_ms.is_none() {
            call.ring_ms = Some(now_ms());
            cdr.ringing(&call.view.session_id);
        }
        call.view.set_status(PeerStatus::Ring);
        // Early media (183 with SDP): let the app hear the trunk's ringback.
        if !resp.body.is_empty() {
            app_trunk_answer(&media, call, &resp.body).await;
        }
    }

    async fn app_answered(&mut self, ep: &mut Endpoint, leg: LegId, resp: Response, now: Instant) {
        let media = Arc::clone(&self.media);
        let cdr = self.cdr.clone();
        let Some(call) = self.app_call_of(leg) else {
            ep.bye(leg, now);
            return;
        };
        if call.outcome.is_some() {
            // Stopped while the 200 was on its way: the dialog exists, end it.
            ep.bye(leg, now);
            return;
        }
        if !app_trunk_answer(&media, call, &resp.body).await {
            call.outcome = Some(Outcome::Failed);
            call.sip_status = Some(488);
            ep.bye(leg, now);
            return;
        }
        call.sip_status = Some(resp.status);
        call.answer_ms = Some(now_ms());
        cdr.answered(&call.view.session_id);
        call.answered_at = Some(now);
        call.view.set_answered(now);
        call.view.set_status(PeerStatus::Hookoff);
    }

    async fn app_in_dialog(
        &mut self,
        ep: &mut Endpoint,
        leg: LegId,
        txn: ServerTxnId,
        req: Request,
        now: Instant,
    ) {
        let media = Arc::clone(&self.media);
        let Some(call) = self.app_call_of(leg) else {
            ep.respond_request(txn, 481, None, Bytes::new(), now);
            return;
        };
        match req.method {
            Method::Invite => {
                // A re-INVITE from the trunk (hold, refresh, new address):
                // the app's side does not change, so answer from what we
                // offered the trunk, narrowed to the codec in use.
                let Some(offer) = parse_sdp(&req.body) else {
                    // No offer: ours again, the trunk answers in its ACK.
                    call.offer_to_trunk.origin.sess_version =
                        call.offer_to_trunk.origin.sess_version.wrapping_add(1);
                    let body = call.offer_to_trunk.to_bytes();
                    ep.respond_request(txn, 200, Some("application/sdp"), body, now);
                    return;
                };
                let codecs: Vec<CodecSpec> = call
                    .offer_to_trunk
                    .media
                    .iter()
                    .flat_map(|m| m.codecs())
                    .collect();
                let port = call.media_trunk.as_ref().map_or(0, |l| l.local().port());
                call.offer_to_trunk.origin.sess_version =
                    call.offer_to_trunk.origin.sess_version.wrapping_add(1);
                let caps = sdp::LocalCapabilities::new(
                    call.offer_to_trunk.origin.clone(),
                    call.offer_to_trunk
                        .connection
                        .as_ref()
                        .and_then(|c| c.ip())
                        .unwrap_or(IpAddr::from([127, 0, 0, 1])),
                    codecs,
                    &[port],
                );
                match sdp::answer(&offer, &caps) {
                    Ok(answer) => {
                        if let Some(leg) = &call.media_trunk {
                            let _ = media.update_leg(leg, offer.audio_destination()).await;
                            let format = leg_format(&answer);
                            if format != call.trunk_format {
                                call.trunk_format = format.clone();
                                let _ = media.set_format(leg, format).await;
                            }
                        }
                        ep.respond_request(
                            txn,
                            200,
                            Some("application/sdp"),
                            answer.to_bytes(),
                            now,
                        );
                    }
                    Err(_) => ep.respond_request(txn, 488, None, Bytes::new(), now),
                }
            }
            Method::Info => {
                // A trunk that signals DTMF as INFO: the app hears it as
                // RFC 4733 on its own stream.
                let digit = req
                    .content_type()
                    .filter(|c| c.eq_ignore_ascii_case("application/dtmf-relay"))
                    .and_then(|_| dtmf_relay_digit(&req.body));
                if let (Some((digit, duration)), Some(leg)) = (digit, &call.media_app) {
                    if let Err(e) = media.send_dtmf(leg, &digit.to_string(), duration).await {
                        tracing::debug!(error = %e, "INFO DTMF not played to the app");
                    }
                }
                ep.respond_request(txn, 200, None, Bytes::new(), now)
            }
            Method::Options | Method::Update => {
                ep.respond_request(txn, 200, None, Bytes::new(), now)
            }
            _ => ep.respond_request(txn, 501, None, Bytes::new(), now),
        }
    }

    async fn app_leg_closed(&mut self, leg: LegId) {
        let Some(id) = self.app_legs.remove(&leg) else {
            return;
        };
        let Some(mut call) = self.app_calls.remove(&id) else {
            return;
        };
        call.b_open = false;
        self.sessions.remove(&call.view.session_id);
        let outcome = call.outcome.unwrap_or(if call.answer_ms.is_some() {
            Outcome::Answered
        } else {
            Outcome::Failed
        });
        tracing::info!(
            session = %call.view.session_id,
            caller = %call.caller,
            callee = %call.callee,
            trunk = %call.trunk,
            outcome = outcome.as_str(),
            secs = (now_ms() - call.call_ms) / 1000,
            "app call ended"
        );
        let legs = (call.media_app.take(), call.media_trunk.take());
        self.finish_call(
            call.view.session_id.clone(),
            Some(Arc::clone(&call.view)),
            legs,
            super::Ending {
                ring_ms: call.ring_ms,
                answer_ms: call.answer_ms,
                outcome,
                sip_status: call.sip_status,
                codecs: call.codecs(),
                trunk: Some(call.trunk.clone()),
            },
        );
    }

    /// Ends every app call (graceful shutdown).
    pub(super) fn shutdown_app_calls(&mut self, ep: &mut Endpoint, now: Instant) {
        for call in self.app_calls.values_mut() {
            call.outcome.get_or_insert(Outcome::Shutdown);
            ep.hangup(call.b, now);
        }
    }

    /// A key press the relay saw on an app call's leg. The app's digits go
    /// to a trunk without telephone-event as INFO (the relay forwards them
    /// as RFC 4733 otherwise). True when the leg belongs to an app call.
    pub(super) fn app_dtmf_event(
        &mut self,
        ep: &mut Endpoint,
        leg: LegKey,
        digit: char,
        _duration_ms: u32,
        now: Instant,
    ) -> bool {
        for call in self.app_calls.values_mut() {
            if call.media_trunk.as_ref().is_some_and(|l| l.key() == leg) {
                return true;
            }
            if call.media_app.as_ref().is_some_and(|l| l.key() == leg) {
                let trunk_rfc4733 = call
                    .trunk_format
                    .as_ref()
                    .is_some_and(|f| f.dtmf_payload_type.is_some());
                if !trunk_rfc4733 && call.answer_ms.is_some() {
                    call.info_queue.push_back(digit);
                    send_next_info(ep, call, now);
                }
                return true;
            }
        }
        false
    }

    pub(super) fn app_call_count(&self) -> usize {
        self.app_calls.len()
    }
}

/// Applies the trunk's SDP answer (or early answer) to the trunk's relay
/// leg and bridges the legs. False when it does not answer our offer.
async fn app_trunk_answer(media: &MediaDriver, call: &mut AppCall, body: &Bytes) -> bool {
    let Some(answer) = parse_sdp(body) else {
        return false;
    };
    if sdp::check_answer(&call.offer_to_trunk, &answer).is_err() {
        return false;
    }
    let format = leg_format(&answer);
    let Some(trunk_leg) = &call.media_trunk else {
        return false;
    };
    let _ = media
        .update_leg(trunk_leg, answer.audio_destination())
        .await;
    let _ = media
        .set_codec(
            trunk_leg,
            format.as_ref().map(|f| encoding_name(f.encoding)),
        )
        .await;
    call.trunk_format = format.clone();
    let _ = media.set_format(trunk_leg, format).await;
    if !call.bridged {
        if let Some(app_leg) = &call.media_app {
            let _ = media
                .set_codec(app_leg, Some(encoding_name(call.app_format.encoding)))
                .await;
            let _ = media
                .set_format(app_leg, Some(call.app_format.clone()))
                .await;
            match media.bridge(app_leg, trunk_leg).await {
                Ok(()) => call.bridged = true,
                Err(e) => tracing::warn!(error = %e, "relay bridge failed"),
            }
        }
    }
    true
}

fn send_next_info(ep: &mut Endpoint, call: &mut AppCall, now: Instant) {
    if call.info_pending.is_some() {
        return;
    }
    let Some(digit) = call.info_queue.pop_front() else {
        return;
    };
    call.info_pending = send_dtmf_info(ep, call.b, digit, DTMF_DURATION_MS, now);
}

/// What an app is answered on its relay leg `leg`: Android (`Endpoint`)
/// gets AMR in `octet_aligned` mode, an SDP offer is answered with its
/// first codec the relay handles (preferring one in `prefer`). Returns the
/// app's format, where its media goes, and the reply.
pub(super) fn app_leg_answer(
    app_media: &AppMedia,
    octet_aligned: bool,
    prefer: &[String],
    origin: sdp::Origin,
    media_ip: IpAddr,
    leg: &LegHandle,
) -> Result<(LegFormat, Option<SocketAddr>, AppAnswer), AppCallError> {
    match app_media {
        AppMedia::Endpoint(addr) => Ok((
            LegFormat {
                payload_type: APP_AMR_PT,
                encoding: Encoding::Amr {
                    wideband: false,
                    octet_aligned,
                },
                dtmf_payload_type: Some(APP_DTMF_PT),
            },
            Some(*addr),
            AppAnswer::Endpoint {
                ip: media_ip,
                port: leg.local().port(),
                codec_name: "AMR".to_owned(),
                octet_aligned,
                rssrc: leg.ssrc(),
            },
        )),
        AppMedia::Sdp(offer) => {
            let codecs = app_codecs_for(offer, prefer).ok_or(AppCallError::NoCodec)?;
            let caps = sdp::LocalCapabilities::new(origin, media_ip, codecs, &[leg.local().port()]);
            let answer = sdp::answer(offer, &caps).map_err(|_| AppCallError::NoCodec)?;
            let format = leg_format(&answer).ok_or(AppCallError::NoCodec)?;
            Ok((
                format,
                offer.audio_destination(),
                AppAnswer::Sdp(String::from_utf8_lossy(&answer.to_bytes()).into_owned()),
            ))
        }
    }
}

/// The codecs to answer an app's SDP offer with: its first codec the relay
/// handles (preferring one the trunk also speaks, to avoid transcoding),
/// plus telephone-event if it offered it.
pub(super) fn app_codecs_for(
    offer: &SessionDescription,
    trunk_codecs: &[String],
) -> Option<Vec<CodecSpec>> {
    let m = offer
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)?;
    let offered = m.codecs();
    let usable = |c: &&CodecSpec| APP_CODECS.iter().any(|n| n.eq_ignore_ascii_case(&c.name));
    let on_trunk = |c: &&CodecSpec| trunk_codecs.iter().any(|t| t.eq_ignore_ascii_case(&c.name));
    let voice = offered
        .iter()
        .filter(usable)
        .find(on_trunk)
        .or_else(|| offered.iter().find(usable))?;
    let mut codecs = vec![voice.clone()];
    if let Some(te) = offered.iter().find(|c| c.is_telephone_event()) {
        codecs.push(te.clone());
    }
    Some(codecs)
}

/// The final quality figures of a call record.
pub fn stats_json(s: &CallStats) -> serde_json::Value {
    serde_json::json!({
        "ip": s.ip.map(|i| i.to_string()),
        "pr": s.pr,
        "pl": s.pl,
        "jitter": s.jitter,
        "avgIJ": s.avg_ij,
        "lostrate": s.lostrate,
        "rttms": s.rttms,
        "avgrttms": s.avgrttms,
        "down_jitter": s.down_jitter,
        "down_lostrate": s.down_lostrate,
        "total_eval": s.total_eval,
    })
}

/// Whether an app leg has been silent for `timeout` (zero disables it).
pub fn media_timed_out(
    answered_at: Option<Instant>,
    last_rtp_at: Option<Instant>,
    timeout: Duration,
    now: Instant,
) -> bool {
    if timeout.is_zero() {
        return false;
    }
    // Before the answer the app may legitimately wait in silence; the
    // clock starts at the answer (or at the last packet, if later).
    let Some(answered) = answered_at else {
        return false;
    };
    let since = last_rtp_at.map_or(answered, |t| t.max(answered));
    now.saturating_duration_since(since) >= timeout
}
