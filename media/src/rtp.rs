//! RTP packets (RFC 3550 §5.1), parsed with `rtp-types` (zero-copy), and the
//! in-place header rewrite the relay does on every packet.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use rtp_types::{RtpPacket, RtpParseError};

/// Why a packet was not accepted as RTP; the label is the metrics reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("not RTP version 2")]
    Version,
    #[error("shorter than its header, CSRC list, extension or padding say")]
    Truncated,
    #[error("bad padding length")]
    Padding,
    #[error("payload type in the RTCP range (RFC 5761 §4)")]
    RtcpPayloadType,
}

impl RtpError {
    pub fn label(self) -> &'static str {
        match self {
            RtpError::Version => "rtp_version",
            RtpError::Truncated => "rtp_truncated",
            RtpError::Padding => "rtp_padding",
            RtpError::RtcpPayloadType => "rtp_payload_type",
        }
    }
}

/// The fields of an RTP header the relay uses, plus where the payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Byte offset of the payload (after CSRCs and extension).
    pub payload_offset: usize,
    /// Payload length, without padding.
    pub payload_len: usize,
}

impl RtpHeader {
    /// The payload of `packet`, which must be the buffer this header came from.
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet
            .get(self.payload_offset..self.payload_offset + self.payload_len)
            .unwrap_or_default()
    }
}

/// Parses and validates an RTP packet.
pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
    let p = RtpPacket::parse(packet).map_err(|e| match e {
        RtpParseError::UnsupportedVersion(_) => RtpError::Version,
        RtpParseError::Truncated { .. } => RtpError::Truncated,
        RtpParseError::PaddingInvalid(_) => RtpError::Padding,
    })?;
    let payload_type = p.payload_type();
    // With rtcp-mux, PT 72-76 (with M set: 200-204) is RTCP (RFC 5761 §4).
    if (72..=76).contains(&payload_type) {
        return Err(RtpError::RtcpPayloadType);
    }
    Ok(RtpHeader {
        marker: p.marker_bit(),
        payload_type,
        sequence: p.sequence_number(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
        payload_offset: p.payload_offset(),
        payload_len: p.payload_len(),
    })
}

/// RFC 5761 §4: on a muxed port, a second byte in 192..=223 (RTCP packet
/// types 192-223) means RTCP; everything else is RTP.
pub fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet.get(1), Some(pt) if (192..=223).contains(pt)) && packet.len() >= 8
}

/// Rewrites SSRC, sequence number, timestamp and payload type in place (the
/// relay's per-packet work: no allocation, no copy). Returns false when the
/// buffer is too short to be an RTP packet.
pub fn rewrite(
    packet: &mut [u8],
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) -> bool {
    let Some(header) = packet.get_mut(..12) else {
        return false;
    };
    let [_, m_pt, seq @ .., ts0, ts1, ts2, ts3, s0, s1, s2, s3] = header else {
        return false;
    };
    *m_pt = (*m_pt & 0x80) | (payload_type & 0x7F);
    let [q0, q1, ..] = seq else { return false };
    [*q0, *q1] = sequence.to_be_bytes();
    [*ts0, *ts1, *ts2, *ts3] = timestamp.to_be_bytes();
    [*s0, *s1, *s2, *s3] = ssrc.to_be_bytes();
    true
}

/// Writes a minimal RTP packet (no CSRC, no extension) into `out`.
pub fn write(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.reserve(12 + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7F));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Vec<u8> {
        let mut p = Vec::new();
        write(
            &mut p,
            true,
            8,
            0xBEEF,
            0x0102_0304,
            0xCAFE_BABE,
            &[0xD5; 160],
        );
        p
    }

    #[test]
    fn write_then_parse() {
        let p = packet();
        let h = parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (8, 0xBEEF, 0x0102_0304, 0xCAFE_BABE)
        );
        assert_eq!(h.payload(&p).len(), 160);
    }

    #[test]
    fn rewrite_in_place_keeps_marker_and_payload() {
        let mut p = packet();
        assert!(rewrite(&mut p, 96, 7, 8, 9));
        let h = parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (96, 7, 8, 9)
        );
        assert_eq!(h.payload(&p), &[0xD5; 160][..]);
        assert!(!rewrite(&mut [0u8; 11], 0, 0, 0, 0));
    }

    #[test]
    fn csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, PT 0; one CSRC; extension of one word; 4 payload bytes; 2 padding bytes.
        let p = [
            0xB1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, // header
            0, 0, 0, 4, // CSRC
            0xBE, 0xDE, 0, 1, 1, 2, 3, 4, // extension header + 1 word
            9, 9, 9, 9, // payload
            0, 2, // padding (last byte = count)
        ];
        let h = parse(&p).unwrap();
        assert_eq!(h.payload(&p), &[9, 9, 9, 9]);
    }

    #[test]
    fn malformed_packets_are_errors_never_panics() {
        let good = packet();
        for cut in 0..12 {
            assert!(parse(&good[..cut]).is_err());
        }
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert_eq!(parse(&v1), Err(RtpError::Version));
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 0; // padding count 0 is invalid
        assert!(parse(&pad).is_err());
        let mut rtcp = good.clone();
        rtcp[1] = 72;
        assert_eq!(parse(&rtcp), Err(RtpError::RtcpPayloadType));
        // Every prefix and a few bit flips never panic.
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        for i in 0..16 {
            let mut f = good.clone();
            f[i % 12] ^= 0xFF;
            let _ = parse(&f);
        }
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x81, 200, 0, 6, 0, 0, 0, 1]));
        assert!(!is_rtcp(&packet()));
    }
}
