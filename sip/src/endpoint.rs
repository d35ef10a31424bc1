//! The user agent core (RFC 3261 §8, §12–§15, §17–§18): matches messages to
//! transactions and dialogs, answers what a UA answers on its own, and hands
//! the rest to the transaction user (the call layer) as [`Event`]s.
//!
//! ```text
//!  handle_received(bytes) ─▶ parse ─▶ server/client transaction ─▶ dialog ─▶ poll_event()
//!  invite()/respond()/bye()/cancel()/request() ─▶ transaction ─▶ poll_transmit()
//!  handle_timeout(now)   ─▶ timers of every transaction and 2xx retransmitter
//! ```
//!
//! One `Endpoint` is driven by one task, so everything it emits leaves in the
//! order it was produced: a 180 can never overtake the 200 of the same
//! transaction (RFC 3261 §17.2.1).
//!
//! What the endpoint answers by itself: 100 Trying to INVITE (§8.2.6.1), 400
//! with a reason for malformed requests, 505, 501/405 with Allow, 416, 420
//! with Unsupported, 415 with Accept, 406, 483, 481 for unknown dialogs and
//! transactions, 500 for out-of-order CSeq (§12.2.2), OPTIONS (§11.2), 200 to
//! BYE and CANCEL, and 487 to a cancelled INVITE. It retransmits 2xx until the
//! ACK (§13.3.1.4), ACKs 2xx retransmissions (§13.2.2.4), answers digest
//! challenges (§22.2) and never passes a retransmitted request up twice.

use crate::auth::{Challenge, Credentials, DigestClient};
use crate::bytestr::ByteStr;
use crate::message::{
    parse_message, reason_phrase, CSeq, Core, HeaderName, Headers, Host, Message, Method, NameAddr,
    ParseErrorKind, Request, Response, SipUri, Uri, Via,
};
use crate::transaction::{
    ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, ServerInvite,
    ServerInviteState, ServerNonInvite, ServerNonInviteState, TimerConfig, TransactionEvent,
    Uas2xxRetransmitter,
};
use crate::transport::{Received, Transmit, Transport};
use bytes::Bytes;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Methods this UA implements (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
/// Bodies we understand.
pub const ACCEPT: &str = "application/sdp";

/// Counts what crosses the endpoint; the root crate turns it into metrics.
/// Methods are called on the endpoint's task and must be cheap.
pub trait Observer: Send + Sync {
    fn request(&self, _outbound: bool, _method: &str) {}
    fn response(&self, _outbound: bool, _cseq_method: &str, _status: u16) {}
    /// `outbound`: re-sent by our timers; otherwise a duplicate we absorbed.
    fn retransmission(&self, _outbound: bool) {}
    fn parse_error(&self, _reason: &'static str) {}
}

/// An observer that counts nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl Observer for NoObserver {}

#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    /// Host (and port) written into Via and Contact: the public address.
    pub public_host: String,
    pub public_port: u16,
    pub user_agent: String,
}

/// A dialog usage the endpoint keeps for the call layer (one per call leg).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// A server transaction waiting for the TU's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerTxnId(u64);

/// A client transaction the TU started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientTxnId(u64);

#[derive(Debug)]
pub enum Event {
    /// A new INVITE outside any dialog; 100 Trying has been sent. Answer with
    /// [`Endpoint::respond`].
    IncomingInvite {
        leg: LegId,
        request: Box<Request>,
        source: SocketAddr,
        transport: Transport,
    },
    /// A request inside a dialog (re-INVITE, INFO, OPTIONS, UPDATE); answer
    /// with [`Endpoint::respond_request`].
    InDialogRequest {
        leg: LegId,
        txn: ServerTxnId,
        request: Box<Request>,
    },
    /// The ACK for our 2xx arrived; `body` is the SDP answer when our 2xx
    /// carried the offer (late offer, RFC 3261 §13.2.1).
    Confirmed { leg: LegId, body: Bytes },
    /// No ACK for our 2xx within 64·T1: hang up (§13.3.1.4).
    AckTimeout { leg: LegId },
    /// The peer hung up with BYE (answered 200).
    Bye { leg: LegId },
    /// The caller cancelled our pending INVITE (200 and 487 sent).
    Cancelled { leg: LegId },
    /// A provisional response to our INVITE.
    Progress { leg: LegId, response: Box<Response> },
    /// A 2xx to our INVITE; the ACK has been sent.
    Answered { leg: LegId, response: Box<Response> },
    /// Our INVITE failed: a final non-2xx, or 408 (timeout) / 503 (transport)
    /// generated locally when `response` is `None`.
    Failed {
        leg: LegId,
        status: u16,
        response: Option<Box<Response>>,
    },
    /// The final answer to a request the TU sent with [`Endpoint::request`]
    /// or [`Endpoint::out_of_dialog`] (408 on timeout, 503 on transport error).
    RequestDone {
        txn: ClientTxnId,
        leg: Option<LegId>,
        method: Method,
        status: u16,
        response: Option<Box<Response>>,
    },
    /// The endpoint forgot this leg; nothing more will be said about it.
    LegClosed { leg: LegId },
}

/// What the TU needs to place a call (§8.1.1).
#[derive(Clone, Debug)]
pub struct OutgoingInvite {
    pub request_uri: Uri,
    pub from: NameAddr,
    pub to: NameAddr,
    pub destination: SocketAddr,
    pub transport: Transport,
    pub body: Bytes,
    pub max_forwards: u8,
    pub credentials: Option<Credentials>,
}

/// A request outside any dialog (OPTIONS keep-alive, REGISTER).
#[derive(Clone, Debug)]
pub struct OutgoingRequest {
    pub method: Method,
    pub request_uri: Uri,
    pub from: NameAddr,
    pub to: NameAddr,
    pub destination: SocketAddr,
    pub transport: Transport,
    pub headers: Vec<(HeaderName, String)>,
    pub credentials: Option<Credentials>,
    /// Reuse a Call-ID (a registration keeps one, §10.2).
    pub call_id: Option<String>,
    pub cseq: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Uac,
    Uas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegState {
    /// INVITE sent or received, no dialog yet (UAC) / no final yet (UAS).
    Pending,
    /// A 2xx was sent or received.
    Confirmed,
    /// BYE sent, waiting for its answer.
    Terminating,
}

#[derive(Debug)]
struct Leg {
    role: Role,
    state: LegState,
    call_id: ByteStr,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From (UAC) / To (UAS) without the tag, as written on the wire.
    local_uri: String,
    remote_uri: String,
    local_seq: u32,
    remote_seq: Option<u32>,
    remote_target: Option<Uri>,
    route_set: Vec<String>,
    transport: Transport,
    /// The flow the dialog started on; used when the target is not an IP literal.
    peer: SocketAddr,
    // UAC
    invite: Option<Request>,
    invite_txn: Option<u64>,
    invite_destination: SocketAddr,
    credentials: Option<Credentials>,
    auth_attempts: u8,
    provisional_seen: bool,
    cancel_pending: bool,
    ack_for_2xx: Option<Bytes>,
    /// Our INVITE had no offer, so the 2xx carries one and the ACK must carry
    /// the answer: the TU sends it with [`Endpoint::ack`].
    ack_deferred: bool,
    /// CSeq number of the INVITE whose 2xx awaits that ACK.
    ack_seq: Option<u32>,
    // UAS
    server_invite: Option<u64>,
    uas_2xx: Option<Uas2xxRetransmitter>,
}

/// The four transaction kinds of RFC 3261 §17, named as the RFC names them.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Fsm {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct Txn {
    fsm: Fsm,
    key: TxKey,
    transport: Transport,
    destination: SocketAddr,
    leg: Option<LegId>,
    method: Method,
    /// For server transactions: the request, to build responses from.
    request: Option<Request>,
    /// For client transactions the TU asked for (`RequestDone` goes out).
    tu_visible: bool,
    credentials: Option<Credentials>,
    auth_attempts: u8,
    /// The deadline last pushed on the timer heap, so unchanged timers are not pushed again.
    armed: Option<Instant>,
    /// The driver could not deliver: the TU hears 503, not 408 (§8.1.3.1).
    transport_failed: bool,
}

impl Txn {
    /// A transaction with no leg, not visible to the TU, no credentials.
    fn new(
        fsm: Fsm,
        key: TxKey,
        transport: Transport,
        destination: SocketAddr,
        request: Request,
    ) -> Txn {
        Txn {
            fsm,
            key,
            transport,
            destination,
            leg: None,
            method: request.method.clone(),
            request: Some(request),
            tu_visible: false,
            credentials: None,
            auth_attempts: 0,
            armed: None,
            transport_failed: false,
        }
    }
}

/// Transaction matching key (§17.1.3, §17.2.3, and RFC 2543 fallback).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TxKey {
    Client {
        branch: String,
        method: String,
    },
    Server {
        branch: String,
        sent_by: String,
        method: String,
    },
    Server2543 {
        call_id: String,
        from_tag: String,
        cseq: u32,
        via: String,
        method: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Txn(u64),
    Leg(LegId),
}

pub struct Endpoint {
    cfg: EndpointConfig,
    observer: Arc<dyn Observer>,
    txns: HashMap<u64, Txn>,
    tx_index: HashMap<TxKey, u64>,
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, local tag, remote tag) → leg, for confirmed and early dialogs.
    dialogs: HashMap<(String, String, String), LegId>,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Transactions touched since their output was last drained: only these
    /// are looked at, so the cost of a message does not grow with the load.
    dirty: Vec<u64>,
    next_id: u64,
    digest: DigestClient,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("transactions", &self.txns.len())
            .field("legs", &self.legs.len())
            .finish()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut raw = [0u8; 32];
    let raw = raw.get_mut(..bytes.min(32)).unwrap_or_default();
    rand::thread_rng().fill(raw);
    hex::encode(raw)
}

