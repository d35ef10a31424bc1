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
//!
//! Formats ([`Relay::set_format`]): while either leg's format is unknown, or
//! both are equal, packets take the path above untouched. Otherwise, per
//! packet:
//!
//! ```text
//!  same encoding, other PT ─────▶ PT rewritten in place      ─▶ Forward
//!  RFC 4733 event ──────────────▶ PT = peer's event PT, in place ─▶ Forward
//!                                 (peer without telephone-event: Consumed,
//!                                 the press is still reported, see below)
//!  AMR ⇄ AMR, other payload mode ▶ amr::convert into scratch  ─▶ ForwardBuffer
//!  other encodings ─────────────▶ Transcoder of the direction ─▶ ForwardBuffer
//!                                 (no `transcode` feature: NoTranscoder)
//! ```
//!
//! `ForwardBuffer` packets are built in a buffer the relay owns
//! ([`Relay::output`]) with a minimal header (no CSRC, no extension), and
//! the converting paths reuse their buffers, so they too stop allocating
//! once warmed up (`AmrPayload::parse` aside, on the transcoding path). A
//! transcoded direction runs its own output timeline in the output codec's
//! clock (sequence + 1 per packet, timestamp + what the transcoder
//! produced); events on it are placed relative to the last audio packet.
//! Not done: rescaling an event's duration field or its timestamp when the
//! telephone-event clock differs from the audio clock, and silence gaps
//! (DTX) of the input are not reproduced on a transcoded output.
//!
//! Quality and RTCP, per leg:
//!
//! ```text
//!  RTP in  ─▶ ReceiveStats (A.1 loss, A.8 jitter) for the current input SSRC
//!  RTCP in ─▶ parse_compound ─▶ SR: remember LSR + arrival (for our DLSR)
//!                             ─▶ RR/SR blocks about our SSRC: RTT, PeerReport
//!                             ─▶ XR VoIP metrics about our SSRC: kept
//!           (terminated here: never forwarded across the bridge)
//!  poll_rtcp(now, wall) ─▶ every leg due: SR (we sent RTP since the last
//!           report) or RR, one block about the SSRC we receive, SDES CNAME
//! ```
//!
//! RTCP is terminated on each leg rather than forwarded, because the relay
//! rewrites the SSRC, sequence numbers and timestamps: a forwarded SR would
//! announce an SSRC the far end never sees in RTP, and its report blocks
//! would describe the other leg's stream with the other leg's numbering.
//! Each leg instead gets reports about exactly the stream on that leg.
//!
//! DTMF and the relay's own voice, per leg:
//!
//! ```text
//!  RTP in, PT = leg's telephone-event PT (101 without a format)
//!     ─▶ DtmfReceiver ─▶ one RelayEvent::Dtmf per press ─▶ poll_event
//!        (press ended by its end packets, the next press, or DTMF_QUIET
//!         without packets: poll_timeout covers that deadline)
//!     ─▶ and forwarded as before
//!  send_dtmf(leg, "12#") ─▶ RFC 4733 packets every 50 ms ─┐ poll_transmit(now):
//!  play(leg, wav)        ─▶ 20 ms frames in the leg's codec ┴ leg's SSRC, next seq
//! ```
//!
//! Generated packets are numbered on the leg's output stream like the
//! forwarded ones (same SSRC, the next sequence number, the timestamp of
//! the audio timeline; RFC 4733 §2.1 has events share the audio's sequence
//! and timestamp base). While a prompt plays, what the peer sends to the
//! leg is not forwarded (counted in `LegCounters::suppressed`), as
//! rtpengine does: two voices in one stream would interleave frames of
//! unrelated timelines. While digits are sent, the peer's audio still
//! flows, only its own telephone-events are held back (two presses at once
//! would garble both). RFC 4733 §2.5.1.2 and 3GPP TS 26.114 §G.2 set the
//! timing: one packet per 50 ms, three end packets, and a pause of at
//! least 65 ms between digits (here the three end packets span 100 ms, and
//! the next press starts 50 ms after the last).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::format::{Encoding, LegFormat};
use crate::inject::{encoder_rate, DtmfTx, FrameEncoder, Inject, PlayTx, FRAME_MS};
use crate::payload::amr::{self, AmrKind, PayloadMode};
use crate::payload::dtmf::{self, DtmfError, DtmfNotice, DtmfReceiver};
use crate::playback::{Playback, Wav};
use crate::rtcp::{self, ReportBlock, RtcpPacket, SenderInfo, VoipMetrics};
use crate::rtp::{self, RtpError, RtpHeader};
use crate::stats::{CodecImpairment, PeerReport, QualitySnapshot, ReceiveStats, RttStats};

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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// SDP encoding name of the leg's codec ("PCMA", "AMR", "opus"...), for
    /// the E-model's codec impairment; `None` is taken as G.711 (PCMA).
    pub codec: Option<String>,
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
            codec: None,
        }
    }
}

/// The codec assumed for the E-model when the call layer named none.
const DEFAULT_CODEC: &str = "PCMA";

fn codec_impairment(codec: Option<&str>) -> CodecImpairment {
    CodecImpairment::for_codec(codec.unwrap_or(DEFAULT_CODEC))
}

/// The latch window opened by every offer/answer, and the RTCP interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The window closes after this many packets...
    pub latch_packets: u32,
    /// ...or this long after its first packet, whichever comes first.
    pub latch_time: Duration,
    /// Mean interval between the relay's own RTCP reports on a leg (see
    /// [`Relay::poll_rtcp`]); 5 s, RFC 3550's minimum. Clamped to
    /// [`MIN_RTCP_INTERVAL`]..=[`MAX_RTCP_INTERVAL`]; shorter only in tests.
    pub rtcp_interval: Duration,
}

/// RFC 3550 §6.2: the recommended minimum RTCP interval.
pub const DEFAULT_RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Floor of [`RelayConfig::rtcp_interval`]: a zero interval would make the
/// driver spin.
pub const MIN_RTCP_INTERVAL: Duration = Duration::from_millis(10);
/// Ceiling of [`RelayConfig::rtcp_interval`] (keeps the timer arithmetic far
/// from overflow).
pub const MAX_RTCP_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            latch_packets: 5,
            latch_time: Duration::from_secs(3),
            rtcp_interval: DEFAULT_RTCP_INTERVAL,
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
    /// Send [`Relay::output`] (a packet the relay built: the payload was
    /// converted or transcoded, so it is not in the receive buffer) out of
    /// `out_leg`'s `socket` to `to`. Valid until the next call into the relay.
    ForwardBuffer {
        out_leg: LegId,
        to: SocketAddr,
        socket: SocketKind,
    },
    /// The packet was for the relay itself (RTCP, terminated on the leg it
    /// arrived on and read into that leg's statistics), or it was taken in
    /// by a transcoder that has no whole output frame yet: nothing to send.
    Consumed,
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
    /// The legs' encodings differ and no transcoder exists for the pair
    /// (built without the `transcode` feature, or an encoding it lacks).
    NoTranscoder,
    /// A payload that had to be converted or transcoded was malformed.
    BadPayload,
    /// An RFC 4733 event for a leg that negotiated no telephone-event.
    /// Kept for the metric's label: the relay now consumes such packets
    /// ([`Action::Consumed`]) and reports the press as [`RelayEvent::Dtmf`]
    /// for the call layer to relay out of band.
    NoDtmf,
}

impl DropReason {
    /// Number of distinct counters (each `RtpError` is its own).
    pub const COUNT: usize = 14;

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
        DropReason::NoTranscoder,
        DropReason::BadPayload,
        DropReason::NoDtmf,
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
            DropReason::NoTranscoder => 11,
            DropReason::BadPayload => 12,
            DropReason::NoDtmf => 13,
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
            DropReason::NoTranscoder => "no_transcoder",
            DropReason::BadPayload => "payload_malformed",
            DropReason::NoDtmf => "dtmf_not_negotiated",
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
    /// [`Relay::send_dtmf`] on a leg whose format has no telephone-event
    /// (or is unknown): the call layer sends SIP INFO instead.
    #[error("leg {0:?} negotiated no telephone-event")]
    NoTelephoneEvent(LegId),
    /// A digit or duration [`Relay::send_dtmf`] refused.
    #[error(transparent)]
    Dtmf(#[from] DtmfError),
    /// [`Relay::play`] on a leg whose codec the relay cannot encode: an
    /// unknown format, an encoding it has no encoder for, or AMR/Opus
    /// without the `transcode` feature.
    #[error("no encoder for leg {0:?}'s codec")]
    NoEncoder(LegId),
}

/// The telephone-event payload type assumed on a leg whose format is not
/// known: 101, what SIP endpoints offer almost universally.
pub const DEFAULT_DTMF_PAYLOAD_TYPE: u8 = 101;

/// A press whose end packets were all lost ends this long after its last
/// packet: ten update intervals (RFC 4733 §2.5.1.2 suggests 50 ms), so
/// jitter does not split a press, and the call layer still hears of it
/// within half a second.
pub const DTMF_QUIET: Duration = Duration::from_millis(500);

/// The usual tone length for [`Relay::send_dtmf`] (3GPP TS 26.114 §G.2:
/// at least 65 ms).
pub const DEFAULT_DTMF_DURATION_MS: u32 = 100;

/// Events [`Relay::poll_event`] holds; beyond that the oldest is dropped
/// and counted ([`Relay::events_dropped`]). The driver drains them after
/// every packet, so this only fills if the caller never polls.
pub const EVENT_QUEUE: usize = 64;

/// What the relay tells the call layer ([`Relay::poll_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// One key press received on `leg` (RFC 4733), once per press whatever
    /// the retransmissions, lost end packets included. `duration_ms` from
    /// the event's duration field (the last one seen if the end was lost).
    Dtmf {
        leg: LegId,
        digit: char,
        duration_ms: u32,
    },
    /// A prompt started with [`Relay::play`] (not looped) has been sent to
    /// its end. Not sent for a prompt stopped or replaced.
    PlaybackDone { leg: LegId },
}

impl RelayEvent {
    /// The leg the event is about.
    pub fn leg(&self) -> LegId {
        match *self {
            RelayEvent::Dtmf { leg, .. } | RelayEvent::PlaybackDone { leg } => leg,
        }
    }
}

/// A packet the relay generated ([`Relay::poll_transmit`]): send
/// [`Relay::output`] out of `leg`'s `socket` to `to` (the leg's learned,
/// else signalled, address). Valid until the next call into the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub leg: LegId,
    pub to: SocketAddr,
    pub socket: SocketKind,
}

/// What a leg has seen and sent.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// Call quality on this leg (API.md `stats`): our measurement of the RTP
    /// the endpoint sends (loss, jitter), RTT and the endpoint's view of what
    /// we send from its RTCP, and the E-model MOS, each tagged with its source.
    pub quality: QualitySnapshot,
    /// The last RTCP XR VoIP Metrics block (RFC 3611 §4.7) the endpoint sent
    /// about the stream we send it.
    pub peer_voip_metrics: Option<VoipMetrics>,
    /// RFC 4733 key presses received on this leg ([`RelayEvent::Dtmf`]).
    pub dtmf_in: u64,
    /// Packets from the peer not sent to this leg because the relay was
    /// speaking into it (a prompt, or its own digits for events): by
    /// design, not an error.
    pub suppressed: u64,
}

