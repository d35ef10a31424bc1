//! Opus RTP payloads (RFC 7587): one Opus packet per RTP payload, checked
//! against the packet rules of RFC 6716 §3 and passed through unchanged.
//!
//! TOC byte (RFC 6716 §3.1):
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! | config  |s| c |
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! `config` gives mode, audio bandwidth and frame duration (Table 2), `s`
//! stereo, `c` the frame count code: 0 = one frame, 1 = two frames of equal
//! size, 2 = two frames with the first one's length coded, 3 = a frame count
//! byte follows (§3.2.5):
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |v|p|     M     |   v = VBR, p = padding present, M = frame count
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! Frame lengths (§3.2.1) take one byte (0..=251) or two (`first + 4 *
//! second` when the first is 252..=255), so no frame is over 1275 bytes.
//!
//! The RTP timestamp of Opus always runs at 48 kHz whatever the bandwidth
//! (RFC 7587 §4.1), hence [`OpusPacket::samples_48k`].
//!
//! A 0-byte RTP payload is not an Opus packet (R1), but the decoder treats
//! it as a lost packet and some senders use it during DTX: [`parse_payload`]
//! returns `Ok(None)` for it so the relay can forward it without counting
//! it as malformed; [`parse`] refuses it.

/// Why an Opus packet was refused; [`OpusError::label`] is the metrics reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    #[error("empty packet (RFC 6716 §3.4 R1)")]
    Empty,
    #[error("frame of {len} bytes, over 1275 (R2)")]
    FrameTooLong { len: usize },
    #[error("code 1 packet with {len} bytes after the TOC, not even (R3)")]
    Code1Length { len: usize },
    #[error("frame length runs past the end of the packet (R4, R7)")]
    FrameLength,
    #[error("code 3 packet without a frame count byte (R6)")]
    MissingFrameCount,
    #[error("code 3 packet with no frames (R5)")]
    NoFrames,
    #[error("code 3 packet of {duration_us} µs, over 120 ms (R5)")]
    Duration { duration_us: u32 },
    #[error("padding longer than the packet (R6, R7)")]
    Padding,
    #[error("CBR code 3 packet: {len} bytes do not split into {frames} frames (R6)")]
    CbrLength { len: usize, frames: u8 },
}

impl OpusError {
    pub fn label(self) -> &'static str {
        match self {
            OpusError::Empty => "opus_empty",
            OpusError::FrameTooLong { .. } => "opus_frame_too_long",
            OpusError::Code1Length { .. } => "opus_code1_length",
            OpusError::FrameLength => "opus_frame_length",
            OpusError::MissingFrameCount => "opus_frame_count",
            OpusError::NoFrames => "opus_no_frames",
            OpusError::Duration { .. } => "opus_duration",
            OpusError::Padding => "opus_padding",
            OpusError::CbrLength { .. } => "opus_cbr_length",
        }
    }
}

/// Coding mode of a configuration (RFC 6716 §3.1 Table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpusMode {
    Silk,
    Hybrid,
    Celt,
}

/// Audio bandwidth (RFC 6716 §2 Table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bandwidth {
    /// NB, 4 kHz audio bandwidth, 8 kHz effective sample rate.
    Narrowband,
    /// MB, 6 kHz, 12 kHz.
    Mediumband,
    /// WB, 8 kHz, 16 kHz.
    Wideband,
    /// SWB, 12 kHz, 24 kHz.
    SuperWideband,
    /// FB, 20 kHz, 48 kHz.
    Fullband,
}

impl Bandwidth {
    /// Effective sample rate (RFC 6716 §2 Table 1).
    pub fn sample_rate(self) -> u32 {
        match self {
            Bandwidth::Narrowband => 8000,
            Bandwidth::Mediumband => 12000,
            Bandwidth::Wideband => 16000,
            Bandwidth::SuperWideband => 24000,
            Bandwidth::Fullband => 48000,
        }
    }
}

/// What the TOC and framing of a valid packet say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusPacket {
    /// TOC configuration number, 0..=31.
    pub config: u8,
    pub mode: OpusMode,
    pub bandwidth: Bandwidth,
    /// Duration of each frame: 2500, 5000, 10000, 20000, 40000 or 60000.
    pub frame_duration_us: u32,
    pub stereo: bool,
    /// Frame count code `c`, 0..=3.
    pub code: u8,
    /// Frames in the packet, 1..=48.
    pub frame_count: u8,
    /// `frame_count * frame_duration_us`, at most 120 ms.
    pub duration_us: u32,
}