/// The method a transaction is keyed under: ACK and CANCEL are matched
/// against the INVITE's transaction by the caller, so only INVITE vs the rest.
fn method_key(m: &Method) -> String {
    match m {
        Method::Ack => "INVITE".to_owned(),
        other => other.as_str().to_owned(),
    }
}

fn server_key(core: &Core, method: &Method) -> TxKey {
    match core.rfc3261_branch() {
        Some(branch) => TxKey::Server {
            branch: branch.to_owned(),
            sent_by: format!("{}:{}", core.via.host, core.via.port.unwrap_or(5060)),
            method: method_key(method),
        },
        None => TxKey::Server2543 {
            call_id: core.call_id.to_string(),
            from_tag: core.from.tag().map(|t| t.to_string()).unwrap_or_default(),
            cseq: core.cseq.seq,
            via: core.via.to_string(),
            method: method_key(method),
        },
    }
}

/// Where a URI points, when its host is an IP literal.
fn uri_socket(uri: &Uri) -> Option<SocketAddr> {
    let sip = uri.as_sip()?;
    let ip = sip.host.ip()?;
    Some(SocketAddr::new(ip, sip.port.unwrap_or(5060)))
}

/// The name-addr text without its tag, to reuse as From/To.
fn without_tag(na: &NameAddr) -> String {
    let mut na = na.clone();
    na.params.remove("tag");
    na.to_string()
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig, observer: Arc<dyn Observer>) -> Self {
        Self {
            cfg,
            observer,
            txns: HashMap::new(),
            tx_index: HashMap::new(),
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            next_id: 1,
            digest: DigestClient::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Live transactions (client and server).
    pub fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// Live dialog usages (legs).
    pub fn dialog_count(&self) -> usize {
        self.legs.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn via_value(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            transport.as_str(),
            self.cfg.public_host,
            self.cfg.public_port,
            branch
        )
    }

    fn contact_value(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{}:{}>", self.cfg.public_host, self.cfg.public_port),
            Transport::Tcp => format!(
                "<sip:{}:{};transport=tcp>",
                self.cfg.public_host, self.cfg.public_port
            ),
        }
    }

    fn send(&mut self, transport: Transport, destination: SocketAddr, payload: Bytes) {
        self.transmits.push_back(Transmit {
            transport,
            destination,
            payload,
        });
    }

    fn arm(&mut self, target: TimerRef, at: Option<Instant>) {
        if let Some(at) = at {
            self.timers.push(Reverse((at, target)));
        }
    }

    // ------------------------------------------------------------------
    // Input
    // ------------------------------------------------------------------

    /// One message from a driver.
    pub fn handle_received(&mut self, received: Received, now: Instant) {
        let datagram = !received.transport.is_reliable();
        match parse_message(received.payload, datagram) {
            Ok(Message::Request(req)) => {
                self.observer.request(false, req.method.as_str());
                self.handle_request(req, received.source, received.transport, now);
            }
            Ok(Message::Response(resp)) => {
                self.observer
                    .response(false, resp.core.cseq.method.as_str(), resp.status);
                self.handle_response(resp, now);
            }
            Err(err) => {
                self.observer.parse_error(err.kind.label());
                // Malformed responses are dropped (§16.7/RFC 4475 §3.1.2.19);
                // malformed requests are answered if we can address the answer.
                if let Some(partial) = err.request {
                    if partial.method == Some(Method::Ack) {
                        return;
                    }
                    let status = match err.kind {
                        ParseErrorKind::UnsupportedVersion => 505,
                        _ => 400,
                    };
                    let reason = match status {
                        505 => reason_phrase(505).to_owned(),
                        _ => format!("Bad Request - {}", err.kind),
                    };
                    self.stateless_reply(
                        &partial.headers,
                        status,
                        &reason,
                        received.source,
                        received.transport,
                    );
                }
            }
        }
        self.process_fsms();
    }

    /// Answers a request we could not parse, copying the headers §8.2.6.2
    /// names as they arrived (we cannot rely on their syntax).
    fn stateless_reply(
        &mut self,
        headers: &Headers,
        status: u16,
        reason: &str,
        source: SocketAddr,
        transport: Transport,
    ) {
        let mut out = Headers::new();
        let mut vias = headers.values(&HeaderName::Via);
        let Some(top) = vias.next() else {
            return; // no Via: nowhere to send an answer
        };
        let parsed = Via::parse(&top, &top).ok();
        let destination = parsed
            .as_ref()
            .map_or(source, |v| self.response_destination(v, source, transport));
        let top = parsed.map_or_else(
            || top.to_string(),
            |v| stamp_via(v, destination).to_string(),
        );
        out.push(HeaderName::Via, top);
        for v in vias {
            out.push(HeaderName::Via, v);
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            for v in headers.get_all(&name) {
                out.push(name.clone(), v.clone());
            }
        }
        out.push(HeaderName::Server, self.cfg.user_agent.clone());
        let mut text = format!("SIP/2.0 {status} {}\r\n", reason.replace(['\r', '\n'], " "));
        for h in out.iter() {
            text.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.observer.response(true, "", status);
        self.send(transport, destination, Bytes::from(text));
    }

    fn handle_request(
        &mut self,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        if req.method == Method::Ack {
            self.handle_ack(req, now);
            return;
        }
        let key = server_key(&req.core, &req.method);
        if let Some(&id) = self.tx_index.get(&key) {
            // A retransmission: answered from the transaction, never passed up.
            if let Some(txn) = self.txns.get_mut(&id) {
                match &mut txn.fsm {
                    Fsm::ServerInvite(f) => f.handle_request_retransmission(now),
                    Fsm::ServerNonInvite(f) => f.handle_request_retransmission(now),
                    _ => {}
                }
                self.dirty.push(id);
                self.observer.retransmission(false);
            }
            return;
        }
        if req.method == Method::Cancel {
            self.handle_cancel(req, source, transport, now);
            return;
        }
        let reliable = transport.is_reliable();
        let fsm = if req.method == Method::Invite {
            Fsm::ServerInvite(ServerInvite::new(reliable, &self.cfg.timers, now))
        } else {
            Fsm::ServerNonInvite(ServerNonInvite::new(reliable, &self.cfg.timers, now))
        };
        let destination = self.response_destination(&req.core.via, source, transport);
        let id = self.register(Txn::new(fsm, key, transport, destination, req.clone()));

        if let Some((status, extra)) = self.uas_checks(&req) {
            self.reply(id, status, extra, Bytes::new(), now);
            return;
        }

        if req.core.to.tag().is_some() {
            self.in_dialog_request(id, req, now);
            return;
        }

        match req.method {
            Method::Invite => {
                let leg = LegId(self.next());
                let local_tag = random_hex(8);
                let remote_target = req
                    .headers
                    .values(&HeaderName::Contact)
                    .next()
                    .and_then(|c| NameAddr::parse(&c, &c).ok())
                    .map(|na| na.uri);
                let route_set = req
                    .headers
                    .values(&HeaderName::RecordRoute)
                    .map(|r| r.to_string())
                    .collect();
                self.legs.insert(
                    leg,
                    Leg {
                        role: Role::Uas,
                        state: LegState::Pending,
                        call_id: req.core.call_id.clone(),
                        local_tag: local_tag.clone(),
                        remote_tag: req.core.from.tag().map(|t| t.to_string()),
                        local_uri: without_tag(&req.core.to),
                        remote_uri: without_tag(&req.core.from),
                        local_seq: rand::thread_rng().gen_range(1..1 << 20),
                        remote_seq: Some(req.core.cseq.seq),
                        remote_target,
                        route_set,
                        transport,
                        peer: source,
                        invite: None,
                        invite_txn: None,
                        invite_destination: source,
                        credentials: None,
                        auth_attempts: 0,
                        provisional_seen: false,
                        cancel_pending: false,
                        ack_for_2xx: None,
                        ack_deferred: false,
                        ack_seq: None,
                        server_invite: Some(id),
                        uas_2xx: None,
                    },
                );
                if let Some(txn) = self.txns.get_mut(&id) {
                    txn.leg = Some(leg);
                }
                // 100 Trying at once so the caller stops retransmitting (§8.2.6.1).
                self.reply(id, 100, Vec::new(), Bytes::new(), now);
                self.events.push_back(Event::IncomingInvite {
                    leg,
                    request: Box::new(req),
                    source,
                    transport,
                });
            }
            Method::Options => {
                let extra = vec![
                    (HeaderName::Allow, ALLOW.to_owned()),
                    (HeaderName::Accept, ACCEPT.to_owned()),
                    (HeaderName::Supported, String::new()),
                ];
                self.reply(id, 200, extra, Bytes::new(), now);
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(id, 481, Vec::new(), Bytes::new(), now);
            }
            _ => {
                self.reply(
                    id,
                    405,
                    vec![(HeaderName::Allow, ALLOW.to_owned())],
                    Bytes::new(),
                    now,
                );
            }
        }
    }

    /// The checks of §8.2.1–§8.2.4 in the order the RFC gives them.
    fn uas_checks(&self, req: &Request) -> Option<(u16, Vec<(HeaderName, String)>)> {
        let allow = || vec![(HeaderName::Allow, ALLOW.to_owned())];
        let implemented = matches!(
            req.method,
            Method::Invite | Method::Bye | Method::Cancel | Method::Options | Method::Info
        );
        if let Method::Other(_) = req.method {
            return Some((501, allow()));
        }
        if req.core.cseq.method != req.method {
            return Some((400, Vec::new()));
        }
        let in_dialog = req.core.to.tag().is_some();
        if !implemented && (!in_dialog || !matches!(req.method, Method::Update | Method::Prack)) {
            return Some((405, allow()));
        }
        if req.uri.as_sip().is_none()
            && !matches!(&req.uri, Uri::Other { scheme, .. } if scheme.eq_ignore_ascii_case("tel"))
        {
            return Some((416, Vec::new()));
        }
        // Extensions we support: none yet (§8.2.2.3).
        let required: Vec<String> = req
            .headers
            .values(&HeaderName::Require)
            .filter(|t| !t.is_empty())
            .map(|t| t.to_string())
            .collect();
        if !required.is_empty() && req.method != Method::Cancel {
            return Some((420, vec![(HeaderName::Unsupported, required.join(", "))]));
        }
        if matches!(req.method, Method::Invite) {
            if !req.body.is_empty() {
                let ct = req.content_type().unwrap_or_default();
                if ct != "application/sdp" {
                    return Some((415, vec![(HeaderName::Accept, ACCEPT.to_owned())]));
                }
            }
            if let Some(accept) = req.headers.get(&HeaderName::Accept) {
                let ok = accept
                    .split(',')
                    .map(|a| {
                        a.split(';')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .any(|a| {
                        a.is_empty() || a == "application/sdp" || a == "application/*" || a == "*/*"
                    });
                if !ok {
                    return Some((406, vec![(HeaderName::Accept, ACCEPT.to_owned())]));
                }
            }
            if !in_dialog && req.core.max_forwards == Some(0) {
                return Some((483, Vec::new()));
            }
        }
        None
    }

    fn in_dialog_request(&mut self, id: u64, req: Request, now: Instant) {
        let key = dialog_key(&req.core, Role::Uas);
        let Some(&leg_id) = self.dialogs.get(&key) else {
            self.reply(id, 481, Vec::new(), Bytes::new(), now);
            return;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            self.reply(id, 481, Vec::new(), Bytes::new(), now);
            return;
        };
        // §12.2.2: a lower CSeq than the last one is out of order.
        if leg.remote_seq.is_some_and(|s| req.core.cseq.seq <= s) && req.method != Method::Ack {
            self.reply(id, 500, Vec::new(), Bytes::new(), now);
            return;
        }
        leg.remote_seq = Some(req.core.cseq.seq);
        if let Some(txn) = self.txns.get_mut(&id) {
            txn.leg = Some(leg_id);
        }
        match req.method {
            Method::Bye => {
                self.reply(id, 200, Vec::new(), Bytes::new(), now);
                self.events.push_back(Event::Bye { leg: leg_id });
                self.close_leg(leg_id);
            }
            Method::Invite => {
                if let Some(c) = req.headers.values(&HeaderName::Contact).next() {
                    if let Ok(na) = NameAddr::parse(&c, &c) {
                        if let Some(leg) = self.legs.get_mut(&leg_id) {
                            leg.remote_target = Some(na.uri);
                        }
                    }
                }
                self.events.push_back(Event::InDialogRequest {
                    leg: leg_id,
                    txn: ServerTxnId(id),
                    request: Box::new(req),
                });
            }
            _ => {
                self.events.push_back(Event::InDialogRequest {
                    leg: leg_id,
                    txn: ServerTxnId(id),
                    request: Box::new(req),
                });
            }
        }
    }

    fn handle_ack(&mut self, req: Request, now: Instant) {
        let key = server_key(&req.core, &Method::Invite);
        if let Some(&id) = self.tx_index.get(&key) {
            if let Some(txn) = self.txns.get_mut(&id) {
                if let Fsm::ServerInvite(f) = &mut txn.fsm {
                    let to_tu = f.handle_ack(now);
                    self.dirty.push(id);
                    if !to_tu {
                        return; // ACK for a non-2xx: absorbed by the transaction
                    }
                }
            }
        }
        // ACK for a 2xx is its own transaction and is matched to the dialog.
        let key = dialog_key(&req.core, Role::Uas);
        let Some(&leg_id) = self.dialogs.get(&key) else {
            return;
        };
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            if let Some(r) = leg.uas_2xx.as_mut() {
                r.handle_ack(now);
                leg.uas_2xx = None;
                self.events.push_back(Event::Confirmed {
                    leg: leg_id,
                    body: req.body.clone(),
                });
            }
        }
    }

    fn handle_cancel(
        &mut self,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        // A CANCEL has its own transaction; it matches the INVITE by branch (§9.2).
        let reliable = transport.is_reliable();
        let key = server_key(&req.core, &req.method);
        let destination = self.response_destination(&req.core.via, source, transport);
        let fsm = Fsm::ServerNonInvite(ServerNonInvite::new(reliable, &self.cfg.timers, now));
        let id = self.register(Txn::new(fsm, key, transport, destination, req.clone()));
        let invite_key = server_key(&req.core, &Method::Invite);
        let invite = self.tx_index.get(&invite_key).copied();
        let Some(invite_id) = invite else {
            self.reply(id, 481, Vec::new(), Bytes::new(), now);
            return;
        };
        self.reply(id, 200, Vec::new(), Bytes::new(), now);
        let pending = self
            .txns
            .get(&invite_id)
            .is_some_and(|t| matches!(&t.fsm, Fsm::ServerInvite(f) if f.state() == ServerInviteState::Proceeding));
        if pending {
            let leg = self.txns.get(&invite_id).and_then(|t| t.leg);
            self.reply(invite_id, 487, Vec::new(), Bytes::new(), now);
            if let Some(leg) = leg {
                self.events.push_back(Event::Cancelled { leg });
                self.close_leg(leg);
            }
        }
    }

    /// §18.2.2 with RFC 3581: answer where the request came from.
    fn response_destination(
        &self,
        via: &Via,
        source: SocketAddr,
        transport: Transport,
    ) -> SocketAddr {
        if transport.is_reliable() || via.rport().is_some() {
            return source;
        }
        SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
    }

    fn handle_response(&mut self, resp: Response, now: Instant) {
        let Some(branch) = resp.core.via.branch() else {
            return;
        };
        let key = TxKey::Client {
            branch: branch.to_owned(),
            method: method_key(&resp.core.cseq.method),
        };
        let Some(&id) = self.tx_index.get(&key) else {
            // A 2xx retransmission after the INVITE transaction is gone: ACK again.
            if resp.is_success() && resp.core.cseq.method == Method::Invite {
                self.reack(&resp);
            }
            return;
        };
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let pass = match &mut txn.fsm {
            Fsm::ClientInvite(f) => {
                let ack = (resp.status >= 300)
                    .then(|| txn.request.as_ref().map(|inv| build_non2xx_ack(inv, &resp)));
                f.handle_response(resp.status, ack.flatten(), now)
            }
            Fsm::ClientNonInvite(f) => f.handle_response(resp.status, now),
            _ => false,
        };
        self.dirty.push(id);
        if !pass {
            if resp.is_success() && resp.core.cseq.method == Method::Invite {
                self.reack(&resp);
            }
            return;
        }
        let leg = txn.leg;
        let method = txn.method.clone();
        let tu_visible = txn.tu_visible;
        if method == Method::Invite {
            if let Some(leg) = leg {
                self.invite_response(leg, id, resp, now);
            }
        } else if resp.status >= 200 {
            if (resp.status == 401 || resp.status == 407) && self.retry_with_auth(id, &resp, now) {
                return;
            }
            if method == Method::Bye {
                if let Some(leg) = leg {
                    self.close_leg(leg);
                }
            }
            if tu_visible {
                self.events.push_back(Event::RequestDone {
                    txn: ClientTxnId(id),
                    leg,
                    method,
                    status: resp.status,
                    response: Some(Box::new(resp)),
                });
            }
        }
    }

    fn reack(&mut self, resp: &Response) {
        let key = dialog_key(&resp.core, Role::Uac);
        let Some(&leg_id) = self.dialogs.get(&key) else {
            return;
        };
        if let Some(leg) = self.legs.get(&leg_id) {
            if let Some(ack) = leg.ack_for_2xx.clone() {
                let (transport, dest) = (leg.transport, self.in_dialog_destination(leg));
                self.observer.retransmission(true);
                self.send(transport, dest, ack);
            }
        }
    }

    fn invite_response(&mut self, leg_id: LegId, txn_id: u64, resp: Response, now: Instant) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let is_reinvite = leg.invite_txn != Some(txn_id);
        if is_reinvite {
            // A re-INVITE we sent: ACK a 2xx, then report.
            if resp.is_success() {
                let ack = self.build_in_dialog(
                    leg_id,
                    Method::Ack,
                    Some(resp.core.cseq.seq),
                    None,
                    Bytes::new(),
                );
                if let (Some(ack), Some(leg)) = (ack, self.legs.get(&leg_id)) {
                    let (t, d) = (leg.transport, self.in_dialog_destination(leg));
                    self.send(t, d, ack.to_bytes());
                }
            }
            if resp.status >= 200 {
                self.events.push_back(Event::RequestDone {
                    txn: ClientTxnId(txn_id),
                    leg: Some(leg_id),
                    method: Method::Invite,
                    status: resp.status,
                    response: Some(Box::new(resp)),
                });
            }
            return;
        }
        if resp.is_provisional() {
            leg.provisional_seen = true;
            if let Some(tag) = resp.core.to.tag() {
                if leg.remote_tag.is_none() && resp.status > 100 {
                    leg.remote_tag = Some(tag.to_string());
                }
            }
            let cancel = leg.cancel_pending;
            if cancel {
                self.send_cancel(leg_id, now);
            }
            if resp.status > 100 {
                self.events.push_back(Event::Progress {
                    leg: leg_id,
                    response: Box::new(resp),
                });
            }
            return;
        }
        if resp.is_success() {
            if leg.state == LegState::Confirmed {
                self.reack(&resp);
                return;
            }
            leg.state = LegState::Confirmed;
            let tag = resp
                .core
                .to
                .tag()
                .map(|t| t.to_string())
                .unwrap_or_default();
            leg.remote_tag = Some(tag.clone());
            if let Some(c) = resp.headers.values(&HeaderName::Contact).next() {
                if let Ok(na) = NameAddr::parse(&c, &c) {
                    leg.remote_target = Some(na.uri);
                }
            }
            // §12.1.2: the UAC's route set is the Record-Route reversed.
            leg.route_set = resp
                .headers
                .values(&HeaderName::RecordRoute)
                .map(|r| r.to_string())
                .collect();
            leg.route_set.reverse();
            self.dialogs.insert(
                (leg.call_id.to_string(), leg.local_tag.clone(), tag),
                leg_id,
            );
            let cancelled = leg.cancel_pending;
            leg.ack_seq = Some(resp.core.cseq.seq);
            if !leg.ack_deferred || cancelled {
                self.ack(leg_id, Bytes::new());
            }
            if cancelled {
                // The 2xx crossed our CANCEL: the call exists, so end it (§15).
                self.bye(leg_id, now);
                return;
            }
            self.events.push_back(Event::Answered {
                leg: leg_id,
                response: Box::new(resp),
            });
            return;
        }
        // Final failure: try digest once per challenge, else report.
        if (resp.status == 401 || resp.status == 407)
            && self.retry_invite_with_auth(leg_id, &resp, now)
        {
            return;
        }
        self.events.push_back(Event::Failed {
            leg: leg_id,
            status: resp.status,
            response: Some(Box::new(resp)),
        });
        self.close_leg(leg_id);
    }

    fn authorization_for(
        &mut self,
        resp: &Response,
        creds: &Credentials,
        req: &Request,
    ) -> Option<(HeaderName, String)> {
        let (challenge_header, answer_header) = if resp.status == 407 {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let challenge = resp
            .headers
            .get_all(&challenge_header)
            .find_map(|v| Challenge::parse(v).ok())?;
        let uri = req.uri.to_string();
        let value = self
            .digest
            .authorize(&challenge, creds, req.method.as_str(), &uri, &req.body)
            .ok()?;
        Some((answer_header, value))
    }

    fn retry_invite_with_auth(&mut self, leg_id: LegId, resp: &Response, now: Instant) -> bool {
        let Some(leg) = self.legs.get(&leg_id) else {
            return false;
        };
        let (Some(creds), Some(invite)) = (leg.credentials.clone(), leg.invite.clone()) else {
            return false;
        };
        if leg.auth_attempts >= 2 || leg.cancel_pending {
            return false;
        }
        let (transport, destination) = (leg.transport, leg.invite_destination);
        let Some(auth) = self.authorization_for(resp, &creds, &invite) else {
            return false;
        };
        let mut next = invite;
        next.headers.remove(&HeaderName::Authorization);
        next.headers.remove(&HeaderName::ProxyAuthorization);
        next.headers.push(auth.0, auth.1);
        let branch = format!("z9hG4bK{}", random_hex(12));
        next.headers
            .set(HeaderName::Via, self.via_value(transport, &branch));
        let seq = next.core.cseq.seq.saturating_add(1);
        next.headers.set(HeaderName::CSeq, format!("{seq} INVITE"));
        next.core.cseq = CSeq {
            seq,
            method: Method::Invite,
        };
        next.core.via = via_from_value(&self.via_value(transport, &branch));
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.auth_attempts += 1;
            leg.local_seq = seq;
            leg.provisional_seen = false;
        }
        self.start_invite_txn(leg_id, next, transport, destination, now);
        true
    }

    fn retry_with_auth(&mut self, txn_id: u64, resp: &Response, now: Instant) -> bool {
        let Some(txn) = self.txns.get(&txn_id) else {
            return false;
        };
        let (Some(creds), Some(req)) = (txn.credentials.clone(), txn.request.clone()) else {
            return false;
        };
        if txn.auth_attempts >= 2 {
            return false;
        }
        let (attempts, leg, transport, destination, tu_visible) = (
            txn.auth_attempts,
            txn.leg,
            txn.transport,
            txn.destination,
            txn.tu_visible,
        );
        let Some(auth) = self.authorization_for(resp, &creds, &req) else {
            return false;
        };
        let mut next = req;
        next.headers.remove(&HeaderName::Authorization);
        next.headers.remove(&HeaderName::ProxyAuthorization);
        next.headers.push(auth.0, auth.1);
        let seq = next.core.cseq.seq.saturating_add(1);
        next.headers
            .set(HeaderName::CSeq, format!("{seq} {}", next.method));
        next.core.cseq.seq = seq;
        // A new request is a new transaction: a new branch (§8.1.3.5).
        let branch = format!("z9hG4bK{}", random_hex(12));
        let via = self.via_value(transport, &branch);
        next.headers.set(HeaderName::Via, via.clone());
        next.core.via = via_from_value(&via);
        let new_id = self.start_client_txn(
            next,
            transport,
            destination,
            leg,
            tu_visible,
            Some(creds),
            now,
        );
        if let Some(t) = self.txns.get_mut(&new_id) {
            t.auth_attempts = attempts + 1;
        }
        // The TU keeps the id it was given: move the new transaction under it.
        if let Some(mut t) = self.txns.remove(&new_id) {
            self.tx_index.insert(t.key.clone(), txn_id);
            if let Some(old) = self.txns.remove(&txn_id) {
                self.tx_index.remove(&old.key);
                // the old (completed) transaction is dropped; its Timer K is moot
            }
            t.auth_attempts = attempts + 1;
            t.armed = None;
            self.txns.insert(txn_id, t);
            self.dirty.push(txn_id);
        }
        true
    }

    // ------------------------------------------------------------------
    // TU commands
    // ------------------------------------------------------------------

    /// Sends an INVITE that starts a new dialog (§13.2.1).
    pub fn invite(&mut self, out: OutgoingInvite, now: Instant) -> LegId {
        let leg_id = LegId(self.next());
        let local_tag = random_hex(8);
        let call_id = ByteStr::from(random_hex(16));
        let branch = format!("z9hG4bK{}", random_hex(12));
        let seq: u32 = rand::thread_rng().gen_range(1..1 << 20);
        let mut from = out.from.clone();
        from.params.set("tag", Some(&local_tag));
        let via = self.via_value(out.transport, &branch);
        let mut headers = Headers::new();
        headers.push(HeaderName::Via, via.clone());
        headers.push(HeaderName::MaxForwards, out.max_forwards.to_string());
        headers.push(HeaderName::From, from.to_string());
        headers.push(HeaderName::To, out.to.to_string());
        headers.push(HeaderName::CallId, call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} INVITE"));
        headers.push(HeaderName::Contact, self.contact_value(out.transport));
        headers.push(HeaderName::Allow, ALLOW);
        headers.push(HeaderName::UserAgent, self.cfg.user_agent.clone());
        if !out.body.is_empty() {
            headers.push(HeaderName::ContentType, "application/sdp");
        }
        let req = Request {
            method: Method::Invite,
            uri: out.request_uri.clone(),
            headers,
            body: out.body.clone(),
            core: Core {
                via: via_from_value(&via),
                from: from.clone(),
                to: out.to.clone(),
                call_id: call_id.clone(),
                cseq: CSeq {
                    seq,
                    method: Method::Invite,
                },
                max_forwards: Some(out.max_forwards),
            },
        };
        self.legs.insert(
            leg_id,
            Leg {
                role: Role::Uac,
                state: LegState::Pending,
                call_id,
                local_tag,
                remote_tag: None,
                local_uri: without_tag(&out.from),
                remote_uri: out.to.to_string(),
                local_seq: seq,
                remote_seq: None,
                remote_target: Some(out.request_uri.clone()),
                route_set: Vec::new(),
                transport: out.transport,
                peer: out.destination,
                invite: None,
                invite_txn: None,
                invite_destination: out.destination,
                credentials: out.credentials,
                auth_attempts: 0,
                provisional_seen: false,
                cancel_pending: false,
                ack_for_2xx: None,
                ack_deferred: out.body.is_empty(),
                ack_seq: None,
                server_invite: None,
                uas_2xx: None,
            },
        );
        self.start_invite_txn(leg_id, req, out.transport, out.destination, now);
        leg_id
    }

    fn start_invite_txn(
        &mut self,
        leg_id: LegId,
        req: Request,
        transport: Transport,
        destination: SocketAddr,
        now: Instant,
    ) {
        let id = self.start_client_txn(
            req.clone(),
            transport,
            destination,
            Some(leg_id),
            false,
            None,
            now,
        );
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.invite = Some(req);
            leg.invite_txn = Some(id);
        }
        self.process_fsms();
    }

    #[allow(clippy::too_many_arguments)]
    fn start_client_txn(
        &mut self,
        req: Request,
        transport: Transport,
        destination: SocketAddr,
        leg: Option<LegId>,
        tu_visible: bool,
        credentials: Option<Credentials>,
        now: Instant,
    ) -> u64 {
        let bytes = req.to_bytes();
        self.observer.request(true, req.method.as_str());
        let branch = req.core.via.branch().unwrap_or_default().to_owned();
        let invite = req.method == Method::Invite;
        let fsm = if invite {
            Fsm::ClientInvite(ClientInvite::new(
                bytes,
                transport.is_reliable(),
                &self.cfg.timers,
                now,
            ))
        } else {
            Fsm::ClientNonInvite(ClientNonInvite::new(
                bytes,
                transport.is_reliable(),
                &self.cfg.timers,
                now,
            ))
        };
        let key = TxKey::Client {
            branch,
            method: method_key(&req.method),
        };
        self.register(Txn {
            leg,
            tu_visible,
            credentials,
            ..Txn::new(fsm, key, transport, destination, req)
        })
    }

    /// Gives a new transaction its id and its place in the matching index.
    fn register(&mut self, txn: Txn) -> u64 {
        let id = self.next();
        self.tx_index.insert(txn.key.clone(), id);
        self.txns.insert(id, txn);
        self.dirty.push(id);
        id
    }

    /// Answers the pending INVITE of a UAS leg: 1xx, 2xx (with SDP) or a failure.
    pub fn respond(&mut self, leg_id: LegId, status: u16, body: Bytes, now: Instant) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let Some(txn_id) = leg.server_invite else {
            return;
        };
        let still_pending = self
            .txns
            .get(&txn_id)
            .is_some_and(|t| matches!(&t.fsm, Fsm::ServerInvite(f) if f.state() == ServerInviteState::Proceeding));
        if !still_pending || leg.state != LegState::Pending {
            return;
        }
        if (200..300).contains(&status) {
            let Some(bytes) = self.reply(txn_id, status, Vec::new(), body, now) else {
                return;
            };
            if let Some(leg) = self.legs.get_mut(&leg_id) {
                leg.state = LegState::Confirmed;
                let key = (
                    leg.call_id.to_string(),
                    leg.local_tag.clone(),
                    leg.remote_tag.clone().unwrap_or_default(),
                );
                self.dialogs.insert(key, leg_id);
            }
            self.start_2xx_retransmission(leg_id, bytes, now);
        } else {
            if status >= 300 {
                if let Some(leg) = self.legs.get_mut(&leg_id) {
                    leg.server_invite = None;
                }
            }
            self.reply(txn_id, status, Vec::new(), body, now);
            if status >= 300 {
                self.close_leg(leg_id);
            }
        }
        self.process_fsms();
    }

    /// Answers an in-dialog request the TU was given.
    pub fn respond_request(
        &mut self,
        txn: ServerTxnId,
        status: u16,
        content_type: Option<&str>,
        body: Bytes,
        now: Instant,
    ) {
        let extra = content_type
            .map(|ct| vec![(HeaderName::ContentType, ct.to_owned())])
            .unwrap_or_default();
        let reinvite_leg = self
            .txns
            .get(&txn.0)
            .filter(|t| t.method == Method::Invite)
            .and_then(|t| t.leg);
        let sent = self.reply(txn.0, status, extra, body, now);
        // A 2xx to a re-INVITE is retransmitted until its ACK like any 2xx to
        // an INVITE (§13.3.1.4), or a lost 200 would leave the peer hanging.
        if let (Some(leg), Some(bytes), true) = (reinvite_leg, sent, (200..300).contains(&status)) {
            self.start_2xx_retransmission(leg, bytes, now);
        }
        self.process_fsms();
    }

    /// §13.3.1.4: the transaction sent the first copy of the 2xx; the leg
    /// retransmits it until the ACK (or gives up after 64·T1).
    fn start_2xx_retransmission(&mut self, leg_id: LegId, response: Bytes, now: Instant) {
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let mut r = Uas2xxRetransmitter::new(response, leg.transport.is_reliable(), &timers, now);
        let _ = r.poll_transmit();
        let at = r.poll_timeout();
        leg.uas_2xx = Some(r);
        self.arm(TimerRef::Leg(leg_id), at);
    }

    /// Hangs up whatever the state: CANCEL (UAC, early), 487-less 480 (UAS,
    /// early) or BYE (confirmed).
    pub fn hangup(&mut self, leg_id: LegId, now: Instant) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        match (leg.role, leg.state) {
            (_, LegState::Terminating) => {}
            (Role::Uac, LegState::Pending) => self.cancel(leg_id, now),
            (Role::Uas, LegState::Pending) => self.respond(leg_id, 480, Bytes::new(), now),
            (_, LegState::Confirmed) => self.bye(leg_id, now),
        }
    }

    /// CANCELs our pending INVITE (§9.1): sent once a provisional arrived.
    pub fn cancel(&mut self, leg_id: LegId, now: Instant) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        if leg.role != Role::Uac || leg.state != LegState::Pending || leg.cancel_pending {
            return;
        }
        leg.cancel_pending = true;
        if leg.provisional_seen {
            self.send_cancel(leg_id, now);
        }
    }

    fn send_cancel(&mut self, leg_id: LegId, now: Instant) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let Some(invite) = leg.invite.clone() else {
            return;
        };
        let (transport, destination) = (leg.transport, leg.invite_destination);
        let mut headers = Headers::new();
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if let Some(v) = invite.headers.get(&name) {
                headers.push(name, v.clone());
            }
        }
        for r in invite.headers.get_all(&HeaderName::Route) {
            headers.push(HeaderName::Route, r.clone());
        }
        headers.push(HeaderName::CSeq, format!("{} CANCEL", invite.core.cseq.seq));
        let mut core = invite.core.clone();
        core.cseq.method = Method::Cancel;
        let cancel = Request {
            method: Method::Cancel,
            uri: invite.uri.clone(),
            headers,
            body: Bytes::new(),
            core,
        };
        self.start_client_txn(
            cancel,
            transport,
            destination,
            Some(leg_id),
            false,
            None,
            now,
        );
        self.process_fsms();
    }

    /// ACKs the 2xx to our INVITE (§13.2.2.4), with the SDP answer when that
    /// 2xx carried the offer. Sent once; 2xx retransmissions are re-ACKed
    /// from the copy kept here.
    pub fn ack(&mut self, leg_id: LegId, body: Bytes) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (Some(seq), None) = (leg.ack_seq, &leg.ack_for_2xx) else {
            return;
        };
        let ct = (!body.is_empty()).then_some("application/sdp");
        let Some(ack) = self.build_in_dialog(leg_id, Method::Ack, Some(seq), ct, body) else {
            return;
        };
        let bytes = ack.to_bytes();
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.ack_for_2xx = Some(bytes.clone());
        let transport = leg.transport;
        let Some(dest) = self
            .legs
            .get(&leg_id)
            .map(|l| self.in_dialog_destination(l))
        else {
            return;
        };
        self.send(transport, dest, bytes);
    }

    /// Ends a confirmed dialog with BYE (§15.1.1).
    pub fn bye(&mut self, leg_id: LegId, now: Instant) {
        // A 2xx is always ACKed before the BYE, even if the TU never produced
        // the answer for a late offer.
        self.ack(leg_id, Bytes::new());
        let Some(req) = self.build_in_dialog(leg_id, Method::Bye, None, None, Bytes::new()) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.state = LegState::Terminating;
        leg.uas_2xx = None;
        let transport = leg.transport;
        let Some(dest) = self
            .legs
            .get(&leg_id)
            .map(|l| self.in_dialog_destination(l))
        else {
            return;
        };
        self.start_client_txn(req, transport, dest, Some(leg_id), false, None, now);
        self.process_fsms();
    }

    /// Sends a request inside the dialog (INFO, re-INVITE, OPTIONS);
    /// the answer comes back as [`Event::RequestDone`].
    pub fn request(
        &mut self,
        leg_id: LegId,
        method: Method,
        content_type: Option<&str>,
        body: Bytes,
        now: Instant,
    ) -> Option<ClientTxnId> {
        let req = self.build_in_dialog(leg_id, method, None, content_type, body)?;
        let leg = self.legs.get(&leg_id)?;
        let (t, d) = (leg.transport, self.in_dialog_destination(leg));
        let id = self.start_client_txn(req, t, d, Some(leg_id), true, None, now);
        self.process_fsms();
        Some(ClientTxnId(id))
    }

    /// Sends a request outside any dialog (OPTIONS keep-alive, REGISTER).
    pub fn out_of_dialog(&mut self, out: OutgoingRequest, now: Instant) -> ClientTxnId {
        let branch = format!("z9hG4bK{}", random_hex(12));
        let via = self.via_value(out.transport, &branch);
        let mut from = out.from.clone();
        if from.tag().is_none() {
            from.params.set("tag", Some(&random_hex(8)));
        }
        let call_id = ByteStr::from(out.call_id.clone().unwrap_or_else(|| random_hex(16)));
        let seq = out.cseq.unwrap_or(1);
        let mut headers = Headers::new();
        headers.push(HeaderName::Via, via.clone());
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, from.to_string());
        headers.push(HeaderName::To, out.to.to_string());
        headers.push(HeaderName::CallId, call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} {}", out.method));
        headers.push(HeaderName::UserAgent, self.cfg.user_agent.clone());
        if out.method == Method::Register {
            headers.push(HeaderName::Contact, self.contact_value(out.transport));
        }
        for (n, v) in out.headers {
            headers.push(n, v);
        }
        let req = Request {
            method: out.method.clone(),
            uri: out.request_uri,
            headers,
            body: Bytes::new(),
            core: Core {
                via: via_from_value(&via),
                from,
                to: out.to,
                call_id,
                cseq: CSeq {
                    seq,
                    method: out.method,
                },
                max_forwards: Some(70),
            },
        };
        let id = self.start_client_txn(
            req,
            out.transport,
            out.destination,
            None,
            true,
            out.credentials,
            now,
        );
        self.process_fsms();
        ClientTxnId(id)
    }

    /// A driver reports it could not deliver to `destination`.
    pub fn handle_transport_error(
        &mut self,
        transport: Transport,
        destination: SocketAddr,
        now: Instant,
    ) {
        let ids: Vec<u64> = self
            .txns
            .iter()
            .filter(|(_, t)| t.transport == transport && t.destination == destination)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(txn) = self.txns.get_mut(&id) {
                match &mut txn.fsm {
                    Fsm::ClientInvite(f) => f.handle_transport_error(now),
                    Fsm::ClientNonInvite(f) => f.handle_transport_error(now),
                    Fsm::ServerInvite(f) => f.handle_transport_error(now),
                    Fsm::ServerNonInvite(f) => f.handle_transport_error(now),
                }
                txn.transport_failed = true;
                self.dirty.push(id);
            }
        }
        self.process_fsms();
    }

    // ------------------------------------------------------------------
    // Timers and output
    // ------------------------------------------------------------------

    fn txn_timeout(txn: &Txn) -> Option<Instant> {
        match &txn.fsm {
            Fsm::ClientInvite(f) => f.poll_timeout(),
            Fsm::ClientNonInvite(f) => f.poll_timeout(),
            Fsm::ServerInvite(f) => f.poll_timeout(),
            Fsm::ServerNonInvite(f) => f.poll_timeout(),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, target))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push(target);
        }
        due.sort();
        due.dedup();
        for target in due {
            match target {
                TimerRef::Txn(id) => {
                    let Some(txn) = self.txns.get_mut(&id) else {
                        continue;
                    };
                    // This entry is consumed: let the drain push the next deadline.
                    txn.armed = None;
                    if Self::txn_timeout(txn).is_some_and(|t| t <= now) {
                        match &mut txn.fsm {
                            Fsm::ClientInvite(f) => f.handle_timeout(now),
                            Fsm::ClientNonInvite(f) => f.handle_timeout(now),
                            Fsm::ServerInvite(f) => f.handle_timeout(now),
                            Fsm::ServerNonInvite(f) => f.handle_timeout(now),
                        }
                        // Anything a timer makes the FSM send is a retransmission.
                        self.drain_txn(id, true);
                    }
                }
                TimerRef::Leg(leg_id) => {
                    let mut resend = None;
                    let mut timed_out = false;
                    let mut next = None;
                    if let Some(leg) = self.legs.get_mut(&leg_id) {
                        if let Some(r) = leg.uas_2xx.as_mut() {
                            if r.poll_timeout().is_some_and(|t| t <= now) {
                                r.handle_timeout(now);
                            }
                            resend = r.poll_transmit();
                            while let Some(ev) = r.poll_event() {
                                if ev == TransactionEvent::Timeout {
                                    timed_out = true;
                                }
                            }
                            next = r.poll_timeout();
                            if r.is_terminated() {
                                leg.uas_2xx = None;
                            }
                        }
                    }
                    if let Some(bytes) = resend {
                        if let Some(leg) = self.legs.get(&leg_id) {
                            let dest = leg.peer;
                            let t = leg.transport;
                            self.observer.retransmission(true);
                            self.send(t, dest, bytes);
                        }
                    }
                    if timed_out {
                        self.events.push_back(Event::AckTimeout { leg: leg_id });
                    }
                    self.arm(TimerRef::Leg(leg_id), next);
                }
            }
        }
        self.process_fsms();
    }

    /// Moves every FSM's pending output to the endpoint queues and reaps
    /// finished transactions.
    fn process_fsms(&mut self) {
        while !self.dirty.is_empty() {
            let mut ids = std::mem::take(&mut self.dirty);
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                self.drain_txn(id, false);
            }
        }
    }

    fn drain_txn(&mut self, id: u64, retransmission: bool) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        let mut events = Vec::new();
        loop {
            let (tx, ev) = match &mut txn.fsm {
                Fsm::ClientInvite(f) => (f.poll_transmit(), f.poll_event()),
                Fsm::ClientNonInvite(f) => (f.poll_transmit(), f.poll_event()),
                Fsm::ServerInvite(f) => (f.poll_transmit(), f.poll_event()),
                Fsm::ServerNonInvite(f) => (f.poll_transmit(), f.poll_event()),
            };
            if tx.is_none() && ev.is_none() {
                break;
            }
            out.extend(tx);
            events.extend(ev);
        }
        let (transport, destination, leg, method, tu_visible) = (
            txn.transport,
            txn.destination,
            txn.leg,
            txn.method.clone(),
            txn.tu_visible,
        );
        let transport_failed = txn.transport_failed;
        let is_client = matches!(txn.fsm, Fsm::ClientInvite(_) | Fsm::ClientNonInvite(_));
        let terminated = match &txn.fsm {
            Fsm::ClientInvite(f) => f.is_terminated(),
            Fsm::ClientNonInvite(f) => f.is_terminated(),
            Fsm::ServerInvite(f) => f.is_terminated(),
            Fsm::ServerNonInvite(f) => f.is_terminated(),
        };
        // Past its final response a transaction only absorbs retransmissions
        // (the FSM keeps the bytes it resends) until its timer ends it, 32 s
        // on UDP: the parsed request and credentials are dead weight by then,
        // and at a few thousand transactions per second they would be most
        // of the memory.
        if txn.request.is_some() && Self::past_final(&txn.fsm) {
            txn.request = None;
            txn.credentials = None;
        }
        let next = Self::txn_timeout(txn);
        let rearm = next.is_some() && next != txn.armed;
        txn.armed = next;
        for bytes in out {
            if retransmission {
                self.observer.retransmission(true);
            }
            self.send(transport, destination, bytes);
        }
        for ev in events {
            if ev == TransactionEvent::Timeout && is_client {
                // The FSMs report Timer B/F and transport errors alike as Timeout;
                // the TU hears 408 for the first and 503 for the second (§8.1.3.1).
                let status = if transport_failed { 503 } else { 408 };
                self.client_failed(id, leg, method.clone(), tu_visible, status);
            }
        }
        if terminated {
            if let Some(txn) = self.txns.remove(&id) {
                self.tx_index.remove(&txn.key);
            }
        } else if rearm {
            self.arm(TimerRef::Txn(id), next);
        }
    }

    /// The transaction has seen (client) or sent (server) its final response.
    fn past_final(fsm: &Fsm) -> bool {
        match fsm {
            Fsm::ClientInvite(f) => matches!(
                f.state(),
                ClientInviteState::Accepted | ClientInviteState::Completed
            ),
            Fsm::ClientNonInvite(f) => f.state() == ClientNonInviteState::Completed,
            Fsm::ServerInvite(f) => matches!(
                f.state(),
                ServerInviteState::Accepted
                    | ServerInviteState::Completed
                    | ServerInviteState::Confirmed
            ),
            Fsm::ServerNonInvite(f) => f.state() == ServerNonInviteState::Completed,
        }
    }

    fn client_failed(
        &mut self,
        id: u64,
        leg: Option<LegId>,
        method: Method,
        tu_visible: bool,
        status: u16,
    ) {
        match (method, leg) {
            (Method::Invite, Some(leg_id)) => {
                let is_initial = self
                    .legs
                    .get(&leg_id)
                    .is_some_and(|l| l.invite_txn == Some(id));
                if is_initial {
                    let pending = self
                        .legs
                        .get(&leg_id)
                        .is_some_and(|l| l.state == LegState::Pending);
                    if pending {
                        self.events.push_back(Event::Failed {
                            leg: leg_id,
                            status,
                            response: None,
                        });
                        self.close_leg(leg_id);
                    }
                } else {
                    self.events.push_back(Event::RequestDone {
                        txn: ClientTxnId(id),
                        leg: Some(leg_id),
                        method: Method::Invite,
                        status,
                        response: None,
                    });
                }
            }
            (Method::Bye, Some(leg_id)) => self.close_leg(leg_id),
            (method, leg) => {
                if tu_visible {
                    self.events.push_back(Event::RequestDone {
                        txn: ClientTxnId(id),
                        leg,
                        method,
                        status,
                        response: None,
                    });
                }
            }
        }
    }

    /// Forgets a leg. Transactions still running finish on their own.
    fn close_leg(&mut self, leg_id: LegId) {
        if let Some(leg) = self.legs.remove(&leg_id) {
            if let Some(remote) = leg.remote_tag {
                self.dialogs
                    .remove(&(leg.call_id.to_string(), leg.local_tag, remote));
            }
            self.events.push_back(Event::LegClosed { leg: leg_id });
        }
    }

    // ------------------------------------------------------------------
    // Building messages
    // ------------------------------------------------------------------

    fn in_dialog_destination(&self, leg: &Leg) -> SocketAddr {
        // Loose routing (§12.2.1.1): the first Route, else the remote target;
        // a host name we cannot resolve here falls back to the flow we know.
        if let Some(first) = leg.route_set.first() {
            let b = ByteStr::from(first.as_str());
            if let Some(addr) = NameAddr::parse(&b, &b)
                .ok()
                .and_then(|na| uri_socket(&na.uri))
            {
                return addr;
            }
            return leg.peer;
        }
        if leg.transport.is_reliable() {
            return leg.peer;
        }
        leg.remote_target
            .as_ref()
            .and_then(uri_socket)
            .unwrap_or(leg.peer)
    }

    /// A request within the dialog (§12.2.1.1). `ack_seq` makes an ACK for
    /// the INVITE with that CSeq number.
    fn build_in_dialog(
        &mut self,
        leg_id: LegId,
        method: Method,
        ack_seq: Option<u32>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Option<Request> {
        let host = self.cfg.public_host.clone();
        let port = self.cfg.public_port;
        let ua = self.cfg.user_agent.clone();
        let leg = self.legs.get_mut(&leg_id)?;
        let seq = match ack_seq {
            Some(s) => s,
            None => {
                leg.local_seq = leg.local_seq.wrapping_add(1);
                leg.local_seq
            }
        };
        let branch = format!("z9hG4bK{}", random_hex(12));
        let via = format!(
            "SIP/2.0/{} {host}:{port};branch={branch};rport",
            leg.transport.as_str()
        );
        let from = format!("{};tag={}", leg.local_uri, leg.local_tag);
        let to = match &leg.remote_tag {
            Some(t) => format!("{};tag={t}", leg.remote_uri),
            None => leg.remote_uri.clone(),
        };
        let uri = leg.remote_target.clone()?;
        let mut headers = Headers::new();
        headers.push(HeaderName::Via, via.clone());
        headers.push(HeaderName::MaxForwards, "70");
        for r in &leg.route_set {
            headers.push(HeaderName::Route, r.clone());
        }
        headers.push(HeaderName::From, from.clone());
        headers.push(HeaderName::To, to.clone());
        headers.push(HeaderName::CallId, leg.call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} {method}"));
        if method == Method::Invite {
            let contact = match leg.transport {
                Transport::Udp => format!("<sip:{host}:{port}>"),
                Transport::Tcp => format!("<sip:{host}:{port};transport=tcp>"),
            };
            headers.push(HeaderName::Contact, contact);
        }
        if method != Method::Ack {
            headers.push(HeaderName::UserAgent, ua);
        }
        if let Some(ct) = content_type {
            headers.push(HeaderName::ContentType, ct.to_owned());
        }
        let from_b = ByteStr::from(from);
        let to_b = ByteStr::from(to);
        Some(Request {
            method: method.clone(),
            uri,
            headers,
            body,
            core: Core {
                via: via_from_value(&via),
                from: NameAddr::parse(&from_b, &from_b).ok()?,
                to: NameAddr::parse(&to_b, &to_b).ok()?,
                call_id: leg.call_id.clone(),
                cseq: CSeq { seq, method },
                max_forwards: Some(70),
            },
        })
    }

    /// A response to the request of server transaction `id` (§8.2.6.2).
    fn build_response(
        &mut self,
        id: u64,
        status: u16,
        extra: Vec<(HeaderName, String)>,
        body: Bytes,
    ) -> Option<Response> {
        let txn = self.txns.get(&id)?;
        let req = txn.request.as_ref()?;
        let leg = txn.leg.and_then(|l| self.legs.get(&l));
        let mut headers = Headers::new();
        // The top Via gets received/rport (§18.2.1, RFC 3581 §4).
        let mut first = true;
        for v in req.headers.values(&HeaderName::Via) {
            if first {
                first = false;
                let via = stamp_via(req.core.via.clone(), txn.destination);
                headers.push(HeaderName::Via, via.to_string());
            } else {
                headers.push(HeaderName::Via, v);
            }
        }
        if let Some(v) = req.headers.get(&HeaderName::From) {
            headers.push(HeaderName::From, v.clone());
        }
        let to_value = req
            .headers
            .get(&HeaderName::To)
            .cloned()
            .unwrap_or_default();
        let to = if req.core.to.tag().is_none() && status > 100 {
            let tag = leg
                .map(|l| l.local_tag.clone())
                .unwrap_or_else(|| random_hex(8));
            format!("{to_value};tag={tag}")
        } else {
            to_value.to_string()
        };
        headers.push(HeaderName::To, to);
        headers.push(HeaderName::CallId, req.core.call_id.clone());
        if let Some(v) = req.headers.get(&HeaderName::CSeq) {
            headers.push(HeaderName::CSeq, v.clone());
        }
        if req.method == Method::Invite && (101..300).contains(&status) {
            for rr in req.headers.get_all(&HeaderName::RecordRoute) {
                headers.push(HeaderName::RecordRoute, rr.clone());
            }
            let contact = match txn.transport {
                Transport::Udp => {
                    format!("<sip:{}:{}>", self.cfg.public_host, self.cfg.public_port)
                }
                Transport::Tcp => format!(
                    "<sip:{}:{};transport=tcp>",
                    self.cfg.public_host, self.cfg.public_port
                ),
            };
            headers.push(HeaderName::Contact, contact);
            if (200..300).contains(&status) {
                headers.push(HeaderName::Allow, ALLOW);
            }
        }
        headers.push(HeaderName::Server, self.cfg.user_agent.clone());
        for (n, v) in extra {
            headers.push(n, v);
        }
        if !body.is_empty() && headers.get(&HeaderName::ContentType).is_none() {
            headers.push(HeaderName::ContentType, "application/sdp");
        }
        let to_b = headers.get(&HeaderName::To).cloned().unwrap_or_default();
        let mut core = req.core.clone();
        if let Ok(to) = NameAddr::parse(&to_b, &to_b) {
            core.to = to;
        }
        Some(Response {
            status,
            reason: ByteStr::from(reason_phrase(status)),
            headers,
            body,
            core,
        })
    }

    /// Sends a response through server transaction `id`; returns what was sent.
    fn reply(
        &mut self,
        id: u64,
        status: u16,
        extra: Vec<(HeaderName, String)>,
        body: Bytes,
        now: Instant,
    ) -> Option<Bytes> {
        let bytes = self.build_response(id, status, extra, body)?.to_bytes();
        let txn = self.txns.get_mut(&id)?;
        match &mut txn.fsm {
            Fsm::ServerInvite(f) => f.send_response(status, bytes.clone(), now),
            Fsm::ServerNonInvite(f) => f.send_response(status, bytes.clone(), now),
            _ => return None,
        }
        self.observer.response(true, txn.method.as_str(), status);
        self.drain_txn(id, false);
        Some(bytes)
    }
}

