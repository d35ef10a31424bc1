//! The relay core: legs, bridges, latching and the per-packet forward
//! decision (sans-IO: the caller owns the sockets and passes `now`).
//!
//! ```text
//!  phone A ──▶ leg A (local port) ─┐        ┌─ leg B (local port) ──▶ phone B
//!                                   └─bridge─┘
//!  handle_rtp(A, src, pkt, now): parse ─▶ payload type ─▶ latch(src) ─▶ peer B
//!      ─▶ rewrite SSRC/seq/ts in place (B's output stream) ─▶ Forward{B, B's remote}
//! ```
//!
//! Latching resists RTP Bleed: a leg learns its remote source only in a
//! short window after each offer/answer (`add_leg`/`update_leg`), the SDP
//! address always wins, and afterwards packets from any other source are
//! dropped and counted. Nothing is ever sent to an address that was neither
//! signalled nor learned.
//!
//! Per packet there is no allocation, no lock and no hashing: a leg is an
//! index into a `Vec`, and the header is rewritten in the receive buffer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtp::{self, RtpError, RtpHeader};

/// A leg of the relay: an index, so the per-packet lookup is a bounds-checked
/// `Vec` access. Ids are reused after `remove_leg`; whoever holds one across
/// a removal must guard it (the driver keeps a serial per leg).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LegId(pub u32);

impl LegId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// The RTP payload types a peer may send: a bitset over 0..=127, so the check
/// is one shift and one AND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadTypes(u128);

impl PayloadTypes {
    /// Every payload type is accepted (no SDP filtering).
    pub const ANY: PayloadTypes = PayloadTypes(u128::MAX);
    /// Nothing is accepted; add types with [`PayloadTypes::with`].
    pub const NONE: PayloadTypes = PayloadTypes(0);

    /// The set with `pt` added (values above 127 are not RTP payload types and are ignored).
    #[must_use]
    pub const fn with(self, pt: u8) -> PayloadTypes {
        if pt > 127 {
            self
        } else {
            PayloadTypes(self.0 | (1u128 << pt))
        }
    }

    /// The set of the given payload types (typically the SDP `m=` line's formats).
    pub fn from_slice(pts: &[u8]) -> PayloadTypes {
        pts.iter().fold(PayloadTypes::NONE, |set, &pt| set.with(pt))
    }

    pub const fn contains(self, pt: u8) -> bool {
        pt <= 127 && (self.0 >> pt) & 1 == 1
    }
}

impl Default for PayloadTypes {
    fn default() -> Self {
        PayloadTypes::ANY
    }
}

/// One leg: a local RTP port (RTCP on port + 1, or on the same port with
/// rtcp-mux) facing one remote endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegConfig {
    /// The bound local RTP address (informational for the core; the driver fills it).
    pub local: SocketAddr,
    /// RTCP multiplexed on the RTP port (RFC 5761), on both ends.
    pub rtcp_mux: bool,
    /// The remote RTP address from the SDP, if any; its RTCP is port + 1 unless muxed.
    pub remote: Option<SocketAddr>,
    /// Payload types accepted from this peer.
    pub payload_types: PayloadTypes,
    /// Clock rate of the stream sent out of this leg (timestamp continuity).
    pub clock_rate: u32,
    /// Learn the source from the first packets of the latch window even when it
    /// differs from the SDP address (endpoints behind NAT).
    pub symmetric: bool,
}

impl LegConfig {
    /// A leg on `local` with no SDP address yet, symmetric, any payload type, 8 kHz.
    pub fn new(local: SocketAddr) -> LegConfig {
        LegConfig {
            local,
            rtcp_mux: false,
            remote: None,
            payload_types: PayloadTypes::ANY,
            clock_rate: 8000,
            symmetric: true,
        }
    }
}

/// The latch window opened by every offer/answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The window closes after this many packets...
    pub latch_packets: u32,
    /// ...or this long after its first packet, whichever comes first.
    pub latch_time: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            latch_packets: 5,
            latch_time: Duration::from_secs(3),
        }
    }
}

/// Which of a leg's sockets a packet goes out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    Rtp,
    /// The RTCP socket (RTP port + 1); never returned for an rtcp-mux leg.
    Rtcp,
}

/// What the caller does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) buffer out of `out_leg`'s `socket` to `to`.
    Forward {
        out_leg: LegId,
        to: SocketAddr,
        socket: SocketKind,
    },
    /// Drop it; it has been counted on the receiving leg under `reason`.
    Drop(DropReason),
}

/// Why a packet was dropped; [`DropReason::label`] is the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a valid RTP packet.
    Malformed(RtpError),
    /// Not a valid RTCP compound packet.
    MalformedRtcp,
    /// From a source that is neither signalled nor latched (RTP Bleed, spoofing, stale).
    NotLatched,
    /// Nowhere to send it: the leg is not bridged or the peer has no address yet.
    NoPeer,
    /// A payload type the peer did not offer.
    PayloadType,
    /// The leg does not exist (counted relay-wide, not per leg).
    UnknownLeg,
    /// Bigger than the driver's receive buffer (would have been truncated).
    Oversize,
    /// The send system call failed (counted on the output leg by the driver).
    SendFailed,
}

impl DropReason {
    /// Number of distinct counters (each `RtpError` is its own).
    pub const COUNT: usize = 11;