impl LegCounters {
    fn new(ssrc_out: u32, quality: QualitySnapshot) -> LegCounters {
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
            quality,
            peer_voip_metrics: None,
            dtmf_in: 0,
            suppressed: 0,
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
    /// RTP payload octets sent (the SR's sender octet count, RFC 3550 §6.4.1).
    payload_octets: u64,
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
            payload_octets: 0,
        }
    }

    /// Timestamp ticks of `clock_rate` in `elapsed`, saturating.
    fn ticks(&self, elapsed: Duration) -> u32 {
        let ticks = u128::from(self.clock_rate).saturating_mul(elapsed.as_micros()) / 1_000_000;
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// The RTP timestamp that corresponds to `now` on the output timeline:
    /// the newest packet sent, moved on by the time since it was sent (the
    /// SR's RTP timestamp, RFC 3550 §6.4.1, so the receiver can relate our
    /// NTP time to its playout). `None` before the first packet.
    fn timestamp_at(&self, now: Instant) -> Option<u32> {
        let sent = self.last_sent_at?;
        let ticks = self.ticks(now.saturating_duration_since(sent));
        Some(self.max_ts.wrapping_add(ticks))
    }

    /// Makes the next packet start a new input: the stream carries on from
    /// the last packet sent, whatever the next input's numbering (a switch
    /// between forwarding and transcoding changes the input timeline).
    fn restart(&mut self) {
        self.input = None;
    }

    /// The RTP timestamp for a packet the relay generates at `now`: the
    /// newest packet's, moved on by the time since on the frame grid and
    /// by at least one frame (as for a new input in `map`), so it never
    /// reuses the newest audio packet's. With nothing sent yet the stream
    /// starts here, at a random sequence number and timestamp (RFC 3550
    /// §5.1).
    fn generated_timestamp(&mut self, now: Instant) -> u32 {
        let Some(last) = self.last_sent_at else {
            let mut rng = rand::thread_rng();
            self.max_seq = rng.gen();
            self.max_ts = rng.gen();
            self.last_sent_at = Some(now);
            return self.max_ts;
        };
        let ticks = self.ticks(now.saturating_duration_since(last));
        let frame = self.frame.max(1);
        self.max_ts.wrapping_add(frame.max(ticks - ticks % frame))
    }

    /// The sequence number of a packet the relay generates: the next one.
    /// The forwarded input's numbering moves on by one too, so the packets
    /// forwarded after it follow it instead of reusing its number.
    fn generated_seq(&mut self) -> u16 {
        self.max_seq = self.max_seq.wrapping_add(1);
        self.seq_offset = self.seq_offset.wrapping_add(1);
        self.max_seq
    }

    /// A generated audio frame went out: it is the newest point of the
    /// timeline (events are not: they carry their press's start).
    fn generated_audio(&mut self, ts: u32, now: Instant) {
        self.max_ts = ts;
        self.last_sent_at = Some(now);
    }

    /// Output (sequence, timestamp) for an input packet.
    fn map(&mut self, h: &RtpHeader, now: Instant) -> (u16, u32) {
        if self.input != Some(h.ssrc) {
            if let Some(last) = self.last_sent_at {
                // New input (re-INVITE, media server switch): the next packet
                // follows the last one sent, and the timestamp moves on by the
                // time that has passed (at least one frame) so the receiver's
                // jitter and playout see no jump.
                let ticks = self.ticks(now.saturating_duration_since(last));
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

/// An SR the relay sent on a leg, to compute RTT when the endpoint's report
/// quotes it as LSR.
#[derive(Clone, Copy, Debug)]
struct SentSr {
    /// Middle 32 bits of the SR's NTP timestamp: what the report's LSR holds.
    lsr: u32,
    /// When it was stamped, on the monotonic clock and on the wall clock.
    at: Instant,
    wall: Duration,
}

/// The SRs remembered per leg: an endpoint quotes the last SR it received,
/// which is an older one when the newest was lost or crossed its report.
const SENT_SRS: usize = 4;

/// The peer's last SR, for the LSR/DLSR of our report block about it.
#[derive(Clone, Copy, Debug)]
struct PeerSr {
    ssrc: u32,
    lsr: u32,
    arrived: Instant,
}

/// A leg's quality measurement and RTCP state.
#[derive(Clone, Debug)]
struct Quality {
    /// RFC 3550 A.1/A.3/A.8 on the RTP received on this leg, for the current
    /// input SSRC (`LegCounters::ssrc_in`); started over when it changes.
    rx: ReceiveStats,
    rtt: RttStats,
    /// What the endpoint's last report block about our SSRC said.
    peer: Option<PeerReport>,
    peer_voip_metrics: Option<VoipMetrics>,
    peer_sr: Option<PeerSr>,
    sent_srs: [Option<SentSr>; SENT_SRS],
    next_sent_sr: usize,
    /// `rtp_in`/`rtp_out` when the last report was built: did we hear the
    /// endpoint, did we send to it, since then.
    rtp_in_at_report: u64,
    rtp_out_at_report: u64,
    /// When this leg's next report is due (its live entry in `Relay::timers`).
    next_report: Instant,
    codec: CodecImpairment,
}

impl Quality {
    fn new(cfg: &LegConfig, next_report: Instant) -> Quality {
        Quality {
            rx: ReceiveStats::new(cfg.clock_rate),
            rtt: RttStats::new(),
            peer: None,
            peer_voip_metrics: None,
            peer_sr: None,
            sent_srs: [None; SENT_SRS],
            next_sent_sr: 0,
            rtp_in_at_report: 0,
            rtp_out_at_report: 0,
            next_report,
            codec: codec_impairment(cfg.codec.as_deref()),
        }
    }

    fn snapshot(&self) -> QualitySnapshot {
        QualitySnapshot::build(&self.rx, &self.rtt, self.peer, self.codec)
    }

    fn remember_sr(&mut self, sr: SentSr) {
        if let Some(slot) = self.sent_srs.get_mut(self.next_sent_sr) {
            *slot = Some(sr);
        }
        self.next_sent_sr = (self.next_sent_sr + 1) % SENT_SRS;
    }

    /// RTT from a report block about our SSRC (RFC 3550 §6.4.1: A − LSR −
    /// DLSR). Only a block quoting an SR we sent on this leg counts: any
    /// other LSR (none yet, a forged or confused one) would give a
    /// meaningless figure. The arrival time A is that SR's wall-clock stamp
    /// moved on by the monotonic time since, so no wall clock is needed on
    /// the receive path and a wall-clock step cannot skew the RTT.
    fn round_trip(&self, block: &ReportBlock, now: Instant) -> Option<Duration> {
        let sent = self
            .sent_srs
            .iter()
            .flatten()
            .find(|sr| sr.lsr == block.lsr)?;
        let arrival = sent
            .wall
            .checked_add(now.checked_duration_since(sent.at)?)?;
        rtcp::round_trip(block, rtcp::ntp_from_unix(arrival))
    }
}

#[derive(Debug)]
struct Leg {
    cfg: LegConfig,
    peer: Option<LegId>,
    rtp: Latch,
    /// Unused with rtcp-mux: RTCP then shares the RTP 5-tuple and its latch.
    rtcp: Latch,
    out: OutStream,
    counters: LegCounters,
    quality: Quality,
    /// Relay-wide unique per `add_leg`, so a timer of a removed leg never
    /// fires for the leg that reuses its slot.
    epoch: u64,
    /// What the endpoint sends and expects (`None`: unknown, forward as is).
    format: Option<LegFormat>,
    /// State of the transcoded direction from this leg to its peer, when
    /// their encodings differ (boxed: most legs never have one).
    transcoded: Option<Box<Transcoded>>,
    /// The telephone-event payload type received on this leg: the format's,
    /// [`DEFAULT_DTMF_PAYLOAD_TYPE`] while the format is unknown.
    dtmf_pt: Option<u8>,
    /// The telephone-event clock when the SDP gave one other than the
    /// audio clock ([`Relay::set_dtmf_clock_rate`]).
    dtmf_clock: Option<u32>,
    /// Key presses received on this leg.
    dtmf_rx: DtmfReceiver,
    /// When the last event packet of the press in progress arrived.
    dtmf_last: Option<Instant>,
    /// A `Wake::DtmfQuiet` entry for this leg is in `Relay::wakeups`.
    dtmf_quiet_pending: bool,
    /// What the relay itself sends into this leg (boxed: rare).
    inject: Option<Box<Inject>>,
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

    fn rtcp_socket(&self) -> SocketKind {
        if self.cfg.rtcp_mux {
            SocketKind::Rtp
        } else {
            SocketKind::Rtcp
        }
    }

    fn cname(&self) -> String {
        format!("softswitch@{}", self.cfg.local.ip())
    }

    /// The telephone-event clock: the SDP's when set, else the audio's
    /// (RFC 4733 recommends they match; 3GPP TS 26.114 §G.2 requires it).
    fn dtmf_rate(&self) -> u32 {
        self.dtmf_clock.unwrap_or(self.cfg.clock_rate).max(1)
    }

    /// An RFC 4733 packet received on this leg (kept out of line: the
    /// audio path only pays the payload-type comparison).
    #[inline(never)]
    fn on_dtmf(
        &mut self,
        id: LegId,
        h: &RtpHeader,
        packet: &[u8],
        now: Instant,
        events: &mut EventQueue,
        wakeups: &mut Wakeups,
    ) {
        let Ok(ev) = dtmf::parse(h.payload(packet)) else {
            return;
        };
        for notice in self.dtmf_rx.on_packet(h.timestamp, h.marker, &ev) {
            if let DtmfNotice::Ended { digit, duration } = notice {
                self.report_press(id, digit, duration, events);
            }
        }
        if self.dtmf_rx.in_press() {
            self.dtmf_last = Some(now);
            if !self.dtmf_quiet_pending {
                self.dtmf_quiet_pending = true;
                let at = now.checked_add(DTMF_QUIET).unwrap_or(now);
                wakeups.push(at, id, self.epoch, Wake::DtmfQuiet);
            }
        }
    }

    /// The quiet-period deadline of the press in progress came: end the
    /// press if no packet came since, else look again later.
    fn dtmf_quiet(
        &mut self,
        id: LegId,
        now: Instant,
        events: &mut EventQueue,
        wakeups: &mut Wakeups,
    ) {
        self.dtmf_quiet_pending = false;
        if !self.dtmf_rx.in_press() {
            return;
        }
        let due = self
            .dtmf_last
            .and_then(|t| t.checked_add(DTMF_QUIET))
            .unwrap_or(now);
        if due > now {
            self.dtmf_quiet_pending = true;
            wakeups.push(due, id, self.epoch, Wake::DtmfQuiet);
            return;
        }
        self.end_press(id, events);
    }

    /// Reports the press in progress, its end packets never having come.
    fn end_press(&mut self, id: LegId, events: &mut EventQueue) {
        if let Some(DtmfNotice::Ended { digit, duration }) = self.dtmf_rx.flush() {
            self.report_press(id, digit, duration, events);
        }
    }

    fn report_press(&mut self, id: LegId, digit: char, duration: u16, events: &mut EventQueue) {
        self.counters.dtmf_in += 1;
        let ms = u64::from(duration) * 1000 / u64::from(self.dtmf_rate());
        events.push(RelayEvent::Dtmf {
            leg: id,
            digit,
            duration_ms: u32::try_from(ms).unwrap_or(u32::MAX),
        });
    }

    /// Writes a packet the relay generated for this leg into `output`
    /// with the leg's SSRC and next sequence number, and counts it; None
    /// when the leg has no address yet (nothing is ever sent to an address
    /// neither signalled nor learned; the packet is lost, no number used).
    fn emit(
        &mut self,
        id: LegId,
        marker: bool,
        payload_type: u8,
        ts: u32,
        payload: &[u8],
        output: &mut Vec<u8>,
    ) -> Option<Transmit> {
        let to = self.rtp.destination()?;
        let seq = self.out.generated_seq();
        output.clear();
        rtp::write(
            output,
            marker,
            payload_type,
            seq,
            ts,
            self.out.ssrc,
            payload,
        );
        self.counters.rtp_out += 1;
        self.counters.bytes_out += output.len() as u64;
        self.out.payload_octets += payload.len() as u64;
        Some(Transmit {
            leg: id,
            to,
            socket: SocketKind::Rtp,
        })
    }

    /// The telephone-event packet due `at`, if the digits being sent
    /// still expect one then.
    fn next_dtmf(
        &mut self,
        id: LegId,
        at: Instant,
        output: &mut Vec<u8>,
        wakeups: &mut Wakeups,
    ) -> Option<Transmit> {
        let inject = self.inject.as_deref_mut()?;
        let tx = inject.dtmf.as_mut().filter(|t| t.next_due == at)?;
        let packet = tx.next_packet();
        let payload_type = tx.payload_type;
        if tx.is_idle() {
            inject.dtmf = None;
        } else {
            wakeups.push(tx.next_due, id, self.epoch, Wake::Dtmf);
        }
        if inject.is_idle() {
            self.inject = None;
        }
        let (marker, ts, payload) = packet?;
        self.emit(id, marker, payload_type, ts, &payload, output)
    }

    /// The prompt's frame due `at`, encoded; the prompt ends (and is
    /// reported) after its last frame.
    #[allow(clippy::too_many_arguments)]
    fn next_frame(
        &mut self,
        id: LegId,
        at: Instant,
        now: Instant,
        output: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        events: &mut EventQueue,
        wakeups: &mut Wakeups,
    ) -> Option<Transmit> {
        let inject = self.inject.as_deref_mut()?;
        let play = inject.play.as_mut().filter(|p| p.next_due() == Some(at))?;
        let frame = play.next_frame(now, scratch);
        let payload_type = play.payload_type;
        let done = play.is_done();
        let next = play.next_due();
        if done {
            inject.play = None;
            events.push(RelayEvent::PlaybackDone { leg: id });
        } else if let Some(due) = next {
            wakeups.push(due, id, self.epoch, Wake::Play);
        }
        if inject.is_idle() {
            self.inject = None;
        }
        if done {
            // Forwarding resumes after the prompt's last frame.
            self.out.restart();
        }
        let (marker, ts) = frame?;
        let sent = self.emit(id, marker, payload_type, ts, scratch, output);
        self.out.generated_audio(ts, now);
        sent
    }

    /// Reads an accepted RTCP compound from the endpoint into the leg's
    /// quality state.
    fn take_rtcp(&mut self, packets: &[RtcpPacket], now: Instant) {
        for packet in packets {
            match packet {
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                } => {
                    self.quality.peer_sr = Some(PeerSr {
                        ssrc: *ssrc,
                        lsr: rtcp::ntp_middle32(info.ntp_timestamp),
                        arrived: now,
                    });
                    self.take_blocks(reports, now);
                }
                RtcpPacket::ReceiverReport { reports, .. } => self.take_blocks(reports, now),
                RtcpPacket::Xr { voip_metrics, .. } => {
                    let ours = voip_metrics.iter().rev().find(|(s, _)| *s == self.out.ssrc);
                    if let Some((_, m)) = ours {
                        self.quality.peer_voip_metrics = Some(*m);
                    }
                }
                // SDES, BYE (the call layer ends calls, not RTCP), APP and
                // feedback carry nothing the quality figures use.
                _ => {}
            }
        }
    }

    /// Report blocks about the stream we send on this leg: the endpoint's
    /// loss and jitter, and RTT. Blocks about other SSRCs are ignored.
    fn take_blocks(&mut self, blocks: &[ReportBlock], now: Instant) {
        for block in blocks.iter().filter(|b| b.ssrc == self.out.ssrc) {
            let rate = self.cfg.clock_rate;
            let jitter_ms = if rate == 0 {
                0.0
            } else {
                f64::from(block.jitter) * 1000.0 / f64::from(rate)
            };
            self.quality.peer = Some(PeerReport {
                loss_rate: f64::from(block.fraction_lost) / 256.0,
                jitter_ms,
            });
            if let Some(rtt) = self.quality.round_trip(block, now) {
                self.quality.rtt.add(rtt);
            }
        }
    }

    /// The report this leg sends now (RFC 3550 §6.4): `None` when there is
    /// nowhere to send it or no media has flowed on the leg yet (an
    /// unanswered call gets no RTCP).
    fn build_report(&mut self, now: Instant, wall: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.rtcp_destination()?;
        let (rtp_in, rtp_out) = (self.counters.rtp_in, self.counters.rtp_out);
        if rtp_in == 0 && rtp_out == 0 {
            return None;
        }
        let q = &mut self.quality;
        let sender = if rtp_out != q.rtp_out_at_report {
            let ntp = rtcp::ntp_from_unix(wall);
            q.remember_sr(SentSr {
                lsr: rtcp::ntp_middle32(ntp),
                at: now,
                wall,
            });
            // Counts wrap modulo 2^32 in the SR (§6.4.1); `as` truncates.
            Some(SenderInfo {
                ntp_timestamp: ntp,
                rtp_timestamp: self.out.timestamp_at(now).unwrap_or(self.out.max_ts),
                packet_count: rtp_out as u32,
                octet_count: self.out.payload_octets as u32,
            })
        } else {
            None
        };
        // §6.4: one block per source heard since the last report.
        let block = match self.counters.ssrc_in {
            Some(source) if rtp_in != q.rtp_in_at_report => {
                let interval = q.rx.take_interval();
                let (lsr, dlsr) = match q.peer_sr {
                    Some(sr) if sr.ssrc == source => (
                        sr.lsr,
                        rtcp::ntp_short_from_duration(now.saturating_duration_since(sr.arrived)),
                    ),
                    // §6.4.1: 0 when no SR has been received from the source.
                    _ => (0, 0),
                };
                Some(ReportBlock {
                    ssrc: source,
                    fraction_lost: interval.fraction_lost,
                    cumulative_lost: interval.cumulative_lost,
                    extended_highest_seq: interval.extended_highest_seq,
                    jitter: interval.jitter,
                    lsr,
                    dlsr,
                })
            }
            _ => None,
        };
        q.rtp_in_at_report = rtp_in;
        q.rtp_out_at_report = rtp_out;
        let mut packet = Vec::with_capacity(128);
        let blocks = block.as_slice();
        rtcp::write_report(&mut packet, self.out.ssrc, sender, blocks, &self.cname());
        if packet.is_empty() {
            return None;
        }
        self.counters.rtcp_out += 1;
        self.counters.bytes_out += packet.len() as u64;
        Some((to, packet))
    }
}

/// When a leg's next report is due: `interval` randomised over [0.5, 1.5] ×
/// itself (RFC 3550 §6.3.1, so the reports of legs opened together drift
/// apart), halved for the first report (§6.2, "the initial interval").
///
/// This is §6.3 simplified for a relay leg, which is a two-party session
/// (the endpoint and us): the bandwidth-derived interval (5 % of the
/// session bandwidth shared by two members) is below the 5 s minimum for
/// any voice codec, so the minimum applies; there is no membership to
/// track, hence no timer reconsideration and no e − 3/2 compensation.
fn report_due(now: Instant, interval: Duration, first: bool) -> Instant {
    let interval = interval.clamp(MIN_RTCP_INTERVAL, MAX_RTCP_INTERVAL);
    let interval = if first { interval / 2 } else { interval };
    // At most an hour in nanoseconds: fits a u64 with room to spare.
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX / 4);
    let delay = nanos / 2 + rand::thread_rng().gen_range(0..=nanos);
    now.checked_add(Duration::from_nanos(delay)).unwrap_or(now)
}

/// An RTCP compound the relay sends: out of `LegId`'s `SocketKind` socket
/// to the `SocketAddr`.
pub type RtcpOut = (LegId, SocketAddr, SocketKind, Vec<u8>);

/// What a `Relay::wakeups` entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    /// A received press's quiet-period deadline.
    DtmfQuiet,
    /// The next packet of the digits being sent.
    Dtmf,
    /// The next frame of the prompt being played.
    Play,
}

/// Deadlines other than RTCP, earliest first: (due, leg index, leg epoch,
/// what). Entries are hints: each is checked against the leg's state when
/// it comes up, so one that no longer applies (a stopped prompt, a press
/// that ended) is skipped, and `poll_timeout` may be early, never late.
#[derive(Debug, Default)]
struct Wakeups {
    heap: BinaryHeap<Reverse<(Instant, u32, u64, Wake)>>,
    /// An entry was added since `Relay::take_timeout_changed`.
    changed: bool,
}

impl Wakeups {
    fn push(&mut self, at: Instant, leg: LegId, epoch: u64, wake: Wake) {
        self.heap.push(Reverse((at, leg.0, epoch, wake)));
        self.changed = true;
    }
}

/// The bounded queue behind [`Relay::poll_event`].
#[derive(Debug, Default)]
struct EventQueue {
    items: VecDeque<RelayEvent>,
    dropped: u64,
}

impl EventQueue {
    fn push(&mut self, event: RelayEvent) {
        if self.items.len() >= EVENT_QUEUE {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(event);
    }
}

/// The relay: every leg of one event loop.
#[derive(Debug, Default)]
pub struct Relay {
    cfg: RelayConfig,
    legs: Vec<Option<Leg>>,
    free: Vec<u32>,
    unknown_leg_drops: u64,
    /// Report deadlines, earliest first: (due, leg index, leg epoch). Each
    /// live leg has exactly one entry whose time equals its `next_report`;
    /// entries of removed legs are skipped when they come up.
    timers: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    next_epoch: u64,
    /// The packet of the last [`Action::ForwardBuffer`] or [`Transmit`];
    /// reused, so the converting and generating paths allocate nothing
    /// once it has grown.
    output: Vec<u8>,
    /// Intermediate payloads of the converting paths, reused likewise.
    scratch: Vec<u8>,
    /// DTMF quiet periods and generated packets.
    wakeups: Wakeups,
    events: EventQueue,
}

impl Relay {
    pub fn new(cfg: RelayConfig) -> Relay {
        Relay {
            cfg,
            legs: Vec::new(),
            free: Vec::new(),
            unknown_leg_drops: 0,
            timers: BinaryHeap::new(),
            next_epoch: 0,
            output: Vec::new(),
            scratch: Vec::new(),
            wakeups: Wakeups {
                heap: BinaryHeap::with_capacity(EVENT_QUEUE),
                changed: false,
            },
            // Allocated now so that reporting a press never allocates.
            events: EventQueue {
                items: VecDeque::with_capacity(EVENT_QUEUE),
                dropped: 0,
            },
        }
    }

    /// Adds a leg (its latch window opens now) with a random output SSRC.
    pub fn add_leg(&mut self, cfg: LegConfig, now: Instant) -> LegId {
        self.add_leg_with_ssrc(cfg, rand::random(), now)
    }

    /// [`Relay::add_leg`] with a chosen output SSRC (e.g. to keep the
    /// `rssrc` the app was told when a leg is recreated).
    pub fn add_leg_with_ssrc(&mut self, cfg: LegConfig, ssrc: u32, now: Instant) -> LegId {
        let due = report_due(now, self.cfg.rtcp_interval, true);
        let quality = Quality::new(&cfg, due);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let leg = Leg {
            peer: None,
            rtp: Latch::new(cfg.remote),
            rtcp: Latch::new(Leg::rtcp_signalled(&cfg)),
            out: OutStream::new(ssrc, cfg.clock_rate),
            counters: LegCounters::new(ssrc, quality.snapshot()),
            quality,
            epoch,
            cfg,
            format: None,
            transcoded: None,
            dtmf_pt: Some(DEFAULT_DTMF_PAYLOAD_TYPE),
            dtmf_clock: None,
            dtmf_rx: DtmfReceiver::new(),
            dtmf_last: None,
            dtmf_quiet_pending: false,
            inject: None,
        };
        let id = match self.free.pop() {
            Some(id) if self.legs.get(id as usize).is_some() => {
                if let Some(slot) = self.legs.get_mut(id as usize) {
                    *slot = Some(leg);
                }
                id
            }
            _ => {
                let id = u32::try_from(self.legs.len()).unwrap_or(u32::MAX);
                self.legs.push(Some(leg));
                id
            }
        };
        self.timers.push(Reverse((due, id, epoch)));
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
        self.prepare(a);
        self.prepare(b);
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

    /// Names the leg's codec once negotiated (SDP encoding name), for the
    /// E-model's codec impairment; `None` goes back to the G.711 default.
    pub fn set_codec(&mut self, leg: LegId, codec: Option<String>) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        l.quality.codec = codec_impairment(codec.as_deref());
        l.cfg.codec = codec;
        Ok(())
    }

    /// Tells the relay what the leg's endpoint sends and expects (from the
    /// negotiated SDP); `None` forgets it. Packets between two legs whose
    /// formats are known and differ are adapted: payload type rewritten,
    /// RFC 4733 events mapped to the peer's telephone-event type, AMR
    /// converted between payload modes, other encodings transcoded (feature
    /// `transcode`; without it such packets are dropped as
    /// [`DropReason::NoTranscoder`]). A known format also sets the leg's
    /// clock rate to the encoding's, and its telephone-event payload type
    /// (received and sent). A changed format stops what the relay was
    /// sending into the leg ([`Relay::send_dtmf`], [`Relay::play`]): it
    /// was built for the old codec and payload types.
    pub fn set_format(&mut self, leg: LegId, format: Option<LegFormat>) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        if l.format == format {
            return Ok(());
        }
        l.dtmf_pt = match &format {
            Some(f) => f.dtmf_payload_type,
            None => Some(DEFAULT_DTMF_PAYLOAD_TYPE),
        };
        if l.inject.take().is_some_and(|i| i.play.is_some()) {
            l.out.restart();
        }
        if let Some(f) = &format {
            let rate = f.encoding.clock_rate();
            if rate != 0 && rate != l.cfg.clock_rate {
                l.cfg.clock_rate = rate;
                l.out.clock_rate = rate;
                l.out.frame = (rate / 50).max(1);
                // Jitter in the old clock's units means nothing in the new one.
                l.quality.rx = ReceiveStats::new(rate);
            }
        }
        l.format = format;
        let peer = l.peer;
        self.prepare(leg);
        if let Some(peer) = peer {
            self.prepare(peer);
        }
        Ok(())
    }

    /// The packet of the last [`Action::ForwardBuffer`] or [`Transmit`].
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Sets up (or tears down) the transcoded direction from `leg` to its
    /// peer for their current formats, so codec states are created on the
    /// control path rather than by the first packet. When the direction
    /// switches between forwarding and transcoding the peer's output stream
    /// is re-anchored, so its sequence numbers and timestamps stay continuous.
    fn prepare(&mut self, leg: LegId) {
        let Some(l) = self.leg(leg) else { return };
        let peer = l.peer;
        let pair = match (&l.format, peer.and_then(|p| self.leg(p)).map(|p| &p.format)) {
            (Some(x), Some(Some(y))) if is_transcoded(x, y) => Some((x.clone(), y.clone())),
            _ => None,
        };
        let was = l.transcoded.is_some();
        let keep = matches!(
            (&l.transcoded, &pair),
            (Some(t), Some((x, y))) if t.from == *x && t.to == *y
        );
        if !keep {
            let state = pair.map(|(x, y)| Box::new(Transcoded::new(x, y)));
            if let Some(l) = self.leg_mut(leg) {
                l.transcoded = state;
            }
        }
        let now = self.leg(leg).is_some_and(|l| l.transcoded.is_some());
        if was != now {
            if let Some(p) = peer.and_then(|p| self.leg_mut(p)) {
                p.out.restart();
            }
        }
    }

    /// Removes a leg, unbridging its peer; its id may be reused, so its
    /// events not yet polled are dropped with it.
    pub fn remove_leg(&mut self, leg: LegId) -> Result<(), RelayError> {
        self.unbridge(leg)?;
        self.events.items.retain(|e| e.leg() != leg);
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

    /// The leg's counters, with its quality snapshot built now.
    pub fn leg_counters(&self, leg: LegId) -> Option<LegCounters> {
        self.leg(leg).map(|l| LegCounters {
            rtp_remote: l.rtp.destination(),
            rtcp_remote: l.rtcp_destination(),
            quality: l.quality.snapshot(),
            peer_voip_metrics: l.quality.peer_voip_metrics,
            ..l.counters
        })
    }

    /// The next deadline: an RTCP report due on some leg (then call
    /// [`Relay::poll_rtcp`]), a generated packet due or a received press's
    /// quiet period over (then call [`Relay::poll_transmit`]). May be early
    /// (a removed leg's deadline, a stopped prompt's), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rtcp = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let wake = self.wakeups.heap.peek().map(|Reverse((at, ..))| *at);
        match (rtcp, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a deadline was added since the last call (e.g. by a packet
    /// that started a press): a caller sleeping until
    /// [`Relay::poll_timeout`] should look again.
    pub fn take_timeout_changed(&mut self) -> bool {
        std::mem::take(&mut self.wakeups.changed)
    }

    /// The next event for the call layer, if any (see [`RelayEvent`]).
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.items.pop_front()
    }

    /// Events lost because the queue held [`EVENT_QUEUE`] unpolled ones.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped
    }

    /// The next packet the relay generated that is due by `now` (digits
    /// of [`Relay::send_dtmf`], frames of [`Relay::play`]): send
    /// [`Relay::output`] as [`Transmit`] says. Call it when
    /// [`Relay::poll_timeout`] is reached, until it returns None; it also
    /// ends received presses whose quiet period is over (their events
    /// then come out of [`Relay::poll_event`]). After a late call the due
    /// packets come one by one, each with its own timestamp.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        while let Some(&Reverse((at, index, epoch, wake))) = self.wakeups.heap.peek() {
            if at > now {
                return None;
            }
            self.wakeups.heap.pop();
            let id = LegId(index);
            let Some(l) = self.legs.get_mut(id.index()).and_then(Option::as_mut) else {
                continue;
            };
            if l.epoch != epoch {
                continue;
            }
            let sent = match wake {
                Wake::DtmfQuiet => {
                    l.dtmf_quiet(id, now, &mut self.events, &mut self.wakeups);
                    None
                }
                Wake::Dtmf => l.next_dtmf(id, at, &mut self.output, &mut self.wakeups),
                Wake::Play => l.next_frame(
                    id,
                    at,
                    now,
                    &mut self.output,
                    &mut self.scratch,
                    &mut self.events,
                    &mut self.wakeups,
                ),
            };
            if sent.is_some() {
                return sent;
            }
        }
        None
    }

    /// Sends `digits` (`0`-`9`, `*`, `#`, `A`-`D`) into `leg` as RFC 4733
    /// events, each a tone of `duration_ms` (e.g.
    /// [`DEFAULT_DTMF_DURATION_MS`]), after the digits already queued. On
    /// the leg's output stream: its SSRC, its next sequence numbers, its
    /// telephone-event payload type; each press has one RTP timestamp (its
    /// start on the audio timeline), the marker on its first packet, an
    /// update every 50 ms and three end packets. The packets come out of
    /// [`Relay::poll_transmit`], the first one due `now`.
    ///
    /// Refused, with nothing queued: a character that is not a digit, a
    /// duration of 0 or beyond one event (65535 clock units), a leg whose
    /// format has no telephone-event ([`RelayError::NoTelephoneEvent`]:
    /// the call layer uses SIP INFO then).
    pub fn send_dtmf(
        &mut self,
        leg: LegId,
        digits: &str,
        duration_ms: u32,
        now: Instant,
    ) -> Result<(), RelayError> {
        let l = self
            .legs
            .get_mut(leg.index())
            .and_then(Option::as_mut)
            .ok_or(RelayError::UnknownLeg(leg))?;
        let payload_type = l
            .format
            .as_ref()
            .and_then(|f| f.dtmf_payload_type)
            .ok_or(RelayError::NoTelephoneEvent(leg))?;
        if let Some(tx) = l.inject.as_deref_mut().and_then(|i| i.dtmf.as_mut()) {
            // Behind the digits being sent, on their timeline.
            return Ok(tx.queue(digits, duration_ms)?);
        }
        let mut tx = DtmfTx::new(payload_type, l.dtmf_rate(), l.out.clock_rate, now);
        tx.queue(digits, duration_ms)?;
        if tx.is_idle() {
            // No digits.
            return Ok(());
        }
        tx.set_base(l.out.generated_timestamp(now));
        l.inject.get_or_insert_with(Box::default).dtmf = Some(tx);
        self.wakeups.push(now, leg, l.epoch, Wake::Dtmf);
        Ok(())
    }

    /// The sample rate [`Relay::play`] encodes the leg's prompts at (its
    /// codec's clock): a WAV already at this rate is not resampled, so a
    /// caller can resample off the event loop first.
    pub fn play_rate(&self, leg: LegId) -> Result<u32, RelayError> {
        let l = self.leg(leg).ok_or(RelayError::UnknownLeg(leg))?;
        l.format
            .as_ref()
            .and_then(|f| encoder_rate(f.encoding))
            .ok_or(RelayError::NoEncoder(leg))
    }

    /// Plays `wav` into `leg` in real time, in 20 ms frames encoded in the
    /// leg's codec (G.711 directly; AMR, AMR-WB and Opus with the
    /// `transcode` feature), on the leg's output stream (its SSRC, next
    /// sequence numbers, the audio timeline), from `now`; `looped` plays
    /// it until [`Relay::stop_play`]. Replaces a prompt already playing.
    /// Meanwhile the peer's packets to this leg are not forwarded (counted
    /// in `LegCounters::suppressed`). The frames come out of
    /// [`Relay::poll_transmit`]; the end of a prompt that is not looped
    /// is reported as [`RelayEvent::PlaybackDone`] (at once for empty
    /// audio). The WAV is resampled to [`Relay::play_rate`] here unless it
    /// is at that rate already.
    pub fn play(
        &mut self,
        leg: LegId,
        wav: Wav,
        looped: bool,
        now: Instant,
    ) -> Result<(), RelayError> {
        let l = self
            .legs
            .get_mut(leg.index())
            .and_then(Option::as_mut)
            .ok_or(RelayError::UnknownLeg(leg))?;
        let format = l.format.as_ref().ok_or(RelayError::NoEncoder(leg))?;
        let payload_type = format.payload_type;
        let encoder = FrameEncoder::new(format.encoding).ok_or(RelayError::NoEncoder(leg))?;
        let playback = Playback::new(wav, encoder.rate(), FRAME_MS, looped, now);
        let replaced = l.inject.as_deref_mut().and_then(|i| i.play.take());
        let Some(due) = playback.poll_timeout() else {
            if replaced.is_some() {
                l.out.restart();
            }
            if l.inject.as_deref().is_some_and(Inject::is_idle) {
                l.inject = None;
            }
            self.events.push(RelayEvent::PlaybackDone { leg });
            return Ok(());
        };
        let base = l.out.generated_timestamp(now);
        let play = PlayTx::new(playback, encoder, payload_type, base);
        l.inject.get_or_insert_with(Box::default).play = Some(play);
        self.wakeups.push(due, leg, l.epoch, Wake::Play);
        Ok(())
    }

    /// Stops the prompt playing into `leg`, if any (no
    /// [`RelayEvent::PlaybackDone`]); forwarding from the peer resumes,
    /// continuing the leg's sequence numbers and timestamps.
    pub fn stop_play(&mut self, leg: LegId) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        if let Some(inject) = l.inject.as_deref_mut() {
            if inject.play.take().is_some() {
                l.out.restart();
            }
            if inject.is_idle() {
                l.inject = None;
            }
        }
        Ok(())
    }

    /// The telephone-event clock rate of the leg when its SDP gives one
    /// other than the audio codec's (e.g. `telephone-event/8000` next to
    /// AMR-WB); `None` (the default) uses the audio clock. It converts
    /// received durations to milliseconds and sets the unit of sent ones.
    pub fn set_dtmf_clock_rate(&mut self, leg: LegId, rate: Option<u32>) -> Result<(), RelayError> {
        let l = self.leg_mut(leg).ok_or(RelayError::UnknownLeg(leg))?;
        l.dtmf_clock = rate.filter(|&r| r > 0);
        Ok(())
    }

    /// The next RTCP compound the relay sends, if one is due by `now`; call
    /// it until it returns `None`. `wall` is the wall-clock time
    /// (`SystemTime::now().duration_since(UNIX_EPOCH)`) for the SR's NTP
    /// timestamp; `now` the monotonic time of the same instant.
    ///
    /// Each leg reports every [`RelayConfig::rtcp_interval`] (randomised,
    /// see `report_due`): an SR if RTP went out of the leg since its last
    /// report, else an RR, with one report block about the SSRC received on
    /// the leg if any RTP came in since the last report, and an SDES CNAME
    /// `softswitch@<local ip>`. It goes to the leg's RTCP address (learned,
    /// else signalled; RTP port + 1, or the RTP port with rtcp-mux). A leg
    /// with no RTCP address or no media yet sends nothing and tries again
    /// an interval later.
    pub fn poll_rtcp(&mut self, now: Instant, wall: Duration) -> Option<RtcpOut> {
        let interval = self.cfg.rtcp_interval;
        while let Some(&Reverse((at, index, epoch))) = self.timers.peek() {
            if at > now {
                return None;
            }
            self.timers.pop();
            let id = LegId(index);
            let Some(l) = self.leg_mut(id) else {
                continue;
            };
            if l.epoch != epoch || l.quality.next_report != at {
                continue;
            }
            // From `now`, not `at`: after a stall the legs do not all fire at once.
            let next = report_due(now, interval, false);
            l.quality.next_report = next;
            let report = l.build_report(now, wall);
            let socket = l.rtcp_socket();
            self.timers.push(Reverse((next, index, epoch)));
            if let Some((to, packet)) = report {
                return Some((id, to, socket, packet));
            }
        }
        None
    }

    /// A BYE (RFC 3550 §6.6) for the leg's SSRC, to send before it is
    /// removed: only when media flowed and there is an RTCP address.
    pub fn rtcp_bye(&mut self, leg: LegId, reason: Option<&str>) -> Option<RtcpOut> {
        let l = self.leg_mut(leg)?;
        let to = l.rtcp_destination()?;
        if l.counters.rtp_in == 0 && l.counters.rtp_out == 0 {
            return None;
        }
        let mut packet = Vec::with_capacity(64);
        rtcp::write_bye(&mut packet, l.out.ssrc, &l.cname(), reason);
        if packet.is_empty() {
            return None;
        }
        l.counters.rtcp_out += 1;
        l.counters.bytes_out += packet.len() as u64;
        Some((leg, to, l.rtcp_socket(), packet))
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
        // The field, not `leg_mut`: the events and deadlines are borrowed
        // alongside for a telephone-event.
        let Some(l) = self.legs.get_mut(leg.index()).and_then(Option::as_mut) else {
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
        // Cheap copy (no heap), so the peer can be borrowed below.
        let in_format = l.format.clone();
        let c = &mut l.counters;
        c.rtp_in += 1;
        c.bytes_in += packet.len() as u64;
        c.last_rtp_at = Some(now);
        if c.ssrc_in != Some(h.ssrc) {
            // A new source (re-INVITE, media server switch): its sequence
            // numbers and timestamps are unrelated to the old one's, so A.1
            // and A.8 start over (as a receiver does for a new SSRC).
            c.ssrc_in = Some(h.ssrc);
            l.quality.rx = ReceiveStats::new(l.cfg.clock_rate);
            // Its events are keyed by its own timestamps: the old source's
            // press (if its end was lost) ends here.
            l.end_press(leg, &mut self.events);
            l.dtmf_rx.reset();
        }
        l.quality
            .rx
            .on_packet(h.sequence, h.timestamp, h.payload_len, now);
        // Reported whether or not the packet goes anywhere (the call layer
        // relays it out of band when the peer cannot take it).
        let is_dtmf = l.dtmf_pt == Some(h.payload_type);
        if is_dtmf {
            l.on_dtmf(leg, &h, packet, now, &mut self.events, &mut self.wakeups);
        }
        let Some(peer) = l.peer else {
            return drop_on(l, DropReason::NoPeer);
        };
        let Some(out) = self.leg_mut(peer) else {
            return self.drop_no_peer(leg);
        };
        let Some(to) = out.rtp.destination() else {
            return self.drop_no_peer(leg);
        };
        if let Some(inject) = out.inject.as_deref() {
            // The relay is speaking into the peer: see the module notes.
            if inject.play.is_some() || (is_dtmf && inject.dtmf.is_some()) {
                out.counters.suppressed += 1;
                return Action::Consumed;
            }
        }
        // Unknown or identical formats (the common case) cost one comparison.
        let payload_type = match (&in_format, &out.format) {
            (Some(x), Some(y)) if x != y => match route(x, y, h.payload_type) {
                Route::Pass => h.payload_type,
                Route::Remap(pt) => pt,
                // Reported above as a RelayEvent; nothing to forward.
                Route::Drop(DropReason::NoDtmf) => return Action::Consumed,
                Route::Drop(reason) => return self.count_and_drop(leg, reason),
                slow => return self.forward_converted(leg, peer, to, &h, packet, slow, now),
            },
            _ => h.payload_type,
        };
        let (seq, ts) = out.out.map(&h, now);
        if !rtp::rewrite(packet, payload_type, seq, ts, out.out.ssrc) {
            // Unreachable after a successful parse; counted, never a panic.
            return self.count_and_drop(leg, DropReason::Malformed(RtpError::Truncated));
        }
        out.counters.rtp_out += 1;
        out.counters.bytes_out += packet.len() as u64;
        out.out.payload_octets += h.payload_len as u64;
        Action::Forward {
            out_leg: peer,
            to,
            socket: SocketKind::Rtp,
        }
    }

    /// The packet path when the payload changes between the legs (AMR mode
    /// conversion, transcoding) or the timeline does (events on a
    /// transcoded direction). The output is built in `self.output`.
    #[allow(clippy::too_many_arguments)]
    fn forward_converted(
        &mut self,
        leg: LegId,
        peer: LegId,
        to: SocketAddr,
        h: &RtpHeader,
        packet: &mut [u8],
        route: Route,
        now: Instant,
    ) -> Action {
        if let Route::Transcode | Route::TranscodedEvent(_) = route {
            let stale = match (self.leg(leg), self.leg(peer)) {
                (Some(x), Some(y)) => match (&x.transcoded, &x.format, &y.format) {
                    (Some(t), Some(xf), Some(yf)) => t.from != *xf || t.to != *yf,
                    _ => true,
                },
                _ => true,
            };
            if stale {
                self.prepare(leg);
            }
        }
        let Some((x, y)) = two_legs(&mut self.legs, leg, peer) else {
            return self.drop_no_peer(leg);
        };
        let (Some(y_format), Some(_)) = (&y.format, &x.format) else {
            return drop_on(x, DropReason::NoPeer);
        };
        let y_pt = y_format.payload_type;
        let payload = h.payload(packet);
        let mapped = match route {
            Route::ConvertAmr { kind, from, to } => {
                if amr::convert(kind, from, to, payload, &mut self.scratch).is_err() {
                    return drop_on(x, DropReason::BadPayload);
                }
                Some((y_pt, y.out.map(h, now)))
            }
            Route::TranscodedEvent(pt) => {
                let Some(t) = x.transcoded.as_deref_mut() else {
                    return drop_on(x, DropReason::NoTranscoder);
                };
                let synthetic = t.event(h, x.cfg.clock_rate, y.cfg.clock_rate);
                let (seq, ts) = y.out.map(&synthetic, now);
                // Same payload: rewritten in place like a pass-through.
                if !rtp::rewrite(packet, pt, seq, ts, y.out.ssrc) {
                    return drop_on(x, DropReason::Malformed(RtpError::Truncated));
                }
                y.counters.rtp_out += 1;
                y.counters.bytes_out += packet.len() as u64;
                y.out.payload_octets += h.payload_len as u64;
                return Action::Forward {
                    out_leg: peer,
                    to,
                    socket: SocketKind::Rtp,
                };
            }
            Route::Transcode => {
                let Some(t) = x.transcoded.as_deref_mut() else {
                    return drop_on(x, DropReason::NoTranscoder);
                };
                match t.audio(h, payload, &mut self.scratch) {
                    Err(reason) => return drop_on(x, reason),
                    Ok(None) => None,
                    Ok(Some(synthetic)) => Some((y_pt, y.out.map(&synthetic, now))),
                }
            }
            Route::Pass | Route::Remap(_) | Route::Drop(_) => {
                // Handled by the caller; never routed here.
                return drop_on(x, DropReason::NoPeer);
            }
        };
        let Some((pt, (seq, ts))) = mapped else {
            return Action::Consumed;
        };
        self.output.clear();
        rtp::write(
            &mut self.output,
            h.marker,
            pt,
            seq,
            ts,
            y.out.ssrc,
            &self.scratch,
        );
        y.counters.rtp_out += 1;
        y.counters.bytes_out += self.output.len() as u64;
        y.out.payload_octets += self.scratch.len() as u64;
        Action::ForwardBuffer {
            out_leg: peer,
            to,
            socket: SocketKind::Rtp,
        }
    }

    /// The path for RTCP received on `leg` (its RTCP socket, or its RTP
    /// socket with rtcp-mux). RTCP is latched on its own source, read into
    /// the leg's quality state and terminated there ([`Action::Consumed`]):
    /// it is not forwarded, each leg gets the relay's own reports instead
    /// (see the module notes and [`Relay::poll_rtcp`]).
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
        // The framing check first: it rejects junk without allocating.
        if !valid_rtcp(packet) {
            return drop_on(l, DropReason::MalformedRtcp);
        }
        let Ok(packets) = rtcp::parse_compound(packet) else {
            return drop_on(l, DropReason::MalformedRtcp);
        };
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
        l.take_rtcp(&packets, now);
        Action::Consumed
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

/// How a packet crosses between two legs whose formats differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Unchanged (a payload type both sides share, e.g. comfort noise).
    Pass,
    /// In place, with this payload type.
    Remap(u8),
    Drop(DropReason),
    /// AMR payload-mode conversion, same codec.
    ConvertAmr {
        kind: AmrKind,
        from: PayloadMode,
        to: PayloadMode,
    },
    /// Audio through the direction's transcoder.
    Transcode,
    /// An RFC 4733 event on a transcoded direction: same payload with this
    /// payload type, on the transcoded output's timeline.
    TranscodedEvent(u8),
}

