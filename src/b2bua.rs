//! The call layer for SIP-to-SIP calls: a back-to-back user agent (RFC 3261
//! §6 "B2BUA", RFC 7092 "media-relay B2BUA"): every call's media is anchored
//! on the switch's relay, one relay leg per SIP leg.
//!
//! ```text
//!  trunk A ──INVITE──▶ [UAS leg a]  Call  [UAC leg b] ──INVITE──▶ trunk B
//!          ◀─1xx/2xx──             (SDP through offer/answer)  ◀──1xx/2xx──
//! ```
//!
//! Each leg is its own dialog (new Call-ID, tags, CSeq, Via on the B side).
//! SDP is never copied as text: A's offer is filtered to the codecs both
//! trunks allow, B's answer is checked against what we offered, and A gets an
//! answer built by the offer/answer engine from what B chose.
//!
//! Routing (OPERATIONS.md): the source must be an inbound trunk (403), the
//! Request-URI user is routed by longest prefix (404), a trunk that times out
//! or cannot be reached gives 408/503.

mod app;
mod callback;
mod incoming;
mod p2p;

pub use app::{media_timed_out, stats_json, AppAnswer, AppCallError, AppMedia, Command, StartApp};
pub use callback::StartCallback;
pub use incoming::{opdata_session, AppNotifier, InboundEnv};
pub use p2p::StartP2p;

