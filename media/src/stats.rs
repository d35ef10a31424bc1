//! Reception statistics and call quality (RFC 3550 A.3/A.8, ITU-T G.107).
//!
//! ```text
//!  RTP in ─▶ ReceiveStats::on_packet   A.1 validity, A.3 loss, A.8 jitter
//!  RTCP RR ─▶ (rtcp module) ─▶ RttStats::add, PeerReport
//!                 │
//!                 ▼
//!  QualitySnapshot::build ─▶ E-model (G.107) ─▶ R ─▶ MOS ─▶ API `stats`
//! ```
//!
//! Everything here is plain arithmetic on numbers the caller hands in: no
//! clock, no RTCP parsing (the `rtcp` module turns LSR/DLSR into a
//! `Duration` and an RR block into a [`PeerReport`]). Every function accepts
//! any input (sequence wrap, timestamp jumps, a zero clock rate, NaN) without
//! panicking; figures that cannot be computed are zero or `None`.

use std::time::{Duration, Instant};

/// RFC 3550 A.1: sequence numbers are 16 bits.
const RTP_SEQ_MOD: i64 = 1 << 16;
/// RFC 3550 A.1: a source is valid after this many packets in sequence.
const MIN_SEQUENTIAL: u16 = 2;
/// RFC 3550 A.1: the largest forward gap still taken as loss, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: the largest backward step still taken as reordering.
const MAX_MISORDER: u16 = 100;
/// RFC 3550 §6.4.1: the cumulative number of packets lost is 24-bit signed.
const CUMULATIVE_LOST_MAX: i64 = 0x7F_FFFF;
const CUMULATIVE_LOST_MIN: i64 = -0x80_0000;

/// What A.1 made of one packet's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeqOutcome {
    /// Counted as received (in order, a gap, a duplicate or reordered).
    Accepted,
    /// Counted; the source was (re)initialised at this packet.
    Started,
    /// Still on probation, in sequence so far.
    Probation,
    /// On probation and out of sequence: probation restarts here.
    ProbationRestart,
    /// A very large jump, remembered in `bad_seq`, not counted.
    Rejected,
}

/// RFC 3550 Appendix A.1/A.3/A.8: per received SSRC.
///
/// Two deliberate departures from the appendix's sample code, both so that
/// `pr`/`pl` stay cumulative over the call and match what a capture tool
/// (`tshark -z rtp,streams`) counts:
///
/// - The packets that carried the source through probation are counted as
///   received (the sample's `init_seq` restarts at the last one and forgets
///   the others). `expected` starts at the same packet, so loss is unchanged.
/// - A re-sync after a very large jump (A.1: "the other side restarted")
///   carries the totals received and expected so far instead of zeroing
///   them; the two packets that proved the new sequence are counted.
#[derive(Clone, Debug)]
pub struct ReceiveStats {
    clock_rate: u32,
    /// False until the first packet.
    started: bool,
    /// True once A.1 has accepted the source (probation passed).
    synced: bool,
    probation: u16,
    max_seq: u16,
    /// A.1 `bad_seq`; `None` is the sample's `RTP_SEQ_MOD + 1`.
    bad_seq: Option<u16>,
    /// A.1 `cycles`: the count of wraps, times 2^16.
    cycles: i64,
    /// Extended sequence number of the first counted packet of this sync
    /// (may be negative when the probation packets straddle a wrap).
    base_ext: i64,
    /// A.1 `received` since the last (re)sync.
    received_segment: u64,
    /// Totals of earlier syncs (see the type's note).
    carried_received: u64,
    carried_expected: u64,
    /// A.3 interval state.
    expected_prior: u64,
    received_prior: u64,
    last_fraction_lost: Option<u8>,
    /// Every packet handed in, valid or not, and their payload bytes.
    packets_seen: u64,
    bytes_seen: u64,
    /// A.8: the previous packet's arrival and RTP timestamp, `J` in
    /// timestamp units (kept as f64: the A.8 integer form only exists to
    /// avoid floating point), and its running mean for `avgIJ`.
    jitter_ref: Option<(Instant, u32)>,
    jitter: f64,
    jitter_sum: f64,
    jitter_samples: u64,
}

/// A.3 figures for one RTCP reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalReport {
    /// Lost / expected in this interval, 8-bit fixed point (256 = all).
    pub fraction_lost: u8,
    /// Cumulative expected − received, clamped to 24-bit signed.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

impl ReceiveStats {
    pub fn new(clock_rate: u32) -> Self {
        ReceiveStats {
            clock_rate,
            started: false,
            synced: false,
            probation: 0,
            max_seq: 0,
            bad_seq: None,
            cycles: 0,
            base_ext: 0,
            received_segment: 0,
            carried_received: 0,
            carried_expected: 0,
            expected_prior: 0,
            received_prior: 0,
            last_fraction_lost: None,
            packets_seen: 0,
            bytes_seen: 0,
            jitter_ref: None,
            jitter: 0.0,
            jitter_sum: 0.0,
            jitter_samples: 0,
        }
    }

