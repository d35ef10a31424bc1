//! Calls that come in from a trunk to a number bound to an account
//! (API.md "sip_call_in"): the trunk's INVITE is held (100 Trying) while
//! the app is told through the push channel, and the app's HTTP answers
//! drive the SIP responses.
//!
//! ```text
//!  trunk ──INVITE──▶ [UAS leg]  ── p2p_inform_called {caller, opdata} ──▶ app (poll + push)
//!        ◀──180─────  p2p_ringing
//!        ◀──200(SDP)─ p2p_answer {sdp: ip/port}   relay: trunk leg ══ app leg
//!        ◀──486/603── p2p_reject                  ring timeout: 480
//!  CANCEL/BYE ──▶ caller_hookon ──▶ app
//! ```
//!
//! `opdata` is the JSON of API.md (event, caller, callee, session_id, relay
//! ip/port, codec_name, payload_mode, rssrc); it names the session by its
//! unguessable id and is checked byte for byte, so it cannot be forged or
//! reused for another call.

use super::app::{encoding_name, AppAnswer, AppCallError, AppMedia, APP_AMR_PT, APP_DTMF_PT};
use super::{leg_format, parse_sdp, B2bua};
use crate::cdr::CdrEvent;
use crate::registry::{CallKind, CallView, PeerStatus};
use crate::store::{self, now_ms, CallRecordStart, Outcome, Store};
use bytes::Bytes;
use media::driver::LegHandle;
use media::format::{Encoding, LegFormat};
use media::relay::LegConfig;
use sip::endpoint::{Endpoint, Event, LegId, ServerTxnId};
use sip::message::{Method, Request};
use sip::sdp::{self, CodecSpec, SessionDescription};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// How long a number's owner (or the absence of one) is remembered.
const NUMBER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Numbers remembered at most (a trunk dialling many numbers must not grow
/// the map without bound).
const NUMBER_CACHE_MAX: usize = 100_000;

/// Sends app events (long poll + push providers); fire and forget, so the
/// SIP loop never waits for the database or a provider.
pub trait AppNotifier: Send + Sync {
    fn notify(&self, account: &str, event: serde_json::Value);
}

/// What a SIP call in needs that the transit B2BUA does not.
pub struct InboundEnv {
    pub store: store::AnyStore,
    pub notifier: Arc<dyn AppNotifier>,
    pub registry: Arc<crate::registry::Registry>,
    pub ring_timeout: std::time::Duration,
    pub app_octet_aligned: bool,
    pub max_calls_per_account: usize,
}

#[derive(Debug)]
pub(super) struct InboundCall {
    view: Arc<CallView>,
    a: LegId,
    caller: String,
    offer: SessionDescription,
    /// What the trunk will be answered with (chosen from its offer).
    answer_codecs: Vec<CodecSpec>,
    app_format: LegFormat,
    media_trunk: Option<LegHandle>,
    media_app: Option<LegHandle>,
    opdata: String,
    ring_deadline: Option<Instant>,
    ringing: bool,
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    outcome: Option<Outcome>,
    sip_status: Option<u16>,
    codecs: String,
    /// The app was told the call is over (caller_hookon), once.
    hookon_sent: bool,
}

/// Codecs the relay can answer a trunk with, AMR first (the app speaks it:
/// no transcoding then).
const TRUNK_ANSWER_PREFERENCE: [&str; 5] = ["AMR", "PCMA", "PCMU", "AMR-WB", "opus"];

fn trunk_answer_codecs(offer: &SessionDescription) -> Option<Vec<CodecSpec>> {
    let m = offer
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)?;
    let offered = m.codecs();
    let voice = TRUNK_ANSWER_PREFERENCE.iter().find_map(|name| {
        offered
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .cloned()
    })?;
    let mut codecs = vec![voice];
    if let Some(te) = offered.iter().find(|c| c.is_telephone_event()) {
        codecs.push(te.clone());
    }
    Some(codecs)
}

