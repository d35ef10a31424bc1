//! Callback (API.md "Callback"): the switch places two calls through the
//! trunks and joins them.
//!
//! ```text
//!  switch ──INVITE──▶ local     a_ringing ─200─▶ a_answered (ringback played to local)
//!  switch ──INVITE──▶ remote    b_ringing ─200─▶ bridged (local ══ relay ══ remote)
//!  either leg fails or hangs up ─▶ the other is ended ─▶ release
//! ```
//!
//! One call record covers both legs: caller = `local`, callee = `remote`,
//! ring time = local's ringing, answer time = when the two were bridged.

use super::app::{encoding_name, AppCallError};
use super::{leg_format, parse_sdp, trunk_codecs, B2bua};
use crate::registry::{CallView, PeerStatus};
use crate::store::{now_ms, Outcome};
use media::driver::LegHandle;
use media::format::LegFormat;
use media::playback::Wav;
use media::relay::LegConfig;
use sip::endpoint::{Endpoint, Event, LegId};
use sip::sdp::{self, SessionDescription};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Start a callback (the HTTP side checked the account).
#[derive(Debug)]
pub struct StartCallback {
    pub view: Arc<CallView>,
    pub local: String,
    pub remote: String,
    pub reply: oneshot::Sender<Result<(), AppCallError>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Local,
    Remote,
}

#[derive(Debug)]
struct Dial {
    leg: LegId,
    open: bool,
    media: Option<LegHandle>,
    offer: SessionDescription,
    format: Option<LegFormat>,
    answered: bool,
}

#[derive(Debug)]
pub(super) struct CallbackCall {
    view: Arc<CallView>,
    local: String,
    remote: String,
    a: Dial,
    b: Option<Dial>,
    ring_ms: Option<i64>,
    bridged_ms: Option<i64>,
    outcome: Option<Outcome>,
    sip_status: Option<u16>,
}

impl CallbackCall {
    fn dial(&mut self, part: Part) -> Option<&mut Dial> {
        match part {
            Part::Local => Some(&mut self.a),
            Part::Remote => self.b.as_mut(),
        }
    }
}

/// 425 Hz, 1 s on and 4 s off (the ETSI ringback cadence), 8 kHz.
fn ringback() -> Wav {
    const RATE: u32 = 8000;
    let mut samples = Vec::with_capacity(5 * RATE as usize);
    for n in 0..(5 * RATE) {
        let t = f64::from(n) / f64::from(RATE);
        let on = n < RATE;
        let v = if on {
            (2.0 * std::f64::consts::PI * 425.0 * t).sin() * 8000.0
        } else {
            0.0
        };
        samples.push(v as i16);
    }
    Wav {
        sample_rate: RATE,
        samples,
    }
}

impl B2bua {
    pub(super) fn owns_callback_leg(&self, leg: LegId) -> bool {
        self.callback_legs.contains_key(&leg)
    }

    pub(super) async fn start_callback(
        &mut self,
        ep: &mut Endpoint,
        view: Arc<CallView>,
        local: String,
        remote: String,
        now: Instant,
    ) -> Result<(), AppCallError> {
        if !self.accepting {
            return Err(AppCallError::ShuttingDown);
        }
        // Both numbers must be routable before anything is dialled.
        if self.router.route(&remote).is_none() {
            return Err(AppCallError::NoTrunk(remote));
        }
        let group = self.next_call + 1;
        let a = self.dial_number(ep, group, &local, &local, now).await?;
        self.next_call += 1;
        let id = self.next_call;
        self.callback_legs.insert(a.leg, (id, Part::Local));
        self.callback_sessions.insert(view.session_id.clone(), id);
        view.set_status(PeerStatus::Idle);
        self.callback_calls.insert(
            id,
            CallbackCall {
                view,
                local,
                remote,
                a,
                b: None,
                ring_ms: None,
                bridged_ms: None,
                outcome: None,
                sip_status: None,
            },
        );
        self.metrics.calls_active.set(self.active_calls() as i64);
        Ok(())
    }