    /// A.1 sequence validation (probation `MIN_SEQUENTIAL` = 2,
    /// `MAX_DROPOUT` = 3000, `MAX_MISORDER` = 100, wrap cycles), A.8
    /// interarrival jitter, packet and byte counters. Returns false for a
    /// packet A.1 does not (yet) accept: on probation, or a very large jump
    /// that has not been confirmed by the next packet. Duplicates and
    /// reordered packets return true and count as received (A.1), so the
    /// cumulative loss may go negative.
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_ts: u32,
        payload_len: usize,
        arrival: Instant,
    ) -> bool {
        self.packets_seen = self.packets_seen.saturating_add(1);
        self.bytes_seen = self
            .bytes_seen
            .saturating_add(u64::try_from(payload_len).unwrap_or(u64::MAX));
        let outcome = self.update_seq(seq);
        match outcome {
            SeqOutcome::Accepted | SeqOutcome::Probation => self.update_jitter(rtp_ts, arrival),
            // A new sequence usually brings a new timestamp base: measuring
            // D across it would add one huge bogus sample (A.8 assumes one
            // continuous stream).
            SeqOutcome::Started | SeqOutcome::ProbationRestart => {
                self.jitter_ref = Some((arrival, rtp_ts));
            }
            SeqOutcome::Rejected => {}
        }
        matches!(outcome, SeqOutcome::Accepted | SeqOutcome::Started)
    }

    /// RFC 3550 A.1 `update_seq`, with the departures noted on the type.
    fn update_seq(&mut self, seq: u16) -> SeqOutcome {
        if !self.started {
            // A.1: init_seq(s, seq); max_seq = seq - 1; probation = MIN_SEQUENTIAL.
            self.started = true;
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
            self.bad_seq = None;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // The sample compares with `max_seq + 1` in int arithmetic,
            // which never matches across a wrap; compare modulo 2^16.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.resync(seq, MIN_SEQUENTIAL);
                    return SeqOutcome::Started;
                }
                return SeqOutcome::Probation;
            }
            self.probation = MIN_SEQUENTIAL - 1;
            self.max_seq = seq;
            return SeqOutcome::ProbationRestart;
        }
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.saturating_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if i64::from(udelta) <= RTP_SEQ_MOD - i64::from(MAX_MISORDER) {
            // A very large jump: believe it only when the next packet follows it.
            if self.bad_seq == Some(seq) {
                self.resync(seq, 2);
                return SeqOutcome::Started;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return SeqOutcome::Rejected;
        }
        // else: duplicate or reordered packet, counted but max_seq kept.
        self.received_segment = self.received_segment.saturating_add(1);
        SeqOutcome::Accepted
    }

    /// A.1 `init_seq` at `seq`, crediting the `run` consecutive packets
    /// ending at `seq` that proved the sequence.
    fn resync(&mut self, seq: u16, run: u16) {
        if self.synced {
            self.carried_expected = self
                .carried_expected
                .saturating_add(self.segment_expected());
            self.carried_received = self.carried_received.saturating_add(self.received_segment);
        }
        self.synced = true;
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.base_ext = i64::from(seq) - i64::from(run.saturating_sub(1));
        self.received_segment = u64::from(run);
    }

    /// A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si) in timestamp units;
    /// J += (|D| - J) / 16.
    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant) {
        let previous = self.jitter_ref.replace((arrival, rtp_ts));
        let Some((prev_arrival, prev_ts)) = previous else {
            return;
        };
        if self.clock_rate == 0 {
            return;
        }
        let rate = f64::from(self.clock_rate);
        // Arrival difference in seconds, signed (callers should pass a
        // monotonic clock, but nothing breaks if they do not).
        let arrival_delta = match arrival.checked_duration_since(prev_arrival) {
            Some(d) => d.as_secs_f64(),
            None => -prev_arrival.duration_since(arrival).as_secs_f64(),
        };
        // Timestamp difference modulo 2^32, as the shorter signed step, so a
        // timestamp wrap is a step of a few units, not 4 billion.
        let ts_delta = f64::from(rtp_ts.wrapping_sub(prev_ts) as i32);
        let d = arrival_delta * rate - ts_delta;
        if !d.is_finite() {
            return;
        }
        self.jitter += (d.abs() - self.jitter) / 16.0;
        self.jitter_sum += self.jitter;
        self.jitter_samples = self.jitter_samples.saturating_add(1);
    }

    /// Expected in the current sync: extended highest − base + 1 (A.3).
    fn segment_expected(&self) -> u64 {
        let extended = self.cycles.saturating_add(i64::from(self.max_seq));
        u64::try_from(extended.saturating_sub(self.base_ext).saturating_add(1)).unwrap_or(0)
    }

    /// Packets counted as received (A.1), cumulative over the call.
    pub fn received(&self) -> u64 {
        self.carried_received.saturating_add(self.received_segment)
    }

    /// Packets expected (A.3), cumulative over the call.
    pub fn expected(&self) -> u64 {
        if !self.synced {
            return 0;
        }
        self.carried_expected
            .saturating_add(self.segment_expected())
    }

    /// A.3 expected − received: negative when duplicates arrived.
    pub fn cumulative_lost(&self) -> i64 {
        let expected = i64::try_from(self.expected()).unwrap_or(i64::MAX);
        let received = i64::try_from(self.received()).unwrap_or(i64::MAX);
        expected.saturating_sub(received)
    }

    /// A.8 interarrival jitter in timestamp units, as an RR carries it.
    pub fn jitter_units(&self) -> u32 {
        // `as` saturates a float and maps NaN to 0.
        self.jitter as u32
    }

    /// Interarrival jitter in milliseconds (API `jitter`); 0 with a zero clock rate.
    pub fn jitter_ms(&self) -> f64 {
        units_to_ms(self.jitter, self.clock_rate)
    }

    /// Mean of the jitter after every packet, in ms (API `avgIJ`).
    pub fn mean_jitter_ms(&self) -> f64 {
        if self.jitter_samples == 0 {
            return 0.0;
        }
        units_to_ms(
            self.jitter_sum / self.jitter_samples as f64,
            self.clock_rate,
        )
    }

    /// A.1 extended highest sequence number received (cycles + max_seq),
    /// modulo 2^32 as §6.4.1 carries it.
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.saturating_add(i64::from(self.max_seq)) as u32
    }

    /// A.3 "fraction lost" since the previous call, for an RR, and the
    /// other fields of the report block. Starts a new interval.
    pub fn take_interval(&mut self) -> IntervalReport {
        let expected = self.expected();
        let received = self.received();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            // A.3: (lost_interval << 8) / expected_interval, which is < 256
            // since lost < expected whenever something was received.
            u8::try_from((lost_interval << 8) / expected_interval).unwrap_or(u8::MAX)
        };
        self.last_fraction_lost = Some(fraction_lost);
        let cumulative_lost = self
            .cumulative_lost()
            .clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX);
        IntervalReport {
            fraction_lost,
            cumulative_lost: i32::try_from(cumulative_lost).unwrap_or(0),
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter_units(),
        }
    }

    /// Cumulative loss rate, 0..1 (negative loss from duplicates is 0).
    pub fn loss_rate(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            return 0.0;
        }
        let lost = self.cumulative_lost().max(0) as f64;
        (lost / expected as f64).clamp(0.0, 1.0)
    }

    /// Loss rate over the last interval closed by [`take_interval`]
    /// (API `lostrate`), or the cumulative rate before the first report.
    ///
    /// [`take_interval`]: ReceiveStats::take_interval
    pub fn interval_loss_rate(&self) -> f64 {
        match self.last_fraction_lost {
            Some(f) => f64::from(f) / 256.0,
            None => self.loss_rate(),
        }
    }

    /// Every packet handed to `on_packet`, valid or not.
    pub fn packets_seen(&self) -> u64 {
        self.packets_seen
    }

    /// Payload bytes of every packet handed to `on_packet`.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_seen
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
}