impl B2bua {
    pub(super) fn owns_inbound_leg(&self, leg: LegId) -> bool {
        self.inbound_legs.contains_key(&leg)
    }

    /// An INVITE from an inbound trunk: is the number an account's? Then it
    /// becomes a sip_call_in (true), answered here; else the caller routes it.
    pub(super) async fn try_sip_call_in(
        &mut self,
        ep: &mut Endpoint,
        leg: LegId,
        req: &Request,
        number: &str,
        trunk_name: &str,
        now: Instant,
    ) -> bool {
        let account = match self.bound_account(number, now).await {
            Ok(Some(account)) => account,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(error = %e, "number lookup failed");
                ep.respond(leg, 500, Bytes::new(), now);
                return true;
            }
        };
        let Some(env) = self.inbound.as_ref() else {
            return false;
        };
        let reject = |ep: &mut Endpoint, status: u16| {
            ep.respond(leg, status, Bytes::new(), now);
            true
        };
        // Nobody to ring: an app with no login gets neither a poll nor a
        // push, so the caller hears "unavailable" now, not after the ring
        // timeout.
        match env.store.get_login(&account).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.metrics.call_ended(Outcome::NoAnswer.as_str());
                return reject(ep, 480);
            }
            Err(e) => {
                tracing::error!(error = %e, "login lookup failed");
                return reject(ep, 500);
            }
        }
        if env.registry.live_for_account(&account) >= env.max_calls_per_account {
            // Busy here: the callee is already in a call.
            self.metrics.call_ended("busy");
            return reject(ep, 486);
        }
        let Some(offer) = parse_sdp(&req.body) else {
            // The app must be told the relay address at once, so the trunk
            // must offer (a late-offer INVITE is refused).
            self.metrics.call_ended(Outcome::Rejected.as_str());
            return reject(ep, if req.body.is_empty() { 488 } else { 400 });
        };
        let Some(answer_codecs) = trunk_answer_codecs(&offer) else {
            self.metrics.call_ended(Outcome::Rejected.as_str());
            return reject(ep, 488);
        };
        let octet_aligned = env.app_octet_aligned;
        let ring_timeout = env.ring_timeout;
        let notifier = Arc::clone(&env.notifier);
        let registry = Arc::clone(&env.registry);

        let group = self.next_call + 1;
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let trunk_cfg = LegConfig {
            remote: offer.audio_destination(),
            codec: answer_codecs.first().map(|c| c.name.clone()),
            ..LegConfig::new(any)
        };
        let (media_trunk, media_app) = match self.media.open_leg(group, trunk_cfg).await {
            Ok((t, _)) => match self.media.open_leg(group, LegConfig::new(any)).await {
                Ok((a, _)) => (t, a),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a relay leg");
                    let _ = self.media.close_leg(t).await;
                    return reject(ep, 503);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a relay leg");
                return reject(ep, 503);
            }
        };
        self.metrics
            .media_ports_free
            .set(self.media.ports_available() as i64);

        let caller = req.core.from.uri.user().unwrap_or("anonymous").to_owned();
        let session_id = crate::registry::new_session_id(&self.node);
        let view = Arc::new(CallView::new(
            session_id.clone(),
            account.clone(),
            None,
            CallKind::SipCallIn,
        ));
        view.set_status(PeerStatus::P2pIdle);
        view.set_legs(media_app.key(), media_trunk.key());
        let payload_mode = if octet_aligned {
            "octet-aligned"
        } else {
            "bandwidth-efficient"
        };
        // Pushed as this object (API.md: the app reads the relay from it);
        // kept as its compact text, which is what an opdata sent back as an
        // object or a string is compared with.
        let opdata_object = serde_json::json!({
            "event": "sip_call_in",
            "caller": caller,
            "callee": number,
            "session_id": session_id,
            "ip": self.media_ip.to_string(),
            "port": media_app.local().port(),
            "codec_name": "AMR",
            "payload_mode": payload_mode,
            "rssrc": media_app.ssrc(),
        });
        let opdata = opdata_object.to_string();
        view.set_opdata(opdata.clone());
        registry.insert(Arc::clone(&view));
        self.cdr.send(CdrEvent::Start(CallRecordStart {
            session_id: session_id.clone(),
            account: Some(account.clone()),
            peer_account: None,
            caller: caller.clone(),
            callee: number.to_owned(),
            kind: store::CallKind::SipCallIn,
            trunk: Some(trunk_name.to_owned()),
            call_ms: now_ms(),
            node: self.node.clone(),
        }));
        notifier.notify(
            &account,
            serde_json::json!({
                "event": "p2p_inform_called",
                "caller": caller,
                "opdata": opdata_object,
            }),
        );
        self.next_call += 1;
        let id = self.next_call;
        self.inbound_legs.insert(leg, id);
        self.inbound_sessions.insert(session_id, id);
        self.inbound_calls.insert(
            id,
            InboundCall {
                view,
                a: leg,
                caller,
                offer,
                answer_codecs,
                app_format: LegFormat {
                    payload_type: APP_AMR_PT,
                    encoding: Encoding::Amr {
                        wideband: false,
                        octet_aligned,
                    },
                    dtmf_payload_type: Some(APP_DTMF_PT),
                },
                media_trunk: Some(media_trunk),
                media_app: Some(media_app),
                opdata,
                ring_deadline: Some(now + ring_timeout),
                ringing: false,
                ring_ms: None,
                answer_ms: None,
                outcome: None,
                sip_status: None,
                codecs: String::new(),
                hookon_sent: false,
            },
        );
        self.metrics.calls_active.set(self.active_calls() as i64);
        true
    }

    /// The account a dialled number belongs to. The answer is cached for
    /// [`NUMBER_CACHE_TTL`] (also "none"), so a busy trunk's INVITEs do not
    /// each wait on the database in the SIP loop; a number bound or
    /// unbound elsewhere is seen within that time.
    async fn bound_account(
        &mut self,
        number: &str,
        now: Instant,
    ) -> Result<Option<String>, store::StoreError> {
        let Some(env) = self.inbound.as_ref() else {
            return Ok(None);
        };
        if let Some((account, at)) = self.number_cache.get(number) {
            if now.saturating_duration_since(*at) < NUMBER_CACHE_TTL {
                return Ok(account.clone());
            }
        }
        let account = env.store.account_for_phone(number).await?;
        if self.number_cache.len() >= NUMBER_CACHE_MAX {
            self.number_cache
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < NUMBER_CACHE_TTL);
        }
        if self.number_cache.len() < NUMBER_CACHE_MAX {
            self.number_cache
                .insert(number.to_owned(), (account.clone(), now));
        }
        Ok(account)
    }

    pub(super) fn inbound_poll_timeout(&self) -> Option<Instant> {
        self.inbound_calls
            .values()
            .filter_map(|c| c.ring_deadline)
            .min()
    }

    /// Nobody answered in time: 480 to the trunk, and the app stops ringing.
    pub(super) fn inbound_timeouts(&mut self, ep: &mut Endpoint, now: Instant) {
        let notifier = self.inbound.as_ref().map(|e| Arc::clone(&e.notifier));
        for call in self.inbound_calls.values_mut() {
            if call.ring_deadline.is_some_and(|at| at <= now) {
                call.ring_deadline = None;
                call.outcome.get_or_insert(Outcome::NoAnswer);
                call.sip_status = Some(480);
                ep.respond(call.a, 480, Bytes::new(), now);
                if let Some(n) = &notifier {
                    hookon(n.as_ref(), call);
                }
            }
        }
    }

    fn inbound_by_opdata(&mut self, opdata: &str) -> Result<&mut InboundCall, AppCallError> {
        let session_id = opdata_session(opdata).ok_or(AppCallError::NotFound)?;
        let id = self
            .inbound_sessions
            .get(&session_id)
            .ok_or(AppCallError::NotFound)?;
        let call = self
            .inbound_calls
            .get_mut(id)
            .ok_or(AppCallError::NotFound)?;
        if call.opdata != opdata {
            return Err(AppCallError::NotFound);
        }
        Ok(call)
    }

    pub(super) fn inbound_ringing(
        &mut self,
        ep: &mut Endpoint,
        opdata: &str,
        now: Instant,
    ) -> Result<(), AppCallError> {
        let cdr = self.cdr.clone();
        let call = self.inbound_by_opdata(opdata)?;
        if call.outcome.is_some() {
            return Err(AppCallError::NotFound);
        }
        if !call.ringing && call.answer_ms.is_none() {
            call.ringing = true;
            call.ring_ms = Some(now_ms());
            cdr.ringing(&call.view.session_id);
            call.view.set_status(PeerStatus::P2pRing);
            ep.respond(call.a, 180, Bytes::new(), now);
        }
        Ok(())
    }

    pub(super) fn inbound_reject(
        &mut self,
        ep: &mut Endpoint,
        opdata: &str,
        busy: bool,
        now: Instant,
    ) -> Result<(), AppCallError> {
        let call = self.inbound_by_opdata(opdata)?;
        if call.answer_ms.is_some() {
            return Err(AppCallError::NotFound);
        }
        if call.outcome.is_none() {
            let status = if busy { 486 } else { 603 };
            call.outcome = Some(if busy {
                Outcome::Busy
            } else {
                Outcome::Rejected
            });
            call.sip_status = Some(status);
            call.ring_deadline = None;
            ep.respond(call.a, status, Bytes::new(), now);
        }
        Ok(())
    }

    pub(super) async fn inbound_answer(
        &mut self,
        ep: &mut Endpoint,
        opdata: &str,
        app_media: AppMedia,
        now: Instant,
    ) -> Result<AppAnswer, AppCallError> {
        let media = Arc::clone(&self.media);
        let media_ip = self.media_ip;
        let origin = self.origin();
        let cdr = self.cdr.clone();
        let call = self.inbound_by_opdata(opdata)?;
        if call.outcome.is_some() || call.answer_ms.is_some() {
            return Err(AppCallError::NotFound);
        }
        let (Some(app_leg), Some(trunk_leg)) = (&call.media_app, &call.media_trunk) else {
            return Err(AppCallError::NotFound);
        };
        // The app's side: AMR as announced in the opdata (Android), or an
        // answer to its SDP offer (iOS).
        let (reply, app_format, app_remote) = match &app_media {
            AppMedia::Endpoint(addr) => {
                let octet_aligned = matches!(
                    call.app_format.encoding,
                    Encoding::Amr {
                        octet_aligned: true,
                        ..
                    }
                );
                (
                    AppAnswer::Endpoint {
                        ip: media_ip,
                        port: app_leg.local().port(),
                        codec_name: "AMR".to_owned(),
                        octet_aligned,
                        rssrc: app_leg.ssrc(),
                    },
                    call.app_format.clone(),
                    Some(*addr),
                )
            }
            AppMedia::Sdp(offer) => {
                let codecs = super::app::app_codecs_for(offer, &["AMR".to_owned()])
                    .ok_or(AppCallError::NoCodec)?;
                let caps = sdp::LocalCapabilities::new(
                    origin.clone(),
                    media_ip,
                    codecs,
                    &[app_leg.local().port()],
                );
                let answer = sdp::answer(offer, &caps).map_err(|_| AppCallError::NoCodec)?;
                let format = leg_format(&answer).ok_or(AppCallError::NoCodec)?;
                (
                    AppAnswer::Sdp(String::from_utf8_lossy(&answer.to_bytes()).into_owned()),
                    format,
                    offer.audio_destination(),
                )
            }
        };
        // The trunk's answer, from its own offer.
        let caps = sdp::LocalCapabilities::new(
            origin,
            media_ip,
            call.answer_codecs.clone(),
            &[trunk_leg.local().port()],
        );
        let trunk_answer = sdp::answer(&call.offer, &caps).map_err(|_| AppCallError::NoCodec)?;
        let trunk_format = leg_format(&trunk_answer);
        let _ = media.update_leg(app_leg, app_remote).await;
        let _ = media
            .set_codec(app_leg, Some(encoding_name(app_format.encoding)))
            .await;
        let _ = media
            .set_codec(
                trunk_leg,
                trunk_format.as_ref().map(|f| encoding_name(f.encoding)),
            )
            .await;
        let _ = media.set_format(app_leg, Some(app_format.clone())).await;
        let _ = media.set_format(trunk_leg, trunk_format.clone()).await;
        if let Err(e) = media.bridge(app_leg, trunk_leg).await {
            tracing::warn!(error = %e, "relay bridge failed");
        }
        call.codecs =
            super::codecs_label(&[("app", Some(&app_format)), ("trunk", trunk_format.as_ref())]);
        call.app_format = app_format;
        call.ring_deadline = None;
        call.answer_ms = Some(now_ms());
        call.sip_status = Some(200);
        cdr.answered(&call.view.session_id);
        call.view.set_answered(now);
        call.view.set_status(PeerStatus::P2pHookoff);
        ep.respond(call.a, 200, trunk_answer.to_bytes(), now);
        Ok(reply)
    }

    /// The app hangs up (DELETE of the session): BYE if answered, else the
    /// call is declined.
    pub(super) fn inbound_stop(
        &mut self,
        ep: &mut Endpoint,
        session_id: &str,
        now: Instant,
    ) -> bool {
        let Some(call) = self
            .inbound_sessions
            .get(session_id)
            .and_then(|id| self.inbound_calls.get_mut(id))
        else {
            return false;
        };
        if call.answer_ms.is_some() {
            call.outcome.get_or_insert(Outcome::Answered);
            ep.bye(call.a, now);
        } else if call.outcome.is_none() {
            call.outcome = Some(Outcome::Rejected);
            call.sip_status = Some(603);
            ep.respond(call.a, 603, Bytes::new(), now);
        }
        true
    }

    pub(super) async fn inbound_event(&mut self, ep: &mut Endpoint, ev: Event, now: Instant) {
        let notifier = self.inbound.as_ref().map(|e| Arc::clone(&e.notifier));
        match ev {
            Event::Cancelled { leg } | Event::Bye { leg } | Event::AckTimeout { leg } => {
                if matches!(ev, Event::AckTimeout { .. }) {
                    ep.bye(leg, now);
                }
                let cancelled = matches!(ev, Event::Cancelled { .. });
                if let Some(call) = self
                    .inbound_legs
                    .get(&leg)
                    .and_then(|id| self.inbound_calls.get_mut(id))
                {
                    call.ring_deadline = None;
                    call.outcome.get_or_insert(if cancelled {
                        Outcome::Cancelled
                    } else if call.answer_ms.is_some() {
                        Outcome::Answered
                    } else {
                        Outcome::Failed
                    });
                    if let Some(n) = &notifier {
                        hookon(n.as_ref(), call);
                    }
                }
            }
            Event::InDialogRequest { txn, request, leg } => {
                self.inbound_in_dialog(ep, leg, txn, *request, now).await
            }
            Event::LegClosed { leg } => self.inbound_closed(leg).await,
            _ => {}
        }
    }

    async fn inbound_in_dialog(
        &mut self,
        ep: &mut Endpoint,
        leg: LegId,
        txn: ServerTxnId,
        req: Request,
        now: Instant,
    ) {
        let media = Arc::clone(&self.media);
        let origin = self.origin();
        let media_ip = self.media_ip;
        let Some(call) = self
            .inbound_legs
            .get(&leg)
            .and_then(|id| self.inbound_calls.get_mut(id))
        else {
            ep.respond_request(txn, 481, None, Bytes::new(), now);
            return;
        };
        match req.method {
            Method::Info => {
                let digit = req
                    .content_type()
                    .filter(|c| c.eq_ignore_ascii_case("application/dtmf-relay"))
                    .and_then(|_| super::dtmf_relay_digit(&req.body));
                if let (Some((digit, duration)), Some(app)) = (digit, &call.media_app) {
                    let _ = media.send_dtmf(app, &digit.to_string(), duration).await;
                }
                ep.respond_request(txn, 200, None, Bytes::new(), now);
            }
            Method::Invite => {
                // A re-INVITE (hold, refresh): answered from the same codecs;
                // the trunk's new address applies at once.
                let Some(offer) = parse_sdp(&req.body) else {
                    ep.respond_request(txn, 488, None, Bytes::new(), now);
                    return;
                };
                let port = call.media_trunk.as_ref().map_or(0, |l| l.local().port());
                let caps = sdp::LocalCapabilities::new(
                    origin,
                    media_ip,
                    call.answer_codecs.clone(),
                    &[port],
                );
                match sdp::answer(&offer, &caps) {
                    Ok(answer) => {
                        if let Some(l) = &call.media_trunk {
                            let _ = media.update_leg(l, offer.audio_destination()).await;
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
            Method::Options | Method::Update => {
                ep.respond_request(txn, 200, None, Bytes::new(), now)
            }
            _ => ep.respond_request(txn, 501, None, Bytes::new(), now),
        }
    }

    async fn inbound_closed(&mut self, leg: LegId) {
        let Some(id) = self.inbound_legs.remove(&leg) else {
            return;
        };
        let Some(mut call) = self.inbound_calls.remove(&id) else {
            return;
        };
        self.inbound_sessions.remove(&call.view.session_id);
        let outcome = call.outcome.unwrap_or(if call.answer_ms.is_some() {
            Outcome::Answered
        } else {
            Outcome::Failed
        });
        tracing::info!(
            session = %call.view.session_id,
            caller = %call.caller,
            outcome = outcome.as_str(),
            "call in ended"
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
                codecs: call.codecs.clone(),
                trunk: None,
            },
        );
    }

    pub(super) fn shutdown_inbound(&mut self, ep: &mut Endpoint, now: Instant) {
        for call in self.inbound_calls.values_mut() {
            call.outcome.get_or_insert(Outcome::Shutdown);
            call.ring_deadline = None;
            if call.answer_ms.is_some() {
                ep.bye(call.a, now);
            } else {
                ep.respond(call.a, 503, Bytes::new(), now);
            }
        }
    }

    pub(super) fn inbound_count(&self) -> usize {
        self.inbound_calls.len()
    }
}

fn hookon(notifier: &dyn AppNotifier, call: &mut InboundCall) {
    if call.hookon_sent {
        return;
    }
    call.hookon_sent = true;
    notifier.notify(
        &call.view.account,
        serde_json::json!({"event": "caller_hookon", "caller": call.caller}),
    );
}

/// The session id inside an opdata (a JSON object with `session_id`).
pub fn opdata_session(opdata: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(opdata).ok()?;
    v.get("session_id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opdata_names_its_session() {
        assert_eq!(
            opdata_session(r#"{"event":"sip_call_in","session_id":"n1-ab"}"#).as_deref(),
            Some("n1-ab")
        );
        assert_eq!(opdata_session("n1-ab"), None);
        assert_eq!(opdata_session(r#"{"session_id":5}"#), None);
    }

    #[test]
    fn trunk_is_answered_amr_when_offered() {
        let offer = SessionDescription::parse(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 96 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 AMR/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let codecs = trunk_answer_codecs(&offer).unwrap();
        assert_eq!(codecs[0].name, "AMR");
        assert!(codecs[1].is_telephone_event());
        let pcmu = SessionDescription::parse(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(trunk_answer_codecs(&pcmu).unwrap()[0].name, "PCMU");
    }
}
