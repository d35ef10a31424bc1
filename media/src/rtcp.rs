//! RTCP compound packets (RFC 3550 §6, RFC 3611).
//!
//! SR, RR, SDES, BYE and APP are parsed and written with `rtcp-types`; XR
//! (RFC 3611) is parsed by hand because `rtcp-types` has no VoIP Metrics
//! block and does not expose a block's bytes.
//!
//! Every RTCP packet starts with the same header (RFC 3550 §6.4.1); a
//! compound packet (§6.1) is several of them back to back in one datagram,
//! the first an SR or RR, and has an SDES CNAME:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|    RC   |   PT=SR=200   |             length            | header
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         SSRC of sender                        |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |              NTP timestamp, most significant word             | sender
//! |             NTP timestamp, least significant word             | info
//! |                         RTP timestamp                         | (SR only)
//! |                     sender's packet count                     |
//! |                      sender's octet count                     |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |                 SSRC_1 (SSRC of first source)                 | report
//! | fraction lost |       cumulative number of packets lost       | block
//! |           extended highest sequence number received           |   1
//! |                      interarrival jitter                      |
//! |                         last SR (LSR)                         |
//! |                   delay since last SR (DLSR)                  |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! ```
//!
//! `length` is the packet length in 32-bit words minus one. Only the last
//! packet of a compound may carry padding; its last octet counts the padding
//! octets, itself included.
//!
//! XR (RFC 3611 §2) is a sequence of report blocks after the sender SSRC,
//! each `BT | type-specific | block length (words minus one)`; the ones the
//! relay reads are RRTR (BT=4, §4.4), DLRR (BT=5, §4.5) and VoIP Metrics
//! (BT=7, §4.7):
//!
//! ```text
//! |     BT=7      |   reserved    |       block length = 8        |
//! |                        SSRC of source                         |
//! |   loss rate   | discard rate  | burst density |  gap density  |
//! |       burst duration          |         gap duration          |
//! |     round trip delay          |       end system delay        |
//! | signal level  |  noise level  |     RERL      |     Gmin      |
//! |   R factor    | ext. R factor |    MOS-LQ     |    MOS-CQ     |
//! |   RX config   |   reserved    |          JB nominal           |
//! |          JB maximum           |          JB abs max           |
//! ```

use std::time::Duration;

use rtcp_types::prelude::*;
use rtcp_types::{
    App, Bye, Compound, ReceiverReport, ReceiverReportBuilder, ReportBlockBuilder, Sdes, SdesChunk,
    SdesItem, SenderReport, SenderReportBuilder,
};

/// Sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;
/// Extended report (RFC 3611 §2).
pub const PT_XR: u8 = 207;

/// XR block types (RFC 3611 §4).
const BT_RRTR: u8 = 4;
const BT_DLRR: u8 = 5;
const BT_VOIP_METRICS: u8 = 7;

/// Report blocks per SR/RR: the RC field has 5 bits (RFC 3550 §6.4.2).
const MAX_REPORTS: usize = 31;
/// SDES item and BYE reason lengths are one octet (RFC 3550 §6.5, §6.6).
const MAX_TEXT: usize = 255;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why a datagram was not accepted as an RTCP compound packet; the label is
/// the metrics reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("packet at offset {offset} is shorter than its header or length field says")]
    Truncated { offset: usize },
    #[error("RTCP version {version}, expected 2")]
    Version { version: u8 },
    #[error("compound packet starts with packet type {packet_type}, not SR or RR")]
    FirstNotReport { packet_type: u8 },
    #[error("bad padding in the packet at offset {offset}")]
    Padding { offset: usize },
    #[error("malformed RTCP packet of type {packet_type}")]
    Malformed { packet_type: u8 },
    #[error("malformed XR block of type {block_type}")]
    XrBlock { block_type: u8 },
}

impl RtcpError {
    pub fn label(self) -> &'static str {
        match self {
            RtcpError::Truncated { .. } => "rtcp_truncated",
            RtcpError::Version { .. } => "rtcp_version",
            RtcpError::FirstNotReport { .. } => "rtcp_first_not_report",
            RtcpError::Padding { .. } => "rtcp_padding",
            RtcpError::Malformed { .. } => "rtcp_malformed",
            RtcpError::XrBlock { .. } => "rtcp_xr_block",
        }
    }
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC_n: the source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost: a 24-bit signed value on the wire
    /// (negative with duplicates); clamped to -2^23..2^23-1 when written.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received, 0 if none.
    pub lsr: u32,
    /// Delay since that SR was received, in 1/65536 s.
    pub dlsr: u32,
}

/// The sender info of an SR (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// 32.32 fixed-point NTP timestamp (seconds since 1900).
    pub ntp_timestamp: u64,
    /// The same instant in the RTP timestamp units of the stream.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Packet loss concealment in use (RFC 3611 §4.7.6, RX config bits 0-1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plc {
    #[default]
    Unspecified,
    Disabled,
    Enhanced,
    Standard,
}

/// Jitter buffer adaptation (RFC 3611 §4.7.6, RX config bits 2-3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JitterBufferAdaptive {
    #[default]
    Unknown,
    Reserved,
    NonAdaptive,
    Adaptive,
}

/// The RX config octet of the VoIP Metrics block (RFC 3611 §4.7.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxConfig {
    pub plc: Plc,
    pub jba: JitterBufferAdaptive,
    /// JB rate J (0-15): an adaptive buffer fully adjusts to a jitter step in
    /// about 2 × J × frame size ms; 0 when not reported.
    pub jb_rate: u8,
}

impl RxConfig {
    fn from_octet(octet: u8) -> Self {
        let plc = match octet >> 6 {
            3 => Plc::Standard,
            2 => Plc::Enhanced,
            1 => Plc::Disabled,
            _ => Plc::Unspecified,
        };
        let jba = match (octet >> 4) & 0x03 {
            3 => JitterBufferAdaptive::Adaptive,
            2 => JitterBufferAdaptive::NonAdaptive,
            1 => JitterBufferAdaptive::Reserved,
            _ => JitterBufferAdaptive::Unknown,
        };
        RxConfig {
            plc,
            jba,
            jb_rate: octet & 0x0F,
        }
    }

