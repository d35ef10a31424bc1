use std::f64::consts::PI;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::*;

const AMR_NB_122: Codec = Codec::AmrNb { mode: 7 };
const AMR_WB_2385: Codec = Codec::AmrWb { mode: 8 };
const ALL: [Codec; 5] = [
    Codec::Pcmu,
    Codec::Pcma,
    AMR_NB_122,
    AMR_WB_2385,
    Codec::Opus,
];
const AMPLITUDE: f64 = 8000.0;

fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (AMPLITUDE * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
        .collect()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Dominant frequency from zero crossings with hysteresis (so codec noise
/// around zero does not add crossings).
fn zero_crossing_freq(x: &[i16], rate: u32) -> f64 {
    let threshold = rms(x) * 0.3;
    let mut positive = None;
    let mut crossings = 0usize;
    for &s in x {
        let s = f64::from(s);
        let now = if s > threshold {
            Some(true)
        } else if s < -threshold {
            Some(false)
        } else {
            None
        };
        if let Some(now) = now {
            if positive.is_some_and(|p| p != now) {
                crossings += 1;
            }
            positive = Some(now);
        }
    }
    crossings as f64 / 2.0 / (x.len() as f64 / f64::from(rate))
}

/// Share of the energy of `x` at `freq` (Goertzel; `x` spans a whole
/// number of periods, so the tone falls exactly on the bin).
fn tone_purity(x: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let tone_power = (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) * 2.0 / (x.len() as f64).powi(2);
    tone_power / rms(x).powi(2)
}

/// Reference encoder/decoder per codec, independent of the transcoder's
/// choice of internal rates: Opus is encoded and decoded at 48 kHz.
enum RefCodec {
    Pcmu,
    Pcma,
    AmrNb(Box<AmrNbEncoder>, AmrNbDecoder, u8),
    AmrWb(Box<AmrWbEncoder>, AmrWbDecoder, u8),
    Opus(opus2::Encoder, opus2::Decoder),
}

impl RefCodec {
    fn new(c: Codec) -> Self {
        match c {
            Codec::Pcmu => Self::Pcmu,
            Codec::Pcma => Self::Pcma,
            Codec::AmrNb { mode } => Self::AmrNb(
                Box::new(AmrNbEncoder::new(false).unwrap()),
                AmrNbDecoder::new().unwrap(),
                mode,
            ),
            Codec::AmrWb { mode } => Self::AmrWb(
                Box::new(AmrWbEncoder::new(false).unwrap()),
                AmrWbDecoder::new().unwrap(),
                mode,
            ),
            Codec::Opus => Self::Opus(
                opus2::Encoder::new(48000, opus2::Channels::Mono, opus2::Application::Voip)
                    .unwrap(),
                opus2::Decoder::new(48000, opus2::Channels::Mono).unwrap(),
            ),
        }
    }

    fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Pcmu => g711::encode_ulaw(pcm, &mut out),
            Self::Pcma => g711::encode_alaw(pcm, &mut out),
            Self::AmrNb(e, _, mode) => {
                out.extend_from_slice(e.encode(*mode, pcm.try_into().unwrap()).unwrap())
            }
            Self::AmrWb(e, _, mode) => {
                out.extend_from_slice(e.encode(*mode, pcm.try_into().unwrap()).unwrap())
            }
            Self::Opus(e, _) => out = e.encode_vec(pcm, 4000).unwrap(),
        }
        out
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut Vec<i16>) {
        match self {
            Self::Pcmu => g711::decode_ulaw(payload, pcm),
            Self::Pcma => g711::decode_alaw(payload, pcm),
            Self::AmrNb(_, d, _) => {
                for f in AmrFrames::new(payload, amr_nb_frame_len) {
                    let mut frame = [0; AMR_NB_FRAME_SAMPLES];
                    d.decode(f, &mut frame).unwrap();
                    pcm.extend_from_slice(&frame);
                }
            }
            Self::AmrWb(_, d, _) => {
                for f in AmrFrames::new(payload, amr_wb_frame_len) {
                    let mut frame = [0; AMR_WB_FRAME_SAMPLES];
                    d.decode(f, &mut frame).unwrap();
                    pcm.extend_from_slice(&frame);
                }
            }
            Self::Opus(_, d) => {
                let mut buf = vec![0; 5760];
                let n = d.decode(payload, &mut buf, false).unwrap();
                pcm.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// 50 frames of a 440 Hz sine encoded in `c`.
fn encoded_sine(c: Codec) -> (Vec<Vec<u8>>, Vec<i16>) {
    let rate = c.sample_rate();
    let n = c.frame_samples();
    let pcm = sine(440.0, rate, n * 50);
    let mut enc = RefCodec::new(c);
    (pcm.chunks(n).map(|f| enc.encode(f)).collect(), pcm)
}

#[test]
fn every_pair_carries_a_440_hz_tone() {
    for from in ALL {
        let (frames, source) = encoded_sine(from);
        let source_rms = rms(&source);
        for to in ALL {
            let mut t = Transcoder::new(from, to).unwrap();
            let mut sink = RefCodec::new(to);
            let mut decoded = Vec::new();
            let mut out = Vec::new();
            let mut advance = 0;
            for f in &frames {
                advance += t.transcode(f, &mut out).unwrap();
                if !out.is_empty() {
                    sink.decode(&out, &mut decoded);
                }
            }
            assert_eq!(advance, 50 * to.frame_samples(), "{from:?}->{to:?}");
            let rate = to.sample_rate();
            assert_eq!(decoded.len(), 50 * to.frame_samples(), "{from:?}->{to:?}");
            // Skip 5 frames of codec and filter delay.
            let steady = &decoded[5 * to.frame_samples()..];
            let freq = zero_crossing_freq(steady, rate);
            let gain = rms(steady) / source_rms;
            let purity = tone_purity(steady, rate, 440.0);
            println!("{from:?} -> {to:?}: {freq:.1} Hz, gain {gain:.3}, purity {purity:.4}");
            assert!(
                (396.0..=484.0).contains(&freq),
                "{from:?}->{to:?}: {freq} Hz"
            );
            assert!((0.7..=1.4).contains(&gain), "{from:?}->{to:?}: gain {gain}");
            // At least 95 % of the energy is the tone (SNR > ~13 dB).
            assert!(purity > 0.95, "{from:?}->{to:?}: purity {purity}");
        }
    }
}

#[test]
fn conceal_fills_lost_frames_with_plausible_audio() {
    for from in ALL {
        let (frames, _) = encoded_sine(from);
        for to in [Codec::Pcma, AMR_WB_2385, Codec::Opus] {
            let mut t = Transcoder::new(from, to).unwrap();
            let mut out = Vec::new();
            for f in &frames[..20] {
                t.transcode(f, &mut out).unwrap();
            }
            // Every lost frame still yields a 20 ms output frame, so the
            // outgoing stream keeps its timing.
            for _ in 0..3 {
                assert_eq!(t.conceal(&mut out), to.frame_samples(), "{from:?}->{to:?}");
                assert!(!out.is_empty());
            }
            // And the stream carries on afterwards.
            for f in &frames[23..] {
                assert_eq!(t.transcode(f, &mut out).unwrap(), to.frame_samples());
            }
        }
    }
}

#[test]
fn amr_decoder_conceals_from_history() {
    let (frames, _) = encoded_sine(AMR_NB_122);
    let mut d = AmrNbDecoder::new().unwrap();
    let mut pcm = [0; AMR_NB_FRAME_SAMPLES];
    for f in &frames[..20] {
        d.decode(f, &mut pcm).unwrap();
    }
    d.conceal(&mut pcm);
    assert!(
        rms(&pcm) > 1000.0,
        "NB PLC went silent at once: {}",
        rms(&pcm)
    );
    let (frames, _) = encoded_sine(AMR_WB_2385);
    let mut d = AmrWbDecoder::new().unwrap();
    let mut pcm = [0; AMR_WB_FRAME_SAMPLES];
    for f in &frames[..20] {
        d.decode(f, &mut pcm).unwrap();
    }
    d.conceal(&mut pcm);
    assert!(
        rms(&pcm) > 1000.0,
        "WB PLC went silent at once: {}",
        rms(&pcm)
    );
}

#[test]
fn amr_encoders_produce_storage_frames() {
    let pcm: [i16; 160] = sine(440.0, 8000, 160).try_into().unwrap();
    let mut e = AmrNbEncoder::new(false).unwrap();
    for mode in 0..=AMR_NB_MAX_MODE {
        let f = e.encode(mode, &pcm).unwrap();
        // Header: FT = mode, Q = 1, padding bits 0.
        assert_eq!(f[0], (mode << 3) | 0x04);
        assert_eq!(Some(f.len()), amr_nb_frame_len(f[0]));
    }
    assert!(matches!(
        e.encode(8, &pcm),
        Err(TranscodeError::AmrMode { .. })
    ));
    let pcm: [i16; 320] = sine(440.0, 16000, 320).try_into().unwrap();
    let mut e = AmrWbEncoder::new(false).unwrap();
    for mode in 0..=AMR_WB_MAX_MODE {
        let f = e.encode(mode, &pcm).unwrap();
        assert_eq!(f[0], (mode << 3) | 0x04);
        assert_eq!(Some(f.len()), amr_wb_frame_len(f[0]));
    }
    assert!(matches!(
        e.encode(9, &pcm),
        Err(TranscodeError::AmrMode { .. })
    ));
}

#[test]
fn encoder_input_is_not_modified() {
    // opencore writes into the speech buffer it is given; the wrappers must
    // hand it a copy. Full-scale odd samples are what its masking touches.
    let nb: [i16; 160] = std::array::from_fn(|i| if i % 2 == 0 { 32767 } else { -32767 });
    let copy = nb;
    let mut e = AmrNbEncoder::new(false).unwrap();
    e.encode(7, &nb).unwrap();
    assert_eq!(nb, copy);
    let wb: [i16; 320] = std::array::from_fn(|i| (i as i16).wrapping_mul(2731) | 1);
    let copy = wb;
    let mut e = AmrWbEncoder::new(false).unwrap();
    e.encode(8, &wb).unwrap();
    assert_eq!(wb, copy);
    // Same through the transcoder.
    let (frames, _) = encoded_sine(Codec::Pcmu);
    let original = frames[3].clone();
    let mut t = Transcoder::new(Codec::Pcmu, AMR_NB_122).unwrap();
    let mut out = Vec::new();
    t.transcode(&frames[3], &mut out).unwrap();
    assert_eq!(frames[3], original);
}

#[test]
fn multi_frame_inputs_and_short_opus_packets() {
    // Three AMR-NB storage frames in one call give 60 ms of PCMU.
    let (frames, _) = encoded_sine(AMR_NB_122);
    let mut t = Transcoder::new(AMR_NB_122, Codec::Pcmu).unwrap();
    let mut out = Vec::new();
    let input: Vec<u8> = frames[..3].concat();
    assert_eq!(t.transcode(&input, &mut out).unwrap(), 480);
    assert_eq!(out.len(), 480);
    // 60 ms of PCMU into Opus: one 60 ms packet.
    let mut t = Transcoder::new(Codec::Pcmu, Codec::Opus).unwrap();
    let (pcmu, _) = encoded_sine(Codec::Pcmu);
    assert_eq!(t.transcode(&pcmu[..3].concat(), &mut out).unwrap(), 2880);
    assert_eq!(opus2::packet::get_nb_samples(&out, 48000).unwrap(), 2880);
    // 10 ms Opus packets: every other one completes a 20 ms AMR-WB frame.
    let mut enc =
        opus2::Encoder::new(48000, opus2::Channels::Mono, opus2::Application::Voip).unwrap();
    let pcm = sine(440.0, 48000, 4800);
    let mut t = Transcoder::new(Codec::Opus, AMR_WB_2385).unwrap();
    let mut produced = Vec::new();
    for chunk in pcm.chunks(480) {
        let packet = enc.encode_vec(chunk, 4000).unwrap();
        produced.push(t.transcode(&packet, &mut out).unwrap());
    }
    assert_eq!(produced, [0, 320, 0, 320, 0, 320, 0, 320, 0, 320]);
}

#[test]
fn malformed_inputs_are_errors() {
    let mut out = vec![1, 2, 3];
    let mut t = Transcoder::new(AMR_NB_122, Codec::Pcmu).unwrap();
    assert_eq!(t.transcode(&[], &mut out), Err(TranscodeError::Empty));
    assert!(out.is_empty());
    // FT 9..14 are refused.
    for ft in 9..=14u8 {
        assert!(matches!(
            t.transcode(&[ft << 3 | 4; 32], &mut out),
            Err(TranscodeError::AmrFrameType { frame_type, .. }) if frame_type == ft
        ));
    }
    // 12.2 kbit/s frame one byte short, or with a trailing byte.
    assert!(matches!(
        t.transcode(&[7 << 3 | 4; 31], &mut out),
        Err(TranscodeError::AmrFrameLength {
            expected: 32,
            got: 31,
            ..
        })
    ));
    assert!(t.transcode(&[7 << 3 | 4; 33], &mut out).is_err());
    // Seven 20 ms frames are more than the 120 ms limit.
    assert!(matches!(
        t.transcode(&[0x7C; 7], &mut out),
        Err(TranscodeError::TooLong(7))
    ));
    // NO_DATA is valid: concealment / comfort noise.
    assert_eq!(t.transcode(&[0x7C], &mut out), Ok(160));

    let mut t = Transcoder::new(AMR_WB_2385, Codec::Pcmu).unwrap();
    for ft in 10..=13u8 {
        assert!(t.transcode(&[ft << 3 | 4; 61], &mut out).is_err());
    }
    assert!(t.transcode(&[8 << 3 | 4; 60], &mut out).is_err());
    assert_eq!(t.transcode(&[14 << 3], &mut out), Ok(160));

    let mut t = Transcoder::new(Codec::Pcma, Codec::Opus).unwrap();
    assert!(matches!(
        t.transcode(&[0xD5; 961], &mut out),
        Err(TranscodeError::TooLong(961))
    ));

    let mut t = Transcoder::new(Codec::Opus, Codec::Pcma).unwrap();
    // TOC code 3 with a frame count of 0 is invalid (RFC 6716 §3.2.5).
    assert!(matches!(
        t.transcode(&[0x03, 0x00], &mut out),
        Err(TranscodeError::Opus { .. })
    ));
    assert!(matches!(
        t.transcode(&[0; 9000], &mut out),
        Err(TranscodeError::TooLong(9000))
    ));

    assert!(matches!(
        Transcoder::new(Codec::AmrNb { mode: 8 }, Codec::Pcmu),
        Err(TranscodeError::AmrMode {
            wideband: false,
            mode: 8
        })
    ));
    assert!(matches!(
        Transcoder::new(Codec::Pcmu, Codec::AmrWb { mode: 9 }),
        Err(TranscodeError::AmrMode {
            wideband: true,
            mode: 9
        })
    ));
}

#[test]
fn random_payloads_never_crash_a_decoder() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut out = Vec::new();
    for from in ALL {
        let mut t = Transcoder::new(from, Codec::Pcmu).unwrap();
        let mut ok = 0;
        for i in 0..10_000 {
            let len = rng.gen_range(0..200);
            let mut payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Every other payload gets a valid header and length, so the
            // garbage actually reaches the C decoders' bit parsing.
            if i % 2 == 0 {
                let (len_of, max_ft): (fn(u8) -> Option<usize>, u8) = match from {
                    Codec::AmrNb { .. } => (amr_nb_frame_len, 8),
                    Codec::AmrWb { .. } => (amr_wb_frame_len, 9),
                    _ => (|_| None, 0),
                };
                let header = (rng.gen_range(0..=max_ft) << 3) | (rng.gen::<u8>() & 0x04);
                if let Some(n) = len_of(header) {
                    payload.resize(n, 0);
                    payload[0] = header;
                }
            }
            match t.transcode(&payload, &mut out) {
                Ok(n) => {
                    ok += 1;
                    assert_eq!(out.len(), n, "{from:?}");
                }
                Err(_) => assert!(out.is_empty()),
            }
            if i % 97 == 0 {
                t.conceal(&mut out);
            }
        }
        assert!(ok > 0, "{from:?}: nothing decoded");
    }
}

#[test]
fn transcoder_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Transcoder>();
    is_send::<AmrNbDecoder>();
    is_send::<AmrNbEncoder>();
    is_send::<AmrWbDecoder>();
    is_send::<AmrWbEncoder>();
}

#[test]
fn no_allocation_after_warm_up() {
    // Capacity of the internal buffers settles after the first frame.
    for from in ALL {
        let (frames, _) = encoded_sine(from);
        for to in ALL {
            let mut t = Transcoder::new(from, to).unwrap();
            let mut out = Vec::new();
            t.transcode(&frames[0], &mut out).unwrap();
            t.transcode(&frames[1], &mut out).unwrap();
            let caps = (t.pcm.capacity(), t.fifo.capacity(), out.capacity());
            for f in &frames[2..] {
                t.transcode(f, &mut out).unwrap();
            }
            assert_eq!(
                caps,
                (t.pcm.capacity(), t.fifo.capacity(), out.capacity()),
                "{from:?}->{to:?}"
            );
        }
    }
}

/// `cargo test -p media --features transcode -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_per_frame() {
    const N: u32 = 2000;
    let per_frame = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    for c in ALL {
        let (frames, pcm) = encoded_sine(c);
        let n = c.frame_samples();
        let mut r = RefCodec::new(c);
        let start = Instant::now();
        for i in 0..N as usize {
            std::hint::black_box(r.encode(&pcm[(i % 50) * n..][..n]));
        }
        let enc = per_frame(start);
        let mut r = RefCodec::new(c);
        let mut out = Vec::with_capacity(5760);
        let start = Instant::now();
        for i in 0..N as usize {
            out.clear();
            r.decode(&frames[i % 50], &mut out);
        }
        let dec = per_frame(start);
        println!("{c:?}: encode {enc:.1} µs/frame, decode {dec:.1} µs/frame");
    }
    for from in ALL {
        let (frames, _) = encoded_sine(from);
        for to in ALL {
            let mut t = Transcoder::new(from, to).unwrap();
            let mut out = Vec::new();
            let start = Instant::now();
            for i in 0..N as usize {
                t.transcode(&frames[i % 50], &mut out).unwrap();
            }
            println!("{from:?} -> {to:?}: {:.1} µs/frame", per_frame(start));
        }
    }
    for (a, b) in [
        (8000, 16000),
        (16000, 8000),
        (8000, 48000),
        (48000, 8000),
        (16000, 48000),
        (48000, 16000),
    ] {
        let mut r = Resampler::new(a, b).unwrap();
        let input = sine(440.0, a, a as usize / 50);
        let mut out = Vec::with_capacity(b as usize / 50);
        let start = Instant::now();
        for _ in 0..N {
            out.clear();
            r.process(&input, &mut out);
        }
        println!("resample {a} -> {b}: {:.1} µs/frame", per_frame(start));
    }
}