fn units_to_ms(units: f64, clock_rate: u32) -> f64 {
    if clock_rate == 0 || !units.is_finite() {
        return 0.0;
    }
    units * 1000.0 / f64::from(clock_rate)
}

/// RTT samples (from RTCP LSR/DLSR, RFC 3550 §6.4.1, computed by the rtcp
/// module): the last one (API `rttms`) and the mean over the call (`avgrttms`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RttStats {
    last: Option<Duration>,
    sum_ms: f64,
    count: u64,
}

impl RttStats {
    pub fn new() -> Self {
        RttStats::default()
    }

    pub fn add(&mut self, rtt: Duration) {
        self.last = Some(rtt);
        self.sum_ms += rtt.as_secs_f64() * 1000.0;
        self.count = self.count.saturating_add(1);
    }

    pub fn last_ms(&self) -> Option<f64> {
        self.last.map(|d| d.as_secs_f64() * 1000.0)
    }

    pub fn avg_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    pub fn samples(&self) -> u64 {
        self.count
    }
}

/// Where a figure came from (issue 3: "tagged with where each figure came
/// from"), so a call with no RTCP still has a MOS and says why it is rougher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Our own measurement of the RTP we received.
    Measured,
    /// The peer's RTCP (RR/XR, and RTT from its LSR/DLSR).
    PeerRtcp,
    /// Not measured: a default assumption.
    Estimated,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Measured => "measured",
            Source::PeerRtcp => "peer_rtcp",
            Source::Estimated => "estimated",
        }
    }
}

/// G.107 with every other parameter at its default (Table 3): R0 − Is =
/// 94.77 − 1.41 ≈ 93.2, the usual VoIP baseline.
pub const R_BASE: f64 = 93.2;
/// G.107 §7.4: the delay below which Idd is zero (mT, default 100 ms).
const IDD_MT_MS: f64 = 100.0;
/// Inputs beyond this are meaningless and would only overflow X^6.
const MAX_DELAY_MS: f64 = 60_000.0;

/// The codec's equipment impairment factor Ie and packet-loss robustness
/// Bpl (ITU-T G.113 Appendix I), on the narrowband R scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecImpairment {
    pub ie: f64,
    pub bpl: f64,
}

impl CodecImpairment {
    /// Values by SDP encoding name (case-insensitive):
    ///
    /// | codec | Ie | Bpl | why |
    /// |---|---|---|---|
    /// | PCMU, PCMA | 0 | 25.1 | G.113 App. I, G.711 with PLC (4.3 without; today's endpoints conceal) |
    /// | AMR | 5 | 10 | Ie of GSM-EFR (G.113 App. I), which is AMR's 12.2 kbit/s mode; Bpl our choice |
    /// | AMR-WB | 3 | 10 | our choice: G.722.2 at 12.65 kbit/s is better than G.711 on the wideband scale, but this MOS is narrowband (R0 93.2), so a small Ie keeps it just under G.711-quality paths; Bpl as AMR |
    /// | opus | 0 | 20 | our choice: no ITU-T values; at VoIP bitrates Opus is at least toll quality and conceals loss well |
    /// | G722 | 0 | 25.1 | our choice: as G.711 (waveform codec with PLC) |
    /// | G729 | 11 | 19 | G.113 App. I, G.729A + VAD |
    /// | other | 11 | 19 | conservative: as G.729 |
    pub fn for_codec(name: &str) -> CodecImpairment {
        let (ie, bpl) = match name.to_ascii_uppercase().as_str() {
            "PCMU" | "PCMA" | "G711" | "G.711" => (0.0, 25.1),
            "AMR" => (5.0, 10.0),
            "AMR-WB" | "AMRWB" => (3.0, 10.0),
            "OPUS" => (0.0, 20.0),
            "G722" | "G.722" => (0.0, 25.1),
            _ => (11.0, 19.0),
        };
        CodecImpairment { ie, bpl }
    }
}