use crate::cdr::{CdrEvent, CdrSink};
use crate::config::{Router, TransportKind, Trunk};
use crate::metrics::Metrics;
use crate::registry::{new_session_id, CallStats};
use crate::store::{self, now_ms, CallRecordEnd, CallRecordStart};
use bytes::Bytes;
use media::driver::{LegHandle, LegKey, MediaDriver, MediaEvent};
use media::format::{Encoding, LegFormat};
use media::relay::LegConfig;
use sip::auth::Credentials;
use sip::endpoint::{
    ClientTxnId, Endpoint, Event, LegId, OutgoingInvite, OutgoingRequest, ServerTxnId,
};
use sip::message::{HeaderName, Method, NameAddr, Request, Response, Uri};
use sip::sdp::{self, Origin, SessionDescription};
use sip::transport::Transport;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How a call ended, as counted in `calls_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Rejected,
    Failed,
    Cancelled,
    NoRoute,
    Forbidden,
    Shutdown,
}

impl Outcome {
    /// The call record's outcome.
    fn record(self) -> store::Outcome {
        match self {
            Outcome::Answered => store::Outcome::Answered,
            Outcome::Rejected | Outcome::Forbidden | Outcome::NoRoute => store::Outcome::Rejected,
            Outcome::Failed => store::Outcome::Failed,
            Outcome::Cancelled => store::Outcome::Cancelled,
            Outcome::Shutdown => store::Outcome::Shutdown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::NoRoute => "no_route",
            Outcome::Forbidden => "forbidden",
            Outcome::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

#[derive(Debug)]
struct Call {
    a: LegId,
    b: Option<LegId>,
    a_open: bool,
    b_open: bool,
    /// A's offer as received and our offer to B, for answers in both directions.
    a_offer: Option<SessionDescription>,
    b_offer: Option<SessionDescription>,
    origin_a: Origin,
    origin_b: Origin,
    answered: bool,
    outcome: Option<Outcome>,
    /// In-dialog requests relayed to the other leg, waiting for its answer.
    relayed: HashMap<ClientTxnId, Relayed>,
    /// Late offer: B's offer (in its 2xx) and the offer we made A from it,
    /// until A's ACK brings the answer that B's ACK must carry.
    late_offer: Option<(SessionDescription, SessionDescription)>,
    /// Codecs both trunks allow.
    allowed: Vec<String>,
    /// The relay legs facing A and B (owned by the call's media task);
    /// every SDP we send points at them.
    media: Option<CallMedia>,
    bridged: bool,
    /// The voice codec B's answer chose (both legs carry it), for the
    /// relay's quality estimate.
    codec: Option<String>,
    /// A and B share no codec: B was offered its trunk's codecs and the relay
    /// transcodes.
    transcoding: bool,
    /// (twin PT, A's PT) for the AMR payload-mode twins offered to B.
    amr_twins: Vec<(u8, u8)>,
    /// What A's trunk allows, for answering A when transcoding.
    inbound_codecs: Vec<String>,
    /// Each side's payload format once negotiated, for the relay.
    formats: Option<(Option<LegFormat>, Option<LegFormat>)>,
    /// The call record's key.
    session_id: String,
    /// Unix ms, for the record.
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    /// B's final failure status, for the record.
    sip_status: Option<u16>,
}

impl Call {
    /// Points the SDP we send to `side` at that side's relay leg.
    fn anchor(&self, side: Side, sdp: &mut SessionDescription, media_ip: IpAddr) {
        if let Some(m) = &self.media {
            let port = match side {
                Side::A => m.a_port,
                Side::B => m.b_port,
            };
            sdp.anchor_audio(media_ip, port);
        }
    }
}

/// A new offer or answer from `side` says where its media goes: the relay
/// sends there (and opens a new latch window), and the call is bridged once
/// both legs have been told. Queued to the call's media task: the SIP loop
/// never waits for the relay.
fn media_update(call: &mut Call, side: Side, remote: Option<SocketAddr>) {
    let Some(m) = &call.media else {
        return;
    };
    m.send(MediaOp::Update { side, remote });
    if !call.bridged {
        call.bridged = true;
        m.send(MediaOp::Bridge {
            codec: call.codec.clone(),
            formats: call.formats.clone(),
        });
    }
}

/// A transit call's two relay legs as the SIP loop sees them: their ports
/// and keys, and the queue to the task that owns them ([`media_task`]).
#[derive(Debug)]
struct CallMedia {
    a_port: u16,
    b_port: u16,
    a_key: LegKey,
    b_key: LegKey,
    ops: mpsc::UnboundedSender<MediaOp>,
}

impl CallMedia {
    fn send(&self, op: MediaOp) {
        // The task ends only after a Release, or when this sender is gone.
        let _ = self.ops.send(op);
    }
}

/// What a call's media task does with its legs, in order.
enum MediaOp {
    Update {
        side: Side,
        remote: Option<SocketAddr>,
    },
    Bridge {
        codec: Option<String>,
        formats: Option<(Option<LegFormat>, Option<LegFormat>)>,
    },
    /// Close both legs and hand their final figures to this.
    Release(Box<dyn FnOnce(Option<CallStats>) + Send>),
}

impl std::fmt::Debug for MediaOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaOp::Update { side, remote } => write!(f, "Update({side:?}, {remote:?})"),
            MediaOp::Bridge { codec, .. } => write!(f, "Bridge({codec:?})"),
            MediaOp::Release(_) => f.write_str("Release"),
        }
    }
}

/// The relay legs of a new transit call are open (or could not be): the
/// SIP loop goes on with the INVITE of `leg` ([`B2bua::media_opened`]).
#[derive(Debug)]
pub struct MediaOpened {
    leg: LegId,
    media: Option<CallMedia>,
}

/// A transit call's media, from the INVITE to the end: opens the two relay
/// legs (at once, on the loop of `group`), reports them to the SIP loop,
/// then applies the call's [`MediaOp`]s in order and finally closes the
/// legs (also when the SIP side dropped its end without a Release). The
/// relay's control round trips all happen here, never in the SIP loop.
async fn media_task(
    media: Arc<MediaDriver>,
    metrics: Arc<Metrics>,
    group: u64,
    a_remote: Option<SocketAddr>,
    leg: LegId,
    opened: mpsc::UnboundedSender<MediaOpened>,
) {
    let Some((a, b)) = open_pair(&media, &metrics, group, a_remote).await else {
        let _ = opened.send(MediaOpened { leg, media: None });
        return;
    };
    let (ops, mut rx) = mpsc::unbounded_channel();
    let handles = CallMedia {
        a_port: a.local().port(),
        b_port: b.local().port(),
        a_key: a.key(),
        b_key: b.key(),
        ops,
    };
    // A send that fails drops the sender with the message: the loop below
    // then ends at once and the legs are closed.
    let _ = opened.send(MediaOpened {
        leg,
        media: Some(handles),
    });
    let mut finish = None;
    while let Some(op) = rx.recv().await {
        // Whatever the SIP loop queued together (an answer's update and the
        // bridge) goes to the relay loop together: every control message is
        // sent before any reply is awaited, so they cost one round trip.
        // The loop applies them in the order sent.
        let mut update_a = None;
        let mut update_b = None;
        let mut bridge = None;
        let mut next = Some(op);
        while let Some(op) = next.take() {
            match op {
                MediaOp::Update {
                    side: Side::A,
                    remote,
                } => update_a = Some(remote),
                MediaOp::Update {
                    side: Side::B,
                    remote,
                } => update_b = Some(remote),
                MediaOp::Bridge { codec, formats } => bridge = Some((codec, formats)),
                MediaOp::Release(f) => {
                    finish = Some(f);
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        let (codec, formats) = match bridge {
            Some((codec, formats)) => (Some(codec), formats),
            None => (None, None),
        };
        let bridging = codec.is_some();
        let (codec_a, codec_b) = (codec.clone().flatten(), codec.flatten());
        // Formats that differ (AMR payload mode, payload type, or codec when
        // transcoding) make the relay convert between the legs.
        let (format_a, format_b) = match formats {
            Some((fa, fb)) => (Some(fa), Some(fb)),
            None => (None, None),
        };
        let (ua, ub, bridged, _, _, _, _) = tokio::join!(
            async {
                match update_a {
                    Some(remote) => media.update_leg(&a, remote).await,
                    None => Ok(()),
                }
            },
            async {
                match update_b {
                    Some(remote) => media.update_leg(&b, remote).await,
                    None => Ok(()),
                }
            },
            async {
                if bridging {
                    media.bridge(&a, &b).await
                } else {
                    Ok(())
                }
            },
            async {
                if bridging {
                    let _ = media.set_codec(&a, codec_a).await;
                }
            },
            async {
                if bridging {
                    let _ = media.set_codec(&b, codec_b).await;
                }
            },
            async {
                if let Some(f) = format_a {
                    let _ = media.set_format(&a, f).await;
                }
            },
            async {
                if let Some(f) = format_b {
                    let _ = media.set_format(&b, f).await;
                }
            },
        );
        for e in [ua.err(), ub.err()].into_iter().flatten() {
            tracing::warn!(error = %e, "relay leg update failed");
        }
        if let Err(e) = bridged {
            tracing::warn!(error = %e, "relay bridge failed");
        }
        if finish.is_some() {
            break;
        }
    }
    // Each leg's last figures, then its close, all sent before any reply
    // is awaited (one round trip for the pair).
    let (ka, kb) = (a.key(), b.key());
    let (ca, closed_a, cb, closed_b) = tokio::join!(
        media.counters_of(ka),
        media.close_leg(a),
        media.counters_of(kb),
        media.close_leg(b),
    );
    for e in [closed_a.err(), closed_b.err()].into_iter().flatten() {
        tracing::warn!(error = %e, "relay leg close failed");
    }
    metrics.media_ports_free.set(media.ports_available() as i64);
    let (ca, cb) = (ca.ok(), cb.ok());
    for c in [&ca, &cb].into_iter().flatten() {
        count_relayed(&metrics, c);
    }
    if let Some(finish) = finish {
        finish(ca.map(|ca| CallStats::from_legs(&ca, cb.as_ref())));
    }
}

/// Opens the two relay legs of a new call together (`None`: no ports
/// left, or the relay is gone — the call is refused with 503).
async fn open_pair(
    media: &MediaDriver,
    metrics: &Metrics,
    group: u64,
    a_remote: Option<SocketAddr>,
) -> Option<(LegHandle, LegHandle)> {
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let a_cfg = LegConfig {
        remote: a_remote,
        ..LegConfig::new(any)
    };
    let (a, b) = tokio::join!(
        media.open_leg(group, a_cfg),
        media.open_leg(group, LegConfig::new(any))
    );
    metrics.media_ports_free.set(media.ports_available() as i64);
    match (a, b) {
        (Ok((a, _)), Ok((b, _))) => Some((a, b)),
        (Ok((leg, _)), Err(e)) | (Err(e), Ok((leg, _))) => {
            tracing::warn!(error = %e, "cannot open a relay leg");
            let _ = media.close_leg(leg).await;
            metrics.media_ports_free.set(media.ports_available() as i64);
            None
        }
        (Err(e), Err(_)) => {
            tracing::warn!(error = %e, "cannot open a relay leg");
            None
        }
    }
}

/// An INVITE of a transit call waiting for its relay legs.
#[derive(Debug)]
struct PendingInvite {
    req: Request,
    inbound_codecs: Vec<String>,
    out_trunk: String,
    trunk: Trunk,
    destination: SocketAddr,
    transport: Transport,
    number: String,
    a_offer: Option<SessionDescription>,
    b_offer: Option<SessionDescription>,
    origin_b: Origin,
    allowed: Vec<String>,
    transcoding: bool,
    amr_twins: Vec<(u8, u8)>,
}

#[derive(Debug)]
struct Relayed {
    server: ServerTxnId,
    from: Side,
    offer: Option<SessionDescription>,
    original_offer: Option<SessionDescription>,
}

/// Trunk keep-alive and registration state.
#[derive(Debug)]
struct TrunkState {
    trunk: Trunk,
    destination: SocketAddr,
    next_options: Option<Instant>,
    next_register: Option<Instant>,
    register_call_id: String,
    register_cseq: u32,
    pending: Option<ClientTxnId>,
    options_pending: Option<ClientTxnId>,
    up: bool,
}

pub struct B2bua {
    media: Arc<MediaDriver>,
    router: Router,
    trunks: Vec<TrunkState>,
    media_ip: IpAddr,
    public_host: String,
    calls: HashMap<u64, Call>,
    legs: HashMap<LegId, (u64, Side)>,
    metrics: Arc<Metrics>,
    next_call: u64,
    accepting: bool,
    cdr: CdrSink,
    /// This node's prefix for session ids.
    node: String,
    app_calls: HashMap<u64, app::AppCall>,
    app_legs: HashMap<LegId, u64>,
    /// session_id → app call.
    sessions: HashMap<String, u64>,
    /// Calls in from trunks to apps (None: no accounts, transit only).
    inbound: Option<InboundEnv>,
    inbound_calls: HashMap<u64, incoming::InboundCall>,
    inbound_legs: HashMap<LegId, u64>,
    inbound_sessions: HashMap<String, u64>,
    /// App-to-app calls by session id.
    p2p_calls: HashMap<String, p2p::P2pCall>,
    /// Opdata of p2p calls that went to the callee's phone, and when.
    fallen_back: HashMap<String, Instant>,
    callback_calls: HashMap<u64, callback::CallbackCall>,
    callback_legs: HashMap<LegId, (u64, callback::Part)>,
    callback_sessions: HashMap<String, u64>,
    /// Dialled number → its account (or none), and when that was read.
    number_cache: HashMap<String, (Option<String>, Instant)>,
    /// Transit INVITEs whose relay legs are being opened, by A's leg.
    pending: HashMap<LegId, PendingInvite>,
    /// Spreads new calls over the relay's loops.
    next_group: u64,
    /// Where the media tasks report opened legs, and (until the SIP loop
    /// takes it) the receiving end.
    opened_tx: mpsc::UnboundedSender<MediaOpened>,
    opened_rx: Option<mpsc::UnboundedReceiver<MediaOpened>>,
}

impl std::fmt::Debug for B2bua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("B2bua")
            .field("calls", &self.calls.len())
            .finish()
    }
}

fn session_id() -> u64 {
    rand::random::<u64>() >> 2
}

fn transport_of(t: &Trunk) -> Transport {
    match t.address.transport {
        TransportKind::Udp => Transport::Udp,
        TransportKind::Tcp => Transport::Tcp,
    }
}

fn parse_sdp(body: &Bytes) -> Option<SessionDescription> {
    if body.is_empty() {
        return None;
    }
    SessionDescription::parse(body).ok()
}

/// The dialled number: the Request-URI user without visual separators or
/// parameters (`;phone-context=...`, RFC 3966 style).
fn dialled_number(uri: &Uri) -> Option<String> {
    let user = match uri {
        Uri::Sip(s) => s.user.as_deref()?.to_owned(),
        Uri::Other { raw, .. } => raw.strip_prefix("tel:").unwrap_or(raw).to_owned(),
    };
    let user = user.split(';').next().unwrap_or_default();
    let number: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    (!number.is_empty()).then_some(number)
}

impl B2bua {
    /// `trunk_addrs`: each trunk's resolved destination, in `router.trunks()` order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        media: Arc<MediaDriver>,
        router: Router,
        trunk_addrs: Vec<SocketAddr>,
        media_ip: IpAddr,
        public_host: String,
        metrics: Arc<Metrics>,
        cdr: CdrSink,
        node: String,
        now: Instant,
    ) -> Self {
        let trunks = router
            .trunks()
            .iter()
            .cloned()
            .zip(trunk_addrs)
            .map(|(trunk, destination)| TrunkState {
                next_options: trunk
                    .options_interval()
                    .map(|_| now + Duration::from_millis(200)),
                next_register: trunk.register.then_some(now),
                trunk,
                destination,
                register_call_id: format!("{:032x}", rand::random::<u128>()),
                register_cseq: 0,
                pending: None,
                options_pending: None,
                up: true,
            })
            .collect();
        let (opened_tx, opened_rx) = mpsc::unbounded_channel();
        Self {
            media,
            router,
            trunks,
            media_ip,
            public_host,
            calls: HashMap::new(),
            legs: HashMap::new(),
            metrics,
            next_call: 0,
            accepting: true,
            cdr,
            node,
            app_calls: HashMap::new(),
            app_legs: HashMap::new(),
            sessions: HashMap::new(),
            inbound: None,
            inbound_calls: HashMap::new(),
            inbound_legs: HashMap::new(),
            inbound_sessions: HashMap::new(),
            p2p_calls: HashMap::new(),
            fallen_back: HashMap::new(),
            callback_calls: HashMap::new(),
            callback_legs: HashMap::new(),
            callback_sessions: HashMap::new(),
            number_cache: HashMap::new(),
            pending: HashMap::new(),
            next_group: 0,
            opened_tx,
            opened_rx: Some(opened_rx),
        }
    }

    /// The reports of opened relay legs: the SIP loop passes each to
    /// [`B2bua::media_opened`]. The first call takes it.
    pub fn take_media_opened(&mut self) -> Option<mpsc::UnboundedReceiver<MediaOpened>> {
        self.opened_rx.take()
    }

    /// Numbers bound to accounts become calls to apps (sip_call_in).
    pub fn with_inbound(mut self, env: InboundEnv) -> Self {
        self.inbound = Some(env);
        self
    }

    /// Transit and app calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
            + self.app_call_count()
            + self.inbound_count()
            + self.p2p_count()
            + self.callback_count()
    }

    /// Trunks whose last keep-alive went unanswered.
    pub fn trunks_down(&self) -> Vec<String> {
        self.trunks
            .iter()
            .filter(|t| !t.up)
            .map(|t| t.trunk.name.clone())
            .collect()
    }

    fn trunk_destination(&self, name: &str) -> Option<(SocketAddr, Transport, Trunk)> {
        self.trunks
            .iter()
            .find(|t| t.trunk.name == name)
            .map(|t| (t.destination, transport_of(&t.trunk), t.trunk.clone()))
    }

    fn origin(&self) -> Origin {
        let mut o = Origin::new(session_id(), 1, self.media_ip);
        o.username = "softswitch".to_owned();
        o
    }

    /// When the next housekeeping (keep-alive, registration) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.trunks
            .iter()
            .flat_map(|t| [t.next_options, t.next_register])
            .flatten()
            .chain(self.inbound_poll_timeout())
            .chain(self.p2p_poll_timeout())
            .min()
    }

    /// Sends due OPTIONS keep-alives and REGISTER refreshes.
    pub async fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        self.inbound_timeouts(ep, now);
        self.p2p_timeouts(ep, now).await;
        let host = self.public_host.clone();
        for t in &mut self.trunks {
            let transport = transport_of(&t.trunk);
            let trunk_uri = format!("sip:{}:{}", t.trunk.address.host, t.trunk.address.port);
            let Ok(uri) = Uri::parse_str(&trunk_uri) else {
                continue;
            };
            if t.next_register.is_some_and(|at| at <= now) {
                let user = t
                    .trunk
                    .username
                    .clone()
                    .unwrap_or_else(|| "softswitch".to_owned());
                let aor = format!("<sip:{user}@{}>", t.trunk.address.host);
                let (Some(na), Some(na_to)) = (name_addr(&aor), name_addr(&aor)) else {
                    continue;
                };
                t.register_cseq += 1;
                let creds = t.trunk.password.clone().map(|password| Credentials {
                    username: user.clone(),
                    password,
                });
                t.pending = Some(ep.out_of_dialog(
                    OutgoingRequest {
                        method: Method::Register,
                        request_uri: uri.clone(),
                        from: na,
                        to: na_to,
                        destination: t.destination,
                        transport,
                        headers: vec![(
                            HeaderName::Expires,
                            t.trunk.register_expires_s.to_string(),
                        )],
                        credentials: creds,
                        call_id: Some(t.register_call_id.clone()),
                        cseq: Some(t.register_cseq),
                    },
                    now,
                ));
                t.register_cseq += 2; // room for the authenticated retry
                                      // Refresh well before expiry; the answer may shorten it.
                t.next_register = Some(
                    now + t
                        .trunk
                        .register_expires()
                        .mul_f32(0.8)
                        .max(Duration::from_secs(5)),
                );
            }
            if t.next_options.is_some_and(|at| at <= now) {
                let from = format!("<sip:softswitch@{host}>");
                let to = format!("<{trunk_uri}>");
                if let (Some(from), Some(to)) = (name_addr(&from), name_addr(&to)) {
                    t.options_pending = Some(ep.out_of_dialog(
                        OutgoingRequest {
                            method: Method::Options,
                            request_uri: uri,
                            from,
                            to,
                            destination: t.destination,
                            transport,
                            headers: Vec::new(),
                            credentials: None,
                            call_id: None,
                            cseq: None,
                        },
                        now,
                    ));
                }
                t.next_options = t.trunk.options_interval().map(|i| now + i);
            }
        }
    }

    pub async fn handle_event(&mut self, ep: &mut Endpoint, ev: Event, now: Instant) {
        if !self.pending.is_empty() && self.pending_event(&ev) {
            return;
        }
        if event_leg(&ev).is_some_and(|leg| self.owns_app_leg(leg)) {
            return self.app_event(ep, ev, now).await;
        }
        if event_leg(&ev).is_some_and(|leg| self.owns_inbound_leg(leg)) {
            return self.inbound_event(ep, ev, now).await;
        }
        if event_leg(&ev).is_some_and(|leg| self.owns_callback_leg(leg)) {
            return self.callback_event(ep, ev, now).await;
        }
        match ev {
            Event::IncomingInvite {
                leg,
                request,
                source,
                transport,
            } => {
                self.incoming(ep, leg, *request, source, transport, now)
                    .await
            }
            Event::Progress { leg, response } => self.progress(ep, leg, *response, now).await,
            Event::Answered { leg, response } => self.answered(ep, leg, *response, now).await,
            Event::Failed { leg, status, .. } => self.failed(ep, leg, status, now),
            Event::Cancelled { leg } | Event::Bye { leg } => {
                let outcome = if matches!(ev, Event::Cancelled { .. }) {
                    Outcome::Cancelled
                } else {
                    Outcome::Answered
                };
                self.hangup_other(ep, leg, outcome, now);
            }
            Event::AckTimeout { leg } => {
                ep.bye(leg, now);
                self.hangup_other(ep, leg, Outcome::Failed, now);
            }
            Event::Confirmed { leg, body } => self.confirmed(ep, leg, &body, now).await,
            Event::InDialogRequest { leg, txn, request } => {
                self.in_dialog(ep, leg, txn, *request, now).await
            }
            Event::RequestDone {
                txn,
                leg,
                method,
                status,
                response,
            } => {
                self.request_done(ep, txn, leg, method, status, response, now)
                    .await
            }
            Event::LegClosed { leg } => self.leg_closed(leg).await,
        }
    }

    async fn incoming(
        &mut self,
        ep: &mut Endpoint,
        leg: LegId,
        req: Request,
        source: SocketAddr,
        _transport: Transport,
        now: Instant,
    ) {
        let reject = |ep: &mut Endpoint, status| ep.respond(leg, status, Bytes::new(), now);
        if !self.accepting {
            return reject(ep, 503);
        }
        // No open relay: only inbound trunks may send us calls.
        let Some(inbound) = self.router.inbound_trunk(source.ip()).cloned() else {
            self.metrics.call_ended(Outcome::Forbidden.as_str());
            return reject(ep, 403);
        };
        let Some(number) = dialled_number(&req.uri) else {
            self.metrics.call_ended(Outcome::NoRoute.as_str());
            return reject(ep, 404);
        };
        // A number bound to an account rings its app (OPERATIONS.md routing 2).
        if self
            .try_sip_call_in(ep, leg, &req, &number, &inbound.name, now)
            .await
        {
            return;
        }
        let Some(out_trunk) = self.router.route(&number).map(|t| t.name.clone()) else {
            self.metrics.call_ended(Outcome::NoRoute.as_str());
            return reject(ep, 404);
        };
        let Some((destination, transport, trunk)) = self.trunk_destination(&out_trunk) else {
            return reject(ep, 404);
        };
        // Offer/answer: filter A's offer to what both trunks speak.
        let a_offer = parse_sdp(&req.body);
        if !req.body.is_empty() && a_offer.is_none() {
            self.metrics.call_ended(Outcome::Rejected.as_str());
            return reject(ep, 400);
        }
        let allowed = allowed_codecs(&inbound, &trunk);
        let origin_b = self.origin();
        // Without an offer (late offer, RFC 3261 §13.2.1) B's 2xx will carry
        // one; it is filtered then, and the INVITE to B carries none either.
        // When the two sides share no codec the relay transcodes: B gets a
        // fresh offer of its trunk's codecs (built once B's relay port is known).
        let mut transcoding = false;
        let mut amr_twins = Vec::new();
        let b_offer = match &a_offer {
            None => None,
            Some(a_offer) => match sdp::filter_offer(a_offer, &allowed) {
                Ok(mut o) => {
                    o.set_origin(origin_b.clone());
                    // Let B pick either AMR payload mode; the relay converts.
                    amr_twins = sdp::add_amr_mode_twins(&mut o);
                    Some(o)
                }
                Err(_) if can_transcode(a_offer, &inbound, &trunk) => {
                    transcoding = true;
                    None
                }
                Err(_) => {
                    self.metrics.call_ended(Outcome::Rejected.as_str());
                    return reject(ep, 488);
                }
            },
        };
        // Anchor the media: one relay leg per side, on the same event loop.
        // A's leg sends to the address in A's offer; B's learns B's from its
        // answer. The legs are opened by the call's media task; the INVITE
        // goes on in `media_opened` (A already has its 100 Trying).
        self.next_group += 1;
        let group = self.next_group;
        let a_remote = a_offer.as_ref().and_then(|o| o.audio_destination());
        let allowed = allowed.iter().map(|c| (*c).to_owned()).collect();
        self.pending.insert(
            leg,
            PendingInvite {
                req,
                inbound_codecs: inbound.codecs.clone(),
                out_trunk,
                trunk,
                destination,
                transport,
                number,
                a_offer,
                b_offer,
                origin_b,
                allowed,
                transcoding,
                amr_twins,
            },
        );
        tokio::spawn(media_task(
            Arc::clone(&self.media),
            Arc::clone(&self.metrics),
            group,
            a_remote,
            leg,
            self.opened_tx.clone(),
        ));
    }

    /// The relay legs of a transit INVITE are open (or could not be): the
    /// INVITE goes on to the trunk, or A gets 503. Legs whose INVITE is gone
    /// meanwhile (CANCEL, shutdown) are closed by their task, which sees its
    /// queue dropped here.
    pub fn media_opened(&mut self, ep: &mut Endpoint, opened: MediaOpened, now: Instant) {
        let MediaOpened { leg, media } = opened;
        let Some(p) = self.pending.remove(&leg) else {
            return;
        };
        let Some(media) = media else {
            self.metrics.call_ended(Outcome::Failed.as_str());
            ep.respond(leg, 503, Bytes::new(), now);
            return;
        };
        let PendingInvite {
            req,
            inbound_codecs,
            out_trunk,
            trunk,
            destination,
            transport,
            number,
            a_offer,
            mut b_offer,
            origin_b,
            allowed,
            transcoding,
            mut amr_twins,
        } = p;
        if transcoding {
            let mut o = sdp::offer(
                origin_b.clone(),
                self.media_ip,
                media.b_port,
                &trunk_codecs(&trunk),
            );
            amr_twins = sdp::add_amr_mode_twins(&mut o);
            b_offer = Some(o);
        }
        if let Some(o) = b_offer.as_mut() {
            o.anchor_audio(self.media_ip, media.b_port);
        }
        let caller = req.core.from.uri.user().unwrap_or("anonymous").to_owned();
        // A B2BUA is a loop risk like a proxy: carry Max-Forwards down.
        let max_forwards = req.core.max_forwards.map_or(70, |m| m.saturating_sub(1));
        let body = b_offer.as_ref().map(|o| o.to_bytes()).unwrap_or_default();
        let Some(b) = self.invite_trunk(
            ep,
            TrunkTarget {
                trunk: &trunk,
                destination,
                transport,
            },
            &caller,
            &number,
            body,
            max_forwards,
            now,
        ) else {
            // Dropping `media` closes the legs.
            return ep.respond(leg, 484, Bytes::new(), now);
        };
        self.next_call += 1;
        let id = self.next_call;
        let session_id = new_session_id(&self.node);
        self.calls.insert(
            id,
            Call {
                a: leg,
                b: Some(b),
                a_open: true,
                b_open: true,
                a_offer,
                b_offer,
                origin_a: self.origin(),
                origin_b,
                answered: false,
                outcome: None,
                relayed: HashMap::new(),
                late_offer: None,
                allowed,
                media: Some(media),
                bridged: false,
                codec: None,
                transcoding,
                amr_twins,
                inbound_codecs,
                formats: None,
                session_id: session_id.clone(),
                ring_ms: None,
                answer_ms: None,
                sip_status: None,
            },
        );
        self.cdr.send(CdrEvent::Start(CallRecordStart {
            session_id,
            account: None,
            peer_account: None,
            caller,
            callee: number,
            kind: store::CallKind::Transit,
            trunk: Some(out_trunk),
            call_ms: now_ms(),
            node: self.node.clone(),
        }));
        self.legs.insert(leg, (id, Side::A));
        self.legs.insert(b, (id, Side::B));
        self.metrics.calls_active.set(self.calls.len() as i64);
    }

    /// An endpoint event about a transit INVITE still waiting for its
    /// relay legs: only its end can happen (CANCEL, or a hang-up at
    /// shutdown). True when the event was that.
    fn pending_event(&mut self, ev: &Event) -> bool {
        let (leg, outcome) = match ev {
            Event::Cancelled { leg } => (*leg, Outcome::Cancelled),
            Event::LegClosed { leg } => (*leg, Outcome::Failed),
            _ => return false,
        };
        if self.pending.remove(&leg).is_none() {
            return false;
        }
        let outcome = if self.accepting {
            outcome
        } else {
            Outcome::Shutdown
        };
        self.metrics.call_ended(outcome.as_str());
        true
    }

    /// The end of a call (already out of the maps): counted now; its relay
    /// legs are closed, its record written and (for a call the HTTP side
    /// sees) its view released by a task, so the SIP loop never waits for
    /// the media loops at a hang-up. The record carries the legs' last
    /// figures, read as they close.
    fn finish_call(
        &self,
        session_id: String,
        view: Option<Arc<crate::registry::CallView>>,
        legs: (Option<LegHandle>, Option<LegHandle>),
        e: Ending,
    ) {
        let record = self.end_record(session_id, view, e);
        let media = Arc::clone(&self.media);
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            record(release_pair(&media, &metrics, legs.0, legs.1).await);
        });
    }

    /// Counts the end of a call now, and returns what is left to do once
    /// its relay legs are closed: write its record (with their figures) and
    /// release its view.
    fn end_record(
        &self,
        session_id: String,
        view: Option<Arc<crate::registry::CallView>>,
        e: Ending,
    ) -> impl FnOnce(Option<CallStats>) + Send + 'static {
        self.metrics.call_ended(e.outcome.as_str());
        self.metrics.calls_active.set(self.active_calls() as i64);
        let cdr = self.cdr.clone();
        move |stats: Option<CallStats>| {
            if let (Some(view), Some(stats)) = (&view, stats) {
                view.set_stats(stats);
            }
            cdr.send(CdrEvent::End {
                session_id,
                end: CallRecordEnd {
                    ring_ms: e.ring_ms,
                    answer_ms: e.answer_ms,
                    end_ms: now_ms(),
                    outcome: e.outcome,
                    sip_status: e.sip_status,
                    codecs: e.codecs,
                    quality: stats.as_ref().map(stats_json),
                    trunk: e.trunk,
                },
            });
            if let Some(view) = view {
                view.release(Instant::now());
            }
        }
    }

    /// Sends an INVITE for `callee` to a trunk (new dialog: Call-ID, tags,
    /// branch are the endpoint's), with the trunk's digest credentials.
    /// `None` when the names do not make a valid SIP URI.
    #[allow(clippy::too_many_arguments)]
    fn invite_trunk(
        &self,
        ep: &mut Endpoint,
        target: TrunkTarget<'_>,
        caller: &str,
        callee: &str,
        body: Bytes,
        max_forwards: u8,
        now: Instant,
    ) -> Option<LegId> {
        let TrunkTarget {
            trunk,
            destination,
            transport,
        } = target;
        let host = &trunk.address.host;
        let port = trunk.address.port;
        let tparam = if transport == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        let request_uri = Uri::parse_str(&format!("sip:{callee}@{host}:{port}{tparam}")).ok()?;
        let from = name_addr(&format!("<sip:{caller}@{}>", self.public_host))?;
        let to = name_addr(&format!("<sip:{callee}@{host}>"))?;
        let credentials = match (&trunk.username, &trunk.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        };
        Some(ep.invite(
            OutgoingInvite {
                request_uri,
                from,
                to,
                destination,
                transport,
                body,
                max_forwards,
                credentials,
            },
            now,
        ))
    }

    /// Builds the SDP answer for A from B's answer (or early answer), and
    /// says where B's media goes.
    fn answer_for_a(
        &self,
        call: &mut Call,
        b_answer: &Bytes,
    ) -> Option<(Bytes, Option<SocketAddr>)> {
        let b_sdp = parse_sdp(b_answer)?;
        let b_offer = call.b_offer.as_ref()?;
        let mut negotiated = sdp::check_answer(b_offer, &b_sdp).ok()?;
        call.codec = negotiated
            .streams
            .iter()
            .find(|s| !s.rejected)
            .and_then(|s| s.codec.as_ref())
            .map(|c| c.name.clone());
        let a_offer = call.a_offer.as_ref()?;
        let mut answer = if call.transcoding {
            // A is answered from A's own offer with what we can transcode.
            let codecs = answerable_codecs(&call.inbound_codecs);
            let caps =
                sdp::LocalCapabilities::new(call.origin_a.clone(), self.media_ip, codecs, &[1]);
            sdp::answer(a_offer, &caps).ok()?
        } else {
            // B may have picked an AMR payload-mode twin: A is answered in A's
            // own mode (its original payload type), the relay converts.
            for stream in &mut negotiated.streams {
                let twin_of = stream
                    .codec
                    .as_ref()
                    .and_then(|c| call.amr_twins.iter().find(|(t, _)| *t == c.payload_type))
                    .map(|(_, original)| *original);
                if let Some(original) = twin_of {
                    stream.codec = a_offer
                        .media
                        .iter()
                        .find_map(|m| m.codec(original).filter(|_| m.media == "audio"));
                }
            }
            let caps =
                sdp::LocalCapabilities::from_negotiated(call.origin_a.clone(), &negotiated).ok()?;
            sdp::answer(a_offer, &caps).ok()?
        };
        call.anchor(Side::A, &mut answer, self.media_ip);
        call.origin_a.sess_version = call.origin_a.sess_version.wrapping_add(1);
        // B's answer names the one format B will use first (RFC 3264 §6.1).
        call.formats = Some((leg_format(&answer), leg_format(&b_sdp)));
        Some((answer.to_bytes(), b_sdp.audio_destination()))
    }

    async fn progress(&mut self, ep: &mut Endpoint, leg: LegId, resp: Response, now: Instant) {
        let Some(&(id, Side::B)) = self.legs.get(&leg) else {
            return;
        };
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        let body = if resp.body.is_empty() {
            Bytes::new()
        } else {
            // Early media: answer A from B's early SDP; if it doesn't check, ring without it.
            match self.answer_for_a(&mut call, &resp.body) {
                Some((answer, b_remote)) => {
                    media_update(&mut call, Side::B, b_remote);
                    answer
                }
                None => Bytes::new(),
            }
        };
        self.calls.insert(id, call);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.ring_ms.is_none() {
            call.ring_ms = Some(now_ms());
            self.cdr.ringing(&call.session_id);
        }
        let status = if resp.status == 183 && body.is_empty() {
            180
        } else {
            resp.status
        };
        ep.respond(call.a, status, body, now);
    }

    async fn answered(&mut self, ep: &mut Endpoint, leg: LegId, resp: Response, now: Instant) {
        let Some(&(id, Side::B)) = self.legs.get(&leg) else {
            ep.bye(leg, now);
            return;
        };
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.answered_call(ep, &mut call, leg, resp, now);
        self.calls.insert(id, call);
    }

    fn answered_call(
        &self,
        ep: &mut Endpoint,
        call: &mut Call,
        leg: LegId,
        resp: Response,
        now: Instant,
    ) {
        if !call.a_open {
            ep.bye(leg, now);
            return;
        }
        if call.b_offer.is_none() {
            // Late offer: B's 2xx carries the offer; A gets it filtered in our
            // 2xx and answers in its ACK.
            let allowed: Vec<&str> = call.allowed.iter().map(String::as_str).collect();
            let offers = parse_sdp(&resp.body).and_then(|b| {
                let mut to_a = sdp::filter_offer(&b, &allowed).ok()?;
                to_a.set_origin(call.origin_a.clone());
                call.anchor(Side::A, &mut to_a, self.media_ip);
                Some((b, to_a))
            });
            match offers {
                Some((b_offer, to_a)) => {
                    call.answered = true;
                    call.answer_ms = Some(now_ms());
                    self.cdr.answered(&call.session_id);
                    media_update(call, Side::B, b_offer.audio_destination());
                    ep.respond(call.a, 200, to_a.to_bytes(), now);
                    call.late_offer = Some((b_offer, to_a));
                }
                None => {
                    call.outcome = Some(Outcome::Failed);
                    ep.bye(leg, now);
                    ep.respond(call.a, 488, Bytes::new(), now);
                }
            }
            return;
        }
        match self.answer_for_a(call, &resp.body) {
            Some((answer, b_remote)) => {
                call.answered = true;
                call.answer_ms = Some(now_ms());
                self.cdr.answered(&call.session_id);
                media_update(call, Side::B, b_remote);
                ep.respond(call.a, 200, answer, now);
            }
            None => {
                // B answered with SDP we did not offer: end B, fail A.
                call.outcome = Some(Outcome::Failed);
                ep.bye(leg, now);
                ep.respond(call.a, 488, Bytes::new(), now);
            }
        }
    }

    /// A's ACK: for a late offer it carries the answer B's ACK must carry.
    async fn confirmed(&mut self, ep: &mut Endpoint, leg: LegId, body: &Bytes, now: Instant) {
        let Some(&(id, Side::A)) = self.legs.get(&leg) else {
            return;
        };
        let media_ip = self.media_ip;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let (Some((b_offer, to_a)), Some(b)) = (call.late_offer.take(), call.b) else {
            return;
        };
        let a_answer = parse_sdp(body);
        let answer = a_answer
            .as_ref()
            .and_then(|a| sdp::check_answer(&to_a, a).ok())
            .and_then(|n| sdp::LocalCapabilities::from_negotiated(call.origin_b.clone(), &n).ok())
            .and_then(|caps| sdp::answer(&b_offer, &caps).ok());
        match answer {
            Some(mut answer) => {
                let a_remote = a_answer.as_ref().and_then(|a| a.audio_destination());
                media_update(call, Side::A, a_remote);
                call.anchor(Side::B, &mut answer, media_ip);
                ep.ack(b, answer.to_bytes());
            }
            None => {
                // No usable answer: B still gets its ACK (bye() sends it), then both end.
                call.outcome = Some(Outcome::Failed);
                ep.bye(b, now);
                ep.bye(leg, now);
            }
        }
    }

    fn failed(&mut self, ep: &mut Endpoint, leg: LegId, status: u16, now: Instant) {
        let Some(&(id, side)) = self.legs.get(&leg) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if side != Side::B {
            return;
        }
        call.sip_status = Some(status);
        // Trunk-side failures towards the caller (OPERATIONS.md): unreachable
        // is 503, timeout 408; a challenge we could not answer is our
        // problem, not the caller's, so it is not passed on.
        let to_a = match status {
            401 | 407 => 503,
            300..=399 => 480,
            s => s,
        };
        call.outcome.get_or_insert(match status {
            408 | 503 | 500..=599 => Outcome::Failed,
            487 => Outcome::Cancelled,
            _ => Outcome::Rejected,
        });
        if call.a_open {
            ep.respond(call.a, to_a, Bytes::new(), now);
        }
    }

    fn hangup_other(&mut self, ep: &mut Endpoint, leg: LegId, outcome: Outcome, now: Instant) {
        let Some(&(id, side)) = self.legs.get(&leg) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let outcome = if call.answered {
            Outcome::Answered
        } else {
            outcome
        };
        call.outcome.get_or_insert(outcome);
        let other = match side {
            Side::A => call.b,
            Side::B => Some(call.a),
        };
        if let Some(other) = other {
            ep.hangup(other, now);
        }
    }

    async fn in_dialog(
        &mut self,
        ep: &mut Endpoint,
        leg: LegId,
        txn: ServerTxnId,
        req: Request,
        now: Instant,
    ) {
        let Some(&(id, side)) = self.legs.get(&leg) else {
            ep.respond_request(txn, 481, None, Bytes::new(), now);
            return;
        };
        let media_ip = self.media_ip;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let other = match side {
            Side::A => call.b,
            Side::B => Some(call.a),
        };
        let Some(other) = other else {
            ep.respond_request(txn, 491, None, Bytes::new(), now);
            return;
        };
        match req.method {
            Method::Invite => {
                // re-INVITE (hold, codec change): offer/answer across the bridge.
                let offer = parse_sdp(&req.body);
                let allowed: Vec<&str> = call.allowed.iter().map(String::as_str).collect();
                let relayed_offer = offer
                    .as_ref()
                    .and_then(|o| sdp::filter_offer(o, &allowed).ok())
                    .map(|mut o| {
                        let origin = match side {
                            Side::A => &mut call.origin_b,
                            Side::B => &mut call.origin_a,
                        };
                        origin.sess_version = origin.sess_version.wrapping_add(1);
                        o.set_origin(origin.clone());
                        o
                    });
                if offer.is_some() && relayed_offer.is_none() {
                    ep.respond_request(txn, 488, None, Bytes::new(), now);
                    return;
                }
                let mut relayed_offer = relayed_offer;
                if let Some(o) = offer.as_ref() {
                    // The offerer's new address (or hold) applies at once.
                    media_update(call, side, o.audio_destination());
                }
                if let Some(o) = relayed_offer.as_mut() {
                    call.anchor(side.other(), o, media_ip);
                }
                let body = relayed_offer
                    .as_ref()
                    .map(|o| o.to_bytes())
                    .unwrap_or_default();
                let ct = relayed_offer.as_ref().map(|_| "application/sdp");
                match ep.request(other, Method::Invite, ct, body, now) {
                    Some(c) => {
                        call.relayed.insert(
                            c,
                            Relayed {
                                server: txn,
                                from: side,
                                offer: relayed_offer,
                                original_offer: offer,
                            },
                        );
                    }
                    None => ep.respond_request(txn, 500, None, Bytes::new(), now),
                }
            }
            Method::Info => {
                let ct = req.content_type();
                match ep.request(other, Method::Info, ct.as_deref(), req.body.clone(), now) {
                    Some(c) => {
                        call.relayed.insert(
                            c,
                            Relayed {
                                server: txn,
                                from: side,
                                offer: None,
                                original_offer: None,
                            },
                        );
                    }
                    None => ep.respond_request(txn, 500, None, Bytes::new(), now),
                }
            }
            Method::Options => ep.respond_request(txn, 200, None, Bytes::new(), now),
            _ => ep.respond_request(txn, 501, None, Bytes::new(), now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn request_done(
        &mut self,
        ep: &mut Endpoint,
        txn: ClientTxnId,
        leg: Option<LegId>,
        method: Method,
        status: u16,
        response: Option<Box<Response>>,
        now: Instant,
    ) {
        if leg.is_none() {
            // Keep-alive or registration answer.
            for t in &mut self.trunks {
                if t.options_pending == Some(txn) {
                    t.options_pending = None;
                    // Any answer, even 4xx/5xx, proves the trunk is there (RFC 3261 §11);
                    // only a local 408/503 (no response at all) marks it down.
                    t.up = response.is_some();
                }
                if t.pending == Some(txn) {
                    t.pending = None;
                    if (200..300).contains(&status) {
                        let granted = response
                            .as_ref()
                            .and_then(|r| r.headers.get(&HeaderName::Expires))
                            .and_then(|e| e.trim().parse::<u64>().ok());
                        if let Some(secs) = granted.filter(|s| *s > 0) {
                            t.next_register = Some(now + Duration::from_secs(secs).mul_f32(0.8));
                        }
                    } else {
                        // Failed registration: retry in a minute.
                        t.next_register = Some(now + Duration::from_secs(60));
                    }
                }
            }
            return;
        }
        let Some(leg) = leg else { return };
        let Some(&(id, _)) = self.legs.get(&leg) else {
            return;
        };
        let media_ip = self.media_ip;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(relayed) = call.relayed.remove(&txn) else {
            return;
        };
        let mut body = Bytes::new();
        let mut ct = None;
        if (200..300).contains(&status) && method == Method::Invite {
            if let (Some(offer), Some(original), Some(resp)) =
                (&relayed.offer, &relayed.original_offer, &response)
            {
                let origin = match relayed.from {
                    Side::A => call.origin_a.clone(),
                    Side::B => call.origin_b.clone(),
                };
                let their_answer = parse_sdp(&resp.body);
                let answer = their_answer
                    .as_ref()
                    .and_then(|a| sdp::check_answer(offer, a).ok())
                    .and_then(|n| sdp::LocalCapabilities::from_negotiated(origin, &n).ok())
                    .and_then(|caps| sdp::answer(original, &caps).ok());
                match answer {
                    Some(mut a) => {
                        let remote = their_answer.as_ref().and_then(|t| t.audio_destination());
                        media_update(call, relayed.from.other(), remote);
                        call.anchor(relayed.from, &mut a, media_ip);
                        body = a.to_bytes();
                        ct = Some("application/sdp");
                    }
                    None => {
                        ep.respond_request(relayed.server, 488, None, Bytes::new(), now);
                        return;
                    }
                }
            }
        }
        ep.respond_request(relayed.server, status, ct, body, now);
    }

    async fn leg_closed(&mut self, leg: LegId) {
        let Some((id, side)) = self.legs.remove(&leg) else {
            return;
        };
        let done = match self.calls.get_mut(&id) {
            Some(call) => {
                match side {
                    Side::A => call.a_open = false,
                    Side::B => call.b_open = false,
                }
                !call.a_open && (!call.b_open || call.b.is_none())
            }
            None => false,
        };
        if done {
            if let Some(mut call) = self.calls.remove(&id) {
                let outcome = call.outcome.unwrap_or(if call.answered {
                    Outcome::Answered
                } else {
                    Outcome::Failed
                });
                let codecs = match &call.formats {
                    Some((a, b)) => codecs_label(&[("a", a.as_ref()), ("b", b.as_ref())]),
                    None => String::new(),
                };
                let record = self.end_record(
                    call.session_id.clone(),
                    None,
                    Ending {
                        ring_ms: call.ring_ms,
                        answer_ms: call.answer_ms,
                        outcome: outcome.record(),
                        sip_status: call.sip_status,
                        codecs,
                        trunk: None,
                    },
                );
                // The media task closes the legs after what it still has
                // queued, then writes the record.
                match call.media.take() {
                    Some(m) => m.send(MediaOp::Release(Box::new(record))),
                    None => record(None),
                }
            }
        }
        self.metrics.calls_active.set(self.calls.len() as i64);
    }

    /// Closes a relay leg now (set-up failures); see [`release_media`].
    async fn release_media(&self, leg: LegHandle) -> Option<media::relay::LegCounters> {
        release_media(&self.media, &self.metrics, leg).await
    }

    /// What the relay saw: a key press (RFC 4733) on a leg. Where the other
    /// side of a transit call negotiated no telephone-event the relay could
    /// not forward it, so it goes there as SIP INFO (application/dtmf-relay).
    pub fn handle_media_event(&mut self, ep: &mut Endpoint, ev: MediaEvent, now: Instant) {
        let MediaEvent::Dtmf {
            leg,
            digit,
            duration_ms,
        } = ev
        else {
            return;
        };
        if self.app_dtmf_event(ep, leg, digit, duration_ms, now) {
            return;
        }
        for call in self.calls.values_mut() {
            let side = if call.media.as_ref().is_some_and(|m| m.a_key == leg) {
                Side::A
            } else if call.media.as_ref().is_some_and(|m| m.b_key == leg) {
                Side::B
            } else {
                continue;
            };
            let other_format = call.formats.as_ref().and_then(|(a, b)| match side {
                Side::A => b.as_ref(),
                Side::B => a.as_ref(),
            });
            if other_format.is_some_and(|f| f.dtmf_payload_type.is_some()) {
                return; // forwarded as RFC 4733 by the relay
            }
            let target = match side {
                Side::A => call.b,
                Side::B => Some(call.a),
            };
            if let Some(target) = target {
                send_dtmf_info(ep, target, digit, duration_ms, now);
            }
            return;
        }
    }

    /// Stop taking calls and hang up every live one (graceful shutdown).
    pub async fn shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        self.shutdown_p2p().await;
        self.accepting = false;
        self.shutdown_app_calls(ep, now);
        self.shutdown_inbound(ep, now);
        self.shutdown_callbacks(ep, now);
        let legs: Vec<LegId> = self
            .legs
            .keys()
            .chain(self.pending.keys())
            .copied()
            .collect();
        for call in self.calls.values_mut() {
            call.outcome.get_or_insert(Outcome::Shutdown);
        }
        for leg in legs {
            ep.hangup(leg, now);
        }
    }
}

/// The digit and duration (ms) of an `application/dtmf-relay` body
/// (`Signal=5\r\nDuration=160\r\n`, the de-facto format of SIP INFO DTMF).
pub(crate) fn dtmf_relay_digit(body: &[u8]) -> Option<(char, u32)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut digit = None;
    let mut duration = app::DTMF_DURATION_MS;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "signal" => {
                let mut chars = value.chars();
                let c = chars.next()?.to_ascii_uppercase();
                if chars.next().is_some() || media::payload::dtmf::digit_to_event(c).is_none() {
                    return None;
                }
                digit = Some(c);
            }
            "duration" => {
                duration = value
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (40..=5000).contains(d))
                    .unwrap_or(app::DTMF_DURATION_MS);
            }
            _ => {}
        }
    }
    digit.map(|d| (d, duration))
}

/// Sends one key press as SIP INFO in the dialog of `leg`.
pub(crate) fn send_dtmf_info(
    ep: &mut Endpoint,
    leg: LegId,
    digit: char,
    duration_ms: u32,
    now: Instant,
) -> Option<ClientTxnId> {
    let body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n");
    ep.request(
        leg,
        Method::Info,
        Some("application/dtmf-relay"),
        Bytes::from(body),
        now,
    )
}

/// How a call ended, for its record.
struct Ending {
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    outcome: store::Outcome,
    sip_status: Option<u16>,
    codecs: String,
    trunk: Option<String>,
}

/// Closes a call's two relay legs (adding what they carried to the
/// metrics) and returns the call's final quality figures, reading each
/// leg's counters once.
async fn release_pair(
    media: &MediaDriver,
    metrics: &Metrics,
    a: Option<LegHandle>,
    b: Option<LegHandle>,
) -> Option<CallStats> {
    // Both legs at once: their control messages travel together.
    let (ca, cb) = tokio::join!(
        async {
            match a {
                Some(leg) => release_media(media, metrics, leg).await,
                None => None,
            }
        },
        async {
            match b {
                Some(leg) => release_media(media, metrics, leg).await,
                None => None,
            }
        }
    );
    ca.map(|ca| CallStats::from_legs(&ca, cb.as_ref()))
}

/// Closes a relay leg, adding what it carried to the metrics; returns its
/// last counters.
async fn release_media(
    media: &MediaDriver,
    metrics: &Metrics,
    leg: LegHandle,
) -> Option<media::relay::LegCounters> {
    let counters = media.counters(&leg).await.ok();
    if let Some(c) = &counters {
        count_relayed(metrics, c);
    }
    if let Err(e) = media.close_leg(leg).await {
        tracing::warn!(error = %e, "relay leg close failed");
    }
    metrics.media_ports_free.set(media.ports_available() as i64);
    counters
}

/// Adds what a closing leg carried to the metrics.
fn count_relayed(metrics: &Metrics, c: &media::relay::LegCounters) {
    metrics.rtp_packets_relayed_total.add(c.rtp_out);
    metrics.rtp_bytes_relayed_total.add(c.bytes_out);
    for (reason, n) in c.drops() {
        if n > 0 {
            metrics.rtp_packets_dropped_total.with(&[reason]).add(n);
        }
    }
}

/// `app=AMR trunk=PCMA`: the encodings each leg used, for the record.
fn codecs_label(legs: &[(&str, Option<&LegFormat>)]) -> String {
    legs.iter()
        .map(|(name, f)| {
            let enc = f.map_or("-".to_owned(), |f| app::encoding_name(f.encoding));
            format!("{name}={enc}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where an INVITE to a trunk goes.
struct TrunkTarget<'a> {
    trunk: &'a Trunk,
    destination: SocketAddr,
    transport: Transport,
}

/// The leg an endpoint event is about.
fn event_leg(ev: &Event) -> Option<LegId> {
    match ev {
        Event::IncomingInvite { .. } => None,
        Event::InDialogRequest { leg, .. }
        | Event::Confirmed { leg, .. }
        | Event::AckTimeout { leg }
        | Event::Bye { leg }
        | Event::Cancelled { leg }
        | Event::Progress { leg, .. }
        | Event::Answered { leg, .. }
        | Event::Failed { leg, .. }
        | Event::LegClosed { leg } => Some(*leg),
        Event::RequestDone { leg, .. } => *leg,
    }
}

/// The payload format of an SDP's first audio stream: its first voice codec,
/// and telephone-event if present.
fn leg_format(sdp: &SessionDescription) -> Option<LegFormat> {
    let m = sdp
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)?;
    let codecs = m.codecs();
    let voice = codecs
        .iter()
        .find(|c| !c.is_telephone_event() && !c.is_comfort_noise())?;
    Some(LegFormat {
        payload_type: voice.payload_type,
        encoding: Encoding::from_sdp(&voice.name, voice.clock_rate, voice.fmtp.as_deref()),
        dtmf_payload_type: codecs
            .iter()
            .find(|c| c.is_telephone_event())
            .map(|c| c.payload_type),
    })
}

/// Transcoding is possible when A offers a codec we can decode (and A's
/// trunk allows it) and B's trunk lists a codec we can encode.
fn can_transcode(a_offer: &SessionDescription, inbound: &Trunk, outbound: &Trunk) -> bool {
    const TRANSCODABLE: [&str; 5] = ["PCMA", "PCMU", "AMR", "AMR-WB", "opus"];
    let supported = |name: &str| TRANSCODABLE.iter().any(|t| t.eq_ignore_ascii_case(name));
    let a_side = a_offer
        .media
        .iter()
        .filter(|m| m.media == "audio" && m.port != 0)
        .flat_map(|m| m.codecs())
        .any(|c| {
            supported(&c.name)
                && inbound
                    .codecs
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(&c.name))
        });
    a_side && outbound.codecs.iter().any(|c| supported(c))
}

/// A fresh offer's codecs for a trunk, in its configured order (AMR offered
/// bandwidth-efficient; `add_amr_mode_twins` adds octet-aligned).
fn trunk_codecs(trunk: &Trunk) -> Vec<sdp::CodecSpec> {
    trunk
        .codecs
        .iter()
        .filter_map(|name| match name.to_ascii_lowercase().as_str() {
            "pcma" => Some(sdp::CodecSpec::pcma()),
            "pcmu" => Some(sdp::CodecSpec::pcmu()),
            "amr" => Some(sdp::CodecSpec::amr(96, None)),
            "amr-wb" => Some(sdp::CodecSpec::amr_wb(98, None)),
            "opus" => Some(sdp::CodecSpec::opus(100)),
            "telephone-event" => Some(sdp::CodecSpec::telephone_event(101, 8000)),
            _ => None,
        })
        .collect()
}

/// What we can answer A with when transcoding, limited to A's trunk's list
/// (payload types come from A's offer).
fn answerable_codecs(allowed: &[String]) -> Vec<sdp::CodecSpec> {
    let all = [
        sdp::CodecSpec::pcma(),
        sdp::CodecSpec::pcmu(),
        sdp::CodecSpec::amr(0, Some("octet-align=1")),
        sdp::CodecSpec::amr(0, None),
        sdp::CodecSpec::amr_wb(0, Some("octet-align=1")),
        sdp::CodecSpec::amr_wb(0, None),
        sdp::CodecSpec::opus(0),
        sdp::CodecSpec::telephone_event(0, 8000),
    ];
    all.into_iter()
        .filter(|c| allowed.iter().any(|a| a.eq_ignore_ascii_case(&c.name)))
        .collect()
}

/// The codecs both trunks of a call allow, in the outbound trunk's order.
fn allowed_codecs<'a>(inbound: &Trunk, outbound: &'a Trunk) -> Vec<&'a str> {
    outbound
        .codecs
        .iter()
        .map(String::as_str)
        .filter(|c| inbound.codecs.iter().any(|i| i.eq_ignore_ascii_case(c)))
        .collect()
}

fn name_addr(s: &str) -> Option<NameAddr> {
    let b = sip::ByteStr::from(s);
    NameAddr::parse(&b, &b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            dtmf_relay_digit(b"Signal=5\r\nDuration=160\r\n"),
            Some(('5', 160))
        );
        assert_eq!(
            dtmf_relay_digit(b"signal= #\nduration=9999\n"),
            Some(('#', 100))
        );
        assert_eq!(dtmf_relay_digit(b"Signal=a\r\n"), Some(('A', 100)));
        assert_eq!(dtmf_relay_digit(b"Signal=12\r\n"), None);
        assert_eq!(dtmf_relay_digit(b"Signal=x\r\n"), None);
        assert_eq!(dtmf_relay_digit(b"Duration=100\r\n"), None);
        assert_eq!(dtmf_relay_digit(&[0xff, 0xfe]), None);
    }

    #[test]
    fn dialled_number_strips_parameters_and_separators() {
        let uri =
            Uri::parse_str("sip:+49-30-1234;phone-context=example.com@trunk.example").unwrap();
        assert_eq!(dialled_number(&uri).as_deref(), Some("+49301234"));
        let uri = Uri::parse_str("tel:+1.555.0100").unwrap();
        assert_eq!(dialled_number(&uri).as_deref(), Some("+15550100"));
        let uri = Uri::parse_str("sip:example.com").unwrap();
        assert_eq!(dialled_number(&uri), None);
    }
}