    /// Every reason, in counter order (for exporting metrics).
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed(RtpError::Version),
        DropReason::Malformed(RtpError::Truncated),
        DropReason::Malformed(RtpError::Padding),
        DropReason::Malformed(RtpError::RtcpPayloadType),
        DropReason::MalformedRtcp,
        DropReason::NotLatched,
        DropReason::NoPeer,
        DropReason::PayloadType,
        DropReason::UnknownLeg,
        DropReason::Oversize,
        DropReason::SendFailed,
    ];

    /// Position of this reason's counter in [`LegCounters::dropped_by_reason`].
    pub const fn index(self) -> usize {
        match self {
            DropReason::Malformed(RtpError::Version) => 0,
            DropReason::Malformed(RtpError::Truncated) => 1,
            DropReason::Malformed(RtpError::Padding) => 2,
            DropReason::Malformed(RtpError::RtcpPayloadType) => 3,
            DropReason::MalformedRtcp => 4,
            DropReason::NotLatched => 5,
            DropReason::NoPeer => 6,
            DropReason::PayloadType => 7,
            DropReason::UnknownLeg => 8,
            DropReason::Oversize => 9,
            DropReason::SendFailed => 10,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed(e) => e.label(),
            DropReason::MalformedRtcp => "rtcp_malformed",
            DropReason::NotLatched => "not_latched",
            DropReason::NoPeer => "no_peer",
            DropReason::PayloadType => "payload_type_not_offered",
            DropReason::UnknownLeg => "unknown_leg",
            DropReason::Oversize => "oversize",
            DropReason::SendFailed => "send_failed",
        }
    }
}

/// Control-path errors (the per-packet path never errors: it drops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("unknown leg {0:?}")]
    UnknownLeg(LegId),
    #[error("a leg cannot be bridged to itself")]
    SelfBridge,
}

/// What a leg has seen and sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets accepted from the peer (valid, allowed, from the latched source).
    pub rtp_in: u64,
    /// RTP packets sent out of this leg.
    pub rtp_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Bytes (UDP payload) of the packets counted in `rtp_in` + `rtcp_in`.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Dropped packets received on this leg, by [`DropReason::index`].
    pub dropped_by_reason: [u64; DropReason::COUNT],
    /// When the last accepted RTP packet arrived (RTP timeout detection).
    pub last_rtp_at: Option<Instant>,
    /// SSRC of the last accepted RTP packet.
    pub ssrc_in: Option<u32>,
    /// The SSRC this leg sends (`rssrc`).
    pub ssrc_out: u32,
    /// Where RTP to this leg's endpoint goes now (learned, else signalled).
    pub rtp_remote: Option<SocketAddr>,
    /// Where RTCP to this leg's endpoint goes now.
    pub rtcp_remote: Option<SocketAddr>,
}

impl LegCounters {
    fn new(ssrc_out: u32) -> LegCounters {
        LegCounters {
            rtp_in: 0,
            rtp_out: 0,
            rtcp_in: 0,
            rtcp_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            dropped_by_reason: [0; DropReason::COUNT],
            last_rtp_at: None,
            ssrc_in: None,
            ssrc_out,
            rtp_remote: None,
            rtcp_remote: None,
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_by_reason
            .get(reason.index())
            .copied()
            .unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_by_reason.iter().sum()
    }

    /// `(label, count)` for every reason, for metrics export.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .zip(self.dropped_by_reason.iter())
            .map(|(r, n)| (r.label(), *n))
    }

    fn count_drop(&mut self, reason: DropReason) {
        if let Some(n) = self.dropped_by_reason.get_mut(reason.index()) {
            *n += 1;
        }
    }
}

/// The remote source of one flow (RTP, or RTCP when not muxed).
#[derive(Clone, Copy, Debug)]
struct Latch {
    /// From the SDP: trusted, since it came through authenticated signalling.
    signalled: Option<SocketAddr>,
    /// Learned from packets.
    learned: Option<SocketAddr>,
    /// The window after the last offer/answer is still open.
    open: bool,
    /// A source was learned in this window: the first one wins, so a sprayer
    /// arriving second cannot take the stream over (RTP Bleed).
    claimed: bool,
    /// Packets seen in this window.
    seen: u32,
    /// First packet of this window. The clock starts there and not at the
    /// offer, because a callee's RTP may start only when it answers, tens of
    /// seconds later, and a NATed endpoint must still be learned then.
    started: Option<Instant>,
}

impl Latch {
    fn new(signalled: Option<SocketAddr>) -> Latch {
        Latch {
            signalled,
            learned: None,
            open: true,
            claimed: false,
            seen: 0,
            started: None,
        }
    }

    /// A new offer/answer: a new window; a changed address forgets what was
    /// learned (the endpoint moved), an unchanged one keeps it until relearned.
    fn reopen(&mut self, signalled: Option<SocketAddr>) {
        if signalled != self.signalled {
            self.learned = None;
        }
        *self = Latch {
            learned: self.learned,
            ..Latch::new(signalled)
        };
    }

    fn window_open(&mut self, now: Instant, cfg: &RelayConfig) -> bool {
        if self.open {
            let expired = self
                .started
                .is_some_and(|s| now.saturating_duration_since(s) >= cfg.latch_time);
            if expired || self.seen >= cfg.latch_packets {
                self.open = false;
            }
        }
        self.open
    }

    /// Whether a packet from `source` is accepted (learning it if allowed).
    fn accept(
        &mut self,
        source: SocketAddr,
        symmetric: bool,
        now: Instant,
        cfg: &RelayConfig,
    ) -> bool {
        let in_window = self.window_open(now, cfg);
        if in_window {
            self.started.get_or_insert(now);
            self.seen = self.seen.saturating_add(1);
        }
        if Some(source) == self.signalled {
            // The SDP address is preferred: latch it and stop learning.
            self.learned = Some(source);
            self.claimed = true;
            self.open = false;
            return true;
        }
        if Some(source) == self.learned {
            return true;
        }
        if in_window && symmetric && !self.claimed {
            self.learned = Some(source);
            self.claimed = true;
            return true;
        }
        false
    }

    fn destination(&self) -> Option<SocketAddr> {
        self.learned.or(self.signalled)
    }
}

/// The stream sent out of a leg: one SSRC whatever the input, with sequence
/// numbers and timestamps kept continuous when the input SSRC changes.
#[derive(Clone, Copy, Debug)]
struct OutStream {
    ssrc: u32,
    clock_rate: u32,
    /// The input SSRC the offsets below belong to.
    input: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest input sequence number of the current input, and its timestamp.
    last_in_seq: u16,
    last_in_ts: u32,
    /// Highest output sequence number sent, its timestamp and when.
    max_seq: u16,
    max_ts: u32,
    last_sent_at: Option<Instant>,
    /// Timestamp ticks per packet, learned from consecutive packets.
    frame: u32,
}