/// Replaces NaN/±∞ with `fallback` and clamps to `lo..=hi`.
fn sane(x: f64, lo: f64, hi: f64, fallback: f64) -> f64 {
    if x.is_finite() {
        x.clamp(lo, hi)
    } else {
        fallback
    }
}

/// G.107 §7.4, Idd: the impairment of pure (echo-free) delay Ta in ms.
fn delay_impairment(ta_ms: f64) -> f64 {
    if ta_ms <= IDD_MT_MS {
        return 0.0;
    }
    // X = log2(Ta / mT); Idd = 25 {(1 + X^6)^(1/6) − 3 (1 + (X/3)^6)^(1/6) + 2}
    let x = (ta_ms / IDD_MT_MS).log2();
    let sixth = 1.0 / 6.0;
    25.0 * ((1.0 + x.powi(6)).powf(sixth) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(sixth) + 2.0)
}

/// G.107 §7.5, Ie-eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl).
fn effective_equipment_impairment(codec: CodecImpairment, ppl: f64, burst_ratio: f64) -> f64 {
    let ie = sane(codec.ie, 0.0, 95.0, 0.0);
    if ppl <= 0.0 {
        return ie;
    }
    let bpl = sane(codec.bpl, 0.0, 1000.0, 1.0);
    let burst = if burst_ratio.is_finite() && burst_ratio > 0.0 {
        burst_ratio
    } else {
        1.0
    };
    // ppl > 0 and burst finite > 0 keep the denominator > 0.
    ie + (95.0 - ie) * ppl / (ppl / burst + bpl)
}

/// ITU-T G.107 E-model transmission rating R (0..100), simplified for VoIP:
/// R = (R0 − Is) − Id − Ie-eff + A with R0 − Is = 93.2 (defaults),
/// Id = Idd (§7.4; Idte/Idle are ~0 at the default TELR 65 dB and are left
/// out), A = 0. `one_way_delay_ms` is the mouth-to-ear delay Ta,
/// `packet_loss_pct` Ppl in percent (0..100), `burst_ratio` BurstR (1 for
/// random loss). NaN and out-of-range inputs are clamped, never a panic.
pub fn r_factor(
    codec: CodecImpairment,
    one_way_delay_ms: f64,
    packet_loss_pct: f64,
    burst_ratio: f64,
) -> f64 {
    let ta = sane(one_way_delay_ms, 0.0, MAX_DELAY_MS, 0.0);
    let ppl = sane(packet_loss_pct, 0.0, 100.0, 0.0);
    let r = R_BASE - delay_impairment(ta) - effective_equipment_impairment(codec, ppl, burst_ratio);
    sane(r, 0.0, 100.0, 0.0)
}

/// G.107 Annex B: MOS = 1 + 0.035 R + R (R − 60)(100 − R) · 7·10⁻⁶ for
/// 0 < R < 100, 1 below, 4.5 above; clamped to 1..4.5 (the polynomial
/// dips just under 1 for R < 6.5). NaN gives 1.
pub fn mos_from_r(r: f64) -> f64 {
    if !r.is_finite() {
        return if r == f64::INFINITY { 4.5 } else { 1.0 };
    }
    if r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6;
    mos.clamp(1.0, 4.5)
}

/// Combines the R of the segments one direction of a call crosses (e.g.
/// app → switch, then switch → trunk): G.107 §7.1's premise is that
/// impairments add on the R scale, so R = 93.2 − Σ (93.2 − Rᵢ), clamped.
pub fn combine_r(segments: &[f64]) -> f64 {
    let impairment: f64 = segments
        .iter()
        .map(|r| R_BASE - sane(*r, 0.0, 100.0, 0.0))
        .filter(|i| *i > 0.0)
        .sum();
    sane(R_BASE - impairment, 0.0, 100.0, 0.0)
}

/// A five-level wording for a MOS, on G.107 Annex B's user-satisfaction
/// bands (R 90/80/70/60/50 ↔ MOS 4.34/4.03/3.60/3.10/2.58). API.md reports
/// `total_eval`/`detail_eval` as numbers; this is for logs and the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grade {
    /// R ≥ 80: satisfied or very satisfied.
    Excellent,
    /// R 70..80: some users dissatisfied.
    Good,
    /// R 60..70: many users dissatisfied.
    Fair,
    /// R 50..60: nearly all users dissatisfied.
    Poor,
    /// R < 50: not recommended.
    Bad,
}

impl Grade {
    pub fn from_mos(mos: f64) -> Grade {
        let mos = sane(mos, 1.0, 4.5, 1.0);
        if mos >= mos_from_r(80.0) {
            Grade::Excellent
        } else if mos >= mos_from_r(70.0) {
            Grade::Good
        } else if mos >= mos_from_r(60.0) {
            Grade::Fair
        } else if mos >= mos_from_r(50.0) {
            Grade::Poor
        } else {
            Grade::Bad
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Grade::Excellent => "excellent",
            Grade::Good => "good",
            Grade::Fair => "fair",
            Grade::Poor => "poor",
            Grade::Bad => "bad",
        }
    }
}

/// What the peer's last RTCP reception report (about the stream we send
/// it) said, converted by the rtcp module.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerReport {
    /// RR fraction lost / 256.
    pub loss_rate: f64,
    /// RR interarrival jitter converted to ms at our sending clock rate.
    pub jitter_ms: f64,
}

