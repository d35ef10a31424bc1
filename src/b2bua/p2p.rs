//! App-to-app calls (API.md "App-to-app calls (p2p)"): two relay legs,
//! one per app, and no SIP unless the callee cannot be reached, when the
//! call falls back to the callee's phone number through the trunk.
//!
//! ```text
//!  app A ─start(type p2p)─▶ [leg A]            [leg B] ◀─p2p_answer─ app B
//!                 status p2p_idle ─p2p_ringing─▶ p2p_ring ─p2p_answer─▶ p2p_hookoff
//!  B offline / p2p_reject / ring timeout ─▶ leg A ══ trunk: INVITE <number>
//!                                          (a late p2p_answer: already_call_real_phone)
//! ```

use super::app::{AppAnswer, AppCallError, AppMedia};
use super::B2bua;
use crate::registry::{CallView, PeerStatus};
use crate::store::{now_ms, Outcome};
use media::driver::LegHandle;
use media::format::LegFormat;
use sip::endpoint::Endpoint;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long the opdata of a call that fell back to the phone answers
/// `already_call_real_phone` (then `session_not_exist`).
const FALLBACK_MEMORY: Duration = Duration::from_secs(600);

/// Start an app-to-app call (the HTTP side checked both accounts).
#[derive(Debug)]
pub struct StartP2p {
    pub view: Arc<CallView>,
    pub caller: String,
    /// The number dialled (bound to the callee's account).
    pub callee: String,
    pub callee_account: String,
    /// The callee has a live login (else the call goes to the phone at once).
    pub callee_online: bool,
    pub media: AppMedia,
    pub octet_aligned: bool,
    pub reply: oneshot::Sender<Result<AppAnswer, AppCallError>>,
}

#[derive(Debug)]
pub(super) struct P2pCall {
    view: Arc<CallView>,
    caller: String,
    callee: String,
    callee_account: String,
    media_a: Option<LegHandle>,
    a_format: LegFormat,
    media_b: Option<LegHandle>,
    b_format: Option<LegFormat>,
    opdata: String,
    ring_deadline: Option<Instant>,
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    hookon_sent: bool,
}