    fn to_octet(self) -> u8 {
        let plc = match self.plc {
            Plc::Unspecified => 0,
            Plc::Disabled => 1,
            Plc::Enhanced => 2,
            Plc::Standard => 3,
        };
        let jba = match self.jba {
            JitterBufferAdaptive::Unknown => 0,
            JitterBufferAdaptive::Reserved => 1,
            JitterBufferAdaptive::NonAdaptive => 2,
            JitterBufferAdaptive::Adaptive => 3,
        };
        (plc << 6) | (jba << 4) | (self.jb_rate & 0x0F)
    }
}

/// The VoIP Metrics report block (RFC 3611 §4.7), for the SSRC it is paired
/// with. Fields the reporter marks unavailable (127) are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoipMetrics {
    /// §4.7.1: fraction of packets lost since reception began, in 1/256.
    pub loss_rate: u8,
    /// §4.7.1: fraction discarded (late or early) by the jitter buffer, in 1/256.
    pub discard_rate: u8,
    /// §4.7.2: fraction of packets lost or discarded within bursts, in 1/256.
    pub burst_density: u8,
    /// §4.7.2: the same within gaps, in 1/256.
    pub gap_density: u8,
    /// §4.7.2: mean burst duration, ms.
    pub burst_duration_ms: u16,
    /// §4.7.2: mean gap duration, ms.
    pub gap_duration_ms: u16,
    /// §4.7.3: most recent round trip delay between RTP interfaces, ms.
    pub round_trip_delay_ms: u16,
    /// §4.7.3: end system (encode, jitter buffer, decode) delay, ms.
    pub end_system_delay_ms: u16,
    /// §4.7.4: signal level during talkspurts, dBm (signed).
    pub signal_level_dbm: Option<i8>,
    /// §4.7.4: background noise level during silence, dBm (signed).
    pub noise_level_dbm: Option<i8>,
    /// §4.7.4: residual echo return loss, dB.
    pub rerl_db: Option<u8>,
    /// §4.7.2: gap threshold (packets received in a row to end a burst); 16 recommended.
    pub gmin: u8,
    /// §4.7.5: R factor (ITU-T G.107), 0-100.
    pub r_factor: Option<u8>,
    /// §4.7.5: external R factor (the other end's network), 0-100.
    pub ext_r_factor: Option<u8>,
    /// §4.7.5: MOS listening quality × 10 (10-50).
    pub mos_lq: Option<u8>,
    /// §4.7.5: MOS conversational quality × 10 (10-50).
    pub mos_cq: Option<u8>,
    /// §4.7.6: receiver configuration.
    pub rx_config: RxConfig,
    /// §4.7.7: nominal jitter buffer delay, ms.
    pub jb_nominal_ms: u16,
    /// §4.7.7: current maximum jitter buffer delay, ms.
    pub jb_maximum_ms: u16,
    /// §4.7.7: absolute maximum the adaptive jitter buffer may reach, ms.
    pub jb_abs_max_ms: u16,
}

/// 127 marks a VoIP metric the reporter could not measure (RFC 3611 §4.7).
const UNAVAILABLE: u8 = 127;

fn available(octet: u8) -> Option<u8> {
    (octet != UNAVAILABLE).then_some(octet)
}

fn available_signed(octet: u8) -> Option<i8> {
    (octet != UNAVAILABLE).then_some(i8::from_be_bytes([octet]))
}

fn or_unavailable(value: Option<u8>) -> u8 {
    value.unwrap_or(UNAVAILABLE)
}

fn or_unavailable_signed(value: Option<i8>) -> u8 {
    value.map_or(UNAVAILABLE, |v| u8::from_be_bytes(v.to_be_bytes()))
}

impl VoipMetrics {
    /// MOS-LQ as a score (1.0-5.0).
    pub fn mos_lq_score(&self) -> Option<f32> {
        self.mos_lq.map(|m| f32::from(m) / 10.0)
    }

    /// MOS-CQ as a score (1.0-5.0).
    pub fn mos_cq_score(&self) -> Option<f32> {
        self.mos_cq.map(|m| f32::from(m) / 10.0)
    }

    /// The 32 octets after the block header: SSRC of source and the metrics.
    fn from_body(body: &[u8; 32]) -> (u32, Self) {
        // One word per line, as in the diagram above.
        #[rustfmt::skip]
        let [
            s0, s1, s2, s3,
            loss_rate, discard_rate, burst_density, gap_density,
            bd0, bd1, gd0, gd1,
            rt0, rt1, es0, es1,
            signal, noise, rerl, gmin,
            r_factor, ext_r_factor, mos_lq, mos_cq,
            rx_config, _reserved, jn0, jn1,
            jm0, jm1, ja0, ja1,
        ] = *body;
        let metrics = VoipMetrics {
            loss_rate,
            discard_rate,
            burst_density,
            gap_density,
            burst_duration_ms: u16::from_be_bytes([bd0, bd1]),
            gap_duration_ms: u16::from_be_bytes([gd0, gd1]),
            round_trip_delay_ms: u16::from_be_bytes([rt0, rt1]),
            end_system_delay_ms: u16::from_be_bytes([es0, es1]),
            signal_level_dbm: available_signed(signal),
            noise_level_dbm: available_signed(noise),
            rerl_db: available(rerl),
            gmin,
            r_factor: available(r_factor),
            ext_r_factor: available(ext_r_factor),
            mos_lq: available(mos_lq),
            mos_cq: available(mos_cq),
            rx_config: RxConfig::from_octet(rx_config),
            jb_nominal_ms: u16::from_be_bytes([jn0, jn1]),
            jb_maximum_ms: u16::from_be_bytes([jm0, jm1]),
            jb_abs_max_ms: u16::from_be_bytes([ja0, ja1]),
        };
        (u32::from_be_bytes([s0, s1, s2, s3]), metrics)
    }

    /// Appends the whole block (header included) for `ssrc`.
    fn write_block(&self, out: &mut Vec<u8>, ssrc: u32) {
        out.extend_from_slice(&[BT_VOIP_METRICS, 0, 0, 8]);
        out.extend_from_slice(&ssrc.to_be_bytes());
        out.extend_from_slice(&[
            self.loss_rate,
            self.discard_rate,
            self.burst_density,
            self.gap_density,
        ]);
        out.extend_from_slice(&self.burst_duration_ms.to_be_bytes());
        out.extend_from_slice(&self.gap_duration_ms.to_be_bytes());
        out.extend_from_slice(&self.round_trip_delay_ms.to_be_bytes());
        out.extend_from_slice(&self.end_system_delay_ms.to_be_bytes());
        out.extend_from_slice(&[
            or_unavailable_signed(self.signal_level_dbm),
            or_unavailable_signed(self.noise_level_dbm),
            or_unavailable(self.rerl_db),
            self.gmin,
            or_unavailable(self.r_factor),
            or_unavailable(self.ext_r_factor),
            or_unavailable(self.mos_lq),
            or_unavailable(self.mos_cq),
            self.rx_config.to_octet(),
            0,
        ]);
        out.extend_from_slice(&self.jb_nominal_ms.to_be_bytes());
        out.extend_from_slice(&self.jb_maximum_ms.to_be_bytes());
        out.extend_from_slice(&self.jb_abs_max_ms.to_be_bytes());
    }
}