/// Where each figure of a [`QualitySnapshot`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    /// Packets, loss and jitter of the stream we receive.
    pub received: Source,
    /// One-way delay used by the E-model: half the RTCP RTT, or assumed.
    pub delay: Source,
    /// The `peer_*` figures (None when the peer sent no RR).
    pub peer: Option<Source>,
    /// The MOS: the least direct of the inputs it used.
    pub mos: Source,
}

/// One leg's quality, the fields API.md's `stats` needs: our measurement
/// of the stream the endpoint sends us (`pr`, `pl`, `jitter`, `avgIJ`,
/// `lostrate`), RTT (`rttms`, `avgrttms`), the peer's view of the stream
/// we send (`down_jitter`, `down_lostrate`) and MOS estimates per direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualitySnapshot {
    pub packets_received: u64,
    pub packets_lost: i64,
    pub bytes_received: u64,
    pub jitter_ms: f64,
    pub mean_jitter_ms: f64,
    /// Over the last report interval (API `lostrate`).
    pub loss_rate: f64,
    pub rtt_ms: Option<f64>,
    pub avg_rtt_ms: Option<f64>,
    pub peer_jitter_ms: Option<f64>,
    pub peer_loss_rate: Option<f64>,
    /// E-model for the stream we receive (endpoint → switch).
    pub r: f64,
    pub mos: f64,
    /// E-model for the stream we send, from the peer's RR.
    pub peer_r: Option<f64>,
    pub peer_mos: Option<f64>,
    pub sources: Sources,
}

/// One-way network delay assumed when no RTCP gave an RTT (a national
/// path; below G.107's 100 ms knee either way).
pub const ASSUMED_ONE_WAY_MS: f64 = 40.0;
/// Packetisation delay added to the network delay (one 20 ms frame).
const PACKETISATION_MS: f64 = 20.0;

/// The E-model delay Ta for a segment: network one-way delay, plus a
/// jitter buffer sized at twice the jitter (the usual adaptive-buffer
/// rule), plus one frame of packetisation.
fn mouth_to_ear_ms(one_way_ms: f64, jitter_ms: f64) -> f64 {
    sane(one_way_ms, 0.0, MAX_DELAY_MS, 0.0)
        + 2.0 * sane(jitter_ms, 0.0, MAX_DELAY_MS, 0.0)
        + PACKETISATION_MS
}

impl QualitySnapshot {
    /// Builds a leg's snapshot. The E-model's loss is the cumulative loss
    /// over the call (Ppl is a call average in G.107), with random loss
    /// (BurstR = 1: we do not measure burstiness here); the delay is half
    /// the last RTT when RTCP gave one, else [`ASSUMED_ONE_WAY_MS`].
    pub fn build(
        rx: &ReceiveStats,
        rtt: &RttStats,
        peer: Option<PeerReport>,
        codec: CodecImpairment,
    ) -> QualitySnapshot {
        let (one_way, delay_source) = match rtt.last_ms() {
            Some(ms) => (ms / 2.0, Source::PeerRtcp),
            None => (ASSUMED_ONE_WAY_MS, Source::Estimated),
        };
        let jitter_ms = rx.jitter_ms();
        let r = r_factor(
            codec,
            mouth_to_ear_ms(one_way, jitter_ms),
            rx.loss_rate() * 100.0,
            1.0,
        );
        let peer = peer.map(|p| PeerReport {
            loss_rate: sane(p.loss_rate, 0.0, 1.0, 0.0),
            jitter_ms: sane(p.jitter_ms, 0.0, MAX_DELAY_MS, 0.0),
        });
        let peer_r = peer.map(|p| {
            r_factor(
                codec,
                mouth_to_ear_ms(one_way, p.jitter_ms),
                p.loss_rate * 100.0,
                1.0,
            )
        });
        let mos_source = delay_source.max(Source::Measured);
        QualitySnapshot {
            packets_received: rx.received(),
            packets_lost: rx.cumulative_lost(),
            bytes_received: rx.bytes_received(),
            jitter_ms,
            mean_jitter_ms: rx.mean_jitter_ms(),
            loss_rate: rx.interval_loss_rate(),
            rtt_ms: rtt.last_ms(),
            avg_rtt_ms: rtt.avg_ms(),
            peer_jitter_ms: peer.map(|p| p.jitter_ms),
            peer_loss_rate: peer.map(|p| p.loss_rate),
            r,
            mos: mos_from_r(r),
            peer_r,
            peer_mos: peer_r.map(mos_from_r),
            sources: Sources {
                received: Source::Measured,
                delay: delay_source,
                peer: peer.map(|_| Source::PeerRtcp),
                mos: mos_source,
            },
        }
    }

    /// The grade of the worse direction known.
    pub fn grade(&self) -> Grade {
        let worst = self.peer_mos.map_or(self.mos, |m| m.min(self.mos));
        Grade::from_mos(worst)
    }
}

