//! G.711 µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8):
//! ITU-T G.711, 8 kHz, one byte per sample (RFC 3551 §4.5.14).
//!
//! ```text
//!  µ-law byte:  [P][S2 S1 S0][Q3 Q2 Q1 Q0]   inverted; P = 1 for positive
//!  A-law byte:  [P][S2 S1 S0][Q3 Q2 Q1 Q0]   even bits inverted (XOR 0x55)
//! ```
//!
//! Decoding goes through 256-entry tables (one lookup per sample); encoding
//! is the segment search of the reference algorithm, which is branch-light
//! and needs no 64 K table in cache.

/// µ-law bias (0x84 = 132) added before the segment search.
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// 16-bit linear PCM to a µ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0x00
    };
    let pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7.
    let segment = (pcm >> 7).max(1).ilog2() as i32;
    let mantissa = (pcm >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) | mantissa) as u8
}

/// A µ-law byte to 16-bit linear PCM.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    // A u8 always indexes a 256-entry table; `get` compiles to the same load.
    ULAW_TABLE.get(usize::from(byte)).copied().unwrap_or(0)
}

/// 16-bit linear PCM to an A-law byte.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let pcm = i32::from(sample) >> 3;
    let (sign, magnitude) = if pcm >= 0 {
        (0x80, pcm)
    } else {
        (0x00, -pcm - 1)
    };
    let magnitude = magnitude.min(0x0FFF);
    let byte = if magnitude < 32 {
        magnitude >> 1
    } else {
        let segment = (magnitude >> 5).ilog2() as i32 + 1;
        (segment << 4) | ((magnitude >> segment) & 0x0F)
    };
    ((sign | byte) ^ 0x55) as u8
}

/// An A-law byte to 16-bit linear PCM.
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_TABLE.get(usize::from(byte)).copied().unwrap_or(0)
}

const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let segment = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

macro_rules! decode_table {
    ($decode:ident) => {{
        let mut t = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $decode(i as u8);
            i += 1;
        }
        t
    }};
}

// Built at compile time; the indexing inside is const evaluation.
#[allow(clippy::indexing_slicing)]
static ULAW_TABLE: [i16; 256] = decode_table!(ulaw_decode);
#[allow(clippy::indexing_slicing)]
static ALAW_TABLE: [i16; 256] = decode_table!(alaw_decode);

/// Decodes a µ-law payload, appending to `out`.
pub fn decode_ulaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| ulaw_to_linear(b)));
}

/// Decodes an A-law payload, appending to `out`.
pub fn decode_alaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| alaw_to_linear(b)));
}

/// Encodes PCM as µ-law, appending to `out`.
pub fn encode_ulaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_ulaw(s)));
}

/// Encodes PCM as A-law, appending to `out`.
pub fn encode_alaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_alaw(s)));
}

/// Converts a µ-law payload straight to A-law (G.711 Appendix: the two laws
/// map through their decoded values), without a PCM buffer.
pub fn ulaw_to_alaw(payload: &mut [u8]) {
    for b in payload {
        *b = linear_to_alaw(ulaw_to_linear(*b));
    }
}

/// Converts an A-law payload straight to µ-law in place.
pub fn alaw_to_ulaw(payload: &mut [u8]) {
    for b in payload {
        *b = linear_to_ulaw(alaw_to_linear(*b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ulaw_code_round_trips() {
        for b in 0..=255u8 {
            let pcm = ulaw_to_linear(b);
            let back = linear_to_ulaw(pcm);
            // 0x7F and 0xFF are both zero; zero encodes as 0xFF.
            if pcm == 0 {
                assert!(back == 0xFF || back == 0x7F);
            } else {
                assert_eq!(back, b, "code {b:#04x} -> {pcm}");
            }
        }
    }

    #[test]
    fn every_alaw_code_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "code {b:#04x}");
        }
    }

    #[test]
    fn reference_values() {
        // Silence and full scale per the G.711 tables.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn quantisation_error_is_bounded_by_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(s)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(s)));
            let s = i32::from(s);
            // The largest step of either law is 1024 (µ) / 1024 (A) at the top segment.
            assert!((u - s).abs() <= 1024, "µ {s} -> {u}");
            assert!((a - s).abs() <= 1024, "A {s} -> {a}");
        }
    }

    #[test]
    fn law_conversion_matches_going_through_pcm() {
        let mut p: Vec<u8> = (0..=255).collect();
        ulaw_to_alaw(&mut p);
        for (i, b) in p.iter().enumerate() {
            assert_eq!(*b, linear_to_alaw(ulaw_to_linear(i as u8)));
        }
    }
}