/// One packet of a compound, with what the relay uses of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    /// Each chunk's SSRC/CSRC and its CNAME item, if it has one.
    Sdes { chunks: Vec<(u32, Option<String>)> },
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<String>,
    },
    App {
        ssrc: u32,
        name: [u8; 4],
        data: Vec<u8>,
    },
    /// XR from `ssrc`: VoIP Metrics per source, the RRTR NTP timestamp, and
    /// DLRR sub-blocks as (SSRC, LRR, DLRR).
    Xr {
        ssrc: u32,
        voip_metrics: Vec<(u32, VoipMetrics)>,
        rrtr: Option<u64>,
        dlrr: Vec<(u32, u32, u32)>,
    },
    /// A well-framed packet of a type the relay does not read (RTPFB, PSFB...).
    Other { packet_type: u8 },
}

/// Parses a compound RTCP packet (RFC 3550 §6.1) with the validity checks of
/// Appendix A.2: version 2 everywhere, the first packet an SR or RR, padding
/// only in the last packet, and the length fields adding up to the datagram.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::Truncated { offset: 0 });
    }
    let mut packets = Vec::new();
    let mut offset = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let &[first_octet, packet_type, len_hi, len_lo, ..] = rest else {
            return Err(RtcpError::Truncated { offset });
        };
        let version = first_octet >> 6;
        if version != 2 {
            return Err(RtcpError::Version { version });
        }
        if offset == 0 && packet_type != PT_SR && packet_type != PT_RR {
            return Err(RtcpError::FirstNotReport { packet_type });
        }
        let len = (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1) * 4;
        let (packet, tail) = rest
            .split_at_checked(len)
            .ok_or(RtcpError::Truncated { offset })?;
        let padded = first_octet & 0x20 != 0;
        if padded && !tail.is_empty() {
            return Err(RtcpError::Padding { offset });
        }
        let parsed = if padded {
            parse_padded(packet, offset)?
        } else {
            parse_packet(packet)?
        };
        packets.push(parsed);
        offset += len;
        rest = tail;
    }
    Ok(packets)
}

/// Strips the padding off the last packet and parses the rest with P clear
/// and the length field fixed, so no parser ever sees padding octets (the
/// SDES and APP parsers of `rtcp-types` would read them as content).
fn parse_padded(packet: &[u8], offset: usize) -> Result<RtcpPacket, RtcpError> {
    let bad = RtcpError::Padding { offset };
    let count = usize::from(*packet.last().ok_or(bad)?);
    // The count includes itself and keeps the packet 32-bit aligned (§6.4.1).
    let body_len = packet
        .len()
        .checked_sub(count)
        .filter(|&n| count != 0 && n >= 4 && n % 4 == 0)
        .ok_or(bad)?;
    let mut body = packet.get(..body_len).ok_or(bad)?.to_vec();
    let words = u16::try_from(body_len / 4 - 1).map_err(|_| bad)?;
    if let [first_octet, _, len_hi, len_lo, ..] = body.as_mut_slice() {
        *first_octet &= !0x20;
        [*len_hi, *len_lo] = words.to_be_bytes();
    }
    parse_packet(&body)
}

/// One unpadded packet whose length field matches `packet.len()`.
fn parse_packet(packet: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let packet_type = packet.get(1).copied().unwrap_or_default();
    let malformed = |_| RtcpError::Malformed { packet_type };
    Ok(match packet_type {
        PT_SR => {
            let sr = SenderReport::parse(packet).map_err(malformed)?;
            RtcpPacket::SenderReport {
                ssrc: sr.ssrc(),
                info: SenderInfo {
                    ntp_timestamp: sr.ntp_timestamp(),
                    rtp_timestamp: sr.rtp_timestamp(),
                    packet_count: sr.packet_count(),
                    octet_count: sr.octet_count(),
                },
                reports: sr.report_blocks().map(|b| report_block(&b)).collect(),
            }
        }
        PT_RR => {
            let rr = ReceiverReport::parse(packet).map_err(malformed)?;
            RtcpPacket::ReceiverReport {
                ssrc: rr.ssrc(),
                reports: rr.report_blocks().map(|b| report_block(&b)).collect(),
            }
        }
        PT_SDES => {
            let sdes = Sdes::parse(packet).map_err(malformed)?;
            let chunks = sdes
                .chunks()
                .map(|chunk| {
                    // `value()` is only safe on non-PRIV items: filter first.
                    let cname = chunk
                        .items()
                        .find(|item| item.type_() == SdesItem::CNAME)
                        .map(|item| String::from_utf8_lossy(item.value()).into_owned());
                    (chunk.ssrc(), cname)
                })
                .collect();
            RtcpPacket::Sdes { chunks }
        }
        PT_BYE => {
            let bye = Bye::parse(packet).map_err(malformed)?;
            RtcpPacket::Bye {
                ssrcs: bye.ssrcs().collect(),
                reason: bye
                    .reason()
                    .map(|r| String::from_utf8_lossy(r).into_owned()),
            }
        }
        PT_APP => {
            let app = App::parse(packet).map_err(malformed)?;
            RtcpPacket::App {
                ssrc: app.ssrc(),
                name: app.name(),
                data: app.data().to_vec(),
            }
        }
        PT_XR => parse_xr(packet)?,
        _ => RtcpPacket::Other { packet_type },
    })
}

fn report_block(b: &rtcp_types::ReportBlock<'_>) -> ReportBlock {
    ReportBlock {
        ssrc: b.ssrc(),
        fraction_lost: b.fraction_lost(),
        cumulative_lost: sign_extend_24(b.cumulative_lost()),
        extended_highest_seq: b.extended_sequence_number(),
        jitter: b.interarrival_jitter(),
        lsr: b.last_sender_report_timestamp(),
        dlsr: b.delay_since_last_sender_report_timestamp(),
    }
}