fn payload_mode(octet_aligned: bool) -> PayloadMode {
    if octet_aligned {
        PayloadMode::OctetAligned
    } else {
        PayloadMode::BandwidthEfficient
    }
}

/// Whether audio from `x` to `y` needs decoding (AMR of either payload
/// mode to the same AMR codec does not).
fn is_transcoded(x: &LegFormat, y: &LegFormat) -> bool {
    match (x.encoding, y.encoding) {
        (Encoding::Amr { wideband: a, .. }, Encoding::Amr { wideband: b, .. }) => a != b,
        (a, b) => a != b,
    }
}

/// The route of a packet of payload type `pt` from a leg in format `x` to
/// one in format `y` (`x != y`).
fn route(x: &LegFormat, y: &LegFormat, pt: u8) -> Route {
    let transcoded = is_transcoded(x, y);
    if x.dtmf_payload_type == Some(pt) {
        return match y.dtmf_payload_type {
            None => Route::Drop(DropReason::NoDtmf),
            Some(d) if transcoded => Route::TranscodedEvent(d),
            Some(d) => Route::Remap(d),
        };
    }
    if pt != x.payload_type {
        // Something else the peer offered (comfort noise...): fine between
        // identical codecs, meaningless to the other codec's decoder.
        return if x.encoding == y.encoding {
            Route::Pass
        } else {
            Route::Drop(DropReason::PayloadType)
        };
    }
    match (x.encoding, y.encoding) {
        (a, b) if a == b => Route::Remap(y.payload_type),
        (
            Encoding::Amr {
                wideband,
                octet_aligned: from,
            },
            Encoding::Amr {
                octet_aligned: to, ..
            },
        ) if !transcoded => Route::ConvertAmr {
            kind: if wideband { AmrKind::Wb } else { AmrKind::Nb },
            from: payload_mode(from),
            to: payload_mode(to),
        },
        _ => Route::Transcode,
    }
}

