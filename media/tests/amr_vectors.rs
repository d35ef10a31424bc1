//! AMR/AMR-WB payload conversion on frames from a real encoder.
//!
//! `tests/data/amr/*.amr|*.awb` are RFC 4867 §5 storage files ("#!AMR\n" /
//! "#!AMR-WB\n" then frames: header byte `FT<<3 | Q<<2`, octet-aligned
//! speech bits) produced by opencore-amrnb 0.1.6 / vo-amrwbenc 0.1.3 through
//! our binding (`generate_vectors`, ignored: run it with
//! `cargo test -p media --features transcode --test amr_vectors -- --ignored`)
//! from a synthetic speech-like signal with pauses (so DTX yields SID and
//! NO_DATA frames), cycling through every mode. The tests below need no codec
//! library: they check that octet-aligned ⇄ bandwidth-efficient conversion is
//! bit-exact on those frames, against an independent bit packer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use media::payload::amr::{self, AmrKind, PayloadMode};

fn data(name: &str) -> String {
    format!("{}/tests/data/amr/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Splits a storage file into (ft, q, speech bytes) frames.
fn frames(kind: AmrKind, bytes: &[u8]) -> Vec<(u8, bool, Vec<u8>)> {
    let magic: &[u8] = match kind {
        AmrKind::Nb => b"#!AMR\n",
        AmrKind::Wb => b"#!AMR-WB\n",
    };
    assert!(bytes.starts_with(magic), "storage magic");
    let mut rest = &bytes[magic.len()..];
    let mut out = Vec::new();
    while let [header, tail @ ..] = rest {
        let ft = (header >> 3) & 0x0F;
        let q = header & 0x04 != 0;
        let bits = kind
            .frame_bits(ft)
            .unwrap_or_else(|| panic!("frame type {ft}"));
        let len = bits.div_ceil(8);
        out.push((ft, q, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    out
}

/// RFC 4867 §4.3 bandwidth-efficient packing, written independently of the
/// library: CMR (4 bits), ToC entries (F, FT, Q), then each frame's bits,
/// zero-padded to an octet.
fn pack_be(kind: AmrKind, cmr: u8, frames: &[(u8, bool, Vec<u8>)]) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    let push = |v: u32, n: usize, bits: &mut Vec<bool>| {
        for i in (0..n).rev() {
            bits.push((v >> i) & 1 == 1);
        }
    };
    push(u32::from(cmr), 4, &mut bits);
    for (i, (ft, q, _)) in frames.iter().enumerate() {
        let f = u32::from(i + 1 < frames.len());
        push(f, 1, &mut bits);
        push(u32::from(*ft), 4, &mut bits);
        push(u32::from(*q), 1, &mut bits);
    }
    for (ft, _, data) in frames {
        let n = kind.frame_bits(*ft).unwrap();
        for i in 0..n {
            bits.push((data[i / 8] >> (7 - i % 8)) & 1 == 1);
        }
    }
    while !bits.len().is_multiple_of(8) {
        bits.push(false);
    }
    bits.chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b)))
        .collect()
}

fn check_file(kind: AmrKind, name: &str) {
    let bytes = std::fs::read(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let all = frames(kind, &bytes);
    assert!(all.len() >= 100, "{name}: {} frames", all.len());
    let fts: std::collections::BTreeSet<u8> = all.iter().map(|f| f.0).collect();
    assert!(
        fts.contains(&amr::FT_NO_DATA) && fts.contains(&kind.sid_ft()),
        "{name}: DTX frames present: {fts:?}"
    );
    // Packets of 1, 2, 3, 4 frames in turn, as a trunk or an app might send them.
    let mut i = 0;
    let mut size = 1;
    let mut packets = 0;
    while i < all.len() {
        let chunk = &all[i..(i + size).min(all.len())];
        i += chunk.len();
        size = size % 4 + 1;
        let cmr = 15;
        let refs: Vec<(u8, bool, &[u8])> = chunk
            .iter()
            .map(|(ft, q, d)| (*ft, *q, d.as_slice()))
            .collect();
        let mut oa = Vec::new();
        amr::build(kind, PayloadMode::OctetAligned, cmr, &refs, &mut oa).unwrap();
        let mut be = Vec::new();
        amr::convert(
            kind,
            PayloadMode::OctetAligned,
            PayloadMode::BandwidthEfficient,
            &oa,
            &mut be,
        )
        .unwrap();
        assert_eq!(
            be,
            pack_be(kind, cmr, chunk),
            "{name}: packet {packets} OA->BE"
        );
        let mut back = Vec::new();
        amr::convert(
            kind,
            PayloadMode::BandwidthEfficient,
            PayloadMode::OctetAligned,
            &be,
            &mut back,
        )
        .unwrap();
        assert_eq!(back, oa, "{name}: packet {packets} BE->OA");
        // And the frames read back out of the BE payload are the encoder's.
        let parsed = amr::AmrPayload::parse(kind, PayloadMode::BandwidthEfficient, &be).unwrap();
        let mut frame = Vec::new();
        for (k, (ft, q, d)) in chunk.iter().enumerate() {
            assert_eq!((parsed.frames[k].ft, parsed.frames[k].q), (*ft, *q));
            parsed.frame_data(k, &mut frame).unwrap();
            assert_eq!(
                &frame[..d.len()],
                d.as_slice(),
                "{name}: frame {k} of packet {packets}"
            );
        }
        packets += 1;
    }
}

#[test]
fn amr_nb_conversion_is_bit_exact_on_encoder_frames() {
    check_file(AmrKind::Nb, "opencore-amrnb-all-modes-dtx.amr");
}

#[test]
fn amr_wb_conversion_is_bit_exact_on_encoder_frames() {
    check_file(AmrKind::Wb, "vo-amrwbenc-all-modes-dtx.awb");
}

/// Writes the vector files. Deterministic input; the encoders are too, so a
/// re-run reproduces the committed bytes.
#[cfg(feature = "transcode")]
#[test]
#[ignore = "regenerates tests/data/amr with the real encoders"]
fn generate_vectors() {
    use media::transcode::{
        AmrNbEncoder, AmrWbEncoder, AMR_NB_FRAME_SAMPLES, AMR_WB_FRAME_SAMPLES,
    };
    // Speech-like: two formants with a syllable envelope, pauses every second
    // syllable so DTX produces SID and NO_DATA frames.
    fn signal(rate: f64, n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                let t = i as f64 / rate;
                let syllable = (t * 4.0).floor() as i64;
                if syllable % 2 == 1 {
                    return 0;
                }
                let env = (std::f64::consts::PI * (t * 4.0).fract()).sin();
                let f0 = 140.0 + 30.0 * (t * 3.0).sin();
                let v = (2.0 * std::f64::consts::PI * f0 * t).sin() * 0.5
                    + (2.0 * std::f64::consts::PI * 700.0 * t).sin() * 0.3
                    + (2.0 * std::f64::consts::PI * 1200.0 * t).sin() * 0.2;
                (v * env * 12000.0) as i16
            })
            .collect()
    }
    let mut nb = AmrNbEncoder::new(true).unwrap();
    let mut out = b"#!AMR\n".to_vec();
    for f in 0..400 {
        let pcm: [i16; AMR_NB_FRAME_SAMPLES] =
            signal(8000.0, AMR_NB_FRAME_SAMPLES, f * AMR_NB_FRAME_SAMPLES)
                .try_into()
                .unwrap();
        let mode = ((f / 10) % 8) as u8;
        out.extend_from_slice(nb.encode(mode, &pcm).unwrap());
    }
    std::fs::write(data("opencore-amrnb-all-modes-dtx.amr"), out).unwrap();
    let mut wb = AmrWbEncoder::new(true).unwrap();
    let mut out = b"#!AMR-WB\n".to_vec();
    for f in 0..400 {
        let pcm: [i16; AMR_WB_FRAME_SAMPLES] =
            signal(16000.0, AMR_WB_FRAME_SAMPLES, f * AMR_WB_FRAME_SAMPLES)
                .try_into()
                .unwrap();
        let mode = ((f / 10) % 9) as u8;
        out.extend_from_slice(wb.encode(mode, &pcm).unwrap());
    }
    std::fs::write(data("vo-amrwbenc-all-modes-dtx.awb"), out).unwrap();
}