impl OpusPacket {
    /// Duration in 48 kHz samples: the RTP timestamp step (RFC 7587 §4.1).
    pub fn samples_48k(&self) -> u32 {
        self.duration_us / 1000 * 48 + self.duration_us % 1000 * 48 / 1000
    }
}

/// Longest frame (RFC 6716 §3.2.1, R2).
const MAX_FRAME: usize = 1275;
/// Longest packet duration (R5).
const MAX_DURATION_US: u32 = 120_000;

/// Mode, bandwidth and frame duration of a TOC configuration (Table 2).
pub fn config(config: u8) -> (OpusMode, Bandwidth, u32) {
    const SILK_US: [u32; 4] = [10_000, 20_000, 40_000, 60_000];
    const HYBRID_US: [u32; 2] = [10_000, 20_000];
    const CELT_US: [u32; 4] = [2_500, 5_000, 10_000, 20_000];
    let config = config & 0x1F;
    let (mode, bandwidth) = match config {
        0..=3 => (OpusMode::Silk, Bandwidth::Narrowband),
        4..=7 => (OpusMode::Silk, Bandwidth::Mediumband),
        8..=11 => (OpusMode::Silk, Bandwidth::Wideband),
        12..=13 => (OpusMode::Hybrid, Bandwidth::SuperWideband),
        14..=15 => (OpusMode::Hybrid, Bandwidth::Fullband),
        16..=19 => (OpusMode::Celt, Bandwidth::Narrowband),
        20..=23 => (OpusMode::Celt, Bandwidth::Wideband),
        24..=27 => (OpusMode::Celt, Bandwidth::SuperWideband),
        _ => (OpusMode::Celt, Bandwidth::Fullband),
    };
    let index = usize::from(config);
    let duration = match mode {
        OpusMode::Silk => SILK_US.get(index % 4),
        OpusMode::Hybrid => HYBRID_US.get(index % 2),
        OpusMode::Celt => CELT_US.get(index % 4),
    };
    (mode, bandwidth, duration.copied().unwrap_or(20_000))
}

/// An RTP payload: `Ok(None)` for an empty one (see the module docs),
/// otherwise [`parse`].
pub fn parse_payload(payload: &[u8]) -> Result<Option<OpusPacket>, OpusError> {
    if payload.is_empty() {
        return Ok(None);
    }
    parse(payload).map(Some)
}

/// Parses the TOC and checks the framing against RFC 6716 §3.4 R1-R7.
pub fn parse(packet: &[u8]) -> Result<OpusPacket, OpusError> {
    let (&toc, rest) = packet.split_first().ok_or(OpusError::Empty)?;
    let config_number = toc >> 3;
    let (mode, bandwidth, frame_duration_us) = config(config_number);
    let stereo = toc & 0x04 != 0;
    let code = toc & 0x03;
    let frame_count = match code {
        0 => {
            check_frame(rest.len())?;
            1
        }
        1 => {
            // R3: two frames of (N-1)/2 bytes.
            if !rest.len().is_multiple_of(2) {
                return Err(OpusError::Code1Length { len: rest.len() });
            }
            check_frame(rest.len() / 2)?;
            2
        }
        2 => {
            // R4: a valid length for frame 1 that fits; frame 2 is the rest.
            let (first, rest) = frame_length(rest)?;
            let second = rest
                .len()
                .checked_sub(first)
                .ok_or(OpusError::FrameLength)?;
            check_frame(second)?;
            2
        }
        _ => code3(rest, frame_duration_us)?,
    };
    Ok(OpusPacket {
        config: config_number,
        mode,
        bandwidth,
        frame_duration_us,
        stereo,
        code,
        frame_count,
        duration_us: frame_duration_us * u32::from(frame_count),
    })
}