/// Both legs, mutably (`x` is `a`'s); `None` if either is missing or they
/// are the same leg.
fn two_legs(legs: &mut [Option<Leg>], a: LegId, b: LegId) -> Option<(&mut Leg, &mut Leg)> {
    let (i, j) = (a.index(), b.index());
    let (low, high) = (i.min(j), i.max(j));
    if i == j || high >= legs.len() {
        return None;
    }
    let (left, right) = legs.split_at_mut(high);
    let lo = left.get_mut(low)?.as_mut()?;
    let hi = right.first_mut()?.as_mut()?;
    Some(if i < j { (lo, hi) } else { (hi, lo) })
}

/// Lost input packets concealed at most per gap: beyond ~100 ms the
/// decoder's extrapolation is noise, and a long gap must not cost a burst
/// of codec work.
#[cfg(feature = "transcode")]
const MAX_CONCEALED: u16 = 5;

/// AMR frames one transcoder output may hold: 120 ms of input plus a frame
/// left over in its FIFO.
#[cfg(feature = "transcode")]
const MAX_OUT_FRAMES: usize = 8;

/// One transcoded direction (`from` → `to`), owned by the input leg. Its
/// output is a timeline of its own, in the output codec's clock: the
/// sequence number moves on by one per packet (and per lost input packet),
/// the timestamp by what the transcoder produced; `OutStream::map` then
/// maps it onto the leg's output stream like any input.
#[derive(Debug)]
struct Transcoded {
    from: LegFormat,
    to: LegFormat,
    #[cfg(feature = "transcode")]
    codec: Option<crate::transcode::Transcoder>,
    /// Input AMR frames in storage format (the transcoder's input).
    #[cfg(feature = "transcode")]
    storage: Vec<u8>,
    /// One AMR frame's speech bits.
    #[cfg(feature = "transcode")]
    frame: Vec<u8>,
    /// The transcoder's output payload.
    #[cfg(feature = "transcode")]
    coded: Vec<u8>,
    /// The last input packet: SSRC and sequence number (loss detection).
    last_in: Option<(u32, u16)>,
    /// Next output (sequence, timestamp) of this direction's timeline.
    next: Option<(u16, u32)>,
    /// The last audio packet's input timestamp and output timestamp: where
    /// events are placed on the output timeline.
    anchor: Option<(u32, u32)>,
}