impl OutStream {
    fn new(ssrc: u32, clock_rate: u32) -> OutStream {
        OutStream {
            ssrc,
            clock_rate,
            input: None,
            seq_offset: 0,
            ts_offset: 0,
            last_in_seq: 0,
            last_in_ts: 0,
            max_seq: 0,
            max_ts: 0,
            last_sent_at: None,
            // 20 ms, the usual ptime; 160 at 8 kHz.
            frame: (clock_rate / 50).max(1),
        }
    }

    /// Output (sequence, timestamp) for an input packet.
    fn map(&mut self, h: &RtpHeader, now: Instant) -> (u16, u32) {
        if self.input != Some(h.ssrc) {
            if let Some(last) = self.last_sent_at {
                // New input (re-INVITE, media server switch): the next packet
                // follows the last one sent, and the timestamp moves on by the
                // time that has passed (at least one frame) so the receiver's
                // jitter and playout see no jump.
                let ticks = u128::from(self.clock_rate)
                    .saturating_mul(now.saturating_duration_since(last).as_micros())
                    / 1_000_000;
                let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
                let advance = self.frame.max(ticks - ticks % self.frame.max(1));
                self.seq_offset = self.max_seq.wrapping_add(1).wrapping_sub(h.sequence);
                self.ts_offset = self.max_ts.wrapping_add(advance).wrapping_sub(h.timestamp);
            }
            self.input = Some(h.ssrc);
            self.last_in_seq = h.sequence;
            self.last_in_ts = h.timestamp;
        } else {
            let ahead = h.sequence.wrapping_sub(self.last_in_seq);
            if ahead != 0 && ahead < 0x8000 {
                let delta = h.timestamp.wrapping_sub(self.last_in_ts);
                // Only consecutive packets tell the frame size; zero deltas
                // (DTMF events) and big ones (silence suppression) are ignored.
                if ahead == 1 && delta != 0 && delta <= self.clock_rate / 5 {
                    self.frame = delta;
                }
                self.last_in_seq = h.sequence;
                self.last_in_ts = h.timestamp;
            }
        }
        let seq = h.sequence.wrapping_add(self.seq_offset);
        let ts = h.timestamp.wrapping_add(self.ts_offset);
        let ahead = seq.wrapping_sub(self.max_seq);
        if self.last_sent_at.is_none() || (ahead != 0 && ahead < 0x8000) {
            self.max_seq = seq;
            self.max_ts = ts;
        }
        self.last_sent_at = Some(now);
        (seq, ts)
    }
}

#[derive(Clone, Debug)]
struct Leg {
    cfg: LegConfig,
    peer: Option<LegId>,
    rtp: Latch,
    /// Unused with rtcp-mux: RTCP then shares the RTP 5-tuple and its latch.
    rtcp: Latch,
    out: OutStream,
    counters: LegCounters,
}

impl Leg {
    fn rtcp_signalled(cfg: &LegConfig) -> Option<SocketAddr> {
        if cfg.rtcp_mux {
            return cfg.remote;
        }
        let remote = cfg.remote?;
        let port = remote.port().checked_add(1)?;
        Some(SocketAddr::new(remote.ip(), port))
    }

    fn rtcp_destination(&self) -> Option<SocketAddr> {
        if self.cfg.rtcp_mux {
            self.rtp.destination()
        } else {
            self.rtcp.destination()
        }
    }
}

/// The relay: every leg of one event loop.
#[derive(Debug, Default)]
pub struct Relay {
    cfg: RelayConfig,
    legs: Vec<Option<Leg>>,
    free: Vec<u32>,
    unknown_leg_drops: u64,
}

impl Relay {
    pub fn new(cfg: RelayConfig) -> Relay {
        Relay {
            cfg,
            legs: Vec::new(),
            free: Vec::new(),
            unknown_leg_drops: 0,
        }
    }

    /// Adds a leg (its latch window opens now) with a random output SSRC.
    pub fn add_leg(&mut self, cfg: LegConfig, now: Instant) -> LegId {
        self.add_leg_with_ssrc(cfg, rand::random(), now)
    }