/// The 24-bit two's complement cumulative loss to an i32.
fn sign_extend_24(value: u32) -> i32 {
    i32::from_be_bytes((value << 8).to_be_bytes()) >> 8
}

/// An i32 loss count clamped into 24 bits (RFC 3550 A.3 clamps the same way).
fn to_24_bits(value: i32) -> u32 {
    let clamped = value.clamp(-0x80_0000, 0x7F_FFFF);
    u32::from_be_bytes(clamped.to_be_bytes()) & 0x00FF_FFFF
}

fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// XR (RFC 3611 §2): header, sender SSRC, then blocks; unknown blocks are
/// skipped by their length, known ones must have their fixed length.
fn parse_xr(packet: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let &[_, _, _, _, s0, s1, s2, s3, ref blocks @ ..] = packet else {
        return Err(RtcpError::Malformed { packet_type: PT_XR });
    };
    let mut voip_metrics = Vec::new();
    let mut rrtr = None;
    let mut dlrr = Vec::new();
    let mut rest = blocks;
    while !rest.is_empty() {
        let &[block_type, _type_specific, len_hi, len_lo, ..] = rest else {
            return Err(RtcpError::Malformed { packet_type: PT_XR });
        };
        let bad = RtcpError::XrBlock { block_type };
        let len = (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1) * 4;
        let (block, tail) = rest.split_at_checked(len).ok_or(bad)?;
        let body = block.get(4..).unwrap_or_default();
        match block_type {
            BT_RRTR => {
                let ntp: [u8; 8] = body.try_into().map_err(|_| bad)?;
                // One RRTR per XR is expected; keep the first.
                rrtr.get_or_insert(u64::from_be_bytes(ntp));
            }
            BT_DLRR => {
                let sub_blocks = body.chunks_exact(12);
                if !sub_blocks.remainder().is_empty() {
                    return Err(bad);
                }
                for sub in sub_blocks {
                    if let &[a0, a1, a2, a3, l0, l1, l2, l3, d0, d1, d2, d3] = sub {
                        dlrr.push((
                            be32([a0, a1, a2, a3]),
                            be32([l0, l1, l2, l3]),
                            be32([d0, d1, d2, d3]),
                        ));
                    }
                }
            }
            BT_VOIP_METRICS => {
                let body: &[u8; 32] = body.try_into().map_err(|_| bad)?;
                voip_metrics.push(VoipMetrics::from_body(body));
            }
            _ => {}
        }
        rest = tail;
    }
    Ok(RtcpPacket::Xr {
        ssrc: be32([s0, s1, s2, s3]),
        voip_metrics,
        rrtr,
        dlrr,
    })
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn report_block_builder(b: &ReportBlock) -> ReportBlockBuilder {
    rtcp_types::ReportBlock::builder(b.ssrc)
        .fraction_lost(b.fraction_lost)
        .cumulative_lost(to_24_bits(b.cumulative_lost))
        .extended_sequence_number(b.extended_highest_seq)
        .interarrival_jitter(b.jitter)
        .last_sender_report_timestamp(b.lsr)
        .delay_since_last_sender_report_timestamp(b.dlsr)
}

fn rr_builder(ssrc: u32, reports: &[ReportBlock]) -> ReceiverReportBuilder {
    reports.iter().fold(ReceiverReport::builder(ssrc), |rr, b| {
        rr.add_report_block(report_block_builder(b))
    })
}

fn sr_builder(ssrc: u32, info: &SenderInfo, reports: &[ReportBlock]) -> SenderReportBuilder {
    let sr = SenderReport::builder(ssrc)
        .ntp_timestamp(info.ntp_timestamp)
        .rtp_timestamp(info.rtp_timestamp)
        .packet_count(info.packet_count)
        .octet_count(info.octet_count);
    reports
        .iter()
        .fold(sr, |sr, b| sr.add_report_block(report_block_builder(b)))
}

/// Appends what `packet` writes. Inputs are clamped by the callers so the
/// builders cannot refuse them; if one did, `out` is left as it was.
fn append(out: &mut Vec<u8>, packet: &impl RtcpPacketWriter) {
    let Ok(size) = packet.calculate_size() else {
        return;
    };
    let start = out.len();
    out.resize(start + size, 0);
    match out.get_mut(start..).map(|buf| packet.write_into(buf)) {
        Some(Ok(written)) => out.truncate(start + written),
        _ => out.truncate(start),
    }
}

/// Appends the compound the relay sends on a leg (RFC 3550 §6.1): an SR when
/// `sender` is given (we sent RTP since the report before last, §6.4), else
/// an RR, with up to 31 report blocks; further blocks go in extra RRs
/// (§6.4.2); then an SDES with the CNAME (truncated to 255 bytes).
pub fn write_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: Option<SenderInfo>,
    reports: &[ReportBlock],
    cname: &str,
) {
    let mut groups = reports.chunks(MAX_REPORTS);
    let first = groups.next().unwrap_or_default();
    let mut compound = Compound::builder();
    compound = match sender {
        Some(info) => compound.add_packet(sr_builder(ssrc, &info, first)),
        None => compound.add_packet(rr_builder(ssrc, first)),
    };
    for group in groups {
        compound = compound.add_packet(rr_builder(ssrc, group));
    }
    compound = compound.add_packet(sdes_cname(ssrc, cname));
    append(out, &compound);
}

fn sdes_cname(ssrc: u32, cname: &str) -> rtcp_types::SdesBuilder<'_> {
    Sdes::builder().add_chunk(SdesChunk::builder(ssrc).add_item(SdesItem::builder(
        SdesItem::CNAME,
        truncate_utf8(cname, MAX_TEXT),
    )))
}

/// Appends the compound that ends a leg (RFC 3550 §6.6): an empty RR, the
/// SDES CNAME, and a BYE for `ssrc` with an optional reason (≤ 255 bytes).
pub fn write_bye(out: &mut Vec<u8>, ssrc: u32, cname: &str, reason: Option<&str>) {
    let mut bye = Bye::builder().add_source(ssrc);
    if let Some(reason) = reason {
        bye = bye.reason(truncate_utf8(reason, MAX_TEXT));
    }
    let compound = Compound::builder()
        .add_packet(ReceiverReport::builder(ssrc))
        .add_packet(sdes_cname(ssrc, cname))
        .add_packet(bye);
    append(out, &compound);
}