impl Transcoded {
    fn new(from: LegFormat, to: LegFormat) -> Transcoded {
        #[cfg(feature = "transcode")]
        let codec = match (codec_of(from.encoding), codec_of(to.encoding)) {
            (Some(a), Some(b)) => crate::transcode::Transcoder::new(a, b).ok(),
            _ => None,
        };
        Transcoded {
            from,
            to,
            #[cfg(feature = "transcode")]
            codec,
            #[cfg(feature = "transcode")]
            storage: Vec::new(),
            #[cfg(feature = "transcode")]
            frame: Vec::new(),
            #[cfg(feature = "transcode")]
            coded: Vec::new(),
            last_in: None,
            next: None,
            anchor: None,
        }
    }

    /// The next output position, starting from the first input packet's.
    fn take_next(&mut self, h: &RtpHeader, advance: u32) -> (u16, u32) {
        take_next(&mut self.next, h, advance)
    }

    /// Lost input packets since the last one (0 for the first, a new
    /// source, or a late packet), and records `h` as the last.
    fn lost_before(&mut self, h: &RtpHeader) -> u16 {
        let gap = match self.last_in {
            Some((ssrc, seq)) if ssrc == h.ssrc => h.sequence.wrapping_sub(seq),
            _ => 1,
        };
        if gap == 0 || gap >= 0x8000 {
            // Duplicate or late: the newest stays the reference.
            return 0;
        }
        self.last_in = Some((h.ssrc, h.sequence));
        gap - 1
    }

    /// The synthetic header of an RFC 4733 event packet: its timestamp is
    /// placed relative to the last audio packet, scaled between the audio
    /// clocks (the event's own duration field is not rescaled; see the
    /// module notes).
    fn event(&mut self, h: &RtpHeader, from_rate: u32, to_rate: u32) -> RtpHeader {
        let _ = self.lost_before(h);
        let ts = match self.anchor {
            Some((in_ts, out_ts)) if from_rate != 0 => {
                let delta = i64::from(h.timestamp.wrapping_sub(in_ts) as i32);
                let scaled = delta * i64::from(to_rate) / i64::from(from_rate);
                out_ts.wrapping_add(scaled as i32 as u32)
            }
            _ => self.next.map_or(h.timestamp, |(_, ts)| ts),
        };
        let (seq, _) = self.take_next(h, 0);
        RtpHeader {
            sequence: seq,
            timestamp: ts,
            ..*h
        }
    }