    /// [`Relay::add_leg`] with a chosen output SSRC (e.g. to keep the
    /// `rssrc` the app was told when a leg is recreated).
    pub fn add_leg_with_ssrc(&mut self, cfg: LegConfig, ssrc: u32, _now: Instant) -> LegId {
        let leg = Leg {
            peer: None,
            rtp: Latch::new(cfg.remote),
            rtcp: Latch::new(Leg::rtcp_signalled(&cfg)),
            out: OutStream::new(ssrc, cfg.clock_rate),
            counters: LegCounters::new(ssrc),
            cfg,
        };
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.legs.get_mut(id as usize) {
                *slot = Some(leg);
                return LegId(id);
            }
        }
        let id = u32::try_from(self.legs.len()).unwrap_or(u32::MAX);
        self.legs.push(Some(leg));
        LegId(id)
    }

    /// Pairs two legs: what arrives on one goes out of the other. Either's
    /// previous peer is left alone (unbridged).
    pub fn bridge(&mut self, a: LegId, b: LegId) -> Result<(), RelayError> {
        if a == b {
            return Err(RelayError::SelfBridge);
        }
        for id in [a, b] {
            if self.leg(id).is_none() {
                return Err(RelayError::UnknownLeg(id));
            }
        }
        self.unbridge(a)?;
        self.unbridge(b)?;
        if let Some(l) = self.leg_mut(a) {
            l.peer = Some(b);
        }
        if let Some(l) = self.leg_mut(b) {
            l.peer = Some(a);
        }
        Ok(())
    }

    /// Leaves a leg alone (its packets are then dropped as `NoPeer`).
    pub fn unbridge(&mut self, leg: LegId) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        if let Some(peer) = l.peer.take() {
            if let Some(p) = self.leg_mut(peer) {
                if p.peer == Some(leg) {
                    p.peer = None;
                }
            }
        }
        Ok(())
    }

    /// A new offer/answer for this leg (re-INVITE): a new SDP address and a
    /// new latch window, for RTP and RTCP.
    pub fn update_leg(
        &mut self,
        leg: LegId,
        remote: Option<SocketAddr>,
        _now: Instant,
    ) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        l.cfg.remote = remote;
        l.rtp.reopen(remote);
        l.rtcp.reopen(Leg::rtcp_signalled(&l.cfg));
        Ok(())
    }

    /// Changes the payload types accepted from the peer (after a re-INVITE).
    pub fn set_payload_types(&mut self, leg: LegId, pts: PayloadTypes) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        l.cfg.payload_types = pts;
        Ok(())
    }

    /// Removes a leg, unbridging its peer; its id may be reused.
    pub fn remove_leg(&mut self, leg: LegId) -> Result<(), RelayError> {
        self.unbridge(leg)?;
        if let Some(slot) = self.legs.get_mut(leg.index()) {
            *slot = None;
            self.free.push(leg.0);
        }
        Ok(())
    }

    /// The SSRC this leg sends (`rssrc`, told to the app).
    pub fn leg_ssrc(&self, leg: LegId) -> Option<u32> {
        self.leg(leg).map(|l| l.out.ssrc)
    }

    pub fn leg_config(&self, leg: LegId) -> Option<&LegConfig> {
        self.leg(leg).map(|l| &l.cfg)
    }

    pub fn peer(&self, leg: LegId) -> Option<LegId> {
        self.leg(leg).and_then(|l| l.peer)
    }

    pub fn leg_count(&self) -> usize {
        self.legs.iter().filter(|l| l.is_some()).count()
    }

    pub fn leg_counters(&self, leg: LegId) -> Option<LegCounters> {
        self.leg(leg).map(|l| LegCounters {
            rtp_remote: l.rtp.destination(),
            rtcp_remote: l.rtcp_destination(),
            ..l.counters
        })
    }

    /// Packets addressed to a leg that does not exist.
    pub fn unknown_leg_drops(&self) -> u64 {
        self.unknown_leg_drops
    }

    /// Counts a drop decided outside the core (the driver: oversize datagram, failed send).
    pub fn count_drop(&mut self, leg: LegId, reason: DropReason) {
        match self.leg_mut(leg) {
            Some(l) => l.counters.count_drop(reason),
            None => self.unknown_leg_drops += 1,
        }
    }

    /// Dispatches to [`Relay::handle_rtp`] or [`Relay::handle_rtcp`].
    pub fn handle(
        &mut self,
        leg: LegId,
        source: SocketAddr,
        input: Input<'_>,
        now: Instant,
    ) -> Action {
        match input {
            Input::Rtp(p) => self.handle_rtp(leg, source, p, now),
            Input::Rtcp(p) => self.handle_rtcp(leg, source, p, now),
        }
    }

    /// The per-packet path for a datagram received on `leg`'s RTP socket
    /// (RTCP on an rtcp-mux leg is recognised and handled as RTCP). On
    /// `Forward`, `packet` has been rewritten in place for the output leg.
    pub fn handle_rtp(
        &mut self,
        leg: LegId,
        source: SocketAddr,
        packet: &mut [u8],
        now: Instant,
    ) -> Action {
        let cfg = self.cfg;
        let Some(l) = self.leg_mut(leg) else {
            return self.drop_unknown();
        };
        if l.cfg.rtcp_mux && rtp::is_rtcp(packet) {
            return self.handle_rtcp(leg, source, packet, now);
        }
        let h = match rtp::parse(packet) {
            Ok(h) => h,
            Err(e) => return drop_on(l, DropReason::Malformed(e)),
        };
        if !l.cfg.payload_types.contains(h.payload_type) {
            return drop_on(l, DropReason::PayloadType);
        }
        if !l.rtp.accept(source, l.cfg.symmetric, now, &cfg) {
            return drop_on(l, DropReason::NotLatched);
        }
        let c = &mut l.counters;
        c.rtp_in += 1;
        c.bytes_in += packet.len() as u64;
        c.last_rtp_at = Some(now);
        c.ssrc_in = Some(h.ssrc);
        let Some(peer) = l.peer else {
            return drop_on(l, DropReason::NoPeer);
        };
        let Some(out) = self.leg_mut(peer) else {
            return self.drop_no_peer(leg);
        };
        let Some(to) = out.rtp.destination() else {
            return self.drop_no_peer(leg);
        };
        let (seq, ts) = out.out.map(&h, now);
        if !rtp::rewrite(packet, h.payload_type, seq, ts, out.out.ssrc) {
            // Unreachable after a successful parse; counted, never a panic.
            return self.count_and_drop(leg, DropReason::Malformed(RtpError::Truncated));
        }
        out.counters.rtp_out += 1;
        out.counters.bytes_out += packet.len() as u64;
        Action::Forward {
            out_leg: peer,
            to,
            socket: SocketKind::Rtp,
        }
    }

    /// The per-packet path for RTCP received on `leg` (its RTCP socket, or
    /// its RTP socket with rtcp-mux). RTCP is latched on its own source and
    /// forwarded unchanged to the peer's RTCP address.
    pub fn handle_rtcp(
        &mut self,
        leg: LegId,
        source: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) -> Action {
        let cfg = self.cfg;
        let Some(l) = self.leg_mut(leg) else {
            return self.drop_unknown();
        };
        if !valid_rtcp(packet) {
            return drop_on(l, DropReason::MalformedRtcp);
        }
        let latch = if l.cfg.rtcp_mux {
            &mut l.rtp
        } else {
            &mut l.rtcp
        };
        if !latch.accept(source, l.cfg.symmetric, now, &cfg) {
            return drop_on(l, DropReason::NotLatched);
        }
        l.counters.rtcp_in += 1;
        l.counters.bytes_in += packet.len() as u64;
        let Some(peer) = l.peer else {
            return drop_on(l, DropReason::NoPeer);
        };
        let Some(out) = self.leg_mut(peer) else {
            return self.drop_no_peer(leg);
        };
        let Some(to) = out.rtcp_destination() else {
            return self.drop_no_peer(leg);
        };
        out.counters.rtcp_out += 1;
        out.counters.bytes_out += packet.len() as u64;
        let socket = if out.cfg.rtcp_mux {
            SocketKind::Rtp
        } else {
            SocketKind::Rtcp
        };
        Action::Forward {
            out_leg: peer,
            to,
            socket,
        }
    }

    fn leg(&self, leg: LegId) -> Option<&Leg> {
        self.legs.get(leg.index()).and_then(Option::as_ref)
    }

    fn leg_mut(&mut self, leg: LegId) -> Option<&mut Leg> {
        self.legs.get_mut(leg.index()).and_then(Option::as_mut)
    }

    fn drop_unknown(&mut self) -> Action {
        self.unknown_leg_drops += 1;
        Action::Drop(DropReason::UnknownLeg)
    }

    fn drop_no_peer(&mut self, leg: LegId) -> Action {
        self.count_and_drop(leg, DropReason::NoPeer)
    }

    fn count_and_drop(&mut self, leg: LegId, reason: DropReason) -> Action {
        self.count_drop(leg, reason);
        Action::Drop(reason)
    }
}