impl B2bua {
    pub(super) async fn start_p2p(
        &mut self,
        ep: &mut Endpoint,
        start: StartP2p,
        now: Instant,
    ) -> Result<AppAnswer, AppCallError> {
        if !self.accepting {
            return Err(AppCallError::ShuttingDown);
        }
        let StartP2p {
            view,
            caller,
            callee,
            callee_account,
            callee_online,
            media,
            octet_aligned,
            reply: _,
        } = start;
        let group = self.next_call + 1;
        // The other side is an app too (AMR): prefer it to avoid transcoding.
        let (media_a, a_format, answer) = self
            .open_app_leg(group, &media, octet_aligned, &["AMR".to_owned()])
            .await?;
        if !callee_online {
            tracing::info!(session = %view.session_id, "callee offline: calling the phone");
            self.dial_trunk(ep, view, caller, callee, media_a, a_format, now)
                .await?;
            return Ok(answer);
        }
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let media_b = match self
            .media
            .open_leg(
                media_a.loop_index() as u64,
                media::relay::LegConfig::new(any),
            )
            .await
        {
            Ok((leg, _)) => leg,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a relay leg");
                self.release_media(media_a).await;
                return Err(AppCallError::NoPorts);
            }
        };
        // Pushed as a JSON object (like sip_call_in's); kept as its compact
        // text, which is what the HTTP side hands back for either form.
        let opdata_object = serde_json::json!({
            "event": "p2p",
            "caller": caller,
            "session_id": view.session_id,
            "k": format!("{:032x}", rand::random::<u128>()),
        });
        let opdata = opdata_object.to_string();
        view.set_opdata(opdata.clone());
        view.set_legs(media_a.key(), media_b.key());
        view.set_status(PeerStatus::P2pIdle);
        if let Some(env) = &self.inbound {
            env.notifier.notify(
                &callee_account,
                serde_json::json!({
                    "event": "p2p_inform_called",
                    "caller": caller,
                    "opdata": opdata_object,
                }),
            );
        }
        let ring_timeout = self
            .inbound
            .as_ref()
            .map_or(Duration::from_secs(45), |e| e.ring_timeout);
        self.p2p_calls.insert(
            view.session_id.clone(),
            P2pCall {
                view,
                caller,
                callee,
                callee_account,
                media_a: Some(media_a),
                a_format,
                media_b: Some(media_b),
                b_format: None,
                opdata,
                ring_deadline: Some(now + ring_timeout),
                ring_ms: None,
                answer_ms: None,
                hookon_sent: false,
            },
        );
        self.metrics.calls_active.set(self.active_calls() as i64);
        Ok(answer)
    }

    /// Is this opdata a p2p call's (or one that fell back to the phone)?
    fn p2p_of(&mut self, opdata: &str) -> Option<Result<&mut P2pCall, AppCallError>> {
        if self.fallen_back.contains_key(opdata) {
            return Some(Err(AppCallError::AlreadyCallRealPhone));
        }
        let session = super::opdata_session(opdata)?;
        let call = self.p2p_calls.get_mut(&session)?;
        Some(if call.opdata == opdata {
            Ok(call)
        } else {
            Err(AppCallError::NotFound)
        })
    }

    pub(super) fn p2p_ringing(&mut self, opdata: &str) -> Option<Result<(), AppCallError>> {
        let cdr = self.cdr.clone();
        Some(self.p2p_of(opdata)?.map(|call| {
            if call.ring_ms.is_none() && call.answer_ms.is_none() {
                call.ring_ms = Some(now_ms());
                cdr.ringing(&call.view.session_id);
                call.view.set_status(PeerStatus::P2pRing);
            }
        }))
    }

    pub(super) async fn p2p_answer(
        &mut self,
        opdata: &str,
        media: &AppMedia,
        octet_aligned: bool,
        now: Instant,
    ) -> Option<Result<AppAnswer, AppCallError>> {
        let (session, a_name) = match self.p2p_of(opdata)? {
            Err(e) => return Some(Err(e)),
            Ok(call) if call.answer_ms.is_some() => return Some(Err(AppCallError::NotFound)),
            Ok(call) => (
                call.view.session_id.clone(),
                super::app::encoding_name(call.a_format.encoding),
            ),
        };
        let driver = Arc::clone(&self.media);
        let origin = self.origin();
        let media_ip = self.media_ip;
        let cdr = self.cdr.clone();
        let call = self.p2p_calls.get_mut(&session)?;
        let (Some(leg_a), Some(leg_b)) = (&call.media_a, &call.media_b) else {
            return Some(Err(AppCallError::NotFound));
        };
        let prepared =
            super::app::app_leg_answer(media, octet_aligned, &[a_name], origin, media_ip, leg_b);
        let (b_format, b_remote, reply) = match prepared {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let _ = driver.update_leg(leg_b, b_remote).await;
        for (leg, format) in [(leg_a, &call.a_format), (leg_b, &b_format)] {
            let _ = driver
                .set_codec(leg, Some(super::app::encoding_name(format.encoding)))
                .await;
            let _ = driver.set_format(leg, Some(format.clone())).await;
        }
        if let Err(e) = driver.bridge(leg_a, leg_b).await {
            tracing::warn!(error = %e, "relay bridge failed");
        }
        call.b_format = Some(b_format);
        call.ring_deadline = None;
        call.answer_ms = Some(now_ms());
        cdr.answered(&session);
        call.view.set_answered(now);
        call.view.set_status(PeerStatus::P2pHookoff);
        Some(Ok(reply))
    }

    /// The callee declined: the phone gets the call (API.md), else it ends.
    pub(super) async fn p2p_reject(
        &mut self,
        ep: &mut Endpoint,
        opdata: &str,
        now: Instant,
    ) -> Option<Result<(), AppCallError>> {
        let session = match self.p2p_of(opdata)? {
            Err(e) => return Some(Err(e)),
            Ok(call) if call.answer_ms.is_some() => return Some(Err(AppCallError::NotFound)),
            Ok(call) => call.view.session_id.clone(),
        };
        self.p2p_fall_back(ep, &session, now).await;
        Some(Ok(()))
    }

    pub(super) fn p2p_poll_timeout(&self) -> Option<Instant> {
        self.p2p_calls
            .values()
            .filter_map(|c| c.ring_deadline)
            .min()
    }

    pub(super) async fn p2p_timeouts(&mut self, ep: &mut Endpoint, now: Instant) {
        let due: Vec<String> = self
            .p2p_calls
            .values()
            .filter(|c| c.ring_deadline.is_some_and(|at| at <= now))
            .map(|c| c.view.session_id.clone())
            .collect();
        for session in due {
            self.p2p_fall_back(ep, &session, now).await;
        }
        self.fallen_back
            .retain(|_, at| now.saturating_duration_since(*at) < FALLBACK_MEMORY);
    }

    /// The callee's app did not take the call: its leg goes, the caller's
    /// leg is kept and the number is called through the trunk.
    async fn p2p_fall_back(&mut self, ep: &mut Endpoint, session: &str, now: Instant) {
        let Some(mut call) = self.p2p_calls.remove(session) else {
            return;
        };
        self.hookon(&mut call);
        if let Some(b) = call.media_b.take() {
            self.release_media(b).await;
        }
        self.fallen_back.insert(call.opdata.clone(), now);
        let Some(a) = call.media_a.take() else {
            return;
        };
        tracing::info!(session = %session, "p2p callee did not answer: calling the phone");
        call.view.set_status(PeerStatus::Idle);
        let view = Arc::clone(&call.view);
        if let Err(e) = self
            .dial_trunk(
                ep,
                view,
                call.caller.clone(),
                call.callee.clone(),
                a,
                call.a_format.clone(),
                now,
            )
            .await
        {
            tracing::warn!(error = %e, "p2p fallback failed");
            self.end_p2p(&mut call, Outcome::NoAnswer);
        }
        self.metrics.calls_active.set(self.active_calls() as i64);
    }

    /// Either side hung up (DELETE of the session), the app went silent, or
    /// shutdown: the call ends.
    pub(super) async fn p2p_stop(&mut self, session: &str, outcome: Option<Outcome>) -> bool {
        let Some(mut call) = self.p2p_calls.remove(session) else {
            return false;
        };
        if call.answer_ms.is_none() {
            self.hookon(&mut call);
        }
        let outcome = outcome.unwrap_or(if call.answer_ms.is_some() {
            Outcome::Answered
        } else {
            Outcome::Cancelled
        });
        self.end_p2p(&mut call, outcome);
        true
    }

    fn end_p2p(&self, call: &mut P2pCall, outcome: Outcome) {
        let legs = (call.media_a.take(), call.media_b.take());
        self.finish_call(
            call.view.session_id.clone(),
            Some(Arc::clone(&call.view)),
            legs,
            super::Ending {
                ring_ms: call.ring_ms,
                answer_ms: call.answer_ms,
                outcome,
                sip_status: None,
                codecs: super::codecs_label(&[
                    ("a", Some(&call.a_format)),
                    ("b", call.b_format.as_ref()),
                ]),
                trunk: None,
            },
        );
    }

    fn hookon(&self, call: &mut P2pCall) {
        if call.hookon_sent || call.answer_ms.is_some() {
            return;
        }
        call.hookon_sent = true;
        if let Some(env) = &self.inbound {
            env.notifier.notify(
                &call.callee_account,
                serde_json::json!({"event": "caller_hookon", "caller": call.caller}),
            );
        }
    }

    pub(super) async fn shutdown_p2p(&mut self) {
        let sessions: Vec<String> = self.p2p_calls.keys().cloned().collect();
        for s in sessions {
            self.p2p_stop(&s, Some(Outcome::Shutdown)).await;
        }
    }

    pub(super) fn p2p_count(&self) -> usize {
        self.p2p_calls.len()
    }
}