    /// Transcodes one audio payload into `out`; the synthetic header of the
    /// output packet, or `None` when the transcoder has no whole frame yet.
    #[cfg(not(feature = "transcode"))]
    fn audio(
        &mut self,
        _h: &RtpHeader,
        _payload: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Option<RtpHeader>, DropReason> {
        Err(DropReason::NoTranscoder)
    }

    /// Transcodes one audio payload into `out`; the synthetic header of the
    /// output packet, or `None` when the transcoder has no whole frame yet.
    #[cfg(feature = "transcode")]
    fn audio(
        &mut self,
        h: &RtpHeader,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<RtpHeader>, DropReason> {
        let lost = self.lost_before(h);
        let Some(codec) = self.codec.as_mut() else {
            return Err(DropReason::NoTranscoder);
        };
        // Run the decoder's concealment for what was lost, so the next
        // frame decodes from a plausible state. One input packet gives at
        // most one output packet, so the concealed audio itself is not
        // sent: the output shows the same gap (sequence and timestamp move
        // on) and the far end conceals it as it would have without us.
        for _ in 0..lost.min(MAX_CONCEALED) {
            let advance = codec.conceal(&mut self.coded);
            if advance > 0 {
                let _ = take_next(&mut self.next, h, u32::try_from(advance).unwrap_or(0));
            }
        }
        let input: &[u8] = match self.from.encoding {
            Encoding::Amr {
                wideband,
                octet_aligned,
            } => {
                let kind = if wideband { AmrKind::Wb } else { AmrKind::Nb };
                let parsed = amr::AmrPayload::parse(kind, payload_mode(octet_aligned), payload)
                    .map_err(|_| DropReason::BadPayload)?;
                self.storage.clear();
                for (i, f) in parsed.frames.iter().enumerate() {
                    parsed
                        .frame_data(i, &mut self.frame)
                        .ok_or(DropReason::BadPayload)?;
                    self.storage.push((f.ft << 3) | (u8::from(f.q) << 2));
                    self.storage.extend_from_slice(&self.frame);
                }
                &self.storage
            }
            _ => payload,
        };
        let advance = codec
            .transcode(input, &mut self.coded)
            .map_err(|_| DropReason::BadPayload)?;
        let advance = u32::try_from(advance).unwrap_or(0);
        if advance == 0 || self.coded.is_empty() {
            return Ok(None);
        }
        match self.to.encoding {
            Encoding::Amr {
                wideband,
                octet_aligned,
            } => build_amr(wideband, octet_aligned, &self.coded, out)?,
            _ => {
                out.clear();
                out.extend_from_slice(&self.coded);
            }
        }
        let (seq, ts) = take_next(&mut self.next, h, advance);
        self.anchor = Some((h.timestamp, ts));
        Ok(Some(RtpHeader {
            sequence: seq,
            timestamp: ts,
            payload_len: out.len(),
            ..*h
        }))
    }
}

fn take_next(next: &mut Option<(u16, u32)>, h: &RtpHeader, advance: u32) -> (u16, u32) {
    let (seq, ts) = next.unwrap_or((h.sequence, h.timestamp));
    *next = Some((seq.wrapping_add(1), ts.wrapping_add(advance)));
    (seq, ts)
}

/// The transcoder's codec for an encoding, encoding AMR at its highest
/// rate (12.2 / 23.85 kbit/s: a transcoded leg has already lost quality
/// once); `None` for encodings it does not handle.
#[cfg(feature = "transcode")]
fn codec_of(e: Encoding) -> Option<crate::transcode::Codec> {
    use crate::transcode::Codec;
    Some(match e {
        Encoding::Pcmu => Codec::Pcmu,
        Encoding::Pcma => Codec::Pcma,
        Encoding::Amr {
            wideband: false, ..
        } => Codec::AmrNb { mode: 7 },
        Encoding::Amr { wideband: true, .. } => Codec::AmrWb { mode: 8 },
        Encoding::Opus => Codec::Opus,
        Encoding::Other { .. } => return None,
    })
}

/// An RFC 4867 payload (no CMR) from storage-format frames back to back.
#[cfg(feature = "transcode")]
fn build_amr(
    wideband: bool,
    octet_aligned: bool,
    storage: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DropReason> {
    let (kind, len_of): (AmrKind, fn(u8) -> Option<usize>) = if wideband {
        (AmrKind::Wb, crate::transcode::amr_wb_frame_len)
    } else {
        (AmrKind::Nb, crate::transcode::amr_nb_frame_len)
    };
    let mut frames: [(u8, bool, &[u8]); MAX_OUT_FRAMES] = [(0, false, &[]); MAX_OUT_FRAMES];
    let mut n = 0;
    let mut rest = storage;
    while let Some(&header) = rest.first() {
        let len = len_of(header).ok_or(DropReason::BadPayload)?;
        let frame = rest.get(1..len).ok_or(DropReason::BadPayload)?;
        let slot = frames.get_mut(n).ok_or(DropReason::BadPayload)?;
        *slot = ((header >> 3) & 0x0F, header & 0x04 != 0, frame);
        n += 1;
        rest = rest.get(len..).unwrap_or_default();
    }
    let frames = frames.get(..n).unwrap_or_default();
    // CMR 15: no mode request (the transcoder picks its own rate).
    amr::build(kind, payload_mode(octet_aligned), 15, frames, out)
        .map_err(|_| DropReason::BadPayload)
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
    use crate::stats::Source;
    use std::net::{IpAddr, Ipv4Addr};

    pub(super) fn addr(last: u8, port: u16) -> SocketAddr {
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

    pub(super) struct Call {
        pub(super) relay: Relay,
        pub(super) a: LegId,
        pub(super) b: LegId,
        pub(super) t0: Instant,
    }

    /// A bridge between phone A (SDP 192.0.2.1:4000, relay port 30000) and
    /// phone B (relay port 30002) configured by `b`.
    pub(super) fn bridged(b: impl FnOnce(LegConfig) -> LegConfig) -> Call {
        let t0 = Instant::now();
        let mut relay = Relay::new(RelayConfig::default());
        let a = relay.add_leg(
            LegConfig {
                remote: Some(addr(1, 4000)),
                ..LegConfig::new(addr(100, 30000))
            },
            t0,
        );
        let b = relay.add_leg(b(LegConfig::new(addr(100, 30002))), t0);
        relay.bridge(a, b).unwrap();
        Call { relay, a, b, t0 }
    }

    /// A bridge between phone A (SDP 192.0.2.1:4000) and phone B (SDP `b_remote`).
    fn call(b_remote: Option<SocketAddr>, b_symmetric: bool) -> Call {
        bridged(|cfg| LegConfig {
            remote: b_remote,
            symmetric: b_symmetric,
            ..cfg
        })
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

    /// A: non-muxed (RTCP 4001); B: muxed at 5000.
    fn mux_call() -> Call {
        bridged(|cfg| LegConfig {
            remote: Some(addr(2, 5000)),
            rtcp_mux: true,
            ..cfg
        })
    }

    #[test]
    fn rtcp_is_terminated_on_each_leg_not_forwarded() {
        // Before, RTCP was forwarded raw across the bridge; now each leg
        // terminates it (the relay rewrites SSRC/seq/ts, so a forwarded SR or
        // report block would describe a stream the far end never sees) and
        // the relay sends its own reports (see the poll_rtcp tests).
        let mut c = mux_call();
        let t0 = c.t0;
        let (a, b) = (c.a, c.b);
        assert_eq!(
            c.relay.handle_rtcp(a, addr(1, 4001), &rr(1), t0),
            Action::Consumed
        );
        // Muxed RTCP arrives on B's RTP socket: recognised, consumed too.
        let mut p = rr(2);
        assert_eq!(
            c.relay.handle_rtp(b, addr(2, 5000), &mut p, t0),
            Action::Consumed
        );
        // Compound RR + SDES is read; RTCP from a stranger is dropped and counted.
        let mut compound = rr(1);
        compound.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!(
            c.relay.handle_rtcp(a, addr(1, 4001), &compound, t0),
            Action::Consumed
        );
        assert_eq!(
            c.relay.handle_rtcp(a, addr(66, 4001), &rr(1), t0),
            Action::Drop(DropReason::NotLatched)
        );
        // RTCP on A's RTP port from the RTP source would have to be muxed:
        // A is not, so it is not RTP either.
        let ca = c.relay.leg_counters(a).unwrap();
        assert_eq!((ca.rtcp_in, ca.rtcp_out), (2, 0));
        assert_eq!(ca.dropped(DropReason::NotLatched), 1);
        assert_eq!(ca.rtcp_remote, Some(addr(1, 4001)));
        let cb = c.relay.leg_counters(b).unwrap();
        assert_eq!((cb.rtcp_in, cb.rtcp_out, cb.bytes_out), (1, 0, 0));
        assert_eq!(cb.rtcp_remote, Some(addr(2, 5000)));
        // Unbridged legs still read their RTCP (nothing to forward anyway).
        c.relay.unbridge(a).unwrap();
        assert_eq!(
            c.relay.handle(a, addr(1, 4001), Input::Rtcp(&rr(1)), t0),
            Action::Consumed
        );
        // A non-compound (first packet not SR/RR) is malformed.
        assert_eq!(
            c.relay.handle_rtcp(
                a,
                addr(1, 4001),
                &[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0],
                t0
            ),
            Action::Drop(DropReason::MalformedRtcp)
        );
    }

    fn wall0() -> Duration {
        // A round second, so NTP fractions of the test's binary-fraction
        // durations are exact.
        Duration::from_secs(1_700_000_000)
    }

    fn peer_sr(ssrc: u32, ntp: u64, blocks: &[ReportBlock]) -> Vec<u8> {
        let mut p = Vec::new();
        let info = SenderInfo {
            ntp_timestamp: ntp,
            rtp_timestamp: 1234,
            packet_count: 10,
            octet_count: 1600,
        };
        rtcp::write_report(&mut p, ssrc, Some(info), blocks, "phone@test");
        p
    }

    fn peer_rr(ssrc: u32, blocks: &[ReportBlock]) -> Vec<u8> {
        let mut p = Vec::new();
        rtcp::write_report(&mut p, ssrc, None, blocks, "phone@test");
        p
    }

    /// Every report due by `now` as (leg, to, socket, packets).
    fn poll_all(
        relay: &mut Relay,
        now: Instant,
        wall: Duration,
    ) -> Vec<(LegId, SocketAddr, SocketKind, Vec<RtcpPacket>)> {
        let mut out = Vec::new();
        while let Some((leg, to, socket, p)) = relay.poll_rtcp(now, wall) {
            out.push((leg, to, socket, rtcp::parse_compound(&p).unwrap()));
        }
        out
    }

    #[test]
    fn loss_and_jitter_measured_on_the_receiving_leg() {
        // 100 packets, 3 missing, perfectly spaced 20 ms / 160 ticks.
        let mut c = call(Some(addr(2, 5000)), true);
        for seq in (0..100u16).filter(|s| ![10, 50, 77].contains(s)) {
            let mut p = pkt(8, seq, u32::from(seq) * 160, 0xA);
            let now = ms(&c, u64::from(seq) * 20);
            assert!(matches!(
                c.send(c.a, addr(1, 4000), &mut p, now),
                Action::Forward { .. }
            ));
        }
        let q = c.relay.leg_counters(c.a).unwrap().quality;
        assert_eq!((q.packets_received, q.packets_lost), (97, 3));
        assert!((q.loss_rate - 0.03).abs() < 1e-12, "{}", q.loss_rate);
        assert_eq!(q.bytes_received, 97 * 160);
        assert_eq!((q.jitter_ms, q.mean_jitter_ms), (0.0, 0.0));
        assert_eq!(q.sources.received, Source::Measured);
        assert_eq!(q.sources.delay, Source::Estimated);
        assert_eq!(q.rtt_ms, None);
        // G.711 by default: 3 % random loss is the only impairment.
        let expect = crate::stats::r_factor(CodecImpairment::for_codec("PCMA"), 80.0, 3.0, 1.0);
        assert!((q.r - expect).abs() < 1e-9);
        // B received nothing: an empty measurement, not A's.
        let qb = c.relay.leg_counters(c.b).unwrap().quality;
        assert_eq!((qb.packets_received, qb.packets_lost), (0, 0));

        // A new input SSRC starts the measurement over.
        for seq in 0..5u16 {
            let mut p = pkt(8, 4000 + seq, 99_999 + u32::from(seq) * 160, 0xA2);
            let now = ms(&c, 3000 + u64::from(seq) * 20);
            let _ = c.send(c.a, addr(1, 4000), &mut p, now);
        }
        let q = c.relay.leg_counters(c.a).unwrap().quality;
        assert_eq!((q.packets_received, q.packets_lost), (5, 0));

        // The codec named on the leg feeds the E-model.
        c.relay.set_codec(c.a, Some("AMR".into())).unwrap();
        let amr = c.relay.leg_counters(c.a).unwrap().quality;
        assert!(amr.r < q.r - 4.9, "{} vs {}", amr.r, q.r);
        assert_eq!(
            c.relay.leg_config(c.a).unwrap().codec.as_deref(),
            Some("AMR")
        );
        assert!(c.relay.set_codec(LegId(9), None).is_err());
    }

    #[test]
    fn reports_on_schedule_carry_the_report_block_to_the_rtcp_address() {
        let mut c = mux_call();
        let (a, b, t0) = (c.a, c.b, c.t0);
        let interval = RelayConfig::default().rtcp_interval;
        // The first report is due within [0.25, 0.75] x the interval.
        let first = c.relay.poll_timeout().unwrap();
        assert!(first >= t0 + interval / 4 && first <= t0 + interval * 3 / 4);
        assert_eq!(c.relay.poll_rtcp(t0, wall0()), None);
        // Due, but no media has flowed yet: nothing is sent, both legs move on.
        let t = t0 + interval;
        assert!(poll_all(&mut c.relay, t, wall0() + interval).is_empty());
        assert!(c.relay.poll_timeout().unwrap() > t);

        // Phone A: 100 packets, 3 lost, odd ones 10 ms late (A.8 jitter
        // about 80 ticks). A reference ReceiveStats gets the same packets.
        let start = t + Duration::from_secs(1);
        let mut reference = ReceiveStats::new(8000);
        let mut last_sent = (0u32, start);
        for seq in (1000..1100u16).filter(|s| ![1010, 1050, 1077].contains(s)) {
            let i = u32::from(seq - 1000);
            let late = if i % 2 == 1 { 10 } else { 0 };
            let at = start + Duration::from_millis(u64::from(i) * 20 + late);
            let mut p = pkt(8, seq, 50_000 + i * 160, 0xA);
            reference.on_packet(seq, 50_000 + i * 160, 160, at);
            assert!(matches!(
                c.send(a, addr(1, 4000), &mut p, at),
                Action::Forward { out_leg, .. } if out_leg == b
            ));
            last_sent = (rtp::parse(&p).unwrap().timestamp, at);
        }
        let expected = reference.take_interval();
        assert!(expected.jitter > 40, "{expected:?}");
        // Phone A's SR, so our block about it carries LSR/DLSR.
        let sr_at = start + Duration::from_secs(2);
        let sr_ntp = rtcp::ntp_from_unix(wall0() + Duration::from_secs(7));
        assert_eq!(
            c.relay
                .handle_rtcp(a, addr(1, 4001), &peer_sr(0xA, sr_ntp, &[]), sr_at),
            Action::Consumed
        );

        // Both legs due (their deadlines were at most 7.5 s after t).
        let now = t + Duration::from_secs(10);
        let wall = wall0() + Duration::from_secs(10);
        let sent = poll_all(&mut c.relay, now, wall);
        assert_eq!(sent.len(), 2, "{sent:?}");
        let next = c.relay.poll_timeout().unwrap();
        assert!(next >= now + interval / 2 && next <= now + interval * 3 / 2);
        assert_eq!(
            c.relay.poll_rtcp(now + Duration::from_millis(1), wall),
            None
        );

        // A (not muxed): an RR to RTP port + 1, one block about phone A.
        let (_, to, socket, packets) = sent.iter().find(|r| r.0 == a).unwrap();
        assert_eq!((*to, *socket), (addr(1, 4001), SocketKind::Rtcp));
        let [RtcpPacket::ReceiverReport { ssrc, reports }, RtcpPacket::Sdes { chunks }] =
            &packets[..]
        else {
            panic!("{packets:?}")
        };
        assert_eq!(*ssrc, c.relay.leg_ssrc(a).unwrap());
        assert_eq!(
            chunks,
            &[(*ssrc, Some("softswitch@192.0.2.100".to_owned()))]
        );
        assert_eq!(
            reports,
            &[ReportBlock {
                ssrc: 0xA,
                // A.3: 3 lost of 100 expected, 8-bit fixed point.
                fraction_lost: (3 * 256 / 100) as u8,
                cumulative_lost: 3,
                extended_highest_seq: 1099,
                jitter: expected.jitter,
                lsr: rtcp::ntp_middle32(sr_ntp),
                dlsr: rtcp::ntp_short_from_duration(now - sr_at),
            }]
        );
        assert_eq!(expected.fraction_lost, 7);
        // After the report the API's lostrate is the interval's.
        let q = c.relay.leg_counters(a).unwrap();
        assert!((q.quality.loss_rate - 7.0 / 256.0).abs() < 1e-12);
        assert_eq!(q.rtcp_out, 1);

        // B (muxed): an SR to the RTP port, from B's RTP socket, about the
        // 97 packets forwarded to phone B; no block (phone B sent nothing).
        let (_, to, socket, packets) = sent.iter().find(|r| r.0 == b).unwrap();
        assert_eq!((*to, *socket), (addr(2, 5000), SocketKind::Rtp));
        let [RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        }, RtcpPacket::Sdes { .. }] = &packets[..]
        else {
            panic!("{packets:?}")
        };
        assert_eq!(*ssrc, c.relay.leg_ssrc(b).unwrap());
        assert!(reports.is_empty());
        assert_eq!(info.ntp_timestamp, rtcp::ntp_from_unix(wall));
        assert_eq!((info.packet_count, info.octet_count), (97, 97 * 160));
        // The last packet's timestamp moved on to `now` at 8 kHz.
        let ticks = (now - last_sent.1).as_micros() * 8 / 1000;
        assert_eq!(
            info.rtp_timestamp,
            last_sent.0.wrapping_add(u32::try_from(ticks).unwrap())
        );

        // Next interval, no media since: A sends an RR with no block, B an RR.
        let later = now + interval * 2;
        let reports = poll_all(&mut c.relay, later, wall + interval * 2);
        assert_eq!(reports.len(), 2);
        for (_, _, _, packets) in &reports {
            assert!(matches!(
                &packets[..],
                [RtcpPacket::ReceiverReport { reports, .. }, RtcpPacket::Sdes { .. }]
                    if reports.is_empty()
            ));
        }
    }

    #[test]
    fn rtt_and_peer_view_from_the_endpoints_reports() {
        let mut c = mux_call();
        let (a, b, t0) = (c.a, c.b, c.t0);
        // Phone B talks: RTP goes out of A, so A's report is an SR.
        for seq in 0..5u16 {
            let mut p = pkt(0, seq, u32::from(seq) * 160, 0xB);
            let at = t0 + Duration::from_millis(u64::from(seq) * 20);
            let _ = c.send(b, addr(2, 5000), &mut p, at);
        }
        // Phone A's SR (it is also a sender), then our SR at t1.
        let _ = c
            .relay
            .handle_rtcp(a, addr(1, 4001), &peer_sr(0xA, 77 << 32, &[]), t0);
        let t1 = t0 + Duration::from_secs(10);
        let w1 = wall0();
        let reports = poll_all(&mut c.relay, t1, w1);
        let (_, _, _, ours) = reports.iter().find(|r| r.0 == a).unwrap();
        let Some(RtcpPacket::SenderReport { info, .. }) = ours.first() else {
            panic!("{ours:?}")
        };
        assert_eq!(info.ntp_timestamp, rtcp::ntp_from_unix(w1));
        let our_ssrc = c.relay.leg_ssrc(a).unwrap();

        // Phone A answers 375 ms later, having held our SR 250 ms: RTT is
        // 375 - 250 = 125 ms, exactly (all binary fractions of a second).
        let block = ReportBlock {
            ssrc: our_ssrc,
            fraction_lost: 64,
            cumulative_lost: 12,
            extended_highest_seq: 4,
            jitter: 80,
            lsr: rtcp::ntp_middle32(info.ntp_timestamp),
            dlsr: rtcp::ntp_short_from_duration(Duration::from_millis(250)),
        };
        assert_eq!(block.dlsr, 16_384);
        let arrival = t1 + Duration::from_millis(375);
        assert_eq!(
            c.relay
                .handle_rtcp(a, addr(1, 4001), &peer_rr(0xA, &[block]), arrival),
            Action::Consumed
        );
        let q = c.relay.leg_counters(a).unwrap().quality;
        assert_eq!(q.rtt_ms, Some(125.0));
        assert_eq!(q.avg_rtt_ms, Some(125.0));
        assert_eq!(q.sources.delay, Source::PeerRtcp);
        // The peer's view of what we send it: 64/256 lost, 80 ticks = 10 ms.
        assert_eq!(q.peer_loss_rate, Some(0.25));
        assert_eq!(q.peer_jitter_ms, Some(10.0));
        assert_eq!(q.sources.peer, Some(Source::PeerRtcp));
        assert!(q.peer_mos.unwrap() < q.mos);

        // Blocks about another SSRC, or quoting an SR we never sent, give
        // no RTT (nor a peer view for the other SSRC).
        let stranger = ReportBlock {
            ssrc: our_ssrc ^ 1,
            fraction_lost: 255,
            ..block
        };
        let forged = ReportBlock {
            lsr: block.lsr ^ 0x10,
            fraction_lost: 0,
            ..block
        };
        let later = arrival + Duration::from_millis(100);
        let _ = c
            .relay
            .handle_rtcp(a, addr(1, 4001), &peer_rr(0xA, &[stranger]), later);
        let _ = c
            .relay
            .handle_rtcp(a, addr(1, 4001), &peer_rr(0xA, &[forged]), later);
        let q = c.relay.leg_counters(a).unwrap().quality;
        assert_eq!((q.rtt_ms, q.avg_rtt_ms), (Some(125.0), Some(125.0)));
        assert_eq!(q.peer_loss_rate, Some(0.0));

        // More media, a second SR at t2 (lost on the way); a report still
        // quoting the first one counts: it arrives at t2 + 375 ms, having
        // held our first SR 20.25 s, so RTT is 20.375 - 20.25 = 125 ms.
        let mut p = pkt(0, 5, 800, 0xB);
        let _ = c.send(b, addr(2, 5000), &mut p, t1 + Duration::from_secs(1));
        let t2 = t1 + Duration::from_secs(20);
        assert!(!poll_all(&mut c.relay, t2, w1 + Duration::from_secs(20)).is_empty());
        let late = ReportBlock {
            dlsr: rtcp::ntp_short_from_duration(Duration::from_millis(20_250)),
            fraction_lost: 32,
            ..block
        };
        let _ = c.relay.handle_rtcp(
            a,
            addr(1, 4001),
            &peer_rr(0xA, &[late]),
            t2 + Duration::from_millis(375),
        );
        let q = c.relay.leg_counters(a).unwrap().quality;
        assert_eq!((q.rtt_ms, q.avg_rtt_ms), (Some(125.0), Some(125.0)));
        assert_eq!(q.peer_loss_rate, Some(0.125));

        // XR VoIP metrics about our SSRC are kept (the last one).
        let metrics = rtcp::VoipMetrics {
            loss_rate: 13,
            mos_lq: Some(41),
            ..rtcp::VoipMetrics::default()
        };
        let mut xr = peer_rr(0xA, &[]);
        rtcp::write_xr(
            &mut xr,
            0xA,
            None,
            &[],
            &[
                (our_ssrc ^ 1, rtcp::VoipMetrics::default()),
                (our_ssrc, metrics),
            ],
        );
        assert_eq!(
            c.relay.handle_rtcp(a, addr(1, 4001), &xr, later),
            Action::Consumed
        );
        assert_eq!(
            c.relay.leg_counters(a).unwrap().peer_voip_metrics,
            Some(metrics)
        );
        // Forged RTCP from elsewhere changes nothing.
        let bogus = ReportBlock {
            fraction_lost: 200,
            ..block
        };
        assert_eq!(
            c.relay
                .handle_rtcp(a, addr(66, 4001), &peer_rr(0xA, &[bogus]), later),
            Action::Drop(DropReason::NotLatched)
        );
        assert_eq!(
            c.relay.leg_counters(a).unwrap().quality.peer_loss_rate,
            Some(0.125)
        );
    }

    #[test]
    fn bye_and_removed_legs_timers() {
        let mut c = mux_call();
        let (a, b, t0) = (c.a, c.b, c.t0);
        // No media: no BYE.
        assert_eq!(c.relay.rtcp_bye(a, None), None);
        let mut p = pkt(0, 1, 0, 0xA);
        let _ = c.send(a, addr(1, 4000), &mut p, t0);
        let (leg, to, socket, bye) = c.relay.rtcp_bye(a, Some("hangup")).unwrap();
        assert_eq!((leg, to, socket), (a, addr(1, 4001), SocketKind::Rtcp));
        let packets = rtcp::parse_compound(&bye).unwrap();
        assert!(packets.iter().any(|p| matches!(
            p,
            RtcpPacket::Bye { ssrcs, reason } if ssrcs == &[c.relay.leg_ssrc(a).unwrap()]
                && reason.as_deref() == Some("hangup")
        )));
        assert_eq!(c.relay.rtcp_bye(LegId(9), None), None);
        // A removed leg's deadline fires nothing, even when its slot is reused
        // by a new leg (which has its own deadline).
        c.relay.remove_leg(a).unwrap();
        c.relay.remove_leg(b).unwrap();
        let d = c.relay.add_leg(
            LegConfig {
                remote: Some(addr(4, 8000)),
                ..LegConfig::new(addr(100, 30004))
            },
            t0 + Duration::from_secs(100),
        );
        assert!(poll_all(&mut c.relay, t0 + Duration::from_secs(50), wall0()).is_empty());
        // Only D's entry remains.
        assert!(c.relay.poll_timeout().unwrap() > t0 + Duration::from_secs(100));
        let mut p = pkt(0, 1, 0, 0xD);
        let _ = c.send(d, addr(4, 8000), &mut p, t0 + Duration::from_secs(100));
        let reports = poll_all(&mut c.relay, t0 + Duration::from_secs(200), wall0());
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].0, reports[0].1), (d, addr(4, 8001)));
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

    /// Rough cost of the per-packet decision (run with `--ignored
    /// --nocapture` in an optimised build). The best of several rounds, so
    /// that other processes on a busy machine skew it less; the clock
    /// advances 20 ms per packet, as in a real stream.
    #[test]
    #[ignore]
    fn per_packet_cost() {
        let mut c = call(Some(addr(2, 5000)), true);
        let mut p = pkt(0, 1, 0, 1);
        let n = 1_000_000u32;
        let mut best = u128::MAX;
        let mut seq = 0u16;
        let mut now = c.t0;
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..n {
                seq = seq.wrapping_add(1);
                now += Duration::from_millis(20);
                let [_, _, s0, s1, t0, t1, t2, t3, ..] = &mut p[..] else {
                    unreachable!()
                };
                [*s0, *s1] = seq.to_be_bytes();
                [*t0, *t1, *t2, *t3] = (u32::from(seq) * 160).to_be_bytes();
                let a = std::hint::black_box(c.send(c.a, addr(1, 4000), &mut p, now));
                assert!(matches!(a, Action::Forward { .. }));
            }
            best = best.min(start.elapsed().as_nanos() / u128::from(n));
        }
        println!("handle_rtp: {best} ns/packet (best of 7 rounds)");
    }
}

#[cfg(test)]
mod inject_tests;

#[cfg(test)]
mod format_tests {
    use super::tests::{addr, bridged, Call};
    use super::*;