/// Appends an XR packet (RFC 3611) from `ssrc`: an RRTR block if `rrtr` is
/// given (§4.4, lets a receive-only peer get RTT), one DLRR block with the
/// (SSRC, LRR, DLRR) sub-blocks if any (§4.5), and one VoIP Metrics block
/// per entry (§4.7). A compound must start with an SR/RR, so call this after
/// [`write_report`]. Entries beyond 1000 DLRR sub-blocks or 1000 VoIP
/// blocks are dropped to keep the length field in range.
pub fn write_xr(
    out: &mut Vec<u8>,
    ssrc: u32,
    rrtr: Option<u64>,
    dlrr: &[(u32, u32, u32)],
    voip_metrics: &[(u32, VoipMetrics)],
) {
    let dlrr = dlrr.get(..dlrr.len().min(1000)).unwrap_or_default();
    let voip_metrics = voip_metrics
        .get(..voip_metrics.len().min(1000))
        .unwrap_or_default();
    let dlrr_words = dlrr.len() * 3;
    let words = 1
        + rrtr.map_or(0, |_| 3)
        + if dlrr.is_empty() { 0 } else { 1 + dlrr_words }
        + voip_metrics.len() * 9;
    // At most 1 + 3 + 3001 + 9000 words: always fits the u16 length field.
    let (Ok(length), Ok(dlrr_length)) = (u16::try_from(words), u16::try_from(dlrr_words)) else {
        return;
    };
    out.reserve((words + 1) * 4);
    out.extend_from_slice(&[0x80, PT_XR]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(ntp) = rrtr {
        out.extend_from_slice(&[BT_RRTR, 0, 0, 2]);
        out.extend_from_slice(&ntp.to_be_bytes());
    }
    if !dlrr.is_empty() {
        out.extend_from_slice(&[BT_DLRR, 0]);
        out.extend_from_slice(&dlrr_length.to_be_bytes());
        for &(sub_ssrc, lrr, delay) in dlrr {
            out.extend_from_slice(&sub_ssrc.to_be_bytes());
            out.extend_from_slice(&lrr.to_be_bytes());
            out.extend_from_slice(&delay.to_be_bytes());
        }
    }
    for (source, metrics) in voip_metrics {
        metrics.write_block(out, *source);
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (16.16 fixed point): the
/// LSR and LRR fields of RFC 3550 §6.4.1 and RFC 3611 §4.5.
pub fn ntp_middle32(ntp: u64) -> u32 {
    u32::try_from((ntp >> 16) & 0xFFFF_FFFF).unwrap_or_default()
}

/// Time since the Unix epoch (`SystemTime::duration_since(UNIX_EPOCH)`) as a
/// 32.32 NTP timestamp (seconds since 1900). Seconds wrap at era 1 (2036),
/// as NTP's do.
pub fn ntp_from_unix(d: Duration) -> u64 {
    let seconds = d.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xFFFF_FFFF;
    let fraction = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// A duration in the 1/65536 s units of DLSR and DLRR, saturating.
pub fn ntp_short_from_duration(d: Duration) -> u32 {
    let units = d
        .as_secs()
        .saturating_mul(65_536)
        .saturating_add((u64::from(d.subsec_nanos()) << 16) / 1_000_000_000);
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// RTT from a report block received at `arrival_ntp` (RFC 3550 §6.4.1):
/// A - LSR - DLSR in 1/65536 s. `None` when LSR is 0 (the peer has had no
/// SR from us yet) or the result is negative (clock skew, or a report about
/// an SR we never sent). The 16.16 clock wraps every 18 h, so differences are
/// taken modulo 2^32 and anything above 2^31 counts as negative.
pub fn round_trip(block: &ReportBlock, arrival_ntp: u64) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = ntp_middle32(arrival_ntp)
        .wrapping_sub(block.lsr)
        .wrapping_sub(block.dlsr);
    if rtt > 0x7FFF_FFFF {
        return None;
    }
    Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn block(ssrc: u32, cumulative_lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost,
            extended_highest_seq: 0x0001_0203,
            jitter: 160,
            lsr: 0xB705_2000,
            dlsr: 0x0005_4000,
        }
    }

    fn voip_metrics() -> VoipMetrics {
        VoipMetrics {
            loss_rate: 13,
            discard_rate: 3,
            burst_density: 200,
            gap_density: 2,
            burst_duration_ms: 120,
            gap_duration_ms: 15_000,
            round_trip_delay_ms: 84,
            end_system_delay_ms: 60,
            signal_level_dbm: Some(-20),
            noise_level_dbm: Some(-65),
            rerl_db: None,
            gmin: 16,
            r_factor: Some(88),
            ext_r_factor: None,
            mos_lq: Some(42),
            mos_cq: Some(41),
            rx_config: RxConfig {
                plc: Plc::Enhanced,
                jba: JitterBufferAdaptive::Adaptive,
                jb_rate: 3,
            },
            jb_nominal_ms: 40,
            jb_maximum_ms: 80,
            jb_abs_max_ms: 200,
        }
    }

    /// SR with 2 blocks + SDES + XR (RRTR, DLRR, VoIP) + BYE with a reason.
    fn rich_compound() -> Vec<u8> {
        let mut out = Vec::new();
        let info = SenderInfo {
            ntp_timestamp: 0xB710_8000_1234_5678,
            rtp_timestamp: 160_000,
            packet_count: 1000,
            octet_count: 160_000,
        };
        write_report(
            &mut out,
            0x1111,
            Some(info),
            &[block(1, -3), block(2, 7)],
            "relay@example",
        );
        write_xr(
            &mut out,
            0x1111,
            Some(0xB710_8000_0000_0001),
            &[(2, 0xB705_2000, 0x4000)],
            &[(2, voip_metrics())],
        );
        let mut bye = Vec::new();
        write_bye(&mut bye, 0x1111, "relay@example", Some("hangup"));
        // Skip the empty RR + SDES of the BYE compound: append just the BYE.
        let packets = parse_compound(&bye).unwrap();
        assert_eq!(packets.len(), 3);
        let bye_start = bye.len() - 16;
        out.extend_from_slice(&bye[bye_start..]);
        out
    }

    #[test]
    fn sr_with_two_blocks_round_trip() {
        let info = SenderInfo {
            ntp_timestamp: ntp_from_unix(Duration::from_millis(1_700_000_000_250)),
            rtp_timestamp: 0xDEAD_BEEF,
            packet_count: 12_345,
            octet_count: 1_975_200,
        };
        let reports = [block(0xAAAA_0001, 17), block(0xAAAA_0002, 0)];
        let mut out = vec![0xEE]; // writes append
        write_report(&mut out, 0x5151_5151, Some(info), &reports, "leg-a@sw");
        assert_eq!(out[0], 0xEE);
        let packets = parse_compound(&out[1..]).unwrap();
        assert_eq!(
            packets,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 0x5151_5151,
                    info,
                    reports: reports.to_vec(),
                },
                RtcpPacket::Sdes {
                    chunks: vec![(0x5151_5151, Some("leg-a@sw".to_owned()))],
                },
            ]
        );
        // 28 + 2 * 24 SR, then 4 + 4 + (2 + 8 + 1, padded to 12) SDES.
        assert_eq!(out.len() - 1, 76 + 20);
        assert_eq!(&out[1..3], &[0x82, 200]);
    }

    #[test]
    fn rr_with_no_blocks_round_trip() {
        let mut out = Vec::new();
        write_report(&mut out, 7, None, &[], "c");
        assert_eq!(&out[..8], &[0x80, 201, 0, 1, 0, 0, 0, 7]);
        assert_eq!(
            parse_compound(&out).unwrap(),
            vec![
                RtcpPacket::ReceiverReport {
                    ssrc: 7,
                    reports: vec![],
                },
                RtcpPacket::Sdes {
                    chunks: vec![(7, Some("c".to_owned()))],
                },
            ]
        );
    }

    #[test]
    fn more_than_31_blocks_spill_into_extra_rrs() {
        let reports: Vec<_> = (0..40).map(|i| block(i, i as i32)).collect();
        let mut out = Vec::new();
        write_report(&mut out, 9, Some(SenderInfo::default()), &reports, "x");
        let packets = parse_compound(&out).unwrap();
        assert_eq!(packets.len(), 3);
        let RtcpPacket::SenderReport { reports: first, .. } = &packets[0] else {
            panic!("{packets:?}")
        };
        let RtcpPacket::ReceiverReport {
            ssrc,
            reports: second,
        } = &packets[1]
        else {
            panic!("{packets:?}")
        };
        assert_eq!(*ssrc, 9);
        assert_eq!([first.clone(), second.clone()].concat(), reports);
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed() {
        for (written, read) in [
            (-1, -1),
            (-2, -2),
            (-0x80_0000, -0x80_0000),
            (0x7F_FFFF, 0x7F_FFFF),
            (0, 0),
            (-0x90_0000, -0x80_0000), // clamped
            (i32::MAX, 0x7F_FFFF),    // clamped
        ] {
            let mut out = Vec::new();
            write_report(&mut out, 1, None, &[block(2, written)], "c");
            // The field itself: fraction lost, then 24-bit two's complement.
            let expected = to_24_bits(read).to_be_bytes();
            assert_eq!(&out[12..16], &[25, expected[1], expected[2], expected[3]]);
            let packets = parse_compound(&out).unwrap();
            let RtcpPacket::ReceiverReport { reports, .. } = &packets[0] else {
                panic!("{packets:?}")
            };
            assert_eq!(reports[0].cumulative_lost, read, "wrote {written}");
            assert_eq!(reports[0].fraction_lost, 25);
        }
        assert_eq!(sign_extend_24(0xFF_FFFF), -1);
        assert_eq!(sign_extend_24(0x80_0000), -0x80_0000);
        assert_eq!(sign_extend_24(0x7F_FFFF), 0x7F_FFFF);
    }

    #[test]
    fn rfc3550_rtt_example() {
        // §6.4.1: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000
        // (46853.125 s), DLSR = 0x0005:4000 (5.250 s) -> delay 6.125 s.
        let arrival_ntp = 0xB710_8000u64 << 16;
        assert_eq!(ntp_middle32(arrival_ntp), 0xB710_8000);
        let b = ReportBlock {
            lsr: 0xB705_2000,
            dlsr: 0x0005_4000,
            ..ReportBlock::default()
        };
        assert_eq!(
            round_trip(&b, arrival_ntp),
            Some(Duration::from_millis(6125))
        );
        // No SR received yet.
        let no_sr = ReportBlock { lsr: 0, ..b };
        assert_eq!(round_trip(&no_sr, arrival_ntp), None);
        // Clock skew: the report claims more delay than has elapsed.
        let skewed = ReportBlock {
            dlsr: 0x000C_0000,
            ..b
        };
        assert_eq!(round_trip(&skewed, arrival_ntp), None);
        // Across the 16.16 wrap (every ~18 h): still 1 s.
        let wrapped = ReportBlock {
            lsr: 0xFFFF_0000,
            dlsr: 0,
            ..b
        };
        assert_eq!(
            round_trip(&wrapped, 0x0000_0000_0000_0000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            ntp_short_from_duration(Duration::from_millis(5250)),
            0x0005_4000
        );
        assert_eq!(
            ntp_short_from_duration(Duration::from_secs(1 << 20)),
            u32::MAX
        );
    }

    #[test]
    fn ntp_from_unix_epochs() {
        assert_eq!(ntp_from_unix(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_from_unix(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000
        );
        // 2036-02-07 06:28:16 UTC is NTP era 1, second 0.
        assert_eq!(ntp_from_unix(Duration::from_secs(2_085_978_496)), 0);
        assert_eq!(
            ntp_middle32(ntp_from_unix(Duration::from_millis(250))),
            ((NTP_UNIX_OFFSET as u32) << 16) | 0x4000
        );
    }

    #[test]
    fn xr_voip_metrics_from_hand_built_bytes() {
        #[rustfmt::skip]
        let data = vec![
            // RR, no blocks.
            0x80, 201, 0, 1, 0xAB, 0xCD, 0xEF, 0x01,
            // XR: SSRC + 3 + 4 + 9 + 2 words of blocks = 20 words, length 19.
            0x80, 207, 0, 19, 0xAB, 0xCD, 0xEF, 0x01,
            // RRTR (BT=4): NTP timestamp.
            4, 0, 0, 2, 0xB7, 0x10, 0x80, 0x00, 0x12, 0x34, 0x56, 0x78,
            // DLRR (BT=5), one sub-block.
            5, 0, 0, 3, 0, 0, 0, 9, 0xB7, 0x05, 0x20, 0x00, 0x00, 0x05, 0x40, 0x00,
            // VoIP Metrics (BT=7) for SSRC 0x01020304.
            7, 0, 0, 8, 1, 2, 3, 4,
            0x0D, 0x03, 0xC8, 0x02, // loss 13/256, discard 3/256, burst 200/256, gap 2/256
            0x00, 0x78, 0x3A, 0x98, // burst 120 ms, gap 15000 ms
            0x00, 0x54, 0x00, 0x3C, // RTT 84 ms, end system 60 ms
            0xEC, 0xBF, 0x7F, 0x10, // signal -20 dBm, noise -65 dBm, RERL n/a, Gmin 16
            0x58, 0x7F, 0x2A, 0x29, // R 88, ext R n/a, MOS-LQ 4.2, MOS-CQ 4.1
            0xB3, 0x00, 0x00, 0x28, // PLC enhanced, JBA adaptive, rate 3; JB nominal 40
            0x00, 0x50, 0x00, 0xC8, // JB max 80, abs max 200
            // An unknown block type (BT=42, 1 word body): skipped.
            42, 0xFF, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        let packets = parse_compound(&data).unwrap();
        assert_eq!(packets.len(), 2);
        let expected = RtcpPacket::Xr {
            ssrc: 0xABCD_EF01,
            voip_metrics: vec![(0x0102_0304, voip_metrics())],
            rrtr: Some(0xB710_8000_1234_5678),
            dlrr: vec![(9, 0xB705_2000, 0x0005_4000)],
        };
        assert_eq!(packets[1], expected);
        let RtcpPacket::Xr {
            voip_metrics: m, ..
        } = &packets[1]
        else {
            unreachable!()
        };
        assert_eq!(m[0].1.mos_lq_score(), Some(4.2));
        assert_eq!(m[0].1.mos_cq_score(), Some(4.1));

        assert_eq!(data.len(), 88);
        // A VoIP block with the wrong length is an error, not a misread.
        let mut short = data.clone();
        short[47] = 7; // 32 bytes instead of 36
        assert_eq!(
            parse_compound(&short),
            Err(RtcpError::XrBlock { block_type: 7 })
        );
        // A block running past the end of the XR packet.
        let mut over = data.clone();
        over[83] = 2;
        assert_eq!(
            parse_compound(&over),
            Err(RtcpError::XrBlock { block_type: 42 })
        );
        // DLRR that is not a whole number of sub-blocks; RRTR of the wrong size.
        let mut dlrr = data.clone();
        dlrr[28..44].copy_from_slice(&[5, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 42, 0, 0, 0]);
        assert_eq!(
            parse_compound(&dlrr),
            Err(RtcpError::XrBlock { block_type: 5 })
        );
        let mut rrtr = data.clone();
        rrtr[16..28].copy_from_slice(&[4, 0, 0, 1, 0, 0, 0, 0, 42, 0, 0, 0]);
        assert_eq!(
            parse_compound(&rrtr),
            Err(RtcpError::XrBlock { block_type: 4 })
        );
    }

    #[test]
    fn xr_write_parse_round_trip() {
        let mut out = Vec::new();
        write_report(&mut out, 5, None, &[], "c");
        write_xr(
            &mut out,
            5,
            Some(42),
            &[(1, 2, 3), (4, 5, 6)],
            &[(7, voip_metrics()), (8, VoipMetrics::default())],
        );
        let packets = parse_compound(&out).unwrap();
        assert_eq!(
            packets[2],
            RtcpPacket::Xr {
                ssrc: 5,
                voip_metrics: vec![(7, voip_metrics()), (8, VoipMetrics::default())],
                rrtr: Some(42),
                dlrr: vec![(1, 2, 3), (4, 5, 6)],
            }
        );
        // An XR with no blocks at all is fine too.
        let mut empty = Vec::new();
        write_report(&mut empty, 5, None, &[], "c");
        write_xr(&mut empty, 5, None, &[], &[]);
        assert_eq!(
            parse_compound(&empty).unwrap()[2],
            RtcpPacket::Xr {
                ssrc: 5,
                voip_metrics: vec![],
                rrtr: None,
                dlrr: vec![],
            }
        );
    }

    #[test]
    fn bye_with_reason() {
        let mut out = Vec::new();
        write_bye(&mut out, 0x0BAD_CAFE, "leg@sw", Some("call ended"));
        assert_eq!(
            parse_compound(&out).unwrap(),
            vec![
                RtcpPacket::ReceiverReport {
                    ssrc: 0x0BAD_CAFE,
                    reports: vec![],
                },
                RtcpPacket::Sdes {
                    chunks: vec![(0x0BAD_CAFE, Some("leg@sw".to_owned()))],
                },
                RtcpPacket::Bye {
                    ssrcs: vec![0x0BAD_CAFE],
                    reason: Some("call ended".to_owned()),
                },
            ]
        );
        let mut out = Vec::new();
        write_bye(&mut out, 1, "c", None);
        assert_eq!(
            parse_compound(&out).unwrap()[2],
            RtcpPacket::Bye {
                ssrcs: vec![1],
                reason: None,
            }
        );
        // A reason longer than 255 bytes is cut at a char boundary.
        let long = "é".repeat(200);
        let mut out = Vec::new();
        write_bye(&mut out, 1, &long, Some(&long));
        let packets = parse_compound(&out).unwrap();
        let RtcpPacket::Bye {
            reason: Some(reason),
            ..
        } = &packets[2]
        else {
            panic!("{packets:?}")
        };
        assert_eq!(reason.len(), 254);
        assert_eq!(
            packets[1],
            RtcpPacket::Sdes {
                chunks: vec![(1, Some("é".repeat(127)))],
            }
        );
    }

    #[test]
    fn app_and_unknown_types() {
        let mut data = Vec::new();
        write_report(&mut data, 3, None, &[], "c");
        data.extend_from_slice(&[
            0x81, 204, 0, 3, 0, 0, 0, 3, b'T', b'E', b'S', b'T', 1, 2, 3, 4,
        ]);
        // RTPFB generic NACK (RFC 4585): framed, not read.
        data.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 10, 0, 0]);
        let packets = parse_compound(&data).unwrap();
        assert_eq!(
            packets[2],
            RtcpPacket::App {
                ssrc: 3,
                name: *b"TEST",
                data: vec![1, 2, 3, 4],
            }
        );
        assert_eq!(packets[3], RtcpPacket::Other { packet_type: 205 });
    }

    #[test]
    fn compound_starting_with_sdes_is_rejected() {
        let mut report = Vec::new();
        write_report(&mut report, 1, None, &[], "c");
        let sdes = &report[8..];
        assert_eq!(sdes[1], PT_SDES);
        assert_eq!(
            parse_compound(sdes),
            Err(RtcpError::FirstNotReport { packet_type: 202 })
        );
        let mut bye = Vec::new();
        write_bye(&mut bye, 1, "c", None);
        assert_eq!(
            parse_compound(&bye[bye.len() - 8..]),
            Err(RtcpError::FirstNotReport { packet_type: 203 })
        );
    }

    #[test]
    fn validity_checks_of_appendix_a2() {
        let good = rich_compound();
        assert_eq!(parse_compound(&good).unwrap().len(), 4);
        assert_eq!(parse_compound(&[]), Err(RtcpError::Truncated { offset: 0 }));

        // Version 1 in the second packet.
        let mut v = good.clone();
        v[76] = (v[76] & 0x3F) | 0x40;
        assert_eq!(parse_compound(&v), Err(RtcpError::Version { version: 1 }));

        // Lengths must add up: one extra byte, one missing byte.
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            parse_compound(&long),
            Err(RtcpError::Truncated { offset: good.len() })
        );
        assert!(matches!(
            parse_compound(&good[..good.len() - 1]),
            Err(RtcpError::Truncated { .. })
        ));

        // Padding on a packet that is not the last.
        let mut p = good.clone();
        p[0] |= 0x20;
        assert_eq!(parse_compound(&p), Err(RtcpError::Padding { offset: 0 }));
    }

    #[test]
    fn padding_in_the_last_packet() {
        let mut data = Vec::new();
        write_report(&mut data, 1, None, &[], "c");
        // BYE with reason "ok" then 4 octets of padding (count 4).
        let padded_bye = [0xA1, 203, 0, 3, 0, 0, 0, 1, 2, b'o', b'k', 0, 0, 0, 0, 4];
        let mut ok = data.clone();
        ok.extend_from_slice(&padded_bye);
        assert_eq!(
            parse_compound(&ok).unwrap()[2],
            RtcpPacket::Bye {
                ssrcs: vec![1],
                reason: Some("ok".to_owned()),
            }
        );
        // Padded SDES: the padding is not read as a chunk.
        let mut sdes = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        sdes.extend_from_slice(&[0xA1, 202, 0, 3, 0, 0, 0, 1, 1, 1, b'c', 0, 0, 0, 0, 4]);
        assert_eq!(
            parse_compound(&sdes).unwrap()[1],
            RtcpPacket::Sdes {
                chunks: vec![(1, Some("c".to_owned()))],
            }
        );
        for count in [0u8, 3, 13, 255] {
            let mut bad = ok.clone();
            *bad.last_mut().unwrap() = count;
            assert_eq!(
                parse_compound(&bad),
                Err(RtcpError::Padding { offset: data.len() }),
                "padding count {count}"
            );
        }
        // Padding a lone RR is allowed: it is the last packet.
        let rr = [0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
        assert_eq!(
            parse_compound(&rr).unwrap(),
            vec![RtcpPacket::ReceiverReport {
                ssrc: 1,
                reports: vec![],
            }]
        );
        // APP whose padding would eat its fixed part.
        let app = [
            0x80, 201, 0, 1, 0, 0, 0, 1, 0xA0, 204, 0, 3, 0, 0, 0, 1, b'A', b'B', b'C', b'D', 0, 0,
            0, 8,
        ];
        assert_eq!(
            parse_compound(&app),
            Err(RtcpError::Malformed { packet_type: 204 })
        );
    }

    #[test]
    fn every_prefix_is_an_error_or_a_shorter_compound() {
        let good = rich_compound();
        // Packet boundaries, from the length fields.
        let mut boundaries = vec![];
        let mut at = 0;
        while at < good.len() {
            at += (usize::from(u16::from_be_bytes([good[at + 2], good[at + 3]])) + 1) * 4;
            boundaries.push(at);
        }
        assert_eq!(boundaries, [76, 100, 172, 188]);
        for cut in 0..good.len() {
            let result = parse_compound(&good[..cut]);
            if boundaries.contains(&cut) && cut > 0 {
                assert!(result.is_ok(), "cut {cut}: {result:?}");
            } else {
                assert!(result.is_err(), "cut {cut}");
            }
        }
        // Suffixes (no SR/RR first, or mid-packet) never panic either.
        for start in 0..good.len() {
            let _ = parse_compound(&good[start..]);
        }
    }

    #[test]
    fn random_bit_flips_never_panic() {
        let good = rich_compound();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let mut ok = 0usize;
        for _ in 0..20_000 {
            let mut data = good.clone();
            for _ in 0..rng.gen_range(1..=4) {
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            if parse_compound(&data).is_ok() {
                ok += 1;
            }
        }
        // Most flips land in values, not framing: many still parse.
        assert!(ok > 1000, "{ok}");
        // A valid empty RR, then a well-framed packet of every type the
        // parsers read, with random contents (count, padding bit, body).
        for _ in 0..20_000 {
            let words = rng.gen_range(1..24u16);
            let mut data = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
            data.push(0x80 | (rng.gen::<u8>() & 0x3F));
            data.push(200 + rng.gen_range(0..8));
            data.extend_from_slice(&(words - 1).to_be_bytes());
            for _ in 4..usize::from(words) * 4 {
                // Small values make plausible counts and lengths.
                data.push(if rng.gen() {
                    rng.gen_range(0..12)
                } else {
                    rng.gen()
                });
            }
            let _ = parse_compound(&data);
        }
    }

    #[test]
    fn sdes_priv_items_are_skipped_without_panic() {
        // PRIV item whose prefix length points past the item (rtcp-types
        // would panic in `value()` on it): we never call `value()` on PRIV.
        let data = [
            0x80, 201, 0, 1, 0, 0, 0, 1, // RR
            0x81, 202, 0, 3, 0, 0, 0, 1, // SDES, one chunk
            8, 1, 2, 1, 1, b'x', 0, 0, // PRIV len 1 prefix len 2; CNAME "x"; end
        ];
        assert_eq!(
            parse_compound(&data).unwrap()[1],
            RtcpPacket::Sdes {
                chunks: vec![(1, Some("x".to_owned()))],
            }
        );
    }

    #[test]
    fn labels_are_distinct() {
        let errors = [
            RtcpError::Truncated { offset: 0 },
            RtcpError::Version { version: 0 },
            RtcpError::FirstNotReport { packet_type: 0 },
            RtcpError::Padding { offset: 0 },
            RtcpError::Malformed { packet_type: 0 },
            RtcpError::XrBlock { block_type: 0 },
        ];
        let mut labels: Vec<_> = errors.iter().map(|e| e.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), errors.len());
    }
}