/// API `total_eval` for a call of two legs (app ↔ switch ↔ trunk, or
/// caller ↔ switch ↔ callee): each direction end to end crosses one leg's
/// received stream and the other leg's sent stream; their R combine
/// ([`combine_r`]). A sent stream with no RR counts as unimpaired, as we
/// cannot know better. The result is the MOS of the worse direction.
pub fn total_eval(a: &QualitySnapshot, b: &QualitySnapshot) -> f64 {
    // a's endpoint → switch → b's endpoint, and the reverse.
    let a_to_b = combine_r(&[a.r, b.peer_r.unwrap_or(R_BASE)]);
    let b_to_a = combine_r(&[b.r, a.peer_r.unwrap_or(R_BASE)]);
    mos_from_r(a_to_b.min(b_to_a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: f64) -> Instant {
        t0 + Duration::from_secs_f64(ms / 1000.0)
    }

    /// Feeds `seqs` 20 ms apart at 8 kHz (160 units per packet).
    fn feed(s: &mut ReceiveStats, t0: Instant, seqs: impl IntoIterator<Item = u16>) -> Vec<bool> {
        seqs.into_iter()
            .enumerate()
            .map(|(i, seq)| {
                let i = i as u32;
                s.on_packet(seq, i * 160, 160, at(t0, f64::from(i) * 20.0))
            })
            .collect()
    }

    #[test]
    fn probation_then_counts_from_the_first_packet() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        assert!(!s.on_packet(10, 0, 160, t0));
        assert_eq!((s.received(), s.expected()), (0, 0));
        assert!(s.on_packet(11, 160, 160, at(t0, 20.0)));
        assert_eq!((s.received(), s.expected(), s.cumulative_lost()), (2, 2, 0));
        assert_eq!(s.extended_highest_seq(), 11);
        assert_eq!(s.packets_seen(), 2);
        assert_eq!(s.bytes_received(), 320);
    }

    #[test]
    fn out_of_sequence_probation_restarts() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        assert_eq!(feed(&mut s, t0, [5, 9, 10, 11]), [false, false, true, true]);
        assert_eq!((s.received(), s.expected(), s.cumulative_lost()), (3, 3, 0));
    }

    #[test]
    fn sequence_wrap() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let seqs: Vec<u16> = (65530..=65535).chain(0..=5).collect();
        let ok = feed(&mut s, t0, seqs);
        assert!(ok[1..].iter().all(|v| *v));
        assert_eq!(s.extended_highest_seq(), 65536 + 5);
        assert_eq!(
            (s.received(), s.expected(), s.cumulative_lost()),
            (12, 12, 0)
        );
        // Probation across the wrap itself.
        let mut w = ReceiveStats::new(8000);
        assert_eq!(feed(&mut w, t0, [65535, 0, 1]), [false, true, true]);
        assert_eq!((w.received(), w.expected()), (3, 3));
    }

    #[test]
    fn loss_and_fraction_lost() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let seqs: Vec<u16> = (1000..1100)
            .filter(|q| ![1010, 1050, 1077].contains(q))
            .collect();
        feed(&mut s, t0, seqs);
        assert_eq!(
            (s.expected(), s.received(), s.cumulative_lost()),
            (100, 97, 3)
        );
        assert!((s.loss_rate() - 0.03).abs() < 1e-12);
        let r = s.take_interval();
        // A.3: (lost << 8) / expected = 768 / 100 = 7 (truncated).
        assert_eq!(u32::from(r.fraction_lost), 3 * 256 / 100);
        assert_eq!(r.fraction_lost, 7);
        assert_eq!(r.cumulative_lost, 3);
        assert_eq!(r.extended_highest_seq, 1099);
        assert!((s.interval_loss_rate() - 7.0 / 256.0).abs() < 1e-12);
        // The next interval with no loss reports 0, cumulative stays 3.
        let t1 = at(t0, 5000.0);
        for (i, seq) in (1100u16..1150).enumerate() {
            s.on_packet(seq, 16_000 + i as u32 * 160, 160, at(t1, i as f64 * 20.0));
        }
        let r = s.take_interval();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, 3));
        // An empty interval reports 0.
        assert_eq!(s.take_interval().fraction_lost, 0);
    }

    #[test]
    fn duplicates_make_loss_negative() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        feed(&mut s, t0, [1, 2, 3, 4, 5, 3, 4, 5]);
        assert_eq!(
            (s.expected(), s.received(), s.cumulative_lost()),
            (5, 8, -3)
        );
        assert_eq!(s.loss_rate(), 0.0);
        let r = s.take_interval();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, -3));
    }

    #[test]
    fn reordering_within_max_misorder() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let ok = feed(&mut s, t0, [1, 2, 4, 3, 5, 6]);
        assert!(ok[1..].iter().all(|v| *v));
        assert_eq!((s.expected(), s.received(), s.cumulative_lost()), (6, 6, 0));
        assert_eq!(s.extended_highest_seq(), 6);
        // A packet 99 behind (MAX_MISORDER - 1) still counts as reordered.
        let mut r = ReceiveStats::new(8000);
        let seqs: Vec<u16> = (0..200).chain([100]).collect();
        assert!(*feed(&mut r, t0, seqs).last().unwrap());
        assert_eq!(r.extended_highest_seq(), 199);
        assert_eq!(r.cumulative_lost(), -1);
        // A reordered packet across the wrap does not add a cycle.
        let mut w = ReceiveStats::new(8000);
        feed(&mut w, t0, [65534, 65535, 1, 0, 2]);
        assert_eq!(w.extended_highest_seq(), 65536 + 2);
        assert_eq!((w.expected(), w.received()), (5, 5));
    }

    #[test]
    fn big_jump_resyncs_after_the_next_packet() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let ok = feed(&mut s, t0, [1, 2, 3, 4, 5, 30_000, 30_001, 30_002]);
        assert_eq!(ok, [false, true, true, true, true, false, true, true]);
        // Both segments lossless; totals carried over the resync.
        assert_eq!((s.expected(), s.received(), s.cumulative_lost()), (8, 8, 0));
        assert_eq!(s.extended_highest_seq(), 30_002);
        // A lone jump that is not followed is rejected and not counted.
        let mut l = ReceiveStats::new(8000);
        let ok = feed(&mut l, t0, [1, 2, 3, 40_000, 4, 5]);
        assert_eq!(ok, [false, true, true, false, true, true]);
        assert_eq!((l.expected(), l.received()), (5, 5));
        // A gap under MAX_DROPOUT is loss, not a restart.
        let mut g = ReceiveStats::new(8000);
        feed(&mut g, t0, [1, 2, 2900]);
        assert_eq!(g.cumulative_lost(), 2897);
    }

    #[test]
    fn jitter_constant_spacing_is_zero() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        feed(&mut s, t0, 0..500);
        assert!(s.jitter_ms() < 1e-6, "{}", s.jitter_ms());
        assert_eq!(s.jitter_units(), 0);
        assert!(s.mean_jitter_ms() < 1e-6);
    }

    #[test]
    fn jitter_alternating_offsets_follows_a8() {
        // Packets every 20 ms in RTP time, arriving alternately 10 ms late
        // and on time: |D| = 10 ms = 80 units on every packet after the first.
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let n = 400u32;
        let mut expect = 0.0f64;
        let mut sum = 0.0f64;
        for i in 0..n {
            let offset = if i % 2 == 1 { 10.0 } else { 0.0 };
            s.on_packet(i as u16, i * 160, 160, at(t0, f64::from(i) * 20.0 + offset));
            if i >= 1 {
                expect += (80.0 - expect) / 16.0;
                sum += expect;
            }
        }
        // J converges to |D| = 80 units = 10 ms.
        assert!((f64::from(s.jitter_units()) - expect.floor()).abs() <= 1.0);
        assert!(
            (s.jitter_ms() - expect / 8.0).abs() < 1e-3,
            "{} vs {}",
            s.jitter_ms(),
            expect / 8.0
        );
        assert!((s.jitter_ms() - 10.0).abs() < 0.01);
        let mean = sum / f64::from(n - 1) / 8.0;
        assert!((s.mean_jitter_ms() - mean).abs() < 1e-3);
        let r = s.take_interval();
        assert_eq!(r.jitter, s.jitter_units());
    }

    #[test]
    fn jitter_survives_timestamp_wrap_zero_rate_and_time_going_back() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut s = ReceiveStats::new(8000);
        for i in 0..50u32 {
            let ts = (u32::MAX - 1000).wrapping_add(i * 160);
            s.on_packet(i as u16, ts, 160, at(t0, f64::from(i) * 20.0));
        }
        assert!(s.jitter_ms() < 1e-6);
        let mut z = ReceiveStats::new(0);
        feed(&mut z, t0, 0..10);
        assert_eq!(
            (z.jitter_ms(), z.mean_jitter_ms(), z.jitter_units()),
            (0.0, 0.0, 0)
        );
        assert_eq!(z.received(), 10);
        let mut b = ReceiveStats::new(8000);
        b.on_packet(1, 0, 0, t0);
        b.on_packet(2, 160, 0, t0 - Duration::from_secs(1));
        b.on_packet(3, u32::MAX / 2, usize::MAX, t0);
        assert!(b.jitter_ms().is_finite());
    }

    #[test]
    fn empty_stats() {
        let mut s = ReceiveStats::new(8000);
        assert_eq!((s.received(), s.expected(), s.cumulative_lost()), (0, 0, 0));
        assert_eq!(
            (s.loss_rate(), s.jitter_ms(), s.mean_jitter_ms()),
            (0.0, 0.0, 0.0)
        );
        let r = s.take_interval();
        assert_eq!((r.fraction_lost, r.cumulative_lost, r.jitter), (0, 0, 0));
    }

    #[test]
    fn rtt_stats() {
        let mut r = RttStats::new();
        assert_eq!((r.last_ms(), r.avg_ms()), (None, None));
        r.add(Duration::from_millis(100));
        r.add(Duration::from_millis(50));
        assert_eq!(r.last_ms(), Some(50.0));
        assert_eq!(r.avg_ms(), Some(75.0));
        assert_eq!(r.samples(), 2);
    }

    fn g711() -> CodecImpairment {
        CodecImpairment::for_codec("PCMA")
    }

    #[test]
    fn emodel_g711_clean() {
        let r = r_factor(g711(), 0.0, 0.0, 1.0);
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos_from_r(r) - 4.41).abs() < 0.005, "{}", mos_from_r(r));
        // Below 100 ms delay costs nothing (G.107 §7.4).
        assert_eq!(r_factor(g711(), 100.0, 0.0, 1.0), r);
    }

    #[test]
    fn emodel_g711_five_percent_random_loss() {
        let r = r_factor(g711(), 0.0, 5.0, 1.0);
        let expect = 93.2 - 95.0 * 5.0 / (5.0 + 25.1);
        assert!((r - expect).abs() < 1e-9);
        assert!((r - 77.4).abs() < 0.1, "{r}");
        // Bursty loss hurts more.
        assert!(r_factor(g711(), 0.0, 5.0, 2.0) < r);
    }

    #[test]
    fn emodel_delay() {
        let x = (300.0f64 / 100.0).log2();
        let idd = 25.0
            * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
                + 2.0);
        let r = r_factor(g711(), 300.0, 0.0, 1.0);
        assert!((r - (93.2 - idd)).abs() < 1e-9);
        assert!((idd - 14.76).abs() < 0.05, "{idd}");
        assert!(r_factor(g711(), 150.0, 0.0, 1.0) > r);
        assert!(r_factor(g711(), 600.0, 0.0, 1.0) < r);
    }

    #[test]
    fn codecs() {
        assert_eq!(
            CodecImpairment::for_codec("pcmu"),
            CodecImpairment { ie: 0.0, bpl: 25.1 }
        );
        assert_eq!(CodecImpairment::for_codec("AMR").ie, 5.0);
        assert!(CodecImpairment::for_codec("AMR-WB").ie < 5.0);
        assert_eq!(CodecImpairment::for_codec("opus").ie, 0.0);
        assert_eq!(CodecImpairment::for_codec("x-unknown").ie, 11.0);
        let amr = r_factor(CodecImpairment::for_codec("AMR"), 0.0, 0.0, 1.0);
        assert!((amr - 88.2).abs() < 1e-9);
    }

    #[test]
    fn mos_bounds() {
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(3.0), 1.0); // the polynomial dips under 1 here
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(150.0), 4.5);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos_from_r(f64::INFINITY), 4.5);
        assert_eq!(mos_from_r(f64::NEG_INFINITY), 1.0);
        let mut prev = 1.0;
        for r in 0..=100 {
            let m = mos_from_r(f64::from(r));
            assert!((1.0..=4.5).contains(&m));
            assert!(m >= prev - 1e-12, "monotonic at {r}");
            prev = m;
        }
    }

    #[test]
    fn nonsense_inputs_are_clamped() {
        let bad = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -1e300,
            1e300,
            0.0,
        ];
        let codecs = [
            g711(),
            CodecImpairment {
                ie: f64::NAN,
                bpl: f64::NAN,
            },
            CodecImpairment {
                ie: -10.0,
                bpl: -10.0,
            },
            CodecImpairment { ie: 1e9, bpl: 0.0 },
        ];
        for c in codecs {
            for d in bad {
                for l in bad {
                    for b in bad {
                        let r = r_factor(c, d, l, b);
                        assert!((0.0..=100.0).contains(&r), "{c:?} {d} {l} {b} -> {r}");
                        assert!((1.0..=4.5).contains(&mos_from_r(r)));
                    }
                }
            }
        }
        assert_eq!(r_factor(g711(), -5.0, -5.0, 0.0), 93.2);
        assert!((r_factor(g711(), 0.0, 100.0, 1.0) - (93.2 - 95.0 * 100.0 / 125.1)).abs() < 1e-9);
        assert!((0.0..=100.0).contains(&combine_r(&[f64::NAN, -3.0, 200.0])));
        assert_eq!(Grade::from_mos(f64::NAN), Grade::Bad);
    }

    #[test]
    fn grades_and_combination() {
        assert_eq!(Grade::from_mos(4.41), Grade::Excellent);
        assert_eq!(Grade::from_mos(mos_from_r(75.0)), Grade::Good);
        assert_eq!(Grade::from_mos(mos_from_r(65.0)), Grade::Fair);
        assert_eq!(Grade::from_mos(mos_from_r(55.0)), Grade::Poor);
        assert_eq!(Grade::from_mos(1.0), Grade::Bad);
        assert_eq!(Grade::Fair.label(), "fair");
        assert!((combine_r(&[93.2, 93.2]) - 93.2).abs() < 1e-9);
        assert!((combine_r(&[83.2, 88.2]) - 78.2).abs() < 1e-9);
    }

    #[test]
    fn snapshot_without_and_with_rtcp() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000);
        let seqs: Vec<u16> = (0..100).filter(|q| q % 20 != 7).collect();
        feed(&mut s, t0, seqs);
        let codec = g711();
        let snap = QualitySnapshot::build(&s, &RttStats::new(), None, codec);
        assert_eq!((snap.packets_received, snap.packets_lost), (95, 5));
        assert_eq!(snap.sources.delay, Source::Estimated);
        assert_eq!(snap.sources.mos, Source::Estimated);
        assert_eq!(snap.sources.peer, None);
        assert_eq!((snap.rtt_ms, snap.peer_mos), (None, None));
        // Delay under the knee: only the 5 % loss counts.
        assert!((snap.r - (93.2 - 95.0 * 5.0 / 30.1)).abs() < 1e-9);
        assert!((snap.loss_rate - 0.05).abs() < 1e-12);

        let mut rtt = RttStats::new();
        rtt.add(Duration::from_millis(600));
        let peer = PeerReport {
            loss_rate: 0.0,
            jitter_ms: f64::NAN,
        };
        let snap = QualitySnapshot::build(&s, &rtt, Some(peer), codec);
        assert_eq!(snap.sources.delay, Source::PeerRtcp);
        assert_eq!(snap.sources.mos, Source::PeerRtcp);
        assert_eq!(snap.sources.peer, Some(Source::PeerRtcp));
        assert_eq!(snap.peer_jitter_ms, Some(0.0));
        assert_eq!(snap.rtt_ms, Some(600.0));
        // 300 ms one way + 20 ms packetisation is past the knee.
        assert!(snap.r < 93.2 - 95.0 * 5.0 / 30.1 - 10.0);
        assert!(snap.peer_mos.unwrap() > snap.mos);
        assert_eq!(snap.grade(), Grade::from_mos(snap.mos));

        let clean = QualitySnapshot::build(&s, &RttStats::new(), None, codec);
        let total = total_eval(&clean, &snap);
        assert!((1.0..=4.5).contains(&total));
        assert!(total <= clean.mos.min(snap.mos) + 1e-12);
    }
}