    const AMR_BE: Encoding = Encoding::Amr {
        wideband: false,
        octet_aligned: false,
    };
    const AMR_OA: Encoding = Encoding::Amr {
        wideband: false,
        octet_aligned: true,
    };

    fn fmt(payload_type: u8, encoding: Encoding, dtmf: Option<u8>) -> LegFormat {
        LegFormat {
            payload_type,
            encoding,
            dtmf_payload_type: dtmf,
        }
    }

    /// Phone A (192.0.2.1:4000) in format `fa` bridged to phone B
    /// (192.0.2.2:5000) in format `fb`.
    fn call(fa: Option<LegFormat>, fb: Option<LegFormat>) -> Call {
        let mut c = bridged(|cfg| LegConfig {
            remote: Some(addr(2, 5000)),
            ..cfg
        });
        c.relay.set_format(c.a, fa).unwrap();
        c.relay.set_format(c.b, fb).unwrap();
        c
    }

    fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        rtp::write(&mut p, false, pt, seq, ts, 0x5EED, payload);
        p
    }

    /// A one-frame AMR-NB 12.2 payload in `mode` with arbitrary speech bits.
    fn amr_payload(mode: PayloadMode, seed: u8) -> Vec<u8> {
        let bits: Vec<u8> = (0..31u8).map(|i| i.wrapping_mul(37) ^ seed).collect();
        let mut out = Vec::new();
        amr::build(AmrKind::Nb, mode, 15, &[(7, true, &bits)], &mut out).unwrap();
        out
    }

    /// Sends `p` from the leg's phone; the packet that goes out and the action.
    fn send(c: &mut Call, from: LegId, p: &mut [u8], at: Instant) -> (Action, Vec<u8>) {
        let src = if from == c.a {
            addr(1, 4000)
        } else {
            addr(2, 5000)
        };
        let action = c.relay.handle_rtp(from, src, p, at);
        let bytes = match action {
            Action::ForwardBuffer { .. } => c.relay.output().to_vec(),
            Action::Forward { .. } => p.to_vec(),
            _ => Vec::new(),
        };
        (action, bytes)
    }

    fn send_t0(c: &mut Call, from_a: bool, p: &mut [u8]) -> (Action, Vec<u8>) {
        let t0 = c.t0;
        send_at(c, from_a, p, t0)
    }

    fn send_at(c: &mut Call, from_a: bool, p: &mut [u8], at: Instant) -> (Action, Vec<u8>) {
        let leg = if from_a { c.a } else { c.b };
        send(c, leg, p, at)
    }