/// The dialog id (§12): (Call-ID, local tag, remote tag). For a request we
/// receive as UAS the local tag is in To; for a response we receive as UAC,
/// in From.
fn dialog_key(core: &Core, role: Role) -> (String, String, String) {
    let tag = |na: &NameAddr| na.tag().map(|t| t.to_string()).unwrap_or_default();
    let (local, remote) = match role {
        Role::Uas => (tag(&core.to), tag(&core.from)),
        Role::Uac => (tag(&core.from), tag(&core.to)),
    };
    (core.call_id.to_string(), local, remote)
}

/// The top Via of a response (§18.2.1, RFC 3581 §4): `received` when the
/// request came from another address than the Via says, `rport` filled in.
fn stamp_via(mut via: Via, destination: SocketAddr) -> Via {
    let ip = destination.ip().to_string();
    if via.rport().is_some() {
        via.params.set("received", Some(&ip));
        via.params
            .set("rport", Some(&destination.port().to_string()));
    } else if via.host.ip() != Some(destination.ip()) {
        via.params.set("received", Some(&ip));
    }
    via
}

/// ACK for a non-2xx final response (§17.1.1.3): same branch as the INVITE,
/// the response's To (with its tag).
fn build_non2xx_ack(invite: &Request, resp: &Response) -> Bytes {
    let mut headers = Headers::new();
    if let Some(v) = invite.headers.get(&HeaderName::Via) {
        headers.push(HeaderName::Via, v.clone());
    }
    headers.push(HeaderName::MaxForwards, "70");
    for r in invite.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, r.clone());
    }
    if let Some(v) = invite.headers.get(&HeaderName::From) {
        headers.push(HeaderName::From, v.clone());
    }
    if let Some(v) = resp.headers.get(&HeaderName::To) {
        headers.push(HeaderName::To, v.clone());
    }
    headers.push(HeaderName::CallId, invite.core.call_id.clone());
    headers.push(HeaderName::CSeq, format!("{} ACK", invite.core.cseq.seq));
    let ack = Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
        core: invite.core.clone(),
    };
    ack.to_bytes()
}

/// Parses a Via we wrote ourselves; falls back to a placeholder that cannot
/// match anything if it somehow does not parse.
fn via_from_value(v: &str) -> Via {
    let b = ByteStr::from(v);
    Via::parse(&b, &b).unwrap_or(Via {
        transport: ByteStr::from_static("UDP"),
        host: Host::Name(ByteStr::from_static("invalid")),
        port: None,
        params: Default::default(),
    })
}

/// A `sip:user@host:port` URI for an IP address.
pub fn sip_uri(user: Option<&str>, ip: IpAddr, port: u16) -> Uri {
    Uri::Sip(SipUri::new(user, Host::from(ip), Some(port)))
}