    /// Opens a relay leg and INVITEs `number` through its trunk, offering
    /// the trunk's codecs.
    async fn dial_number(
        &mut self,
        ep: &mut Endpoint,
        group: u64,
        number: &str,
        caller: &str,
        now: Instant,
    ) -> Result<Dial, AppCallError> {
        let (destination, transport, trunk) = self
            .router
            .route(number)
            .map(|t| t.name.clone())
            .and_then(|name| self.trunk_destination(&name))
            .ok_or_else(|| AppCallError::NoTrunk(number.to_owned()))?;
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let (media, _) = self
            .media
            .open_leg(group, LegConfig::new(any))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot open a relay leg");
                AppCallError::NoPorts
            })?;
        let mut offer = sdp::offer(
            self.origin(),
            self.media_ip,
            media.local().port(),
            &trunk_codecs(&trunk),
        );
        sdp::add_amr_mode_twins(&mut offer);
        let target = super::TrunkTarget {
            trunk: &trunk,
            destination,
            transport,
        };
        let Some(leg) = self.invite_trunk(ep, target, caller, number, offer.to_bytes(), 70, now)
        else {
            self.release_media(media).await;
            return Err(AppCallError::NoTrunk(number.to_owned()));
        };
        self.metrics
            .media_ports_free
            .set(self.media.ports_available() as i64);
        Ok(Dial {
            leg,
            open: true,
            media: Some(media),
            offer,
            format: None,
            answered: false,
        })
    }

    pub(super) fn callback_stop(&mut self, ep: &mut Endpoint, session: &str, now: Instant) -> bool {
        let Some(call) = self
            .callback_sessions
            .get(session)
            .and_then(|id| self.callback_calls.get_mut(id))
        else {
            return false;
        };
        call.outcome.get_or_insert(if call.bridged_ms.is_some() {
            Outcome::Answered
        } else {
            Outcome::Cancelled
        });
        ep.hangup(call.a.leg, now);
        if let Some(b) = &call.b {
            ep.hangup(b.leg, now);
        }
        true
    }

    pub(super) async fn callback_event(&mut self, ep: &mut Endpoint, ev: Event, now: Instant) {
        let Some(leg) = super::event_leg(&ev) else {
            return;
        };
        let Some(&(id, part)) = self.callback_legs.get(&leg) else {
            return;
        };
        match ev {
            Event::Progress { .. } => {
                let cdr = self.cdr.clone();
                if let Some(call) = self.callback_calls.get_mut(&id) {
                    match part {
                        Part::Local if !call.a.answered => {
                            if call.ring_ms.is_none() {
                                call.ring_ms = Some(now_ms());
                                cdr.ringing(&call.view.session_id);
                            }
                            call.view.set_status(PeerStatus::ARinging);
                        }
                        Part::Remote => call.view.set_status(PeerStatus::BRinging),
                        Part::Local => {}
                    }
                }
            }
            Event::Answered { response, .. } => {
                self.callback_answered(ep, id, part, &response.body, now)
                    .await
            }
            Event::Failed { status, .. } => {
                if let Some(call) = self.callback_calls.get_mut(&id) {
                    call.sip_status = Some(status);
                    call.outcome.get_or_insert(match status {
                        487 => Outcome::Cancelled,
                        408 => Outcome::Timeout,
                        486 | 600 | 603 => Outcome::Busy,
                        480 => Outcome::NoAnswer,
                        _ => Outcome::Failed,
                    });
                    // One leg failed: the other one ends too.
                    if part == Part::Remote {
                        ep.hangup(call.a.leg, now);
                    }
                }
            }
            Event::Bye { .. } | Event::AckTimeout { .. } | Event::Cancelled { .. } => {
                if matches!(ev, Event::AckTimeout { .. }) {
                    ep.bye(leg, now);
                }
                if let Some(call) = self.callback_calls.get_mut(&id) {
                    call.outcome.get_or_insert(if call.bridged_ms.is_some() {
                        Outcome::Answered
                    } else {
                        Outcome::Failed
                    });
                    let other = match part {
                        Part::Local => call.b.as_ref().map(|b| b.leg),
                        Part::Remote => Some(call.a.leg),
                    };
                    if let Some(other) = other {
                        ep.hangup(other, now);
                    }
                }
            }
            Event::InDialogRequest { txn, request, .. } => {
                // Keep-alive style requests are answered; an offer would
                // need re-negotiation across the bridge, which a callback
                // does not do (488: the old session stays).
                let status = match request.method {
                    sip::message::Method::Invite => 488,
                    sip::message::Method::Info
                    | sip::message::Method::Options
                    | sip::message::Method::Update => 200,
                    _ => 501,
                };
                ep.respond_request(txn, status, None, bytes::Bytes::new(), now);
            }
            Event::LegClosed { .. } => self.callback_closed(id, part).await,
            Event::Confirmed { .. } | Event::RequestDone { .. } | Event::IncomingInvite { .. } => {}
        }
    }

    async fn callback_answered(
        &mut self,
        ep: &mut Endpoint,
        id: u64,
        part: Part,
        body: &bytes::Bytes,
        now: Instant,
    ) {
        let media = Arc::clone(&self.media);
        let cdr = self.cdr.clone();
        let Some(call) = self.callback_calls.get_mut(&id) else {
            return;
        };
        if call.outcome.is_some() {
            // Stopped meanwhile: this dialog must end too.
            if let Some(d) = call.dial(part) {
                ep.bye(d.leg, now);
            }
            return;
        }
        let Some(d) = call.dial(part) else {
            return;
        };
        let answer = parse_sdp(body).filter(|a| sdp::check_answer(&d.offer, a).is_ok());
        let Some(answer) = answer else {
            let leg = d.leg;
            call.outcome = Some(Outcome::Failed);
            call.sip_status = Some(488);
            ep.bye(leg, now);
            if part == Part::Remote {
                ep.hangup(call.a.leg, now);
            }
            return;
        };
        d.answered = true;
        d.format = leg_format(&answer);
        if let Some(leg) = &d.media {
            let _ = media.update_leg(leg, answer.audio_destination()).await;
            let _ = media
                .set_codec(leg, d.format.as_ref().map(|f| encoding_name(f.encoding)))
                .await;
            let _ = media.set_format(leg, d.format.clone()).await;
        }
        match part {
            Part::Local => {
                call.view.set_status(PeerStatus::AAnswered);
                if let Some(leg) = &call.a.media {
                    if let Err(e) = media.play(leg, ringback(), true).await {
                        tracing::debug!(error = %e, "no ringback for the callback");
                    }
                }
                let remote = call.remote.clone();
                let local = call.local.clone();
                let group = call.a.media.as_ref().map_or(0, |l| l.loop_index() as u64);
                match self.dial_number(ep, group, &remote, &local, now).await {
                    Ok(b) => {
                        self.callback_legs.insert(b.leg, (id, Part::Remote));
                        if let Some(call) = self.callback_calls.get_mut(&id) {
                            call.b = Some(b);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "callback: cannot call the remote number");
                        if let Some(call) = self.callback_calls.get_mut(&id) {
                            call.outcome = Some(Outcome::Failed);
                            ep.bye(call.a.leg, now);
                        }
                    }
                }
            }
            Part::Remote => {
                if let (Some(a), Some(b)) = (
                    call.a.media.as_ref(),
                    call.b.as_ref().and_then(|b| b.media.as_ref()),
                ) {
                    let _ = media.stop_play(a).await;
                    if let Err(e) = media.bridge(a, b).await {
                        tracing::warn!(error = %e, "relay bridge failed");
                    }
                }
                call.bridged_ms = Some(now_ms());
                call.sip_status = Some(200);
                cdr.answered(&call.view.session_id);
                call.view.set_answered(now);
                if let (Some(a), Some(b)) = (
                    call.a.media.as_ref(),
                    call.b.as_ref().and_then(|b| b.media.as_ref()),
                ) {
                    call.view.set_legs(a.key(), b.key());
                }
                call.view.set_status(PeerStatus::Bridged);
            }
        }
    }

    async fn callback_closed(&mut self, id: u64, part: Part) {
        let done = match self.callback_calls.get_mut(&id) {
            Some(call) => {
                if let Some(d) = call.dial(part) {
                    d.open = false;
                    self.callback_legs.remove(&d.leg);
                }
                !call.a.open && call.b.as_ref().is_none_or_closed()
            }
            None => false,
        };
        if !done {
            return;
        }
        let Some(mut call) = self.callback_calls.remove(&id) else {
            return;
        };
        self.callback_sessions.remove(&call.view.session_id);
        let legs = (
            call.a.media.take(),
            call.b.as_mut().and_then(|b| b.media.take()),
        );
        let outcome = call.outcome.unwrap_or(if call.bridged_ms.is_some() {
            Outcome::Answered
        } else {
            Outcome::Failed
        });
        tracing::info!(
            session = %call.view.session_id,
            local = %call.local,
            remote = %call.remote,
            outcome = outcome.as_str(),
            "callback ended"
        );
        let codecs = super::codecs_label(&[
            ("local", call.a.format.as_ref()),
            ("remote", call.b.as_ref().and_then(|b| b.format.as_ref())),
        ]);
        self.finish_call(
            call.view.session_id.clone(),
            Some(Arc::clone(&call.view)),
            legs,
            super::Ending {
                ring_ms: call.ring_ms,
                answer_ms: call.bridged_ms,
                outcome,
                sip_status: call.sip_status,
                codecs,
                trunk: None,
            },
        );
    }

    pub(super) fn shutdown_callbacks(&mut self, ep: &mut Endpoint, now: Instant) {
        for call in self.callback_calls.values_mut() {
            call.outcome.get_or_insert(Outcome::Shutdown);
            ep.hangup(call.a.leg, now);
            if let Some(b) = &call.b {
                ep.hangup(b.leg, now);
            }
        }
    }

    pub(super) fn callback_count(&self) -> usize {
        self.callback_calls.len()
    }
}

trait ClosedExt {
    fn is_none_or_closed(&self) -> bool;
}

impl ClosedExt for Option<&Dial> {
    fn is_none_or_closed(&self) -> bool {
        match self {
            Some(d) => !d.open,
            None => true,
        }
    }
}