    #[test]
    fn amr_bandwidth_efficient_to_octet_aligned_and_back() {
        let mut c = call(Some(fmt(96, AMR_BE, None)), Some(fmt(97, AMR_OA, None)));
        let (a, b) = (c.a, c.b);
        for i in 0..10u16 {
            let at = c.t0 + Duration::from_millis(u64::from(i) * 20);
            let input = amr_payload(PayloadMode::BandwidthEfficient, i as u8);
            let mut p = packet(96, 100 + i, 1000 + u32::from(i) * 160, &input);
            let (action, out) = send(&mut c, a, &mut p, at);
            assert_eq!(
                action,
                Action::ForwardBuffer {
                    out_leg: b,
                    to: addr(2, 5000),
                    socket: SocketKind::Rtp
                }
            );
            let h = rtp::parse(&out).unwrap();
            let mut expected = Vec::new();
            amr::convert(
                AmrKind::Nb,
                PayloadMode::BandwidthEfficient,
                PayloadMode::OctetAligned,
                &input,
                &mut expected,
            )
            .unwrap();
            assert_eq!(h.payload(&out), &expected[..]);
            assert_ne!(expected, input);
            assert_eq!(h.payload_type, 97);
            assert_eq!(h.ssrc, c.relay.leg_ssrc(b).unwrap());
            assert_eq!(
                (h.sequence, h.timestamp),
                (100 + i, 1000 + u32::from(i) * 160)
            );

            // And back: B's octet-aligned payload reaches A bandwidth-efficient.
            let input = amr_payload(PayloadMode::OctetAligned, !(i as u8));
            let mut p = packet(97, 500 + i, u32::from(i) * 160, &input);
            let (action, out) = send(&mut c, b, &mut p, at);
            assert!(matches!(action, Action::ForwardBuffer { out_leg, .. } if out_leg == a));
            let h = rtp::parse(&out).unwrap();
            amr::convert(
                AmrKind::Nb,
                PayloadMode::OctetAligned,
                PayloadMode::BandwidthEfficient,
                &input,
                &mut expected,
            )
            .unwrap();
            assert_eq!(h.payload(&out), &expected[..]);
            assert_eq!(h.payload_type, 96);
            assert_eq!(h.ssrc, c.relay.leg_ssrc(a).unwrap());
        }
        let cb = c.relay.leg_counters(b).unwrap();
        assert_eq!(cb.rtp_out, 10);
        // A payload in the wrong mode is refused and counted, not forwarded.
        let mut p = packet(96, 110, 2600, &amr_payload(PayloadMode::OctetAligned, 1));
        let at = c.t0 + Duration::from_millis(200);
        assert_eq!(
            send(&mut c, a, &mut p, at).0,
            Action::Drop(DropReason::BadPayload)
        );
        assert_eq!(
            c.relay
                .leg_counters(a)
                .unwrap()
                .dropped(DropReason::BadPayload),
            1
        );
    }

    #[test]
    fn payload_type_remap_only() {
        // PCMA 8 on both sides: the plain path, untouched.
        let mut c = call(
            Some(fmt(8, Encoding::Pcma, None)),
            Some(fmt(8, Encoding::Pcma, None)),
        );
        let mut p = packet(8, 1, 0, &[0xD5; 160]);
        let (action, out) = send_t0(&mut c, true, &mut p);
        assert!(matches!(action, Action::Forward { .. }));
        assert_eq!(rtp::parse(&out).unwrap().payload_type, 8);

        // AMR, same mode, PT 96 -> 97: rewritten in place, payload as is.
        let mut c = call(Some(fmt(96, AMR_OA, None)), Some(fmt(97, AMR_OA, None)));
        let input = amr_payload(PayloadMode::OctetAligned, 3);
        let mut p = packet(96, 1, 0, &input);
        let (action, out) = send_t0(&mut c, true, &mut p);
        assert!(matches!(action, Action::Forward { out_leg, .. } if out_leg == c.b));
        let h = rtp::parse(&out).unwrap();
        assert_eq!((h.payload_type, h.payload(&out)), (97, &input[..]));
        let mut p = packet(97, 1, 0, &input);
        let (_, out) = send_t0(&mut c, false, &mut p);
        assert_eq!(rtp::parse(&out).unwrap().payload_type, 96);
    }

    #[test]
    fn dtmf_payload_type_mapped_or_dropped() {
        let mut c = call(
            Some(fmt(8, Encoding::Pcma, Some(101))),
            Some(fmt(8, Encoding::Pcma, Some(100))),
        );
        let event = [1u8, 0x0A, 0, 160];
        let mut p = packet(101, 7, 800, &event);
        let (action, out) = send_t0(&mut c, true, &mut p);
        assert!(matches!(action, Action::Forward { .. }));
        let h = rtp::parse(&out).unwrap();
        assert_eq!((h.payload_type, h.payload(&out)), (100, &event[..]));
        // And back.
        let mut p = packet(100, 9, 800, &event);
        let (_, out) = send_t0(&mut c, false, &mut p);
        assert_eq!(rtp::parse(&out).unwrap().payload_type, 101);

        // B negotiated no telephone-event: not sent to B, and not an error
        // (the press is reported for the call layer to relay out of band).
        c.relay
            .set_format(c.b, Some(fmt(8, Encoding::Pcma, None)))
            .unwrap();
        let mut p = packet(101, 8, 800, &event);
        assert_eq!(send_t0(&mut c, true, &mut p).0, Action::Consumed);
        assert_eq!(c.relay.leg_counters(c.a).unwrap().dropped_total(), 0);
        // Audio still flows.
        let mut p = packet(8, 9, 960, &[0xD5; 160]);
        assert!(matches!(
            send_t0(&mut c, true, &mut p).0,
            Action::Forward { .. }
        ));
    }

    #[cfg(not(feature = "transcode"))]
    #[test]
    fn different_encodings_without_transcoder_are_dropped() {
        let mut c = call(
            Some(fmt(96, AMR_OA, None)),
            Some(fmt(8, Encoding::Pcma, None)),
        );
        let mut p = packet(96, 1, 0, &amr_payload(PayloadMode::OctetAligned, 0));
        assert_eq!(
            send_t0(&mut c, true, &mut p).0,
            Action::Drop(DropReason::NoTranscoder)
        );
        assert_eq!(
            c.relay
                .leg_counters(c.a)
                .unwrap()
                .drops()
                .find(|(l, _)| *l == "no_transcoder"),
            Some(("no_transcoder", 1))
        );
    }

    #[cfg(feature = "transcode")]
    mod transcoded {
        use super::*;
        use crate::payload::g711;
        use crate::transcode::{AmrNbEncoder, AmrWbDecoder};
        use std::f64::consts::PI;

        const AMR_WB_OA: Encoding = Encoding::Amr {
            wideband: true,
            octet_aligned: true,
        };

        fn sine(rate: u32, n: usize) -> Vec<i16> {
            (0..n)
                .map(|i| (8000.0 * (2.0 * PI * 440.0 * i as f64 / f64::from(rate)).sin()) as i16)
                .collect()
        }

        fn rms(x: &[i16]) -> f64 {
            (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        }

        /// Dominant frequency from zero crossings, with hysteresis so codec
        /// noise around zero adds none.
        pub(crate) fn frequency(x: &[i16], rate: u32) -> f64 {
            let threshold = rms(x) * 0.3;
            let (mut positive, mut crossings) = (None, 0usize);
            for &s in x {
                let s = f64::from(s);
                let now = (s.abs() > threshold).then_some(s > 0.0);
                if let Some(now) = now {
                    if positive.is_some_and(|p| p != now) {
                        crossings += 1;
                    }
                    positive = Some(now);
                }
            }
            crossings as f64 / 2.0 / (x.len() as f64 / f64::from(rate))
        }

        /// 50 packets of a 440 Hz sine as AMR-NB 12.2 octet-aligned payloads.
        pub(crate) fn amr_sine_payloads() -> (Vec<i16>, Vec<Vec<u8>>) {
            let pcm = sine(8000, 160 * 50);
            let mut enc = AmrNbEncoder::new(false).unwrap();
            let payloads = pcm
                .chunks_exact(160)
                .map(|frame| {
                    let storage = enc.encode(7, frame.try_into().unwrap()).unwrap();
                    let (ft, q) = ((storage[0] >> 3) & 0x0F, storage[0] & 0x04 != 0);
                    let mut out = Vec::new();
                    amr::build(
                        AmrKind::Nb,
                        PayloadMode::OctetAligned,
                        15,
                        &[(ft, q, &storage[1..])],
                        &mut out,
                    )
                    .unwrap();
                    out
                })
                .collect();
            (pcm, payloads)
        }

        /// Checks the output timestamps advance by `step` per packet.
        fn continuous(headers: &[RtpHeader], step: u32) {
            for w in headers.windows(2) {
                assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
                assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(step));
            }
        }

        #[test]
        fn amr_nb_to_pcma_carries_the_tone() {
            let mut c = call(
                Some(fmt(96, AMR_OA, Some(101))),
                Some(fmt(8, Encoding::Pcma, Some(100))),
            );
            let (source, payloads) = amr_sine_payloads();
            let (mut decoded, mut headers) = (Vec::new(), Vec::new());
            for (i, payload) in payloads.iter().enumerate() {
                let at = c.t0 + Duration::from_millis(i as u64 * 20);
                let mut p = packet(96, 7000 + i as u16, 123_456 + i as u32 * 160, payload);
                let (action, out) = send_at(&mut c, true, &mut p, at);
                assert!(
                    matches!(action, Action::ForwardBuffer { out_leg, .. } if out_leg == c.b),
                    "{action:?}"
                );
                let h = rtp::parse(&out).unwrap();
                assert_eq!(h.payload_type, 8);
                assert_eq!(h.ssrc, c.relay.leg_ssrc(c.b).unwrap());
                assert_eq!(h.payload_len, 160);
                g711::decode_alaw(h.payload(&out), &mut decoded);
                headers.push(h);
            }
            continuous(&headers, 160);
            let tail = &decoded[160 * 5..];
            let f = frequency(tail, 8000);
            assert!((396.0..=484.0).contains(&f), "{f} Hz");
            let ratio = rms(tail) / rms(&source[160 * 5..]);
            assert!((0.5..=2.0).contains(&ratio), "rms ratio {ratio}");

            // An event on the transcoded direction: PT mapped, placed on the
            // output timeline (the next audio timestamp), next sequence.
            let last = *headers.last().unwrap();
            let at = c.t0 + Duration::from_millis(1000);
            let mut p = packet(101, 7050, 123_456 + 50 * 160, &[1, 0x0A, 0, 160]);
            let (action, out) = send_at(&mut c, true, &mut p, at);
            assert!(matches!(action, Action::Forward { .. }));
            let h = rtp::parse(&out).unwrap();
            assert_eq!(h.payload_type, 100);
            assert_eq!(h.sequence, last.sequence.wrapping_add(1));
            assert_eq!(h.timestamp, last.timestamp.wrapping_add(160));

            // Two packets lost: concealed, and the output shows the same gap.
            let mut p = packet(96, 7053, 123_456 + 53 * 160, &payloads[0]);
            let (action, out) = send_at(&mut c, true, &mut p, at);
            assert!(matches!(action, Action::ForwardBuffer { .. }));
            let g = rtp::parse(&out).unwrap();
            assert_eq!(g.sequence, h.sequence.wrapping_add(3));
            assert_eq!(g.timestamp, last.timestamp.wrapping_add(3 * 160));
            // A malformed AMR payload is counted, not sent.
            let mut p = packet(96, 7054, 0, &[0xF0, 0x3C, 1, 2]);
            assert_eq!(
                send_at(&mut c, true, &mut p, at).0,
                Action::Drop(DropReason::BadPayload)
            );
        }

        #[test]
        fn pcma_to_amr_wb_carries_the_tone() {
            let mut c = call(
                Some(fmt(8, Encoding::Pcma, None)),
                Some(fmt(98, AMR_WB_OA, None)),
            );
            let pcm = sine(8000, 160 * 50);
            let mut dec = AmrWbDecoder::new().unwrap();
            let (mut decoded, mut headers) = (Vec::new(), Vec::new());
            for (i, frame) in pcm.chunks_exact(160).enumerate() {
                let mut alaw = Vec::new();
                g711::encode_alaw(frame, &mut alaw);
                let at = c.t0 + Duration::from_millis(i as u64 * 20);
                let mut p = packet(8, i as u16, i as u32 * 160, &alaw);
                let (action, out) = send_at(&mut c, true, &mut p, at);
                let Action::ForwardBuffer { .. } = action else {
                    // The resampler may hold back the first frame.
                    assert_eq!(action, Action::Consumed);
                    continue;
                };
                let h = rtp::parse(&out).unwrap();
                assert_eq!(h.payload_type, 98);
                let parsed =
                    amr::AmrPayload::parse(AmrKind::Wb, PayloadMode::OctetAligned, h.payload(&out))
                        .unwrap();
                assert_eq!(parsed.frames.len(), 1);
                let mut bits = Vec::new();
                parsed.frame_data(0, &mut bits).unwrap();
                let f = parsed.frames[0];
                let mut storage = vec![(f.ft << 3) | (u8::from(f.q) << 2)];
                storage.extend_from_slice(&bits);
                let mut out_pcm = [0i16; 320];
                dec.decode(&storage, &mut out_pcm).unwrap();
                decoded.extend_from_slice(&out_pcm);
                headers.push(h);
            }
            assert!(headers.len() >= 48, "{}", headers.len());
            continuous(&headers, 320);
            let tail = &decoded[320 * 5..];
            let f = frequency(tail, 16000);
            assert!((396.0..=484.0).contains(&f), "{f} Hz");
            let ratio = rms(tail) / rms(&pcm[160 * 5..]);
            assert!((0.5..=2.0).contains(&ratio), "rms ratio {ratio}");
            // B's stream is on a 16 kHz clock now.
            assert_eq!(c.relay.leg_config(c.b).unwrap().clock_rate, 16000);
        }
    }
}