/// The bytes after the TOC of a code 3 packet; returns the frame count.
fn code3(rest: &[u8], frame_duration_us: u32) -> Result<u8, OpusError> {
    let (&count, mut rest) = rest.split_first().ok_or(OpusError::MissingFrameCount)?;
    let vbr = count & 0x80 != 0;
    let padded = count & 0x40 != 0;
    let frames = count & 0x3F;
    // R5: at least one frame, at most 120 ms.
    if frames == 0 {
        return Err(OpusError::NoFrames);
    }
    let duration_us = frame_duration_us * u32::from(frames);
    if duration_us > MAX_DURATION_US {
        return Err(OpusError::Duration { duration_us });
    }
    // Padding length: each 255 adds 254 bytes and another length byte.
    let mut padding = 0usize;
    if padded {
        loop {
            let (&byte, tail) = rest.split_first().ok_or(OpusError::Padding)?;
            rest = tail;
            if byte == 255 {
                padding += 254;
            } else {
                padding += usize::from(byte);
                break;
            }
        }
    }
    // R6/R7: the trailing padding must fit.
    let mut data = rest.len().checked_sub(padding).ok_or(OpusError::Padding)?;
    if vbr {
        // R7: M-1 coded lengths, then those frames, then the last one.
        let mut coded = 0usize;
        for _ in 1..frames {
            let (len, tail) = frame_length(rest)?;
            data = data
                .checked_sub(rest.len() - tail.len())
                .ok_or(OpusError::FrameLength)?;
            rest = tail;
            coded += len;
        }
        let last = data.checked_sub(coded).ok_or(OpusError::FrameLength)?;
        check_frame(last)?;
    } else {
        // R6: (N-2-P) is a multiple of M.
        let m = usize::from(frames);
        if !data.is_multiple_of(m) {
            return Err(OpusError::CbrLength { len: data, frames });
        }
        check_frame(data / m)?;
    }
    Ok(frames)
}

/// R2 for a frame whose length is implied.
fn check_frame(len: usize) -> Result<(), OpusError> {
    if len > MAX_FRAME {
        return Err(OpusError::FrameTooLong { len });
    }
    Ok(())
}