fn drop_on(leg: &mut Leg, reason: DropReason) -> Action {
    leg.counters.count_drop(reason);
    Action::Drop(reason)
}

/// A packet as the caller classified it.
#[derive(Debug)]
pub enum Input<'a> {
    Rtp(&'a mut [u8]),
    Rtcp(&'a [u8]),
}

/// RTCP compound check (RFC 3550 §6.1): an RTCP packet type first, and every
/// packet version 2 with a length that stays inside the datagram.
fn valid_rtcp(packet: &[u8]) -> bool {
    if !rtp::is_rtcp(packet) {
        return false;
    }
    let mut rest = packet;
    while !rest.is_empty() {
        let [b0, _, l0, l1, ..] = rest else {
            return false;
        };
        if b0 >> 6 != 2 {
            return false;
        }
        let len = (usize::from(u16::from_be_bytes([*l0, *l1])) + 1) * 4;
        let Some(next) = rest.get(len..) else {
            return false;
        };
        rest = next;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), port)
    }

    fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = Vec::new();
        rtp::write(&mut p, false, pt, seq, ts, ssrc, &[0xD5; 160]);
        p
    }

    fn rr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    struct Call {
        relay: Relay,
        a: LegId,
        b: LegId,
        t0: Instant,
    }

    /// A bridge between phone A (SDP 192.0.2.1:4000) and phone B (SDP `b_remote`).
    fn call(b_remote: Option<SocketAddr>, b_symmetric: bool) -> Call {
        let t0 = Instant::now();
        let mut relay = Relay::new(RelayConfig::default());
        let a = relay.add_leg(
            LegConfig {
                remote: Some(addr(1, 4000)),
                ..LegConfig::new(addr(100, 30000))
            },
            t0,
        );
        let b = relay.add_leg(
            LegConfig {
                remote: b_remote,
                symmetric: b_symmetric,
                ..LegConfig::new(addr(100, 30002))
            },
            t0,
        );
        relay.bridge(a, b).unwrap();
        Call { relay, a, b, t0 }
    }

    fn ms(c: &Call, n: u64) -> Instant {
        c.t0 + Duration::from_millis(n)
    }

    impl Call {
        fn send(&mut self, leg: LegId, src: SocketAddr, p: &mut [u8], at: Instant) -> Action {
            self.relay.handle_rtp(leg, src, p, at)
        }
    }

    #[test]
    fn latches_sdp_address_and_forwards_with_rewritten_ssrc() {
        let mut c = call(Some(addr(2, 5000)), true);
        let mut p = pkt(0, 100, 1000, 0xAAAA);
        let now = ms(&c, 10);
        let action = c.send(c.a, addr(1, 4000), &mut p, now);
        assert_eq!(
            action,
            Action::Forward {
                out_leg: c.b,
                to: addr(2, 5000),
                socket: SocketKind::Rtp
            }
        );
        let h = rtp::parse(&p).unwrap();
        assert_eq!(h.ssrc, c.relay.leg_ssrc(c.b).unwrap());
        assert_eq!((h.sequence, h.timestamp, h.payload_type), (100, 1000, 0));
        let ca = c.relay.leg_counters(c.a).unwrap();
        assert_eq!((ca.rtp_in, ca.ssrc_in), (1, Some(0xAAAA)));
        assert_eq!(ca.rtp_remote, Some(addr(1, 4000)));
        let cb = c.relay.leg_counters(c.b).unwrap();
        assert_eq!((cb.rtp_out, cb.bytes_out), (1, p.len() as u64));
        assert_eq!(cb.ssrc_out, c.relay.leg_ssrc(c.b).unwrap());

        // The SDP address latched at once: the window is closed, a NAT-ish
        // source is no longer learned even though the leg is symmetric.
        let mut p = pkt(0, 101, 1160, 0xAAAA);
        let now = ms(&c, 30);
        assert_eq!(
            c.send(c.a, addr(9, 4000), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
    }

    #[test]
    fn symmetric_latches_first_packet_without_sdp() {
        let mut c = call(None, true);
        // Nothing to send to B yet: never to an unknown address.
        let mut p = pkt(0, 1, 0, 0xA);
        let now = ms(&c, 0);
        assert_eq!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Drop(DropReason::NoPeer)
        );
        assert_eq!(
            c.relay
                .leg_counters(c.a)
                .unwrap()
                .dropped(DropReason::NoPeer),
            1
        );
        // B speaks first from its NAT address: latched.
        let mut p = pkt(0, 7, 0, 0xB);
        let now = ms(&c, 20);
        assert!(matches!(
            c.send(c.b, addr(50, 61000), &mut p, now),
            Action::Forward { to, .. } if to == addr(1, 4000)
        ));
        let mut p = pkt(0, 2, 160, 0xA);
        let now = ms(&c, 40);
        assert_eq!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Forward {
                out_leg: c.b,
                to: addr(50, 61000),
                socket: SocketKind::Rtp
            }
        );
    }

    #[test]
    fn non_symmetric_leg_without_sdp_learns_nothing() {
        let mut c = call(None, false);
        let mut p = pkt(0, 7, 0, 0xB);
        let now = ms(&c, 0);
        assert_eq!(
            c.send(c.b, addr(50, 61000), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
        let mut p = pkt(0, 1, 0, 0xA);
        assert_eq!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Drop(DropReason::NoPeer)
        );
    }

    #[test]
    fn rtp_bleed_spoofer_after_latching_is_dropped_and_counted() {
        let mut c = call(None, true);
        let mut p = pkt(0, 7, 0, 0xB);
        let now = ms(&c, 0);
        assert!(matches!(
            c.send(c.b, addr(50, 61000), &mut p, now),
            Action::Forward { .. }
        ));
        // Still inside the window (1 packet, 0 s), but the source is claimed.
        for i in 0..10u16 {
            let mut p = pkt(0, 1000 + i, 0, 0xBAD);
            let now = ms(&c, 5);
            assert_eq!(
                c.send(c.b, addr(66, 6666), &mut p, now),
                Action::Drop(DropReason::NotLatched)
            );
        }
        let cb = c.relay.leg_counters(c.b).unwrap();
        assert_eq!(cb.dropped(DropReason::NotLatched), 10);
        assert_eq!(cb.rtp_in, 1);
        assert_eq!(cb.rtp_remote, Some(addr(50, 61000)));
        // The real phone still gets through, and A's media still goes to it.
        let mut p = pkt(0, 8, 160, 0xB);
        let now = ms(&c, 20);
        assert!(matches!(
            c.send(c.b, addr(50, 61000), &mut p, now),
            Action::Forward { .. }
        ));
        let mut p = pkt(0, 1, 0, 0xA);
        assert!(matches!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Forward { to, .. } if to == addr(50, 61000)
        ));
    }

    #[test]
    fn sdp_address_overrides_a_learned_one_in_the_window() {
        // Symmetric with an SDP address: a first packet from elsewhere is
        // learned (NAT), but the SDP address, once seen, wins for good.
        let mut c = call(Some(addr(2, 5000)), true);
        let mut p = pkt(0, 1, 0, 0xB);
        let now = ms(&c, 0);
        assert!(matches!(
            c.send(c.b, addr(66, 6666), &mut p, now),
            Action::Forward { .. }
        ));
        let mut p = pkt(0, 2, 160, 0xB);
        let now = ms(&c, 20);
        assert!(matches!(
            c.send(c.b, addr(2, 5000), &mut p, now),
            Action::Forward { .. }
        ));
        let mut p = pkt(0, 3, 320, 0xB);
        let now = ms(&c, 40);
        assert_eq!(
            c.send(c.b, addr(66, 6666), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
        assert_eq!(
            c.relay.leg_counters(c.b).unwrap().rtp_remote,
            Some(addr(2, 5000))
        );
    }

    #[test]
    fn window_closes_after_packets_or_time() {
        // A signalled-only leg: 5 packets from a stranger, all refused.
        let mut c = call(Some(addr(2, 5000)), false);
        for i in 0..5u16 {
            let mut p = pkt(0, i, 0, 0xB);
            let now = ms(&c, u64::from(i));
            let _ = c.send(c.b, addr(66, 6666), &mut p, now);
        }
        let mut c2 = call(None, true);
        let mut p = pkt(0, 1, 0, 0xB);
        let now = ms(&c2, 0);
        assert!(matches!(
            c2.send(c2.b, addr(50, 61000), &mut p, now),
            Action::Forward { .. }
        ));
        // After the window (3 s from its first packet), a new source is dropped.
        let mut p = pkt(0, 2, 160, 0xB);
        let now = ms(&c2, 3500);
        assert_eq!(
            c2.send(c2.b, addr(51, 61000), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
        // The signalled-only leg: after its window, still only the SDP address.
        let mut p = pkt(0, 9, 0, 0xB);
        let now = ms(&c, 10);
        assert_eq!(
            c.send(c.b, addr(67, 6666), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
        assert!(matches!(
            c.send(c.b, addr(2, 5000), &mut p, now),
            Action::Forward { .. }
        ));
    }

    #[test]
    fn packet_count_closes_the_window_before_a_late_learner() {
        // Symmetric, no SDP: the window is 5 packets; packet 6 from a new
        // source is refused even if the first source were forgotten.
        let mut c = call(None, true);
        for i in 0..5u16 {
            let mut p = pkt(0, i, u32::from(i) * 160, 0xB);
            let now = ms(&c, u64::from(i) * 20);
            assert!(matches!(
                c.send(c.b, addr(50, 61000), &mut p, now),
                Action::Forward { .. }
            ));
        }
        let mut p = pkt(0, 5, 800, 0xB);
        let now = ms(&c, 100);
        assert_eq!(
            c.send(c.b, addr(51, 61001), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
    }

    #[test]
    fn update_leg_reopens_the_window() {
        let mut c = call(None, true);
        let mut p = pkt(0, 1, 0, 0xB);
        let now = ms(&c, 0);
        assert!(matches!(
            c.send(c.b, addr(50, 61000), &mut p, now),
            Action::Forward { .. }
        ));
        let now = ms(&c, 10_000);
        let mut p = pkt(0, 2, 160, 0xB);
        assert_eq!(
            c.send(c.b, addr(50, 62000), &mut p, now),
            Action::Drop(DropReason::NotLatched)
        );
        // Re-INVITE from the NATed phone (new NAT binding): learn again.
        c.relay.update_leg(c.b, None, now).unwrap();
        let mut p = pkt(0, 3, 320, 0xB);
        assert!(matches!(
            c.send(c.b, addr(50, 62000), &mut p, now),
            Action::Forward { .. }
        ));
        let mut p = pkt(0, 1, 0, 0xA);
        assert!(matches!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Forward { to, .. } if to == addr(50, 62000)
        ));
        // A re-INVITE with a new SDP address forgets the learned one: A's
        // media goes to the new SDP address before B's first packet.
        c.relay.update_leg(c.b, Some(addr(3, 7000)), now).unwrap();
        let mut p = pkt(0, 2, 160, 0xA);
        assert!(matches!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Forward { to, .. } if to == addr(3, 7000)
        ));
        assert!(c.relay.update_leg(LegId(99), None, now).is_err());
    }

    #[test]
    fn ssrc_rewrite_and_continuity_across_input_ssrc_change() {
        let mut c = call(Some(addr(2, 5000)), true);
        let out_ssrc = c.relay.leg_ssrc(c.b).unwrap();
        let mut last = (0u16, 0u32);
        for i in 0..10u16 {
            let mut p = pkt(8, 50_000 + i, 90_000 + u32::from(i) * 160, 0x1111);
            let now = ms(&c, u64::from(i) * 20);
            assert!(matches!(
                c.send(c.a, addr(1, 4000), &mut p, now),
                Action::Forward { .. }
            ));
            let h = rtp::parse(&p).unwrap();
            assert_eq!(h.ssrc, out_ssrc);
            last = (h.sequence, h.timestamp);
        }
        // The trunk switches media servers: new SSRC, sequence, timestamp.
        let mut first_new = (0, 0);
        for i in 0..3u16 {
            let mut p = pkt(8, 7 + i, 4_000_000_000 + u32::from(i) * 160, 0x2222);
            let now = ms(&c, 200 + u64::from(i) * 20);
            assert!(matches!(
                c.send(c.a, addr(1, 4000), &mut p, now),
                Action::Forward { .. }
            ));
            let h = rtp::parse(&p).unwrap();
            assert_eq!(h.ssrc, out_ssrc);
            if i == 0 {
                first_new = (h.sequence, h.timestamp);
            }
            assert_eq!(h.sequence, last.0.wrapping_add(1 + i));
        }
        assert_eq!(first_new.0, last.0.wrapping_add(1));
        assert_eq!(first_new.1, last.1.wrapping_add(160));
        assert_eq!(c.relay.leg_counters(c.a).unwrap().ssrc_in, Some(0x2222));
    }

    #[test]
    fn timestamp_follows_elapsed_time_after_a_pause_and_learned_frame() {
        // 30 ms frames (240 ticks), then 2 s of silence before the new SSRC.
        let mut c = call(Some(addr(2, 5000)), true);
        let mut last_ts = 0;
        for i in 0..4u16 {
            let mut p = pkt(0, i, u32::from(i) * 240, 0x1);
            let now = ms(&c, u64::from(i) * 30);
            let _ = c.send(c.a, addr(1, 4000), &mut p, now);
            last_ts = rtp::parse(&p).unwrap().timestamp;
        }
        let mut p = pkt(0, 999, 12345, 0x2);
        let now = ms(&c, 90 + 2000);
        let _ = c.send(c.a, addr(1, 4000), &mut p, now);
        // 2 s = 16000 ticks, kept on the 240-tick frame grid.
        assert_eq!(rtp::parse(&p).unwrap().timestamp, last_ts + 15_840);
        // Same-time switch: exactly one learned frame.
        let mut p = pkt(0, 5, 777, 0x3);
        let _ = c.send(c.a, addr(1, 4000), &mut p, now);
        assert_eq!(rtp::parse(&p).unwrap().timestamp, last_ts + 15_840 + 240);
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let mut c = call(Some(addr(2, 5000)), true);
        let mut seqs = Vec::new();
        for s in [10u16, 12, 11, 13] {
            let mut p = pkt(0, s, u32::from(s) * 160, 0x1);
            let now = ms(&c, u64::from(s));
            let _ = c.send(c.a, addr(1, 4000), &mut p, now);
            seqs.push(rtp::parse(&p).unwrap().sequence);
        }
        assert_eq!(seqs, [10, 12, 11, 13]);
        // Switch: follows the highest (13), not the last (13 here too) nor 11.
        let mut p = pkt(0, 500, 0, 0x2);
        let now = ms(&c, 100);
        let _ = c.send(c.a, addr(1, 4000), &mut p, now);
        assert_eq!(rtp::parse(&p).unwrap().sequence, 14);
    }

    #[test]
    fn malformed_and_unoffered_packets_dropped_by_reason() {
        let mut c = call(Some(addr(2, 5000)), true);
        c.relay
            .set_payload_types(c.a, PayloadTypes::from_slice(&[0, 8, 101]))
            .unwrap();
        let src = addr(1, 4000);
        let now = ms(&c, 0);
        let mut short = [0x80u8, 0, 0, 1];
        assert_eq!(
            c.relay.handle_rtp(c.a, src, &mut short, now),
            Action::Drop(DropReason::Malformed(RtpError::Truncated))
        );
        let mut v1 = pkt(0, 1, 0, 1);
        v1[0] = 0x40;
        assert_eq!(
            c.relay.handle_rtp(c.a, src, &mut v1, now),
            Action::Drop(DropReason::Malformed(RtpError::Version))
        );
        let mut rtcp_on_rtp = rr(5);
        rtcp_on_rtp.extend_from_slice(&[0; 8]);
        assert_eq!(
            c.relay.handle_rtp(c.a, src, &mut rtcp_on_rtp, now),
            Action::Drop(DropReason::Malformed(RtpError::RtcpPayloadType))
        );
        let mut pt = pkt(18, 1, 0, 1);
        assert_eq!(
            c.relay.handle_rtp(c.a, src, &mut pt, now),
            Action::Drop(DropReason::PayloadType)
        );
        let mut empty: [u8; 0] = [];
        let _ = c.relay.handle_rtp(c.a, src, &mut empty, now);
        assert_eq!(
            c.relay
                .handle_rtcp(c.a, src, &[0x80, 200, 0, 9, 1, 2, 3, 4], now),
            Action::Drop(DropReason::MalformedRtcp)
        );
        assert_eq!(
            c.relay
                .handle_rtp(LegId(42), src, &mut pkt(0, 1, 0, 1), now),
            Action::Drop(DropReason::UnknownLeg)
        );
        assert_eq!(c.relay.unknown_leg_drops(), 1);
        let ca = c.relay.leg_counters(c.a).unwrap();
        assert_eq!(ca.dropped(DropReason::Malformed(RtpError::Truncated)), 2);
        assert_eq!(ca.dropped(DropReason::Malformed(RtpError::Version)), 1);
        assert_eq!(
            ca.dropped(DropReason::Malformed(RtpError::RtcpPayloadType)),
            1
        );
        assert_eq!(ca.dropped(DropReason::PayloadType), 1);
        assert_eq!(ca.dropped(DropReason::MalformedRtcp), 1);
        assert_eq!(ca.dropped_total(), 6);
        assert_eq!(ca.rtp_in, 0);
        // Malformed packets do not latch anything.
        assert_eq!(ca.rtp_remote, Some(addr(1, 4000)));
        let labels: Vec<_> = ca.drops().filter(|(_, n)| *n > 0).collect();
        assert!(labels.contains(&("rtp_truncated", 2)));
        // Every reason has a distinct slot and label.
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut all: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), DropReason::COUNT);
    }

    #[test]
    fn fuzzed_packets_never_panic() {
        let mut c = call(None, true);
        let good = pkt(0, 1, 0, 1);
        let now = ms(&c, 0);
        for cut in 0..good.len() {
            for flip in 0..16 {
                let mut p = good[..cut].to_vec();
                if let Some(b) = p.get_mut(flip % 13) {
                    *b ^= 0xA5;
                }
                let _ = c.relay.handle_rtp(c.a, addr(1, 4000), &mut p, now);
                let _ = c.relay.handle_rtcp(c.b, addr(1, 4001), &p, now);
            }
        }
    }

    #[test]
    fn rtcp_goes_to_the_peers_rtcp_port_or_muxed_port() {
        // A: non-muxed (RTCP 4001); B: muxed at 5000.
        let t0 = Instant::now();
        let mut relay = Relay::new(RelayConfig::default());
        let a = relay.add_leg(
            LegConfig {
                remote: Some(addr(1, 4000)),
                ..LegConfig::new(addr(100, 30000))
            },
            t0,
        );
        let b = relay.add_leg(
            LegConfig {
                remote: Some(addr(2, 5000)),
                rtcp_mux: true,
                ..LegConfig::new(addr(100, 30002))
            },
            t0,
        );
        relay.bridge(a, b).unwrap();
        assert_eq!(
            relay.handle_rtcp(a, addr(1, 4001), &rr(1), t0),
            Action::Forward {
                out_leg: b,
                to: addr(2, 5000),
                socket: SocketKind::Rtp
            }
        );
        // Muxed RTCP arrives on B's RTP socket and goes to A's RTCP port.
        let mut p = rr(2);
        assert_eq!(
            relay.handle_rtp(b, addr(2, 5000), &mut p, t0),
            Action::Forward {
                out_leg: a,
                to: addr(1, 4001),
                socket: SocketKind::Rtcp
            }
        );
        // Compound RR + SDES passes; RTCP from a stranger does not.
        let mut compound = rr(1);
        compound.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0]);
        assert!(matches!(
            relay.handle_rtcp(a, addr(1, 4001), &compound, t0),
            Action::Forward { .. }
        ));
        assert_eq!(
            relay.handle_rtcp(a, addr(66, 4001), &rr(1), t0),
            Action::Drop(DropReason::NotLatched)
        );
        let ca = relay.leg_counters(a).unwrap();
        assert_eq!((ca.rtcp_in, ca.rtcp_out), (2, 1));
        assert_eq!(ca.rtcp_remote, Some(addr(1, 4001)));
        // Through `handle`.
        assert!(matches!(
            relay.handle(a, addr(1, 4001), Input::Rtcp(&rr(1)), t0),
            Action::Forward { .. }
        ));
    }

    #[test]
    fn bridge_remove_and_reuse() {
        let mut c = call(Some(addr(2, 5000)), true);
        assert_eq!(c.relay.bridge(c.a, c.a), Err(RelayError::SelfBridge));
        assert_eq!(
            c.relay.bridge(c.a, LegId(9)),
            Err(RelayError::UnknownLeg(LegId(9)))
        );
        let d = c.relay.add_leg(
            LegConfig {
                remote: Some(addr(4, 8000)),
                ..LegConfig::new(addr(100, 30004))
            },
            c.t0,
        );
        // Rebridging A to D leaves B alone.
        c.relay.bridge(c.a, d).unwrap();
        assert_eq!(c.relay.peer(c.b), None);
        assert_eq!(c.relay.peer(c.a), Some(d));
        c.relay.remove_leg(d).unwrap();
        assert_eq!(c.relay.peer(c.a), None);
        assert_eq!(c.relay.leg_count(), 2);
        let mut p = pkt(0, 1, 0, 1);
        let now = ms(&c, 0);
        assert_eq!(
            c.send(c.a, addr(1, 4000), &mut p, now),
            Action::Drop(DropReason::NoPeer)
        );
        let e = c.relay.add_leg(LegConfig::new(addr(100, 30006)), c.t0);
        assert_eq!(e, d, "slot reused");
        assert!(c.relay.remove_leg(LegId(77)).is_err());
        assert!(c.relay.leg_counters(LegId(77)).is_none());
    }

    #[test]
    fn payload_type_set() {
        let s = PayloadTypes::from_slice(&[0, 8, 127, 200]);
        assert!(s.contains(0) && s.contains(8) && s.contains(127));
        assert!(!s.contains(9) && !s.contains(200));
        assert!(PayloadTypes::ANY.contains(96));
        assert!(!PayloadTypes::ANY.contains(128));
    }

    /// Rough cost of the per-packet decision (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn per_packet_cost() {
        let mut c = call(Some(addr(2, 5000)), true);
        let mut p = pkt(0, 1, 0, 1);
        let n = 2_000_000u32;
        let start = Instant::now();
        for i in 0..n {
            let [_, _, s0, s1, ..] = &mut p[..] else {
                unreachable!()
            };
            [*s0, *s1] = (i as u16).to_be_bytes();
            let now = c.t0;
            let a = std::hint::black_box(c.send(c.a, addr(1, 4000), &mut p, now));
            assert!(matches!(a, Action::Forward { .. }));
        }
        let ns = start.elapsed().as_nanos() / u128::from(n);
        println!("handle_rtp: {ns} ns/packet");
    }
}