/// A coded frame length (§3.2.1) and the bytes after it. A coded length is
/// at most 255 + 4 * 255 = 1275, so it always meets R2.
fn frame_length(data: &[u8]) -> Result<(usize, &[u8]), OpusError> {
    match data {
        [first @ 0..=251, rest @ ..] => Ok((usize::from(*first), rest)),
        [first, second, rest @ ..] => Ok((usize::from(*first) + 4 * usize::from(*second), rest)),
        _ => Err(OpusError::FrameLength),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn toc(config: u8, stereo: bool, code: u8) -> u8 {
        (config << 3) | (u8::from(stereo) << 2) | code
    }

    #[test]
    fn toc_configurations_follow_table_2() {
        let want: [(OpusMode, Bandwidth, [u32; 4]); 8] = [
            (
                OpusMode::Silk,
                Bandwidth::Narrowband,
                [10_000, 20_000, 40_000, 60_000],
            ),
            (
                OpusMode::Silk,
                Bandwidth::Mediumband,
                [10_000, 20_000, 40_000, 60_000],
            ),
            (
                OpusMode::Silk,
                Bandwidth::Wideband,
                [10_000, 20_000, 40_000, 60_000],
            ),
            (
                OpusMode::Hybrid,
                Bandwidth::SuperWideband,
                [10_000, 20_000, 10_000, 20_000],
            ),
            (
                OpusMode::Celt,
                Bandwidth::Narrowband,
                [2_500, 5_000, 10_000, 20_000],
            ),
            (
                OpusMode::Celt,
                Bandwidth::Wideband,
                [2_500, 5_000, 10_000, 20_000],
            ),
            (
                OpusMode::Celt,
                Bandwidth::SuperWideband,
                [2_500, 5_000, 10_000, 20_000],
            ),
            (
                OpusMode::Celt,
                Bandwidth::Fullband,
                [2_500, 5_000, 10_000, 20_000],
            ),
        ];
        for c in 0..32u8 {
            let (mode, bw, us) = config(c);
            let row = usize::from(c / 4);
            let (wmode, mut wbw, wus) = want[row];
            // Configs 12-15 split into SWB (12, 13) and FB (14, 15).
            if c == 14 || c == 15 {
                wbw = Bandwidth::Fullband;
            }
            assert_eq!(
                (mode, bw, us),
                (wmode, wbw, wus[usize::from(c % 4)]),
                "config {c}"
            );
        }
        assert_eq!(Bandwidth::Fullband.sample_rate(), 48000);
    }

    #[test]
    fn code_0_single_frame() {
        // Config 1 (SILK NB 20 ms), mono: a typical VoIP packet.
        let mut p = vec![toc(1, false, 0)];
        p.extend([0xAB; 40]);
        let o = parse(&p).unwrap();
        assert_eq!(
            o,
            OpusPacket {
                config: 1,
                mode: OpusMode::Silk,
                bandwidth: Bandwidth::Narrowband,
                frame_duration_us: 20_000,
                stereo: false,
                code: 0,
                frame_count: 1,
                duration_us: 20_000,
            }
        );
        assert_eq!(o.samples_48k(), 960);
        // A TOC alone is a valid packet with one empty frame (DTX).
        assert_eq!(parse(&[toc(31, true, 0)]).unwrap().frame_count, 1);
        assert!(parse(&[toc(31, true, 0)]).unwrap().stereo);
    }

    #[test]
    fn r1_at_least_one_byte() {
        assert_eq!(parse(&[]), Err(OpusError::Empty));
        assert_eq!(parse_payload(&[]), Ok(None));
        assert_eq!(
            parse_payload(&[toc(16, false, 0)])
                .unwrap()
                .unwrap()
                .samples_48k(),
            120
        );
    }

    #[test]
    fn r2_no_implicit_frame_over_1275_bytes() {
        let mut p = vec![toc(28, false, 0)];
        p.resize(1 + 1275, 0);
        assert!(parse(&p).is_ok());
        p.push(0);
        assert_eq!(parse(&p), Err(OpusError::FrameTooLong { len: 1276 }));
        // Code 1: two frames of 1275 fit, of 1276 do not.
        let mut p = vec![toc(28, false, 1)];
        p.resize(1 + 2 * 1275, 0);
        assert!(parse(&p).is_ok());
        p.resize(1 + 2 * 1276, 0);
        assert_eq!(parse(&p).unwrap_err().label(), "opus_frame_too_long");
        // Code 2: the implied second frame.
        let mut p = vec![toc(28, false, 2), 0];
        p.resize(2 + 1276, 0);
        assert_eq!(parse(&p), Err(OpusError::FrameTooLong { len: 1276 }));
    }

    #[test]
    fn r3_code_1_needs_an_odd_total_length() {
        assert_eq!(parse(&[toc(1, false, 1), 1, 2]).unwrap().frame_count, 2);
        assert_eq!(parse(&[toc(1, false, 1)]).unwrap().duration_us, 40_000);
        assert_eq!(
            parse(&[toc(1, false, 1), 1, 2, 3]),
            Err(OpusError::Code1Length { len: 3 })
        );
    }

    #[test]
    fn r4_code_2_frame_length_fits() {
        // One-byte length 3, then 3 + 2 bytes.
        let o = parse(&[toc(9, false, 2), 3, 1, 1, 1, 2, 2]).unwrap();
        assert_eq!((o.frame_count, o.duration_us), (2, 40_000));
        // Exactly fits, second frame empty.
        assert!(parse(&[toc(9, false, 2), 2, 1, 1]).is_ok());
        // Too long for what follows.
        assert_eq!(
            parse(&[toc(9, false, 2), 3, 1, 1]),
            Err(OpusError::FrameLength)
        );
        // No length byte, or a two-byte length cut short.
        assert_eq!(parse(&[toc(9, false, 2)]), Err(OpusError::FrameLength));
        assert_eq!(parse(&[toc(9, false, 2), 252]), Err(OpusError::FrameLength));
        // Two-byte length: 252 + 4 * 1 = 256.
        let mut p = vec![toc(9, false, 2), 252, 1];
        p.resize(3 + 256, 0);
        assert!(parse(&p).is_ok());
        p.pop();
        assert_eq!(parse(&p), Err(OpusError::FrameLength));
    }

    #[test]
    fn r5_code_3_one_frame_to_120_ms() {
        // CBR, M = 0.
        assert_eq!(parse(&[toc(1, false, 3), 0]), Err(OpusError::NoFrames));
        // 6 x 20 ms = 120 ms is the limit; 7 is over.
        let ok = parse(&[toc(1, false, 3), 6]).unwrap();
        assert_eq!(
            (ok.frame_count, ok.duration_us, ok.samples_48k()),
            (6, 120_000, 5760)
        );
        assert_eq!(
            parse(&[toc(1, false, 3), 7]),
            Err(OpusError::Duration {
                duration_us: 140_000
            })
        );
        // 48 x 2.5 ms = 120 ms, the most frames a packet can hold.
        assert_eq!(parse(&[toc(16, false, 3), 48]).unwrap().frame_count, 48);
        assert_eq!(
            parse(&[toc(16, false, 3), 49]).unwrap_err().label(),
            "opus_duration"
        );
        // 3 x 60 ms.
        assert_eq!(
            parse(&[toc(3, false, 3), 3]).unwrap_err().label(),
            "opus_duration"
        );
    }

    #[test]
    fn r6_cbr_code_3() {
        // N >= 2.
        assert_eq!(
            parse(&[toc(1, false, 3)]),
            Err(OpusError::MissingFrameCount)
        );
        // 3 frames of 2 bytes.
        assert!(parse(&[toc(1, false, 3), 3, 1, 1, 2, 2, 3, 3]).is_ok());
        assert_eq!(
            parse(&[toc(1, false, 3), 3, 1, 1, 2, 2, 3]),
            Err(OpusError::CbrLength { len: 5, frames: 3 })
        );
        // Padding: p = 1, length 2, 2 frames of 1 byte, 2 padding bytes.
        assert!(parse(&[toc(1, false, 3), 0x42, 2, 1, 1, 0, 0]).is_ok());
        // Padding longer than the packet.
        assert_eq!(
            parse(&[toc(1, false, 3), 0x42, 5, 1, 1, 0, 0]),
            Err(OpusError::Padding)
        );
        // Padding length bytes missing.
        assert_eq!(parse(&[toc(1, false, 3), 0x42]), Err(OpusError::Padding));
        // 255 = 254 bytes of padding and another length byte.
        let mut p = vec![toc(1, false, 3), 0x41, 255, 1];
        p.extend([0u8; 255]);
        let o = parse(&p).unwrap();
        assert_eq!(o.frame_count, 1);
        p.pop();
        p.pop();
        assert_eq!(parse(&p), Err(OpusError::Padding));
        let mut p = vec![toc(1, false, 3), 0x41, 255, 255];
        p.extend([0u8; 100]);
        assert_eq!(parse(&p), Err(OpusError::Padding));
    }

    #[test]
    fn r7_vbr_code_3() {
        // v = 1, M = 3: lengths 1 and 2, last frame gets the rest (3).
        let p = [toc(1, false, 3), 0x83, 1, 2, 9, 8, 8, 7, 7, 7];
        assert_eq!(parse(&p).unwrap().frame_count, 3);
        // Header bytes must fit.
        assert_eq!(
            parse(&[toc(1, false, 3), 0x83, 1]),
            Err(OpusError::FrameLength)
        );
        // Coded frames longer than what is left.
        assert_eq!(
            parse(&[toc(1, false, 3), 0x83, 1, 2, 9, 8]),
            Err(OpusError::FrameLength)
        );
        // With padding: p = 1, 1 padding byte.
        let p = [toc(1, false, 3), 0xC2, 1, 1, 9, 8, 0];
        assert_eq!(parse(&p).unwrap().frame_count, 2);
        let p = [toc(1, false, 3), 0xC2, 3, 1, 9, 8, 0];
        assert_eq!(parse(&p), Err(OpusError::FrameLength));
        // Last implied frame over 1275.
        let mut p = vec![toc(1, false, 3), 0x82, 0];
        p.resize(3 + 1276, 0);
        assert_eq!(parse(&p), Err(OpusError::FrameTooLong { len: 1276 }));
    }

    #[test]
    fn never_panics() {
        let good: [&[u8]; 4] = [
            &[toc(1, false, 0), 1, 2, 3],
            &[toc(9, true, 2), 252, 0, 5, 5],
            &[toc(1, false, 3), 0xC3, 255, 2, 1, 2, 9, 8, 8, 7, 7, 7],
            &[toc(30, false, 3), 0x44, 1, 1, 1, 1, 1],
        ];
        for p in good {
            for n in 0..=p.len() {
                let _ = parse(&p[..n]);
            }
            for i in 0..p.len() * 8 {
                let mut q = p.to_vec();
                q[i / 8] ^= 0x80 >> (i % 8);
                let _ = parse(&q);
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(6716);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if let Ok(o) = parse(&p) {
                assert!(o.duration_us <= MAX_DURATION_US && o.frame_count >= 1);
            }
        }
    }
}
