//! Playing a WAV file into a leg (announcements such as "no minutes left",
//! the channel robot), paced in real time.
//!
//! ```text
//!  WAV bytes ─▶ parse_wav ─▶ Wav (mono i16) ─▶ resample ─▶ Playback
//!                                                             │ poll_timeout / poll_frame(now)
//!                                                             ▼
//!                                       Frame { 20 ms of PCM, RTP timestamp offset }
//!                                                             ▼
//!                                         encoder of the leg's codec ─▶ rtp::write
//! ```
//!
//! RIFF/WAVE layout (little-endian throughout):
//!
//! ```text
//!  "RIFF" size "WAVE" { chunk-id(4) chunk-size(4) data[size] pad-to-even }*
//!  "fmt ": format(2) channels(2) rate(4) byte-rate(4) block-align(2) bits(2) [cb-size(2) ...]
//!  "data": interleaved samples
//! ```
//!
//! Sans-IO: the caller reads the file and owns the timer; nothing here
//! reads a clock.

use std::time::{Duration, Instant};

use crate::payload::g711;

/// WAVE format tags (RFC 2361 appendix A).
const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
/// The real format is the first two bytes of the sub-format GUID.
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// More channels than this is not a telephony prompt.
const MAX_CHANNELS: u16 = 8;
/// Sample rates we accept: beyond these a prompt is nonsense, and a ratio
/// bounded by them keeps a resampled prompt's memory bounded too.
const MIN_RATE: u32 = 1000;
const MAX_RATE: u32 = 384_000;
/// The longest frame `Playback` paces (RTP audio frames are 10-120 ms).
const MAX_FRAME_MS: u32 = 1000;

/// Why a WAV file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaybackError {
    #[error("not a RIFF file")]
    NotRiff,
    #[error("RIFF file is not WAVE")]
    NotWave,
    #[error("no fmt chunk before the end of the file")]
    MissingFormat,
    #[error("fmt chunk shorter than 16 bytes")]
    ShortFormat,
    #[error("no data chunk")]
    MissingData,
    #[error("unsupported WAVE format {format:#06x} with {bits} bits per sample (need 16-bit PCM, 8-bit PCM, A-law or µ-law)")]
    UnsupportedFormat { format: u16, bits: u16 },
    #[error("unsupported channel count {0}")]
    Channels(u16),
    #[error("unsupported sample rate {0} Hz (need 1000..=384000)")]
    SampleRate(u32),
}

/// Decoded audio: mono 16-bit PCM at `sample_rate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

/// The sample encodings we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Pcm16,
    /// Unsigned, offset 128 (the WAVE convention for 8-bit PCM).
    Pcm8,
    Alaw,
    Ulaw,
}

impl Encoding {
    fn bytes(self) -> usize {
        match self {
            Encoding::Pcm16 => 2,
            Encoding::Pcm8 | Encoding::Alaw | Encoding::Ulaw => 1,
        }
    }

    fn decode(self, bytes: &[u8]) -> i16 {
        match (self, bytes) {
            (Encoding::Pcm16, [lo, hi, ..]) => i16::from_le_bytes([*lo, *hi]),
            (Encoding::Pcm8, [b, ..]) => (i16::from(*b) - 128) << 8,
            (Encoding::Alaw, [b, ..]) => g711::alaw_to_linear(*b),
            (Encoding::Ulaw, [b, ..]) => g711::ulaw_to_linear(*b),
            _ => 0,
        }
    }
}

struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        [a, b] => Some(u16::from_le_bytes([*a, *b])),
        _ => None,
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at..at.checked_add(4)?)? {
        [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn parse_format(body: &[u8]) -> Result<Format, PlaybackError> {
    let (Some(mut format), Some(channels), Some(sample_rate), Some(bits)) = (
        u16_at(body, 0),
        u16_at(body, 2),
        u32_at(body, 4),
        u16_at(body, 14),
    ) else {
        return Err(PlaybackError::ShortFormat);
    };
    if format == WAVE_FORMAT_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) channelMask(4) GUID(16);
        // the GUID's first two bytes are the format tag.
        format = u16_at(body, 24).ok_or(PlaybackError::ShortFormat)?;
    }
    let encoding = match (format, bits) {
        (WAVE_FORMAT_PCM, 16) => Encoding::Pcm16,
        (WAVE_FORMAT_PCM, 8) => Encoding::Pcm8,
        (WAVE_FORMAT_ALAW, 8) => Encoding::Alaw,
        (WAVE_FORMAT_MULAW, 8) => Encoding::Ulaw,
        _ => return Err(PlaybackError::UnsupportedFormat { format, bits }),
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(PlaybackError::Channels(channels));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(PlaybackError::SampleRate(sample_rate));
    }
    Ok(Format {
        encoding,
        channels,
        sample_rate,
    })
}

/// Parses a RIFF/WAVE file: 16-bit or 8-bit PCM, A-law or µ-law (decoded
/// with G.711), any channel count up to 8 (averaged to mono), any sample
/// rate. Unknown chunks (LIST, fact, cue ...) and the pad byte after an odd
/// chunk are skipped. The RIFF size field is ignored (streaming writers
/// leave it 0 or wrong); a data chunk that claims more bytes than the file
/// has is read to the end of the file (a truncated recording still plays).
pub fn parse_wav(bytes: &[u8]) -> Result<Wav, PlaybackError> {
    if bytes.get(0..4) != Some(b"RIFF".as_slice()) {
        return Err(PlaybackError::NotRiff);
    }
    if bytes.get(8..12) != Some(b"WAVE".as_slice()) {
        return Err(PlaybackError::NotWave);
    }
    let mut format = None;
    let mut data = None;
    let mut at = 12usize;
    while let (Some(id), Some(size)) = (
        bytes.get(at..at.saturating_add(4)),
        u32_at(bytes, at.saturating_add(4)),
    ) {
        let start = at.saturating_add(8);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let end = start.saturating_add(size);
        let body = bytes.get(start..end.min(bytes.len())).unwrap_or_default();
        match id {
            b"fmt " => format = Some(parse_format(body)?),
            b"data" => {
                data = Some(body);
                // Everything needed is known once fmt came first.
                if format.is_some() {
                    break;
                }
            }
            _ => {}
        }
        // Chunks are padded to an even length (RIFF).
        at = end.saturating_add(size & 1);
    }
    let format = format.ok_or(PlaybackError::MissingFormat)?;
    let data = data.ok_or(PlaybackError::MissingData)?;
    Ok(Wav {
        sample_rate: format.sample_rate,
        samples: decode(data, &format),
    })
}

/// Interleaved samples to mono: the mean of the channels of each frame
/// (a sum would clip; a mean keeps a centred voice at its level).
fn decode(data: &[u8], format: &Format) -> Vec<i16> {
    let width = format.encoding.bytes();
    let channels = usize::from(format.channels);
    let frame = width * channels;
    data.chunks_exact(frame)
        .map(|f| {
            let sum: i32 = f
                .chunks_exact(width)
                .map(|s| i32::from(format.encoding.decode(s)))
                .sum();
            // |mean| ≤ 32768, so it fits i16 except −32768 which it is.
            i16::try_from(sum / i32::from(format.channels)).unwrap_or(0)
        })
        .collect()
}

/// Saturating f64 → i16 with rounding.
fn to_i16(x: f64) -> i16 {
    // `as` saturates at the i16 range and maps NaN to 0.
    x.round() as i16
}

/// Windowed-sinc low-pass (Hamming window), cutoff `cutoff` in cycles per
/// input sample (0..0.5), `half` taps each side; taps sum to 1 (unity DC gain).
fn low_pass_taps(cutoff: f64, half: usize) -> Vec<f64> {
    let len = 2 * half + 1;
    let taps: Vec<f64> = (0..len)
        .map(|n| {
            let m = n as f64 - half as f64;
            let sinc = if m == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * m).sin() / (std::f64::consts::PI * m)
            };
            let window =
                0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (len - 1) as f64).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    if sum.abs() < f64::EPSILON {
        return vec![1.0];
    }
    taps.into_iter().map(|t| t / sum).collect()
}

/// Filters `input` with `taps` (centred, the signal held at its edge
/// values beyond the ends so the first and last samples do not dip).
fn filter(input: &[i16], taps: &[f64]) -> Vec<f64> {
    let half = taps.len() / 2;
    let first = input.first().copied().unwrap_or(0);
    let last = input.last().copied().unwrap_or(0);
    (0..input.len())
        .map(|i| {
            taps.iter()
                .enumerate()
                .map(|(k, t)| {
                    let s = (i + k)
                        .checked_sub(half)
                        .map_or(first, |j| input.get(j).copied().unwrap_or(last));
                    t * f64::from(s)
                })
                .sum()
        })
        .collect()
}

/// Converts `input` from `from_hz` to `to_hz` (8000 ↔ 16000 ↔ 48000 and
/// any other ratio); the output has `round(len · to / from)` samples.
///
/// Linear interpolation between neighbouring samples: for speech prompts
/// its mild high-frequency roll-off and images above the old Nyquist are
/// inaudible next to the codec that follows. When decimating, a
/// windowed-sinc low-pass at 0.45 of the new rate runs first, so content
/// above the new Nyquist (e.g. 4-8 kHz of a 16 kHz prompt going to G.711)
/// is removed instead of folding back as aliasing. A rate outside
/// 1000..=384000 Hz gives an empty output.
pub fn resample(input: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    let rates = MIN_RATE..=MAX_RATE;
    if !rates.contains(&from_hz) || !rates.contains(&to_hz) {
        return Vec::new();
    }
    if from_hz == to_hz {
        return input.to_vec();
    }
    let from = u64::from(from_hz);
    let to = u64::from(to_hz);
    let signal: Vec<f64> = if to < from {
        // Cutoff in cycles per input sample; taps scale with the ratio so
        // the transition band stays the same width at the output rate.
        let cutoff = 0.45 * to as f64 / from as f64;
        let half = (8 * from.div_ceil(to)).min(256);
        let half = usize::try_from(half).unwrap_or(256);
        filter(input, &low_pass_taps(cutoff, half))
    } else {
        input.iter().map(|s| f64::from(*s)).collect()
    };
    let len = u64::try_from(input.len()).unwrap_or(u64::MAX);
    let out_len = len.saturating_mul(to).saturating_add(from / 2) / from;
    let last = signal.last().copied().unwrap_or(0.0);
    (0..out_len)
        .map(|k| {
            // Position k · from / to in input samples, kept exact as a fraction.
            let num = k.saturating_mul(from);
            let i = usize::try_from(num / to).unwrap_or(usize::MAX);
            let frac = (num % to) as f64 / to as f64;
            let a = signal.get(i).copied().unwrap_or(last);
            let b = signal.get(i.saturating_add(1)).copied().unwrap_or(a);
            to_i16(a + (b - a) * frac)
        })
        .collect()
}

/// One frame of PCM at the playback's target rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub samples: Vec<i16>,
    /// RTP timestamp of this frame relative to the first, in target-rate
    /// units (frame index × samples per frame, modulo 2^32).
    pub rtp_timestamp_offset: u32,
}

/// Paces frames in real time: the first at `start`, then one every
/// `frame_ms`. Each frame has `target_rate · frame_ms / 1000` samples; the
/// last one is zero-padded. A looped playback continues from the start of
/// the audio within the same frame (no gap, no click for a looped tone).
///
/// A late poll returns the due frames one at a time, each with its own
/// timestamp, so the far end's jitter buffer sees a steady stream.
#[derive(Clone, Debug)]
pub struct Playback {
    audio: Vec<i16>,
    frame_samples: usize,
    frame_ms: u32,
    looped: bool,
    start: Instant,
    /// Index of the next frame to emit.
    next: u64,
    /// Read position in `audio`.
    position: usize,
    done: bool,
}

impl Playback {
    /// Resamples `wav` to `target_rate` now, so polling is only copying.
    /// Empty audio, a rate outside 1000..=384000 Hz, or a frame of zero
    /// samples or longer than 1 s plays nothing.
    pub fn new(wav: Wav, target_rate: u32, frame_ms: u32, looped: bool, start: Instant) -> Self {
        let frame_ms = if frame_ms > MAX_FRAME_MS { 0 } else { frame_ms };
        let audio = resample(&wav.samples, wav.sample_rate, target_rate);
        let frame_samples = u64::from(target_rate).saturating_mul(u64::from(frame_ms)) / 1000;
        let frame_samples = usize::try_from(frame_samples).unwrap_or(0);
        let done = audio.is_empty() || frame_samples == 0;
        Playback {
            audio,
            frame_samples,
            frame_ms,
            looped,
            start,
            next: 0,
            position: 0,
            done,
        }
    }

    /// When the next frame is due (None when done).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        self.due(self.next)
    }

    fn due(&self, index: u64) -> Option<Instant> {
        let offset = Duration::from_millis(index.saturating_mul(u64::from(self.frame_ms)));
        self.start.checked_add(offset)
    }

    /// The next frame if it is due at `now`, else None.
    pub fn poll_frame(&mut self, now: Instant) -> Option<Frame> {
        // Not due: no frame, and no buffer allocated for one.
        self.poll_timeout().filter(|&due| due <= now)?;
        let mut samples = Vec::with_capacity(self.frame_samples);
        let rtp_timestamp_offset = self.poll_frame_into(now, &mut samples)?;
        Some(Frame {
            samples,
            rtp_timestamp_offset,
        })
    }

    /// [`Playback::poll_frame`] into a buffer the caller reuses (cleared
    /// first), so that steady playback allocates nothing: the frame's RTP
    /// timestamp offset, or None when no frame is due.
    pub fn poll_frame_into(&mut self, now: Instant, samples: &mut Vec<i16>) -> Option<u32> {
        let due = self.poll_timeout()?;
        if now < due {
            return None;
        }
        samples.clear();
        while samples.len() < self.frame_samples {
            let want = self.frame_samples - samples.len();
            let end = self.position.saturating_add(want).min(self.audio.len());
            let chunk = self.audio.get(self.position..end).unwrap_or_default();
            samples.extend_from_slice(chunk);
            self.position = end;
            if self.position >= self.audio.len() {
                if self.looped {
                    self.position = 0;
                } else {
                    samples.resize(self.frame_samples, 0);
                    self.done = true;
                }
            }
        }
        let frame_samples = u64::try_from(self.frame_samples).unwrap_or(0);
        // RTP timestamps are modulo 2^32 (RFC 3550 §5.1).
        let rtp_timestamp_offset = self.next.wrapping_mul(frame_samples) as u32;
        self.next = self.next.saturating_add(1);
        if self.due(self.next).is_none() {
            // Beyond what an Instant can represent: nothing more can be paced.
            self.done = true;
        }
        Some(rtp_timestamp_offset)
    }

    /// True once a non-looped playback has emitted its last frame.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Frames emitted so far.
    pub fn frames_sent(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file with the given fmt fields and raw data, plus `extra`
    /// chunks inserted before the data.
    fn wav(format: u16, channels: u16, rate: u32, bits: u16, extra: &[u8], data: &[u8]) -> Vec<u8> {
        let block = channels * bits / 8;
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&format.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(extra);
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn pcm16(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    .round() as i16
            })
            .collect()
    }

    fn zero_crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn pcm16_mono_8k() {
        let samples = [0i16, 1000, -1000, i16::MAX, i16::MIN];
        let w = parse_wav(&wav(1, 1, 8000, 16, &[], &pcm16(&samples))).unwrap();
        assert_eq!(w.sample_rate, 8000);
        assert_eq!(w.samples, samples);
    }

    #[test]
    fn pcm16_stereo_16k_downmixed_with_unknown_odd_chunk() {
        let frames = [
            (1000i16, 3000i16),
            (-2000, -4000),
            (i16::MAX, i16::MAX),
            (i16::MIN, i16::MIN),
        ];
        let data: Vec<u8> = frames
            .iter()
            .flat_map(|(l, r)| [l.to_le_bytes(), r.to_le_bytes()].concat())
            .collect();
        // A LIST chunk of odd length (5) with its pad byte.
        let list = [b"LIST".as_slice(), &5u32.to_le_bytes(), b"INFOx", &[0]].concat();
        let w = parse_wav(&wav(1, 2, 16000, 16, &list, &data)).unwrap();
        assert_eq!(w.sample_rate, 16000);
        assert_eq!(w.samples, [2000, -3000, i16::MAX, i16::MIN]);
    }

    #[test]
    fn ulaw_alaw_and_pcm8() {
        let codes: Vec<u8> = (0..=255).collect();
        let w = parse_wav(&wav(7, 1, 8000, 8, &[], &codes)).unwrap();
        let expect: Vec<i16> = codes.iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        assert_eq!(w.samples, expect);
        let w = parse_wav(&wav(6, 1, 8000, 8, &[], &codes)).unwrap();
        let expect: Vec<i16> = codes.iter().map(|&b| g711::alaw_to_linear(b)).collect();
        assert_eq!(w.samples, expect);
        let w = parse_wav(&wav(1, 1, 11025, 8, &[], &[0, 128, 255])).unwrap();
        assert_eq!(w.samples, [-32768, 0, 127 << 8]);
        // Odd-length µ-law data is padded; the pad byte is not a sample.
        let w = parse_wav(&wav(7, 1, 8000, 8, &[], &[0xFF, 0xFF, 0xFF])).unwrap();
        assert_eq!(w.samples.len(), 3);
    }

    #[test]
    fn extensible_format() {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&WAVE_FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&48000u32.to_le_bytes());
        fmt.extend_from_slice(&96000u32.to_le_bytes());
        fmt.extend_from_slice(&2u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes());
        fmt.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
        ]);
        let data = pcm16(&[5, -5]);
        let file = [
            b"RIFF".as_slice(),
            &0u32.to_le_bytes(), // streaming writer: unknown size
            b"WAVE",
            b"fmt ",
            &(fmt.len() as u32).to_le_bytes(),
            &fmt,
            b"data",
            &u32::MAX.to_le_bytes(), // unknown length: read to the end
            &data,
        ]
        .concat();
        let w = parse_wav(&file).unwrap();
        assert_eq!((w.sample_rate, w.samples), (48000, vec![5, -5]));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert_eq!(parse_wav(b""), Err(PlaybackError::NotRiff));
        assert_eq!(parse_wav(b"RIFX\0\0\0\0WAVE"), Err(PlaybackError::NotRiff));
        assert_eq!(parse_wav(b"RIFF\0\0\0\0AVI "), Err(PlaybackError::NotWave));
        assert_eq!(
            parse_wav(b"RIFF\0\0\0\0WAVE"),
            Err(PlaybackError::MissingFormat)
        );
        assert_eq!(
            parse_wav(&wav(3, 1, 8000, 32, &[], &[0; 8])),
            Err(PlaybackError::UnsupportedFormat {
                format: 3,
                bits: 32
            })
        );
        assert_eq!(
            parse_wav(&wav(1, 1, 8000, 24, &[], &[0; 6])),
            Err(PlaybackError::UnsupportedFormat {
                format: 1,
                bits: 24
            })
        );
        assert_eq!(
            parse_wav(&wav(1, 0, 8000, 16, &[], &[0; 4])),
            Err(PlaybackError::Channels(0))
        );
        assert_eq!(
            parse_wav(&wav(1, 1, 0, 16, &[], &[0; 4])),
            Err(PlaybackError::SampleRate(0))
        );
        assert_eq!(
            parse_wav(&wav(1, 1, 999, 16, &[], &[0; 4])),
            Err(PlaybackError::SampleRate(999))
        );
        let no_data = [
            b"RIFF".as_slice(),
            &[0; 4],
            b"WAVE",
            b"fmt ",
            &16u32.to_le_bytes(),
            &wav(1, 1, 8000, 16, &[], &[])[20..36],
        ]
        .concat();
        assert_eq!(parse_wav(&no_data), Err(PlaybackError::MissingData));
        let short_fmt = [
            b"RIFF".as_slice(),
            &[0; 4],
            b"WAVE",
            b"fmt ",
            &4u32.to_le_bytes(),
            &[1, 0, 1, 0],
        ]
        .concat();
        assert_eq!(parse_wav(&short_fmt), Err(PlaybackError::ShortFormat));
    }

    #[test]
    fn every_prefix_and_bit_flip_never_panics() {
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc", &[0]].concat();
        let file = wav(
            1,
            2,
            16000,
            16,
            &list,
            &pcm16(&sine(440.0, 16000, 64, 8000.0)),
        );
        for cut in 0..=file.len() {
            let _ = parse_wav(&file[..cut]);
        }
        for i in 0..file.len() {
            for mask in [0x01, 0x80, 0xFF] {
                let mut f = file.clone();
                f[i] ^= mask;
                let _ = parse_wav(&f);
            }
        }
        // A chunk size near u32::MAX before the data chunk.
        let huge = [b"JUNK".as_slice(), &u32::MAX.to_le_bytes()].concat();
        assert_eq!(
            parse_wav(&wav(1, 1, 8000, 16, &huge, &[0, 0])),
            Err(PlaybackError::MissingData)
        );
    }

    #[test]
    fn resample_round_trip_keeps_length_and_signal() {
        let src = sine(1000.0, 8000, 800, 10000.0);
        let up = resample(&src, 8000, 16000);
        assert_eq!(up.len(), 1600);
        let down = resample(&up, 16000, 8000);
        assert_eq!(down.len(), 800);
        // 1 kHz over 100 ms: 200 zero crossings at either rate.
        let zc = |s: &[i16]| zero_crossings(s) as i64;
        assert!((zc(&src) - 200).abs() <= 2, "{}", zc(&src));
        assert!((zc(&up) - 200).abs() <= 2, "{}", zc(&up));
        assert!((zc(&down) - 200).abs() <= 2, "{}", zc(&down));
        // Close to the original away from the edges (filter transient).
        let err: f64 = src[40..760]
            .iter()
            .zip(&down[40..760])
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / 720.0;
        assert!(err < 1500.0, "mean abs error {err}");
        // Up to 48 kHz and back.
        let hi = resample(&src, 8000, 48000);
        assert_eq!(hi.len(), 4800);
        assert!((zero_crossings(&hi) as i64 - 200).abs() <= 2);
        assert_eq!(resample(&hi, 48000, 8000).len(), 800);
        // Generic ratio.
        assert_eq!(resample(&src, 8000, 11025).len(), 1103);
    }

    #[test]
    fn decimation_filters_what_would_alias() {
        // 6 kHz at 16 kHz is above the 4 kHz Nyquist of 8 kHz: it must not
        // come back as a loud 2 kHz tone.
        let tone = sine(6000.0, 16000, 1600, 10000.0);
        let down = resample(&tone, 16000, 8000);
        let rms = (down[50..750]
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / 700.0)
            .sqrt();
        assert!(rms < 700.0, "rms {rms}");
        // While a 1 kHz tone passes at nearly full level.
        let pass = resample(&sine(1000.0, 16000, 1600, 10000.0), 16000, 8000);
        let rms = (pass[50..750]
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / 700.0)
            .sqrt();
        assert!((rms - 10000.0 / 2f64.sqrt()).abs() < 500.0, "rms {rms}");
    }

    #[test]
    fn resample_edges() {
        assert!(resample(&[], 8000, 16000).is_empty());
        assert!(resample(&[1, 2, 3], 0, 8000).is_empty());
        assert!(resample(&[1, 2, 3], 8000, 0).is_empty());
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), [1, 2, 3]);
        assert_eq!(resample(&[i16::MAX; 10], 8000, 16000), [i16::MAX; 20]);
        assert_eq!(resample(&[i16::MIN; 40], 48000, 8000), [i16::MIN; 7]);
        assert_eq!(resample(&[7], 8000, 48000), [7; 6]);
        assert!(resample(&[7], u32::MAX, 8000).is_empty());
        assert!(resample(&[7], 8000, 384_001).is_empty());
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn ramp(n: usize) -> Wav {
        Wav {
            sample_rate: 8000,
            samples: (1..=n as i16).collect(),
        }
    }

    #[test]
    fn pacing_on_virtual_time() {
        let t0 = Instant::now();
        // 400 samples = 2.5 frames of 160.
        let mut p = Playback::new(ramp(400), 8000, 20, false, t0);
        assert_eq!(p.poll_timeout(), Some(t0));
        let f = p.poll_frame(t0).unwrap();
        assert_eq!((f.samples.len(), f.rtp_timestamp_offset), (160, 0));
        assert_eq!(f.samples[0], 1);
        // Not early.
        assert_eq!(p.poll_timeout(), Some(ms(t0, 20)));
        assert!(p.poll_frame(ms(t0, 19)).is_none());
        let f = p.poll_frame(ms(t0, 20)).unwrap();
        assert_eq!((f.rtp_timestamp_offset, f.samples[0]), (160, 161));
        assert!(!p.is_done());
        let f = p.poll_frame(ms(t0, 40)).unwrap();
        assert_eq!(f.rtp_timestamp_offset, 320);
        assert_eq!(f.samples[79], 400);
        assert!(f.samples[80..].iter().all(|s| *s == 0), "zero-padded");
        assert!(p.is_done());
        assert_eq!(p.poll_timeout(), None);
        assert!(p.poll_frame(ms(t0, 1000)).is_none());
        assert_eq!(p.frames_sent(), 3);
    }

    #[test]
    fn late_poll_returns_due_frames_one_by_one() {
        let t0 = Instant::now();
        let mut p = Playback::new(ramp(1600), 8000, 20, false, t0);
        let late = ms(t0, 65);
        let offsets: Vec<u32> = std::iter::from_fn(|| p.poll_frame(late))
            .map(|f| f.rtp_timestamp_offset)
            .collect();
        assert_eq!(offsets, [0, 160, 320, 480]);
        assert_eq!(p.poll_timeout(), Some(ms(t0, 80)));
    }

    #[test]
    fn looped_restarts_without_a_gap() {
        let t0 = Instant::now();
        let mut p = Playback::new(ramp(240), 8000, 20, true, t0);
        let mut all = Vec::new();
        for i in 0..10u64 {
            let f = p.poll_frame(ms(t0, i * 20)).unwrap();
            assert_eq!(f.rtp_timestamp_offset, i as u32 * 160);
            all.extend(f.samples);
        }
        assert!(!p.is_done());
        let expect: Vec<i16> = (0..1600).map(|i| (i % 240 + 1) as i16).collect();
        assert_eq!(all, expect);
    }

    #[test]
    fn resampled_to_the_target_rate() {
        let t0 = Instant::now();
        // 20 ms at 8 kHz played at 16 kHz: one full frame of 320.
        let mut p = Playback::new(ramp(160), 16000, 20, false, t0);
        let f = p.poll_frame(t0).unwrap();
        assert_eq!(f.samples.len(), 320);
        assert!(p.is_done());
        // 48 kHz, 10 ms frames.
        let mut p = Playback::new(ramp(160), 48000, 10, false, t0);
        let f = p.poll_frame(t0).unwrap();
        assert_eq!(f.samples.len(), 480);
        assert_eq!(p.poll_frame(ms(t0, 10)).unwrap().rtp_timestamp_offset, 480);
    }

    #[test]
    fn degenerate_playbacks_play_nothing() {
        let t0 = Instant::now();
        for mut p in [
            Playback::new(ramp(0), 8000, 20, true, t0),
            Playback::new(ramp(100), 0, 20, false, t0),
            Playback::new(ramp(100), 8000, 0, true, t0),
            Playback::new(
                Wav {
                    sample_rate: 0,
                    samples: vec![1; 10],
                },
                8000,
                20,
                false,
                t0,
            ),
        ] {
            assert!(p.is_done());
            assert_eq!(p.poll_timeout(), None);
            assert!(p.poll_frame(ms(t0, 100)).is_none());
        }
        // A huge frame length neither allocates gigabytes nor overflows the clock.
        let mut p = Playback::new(ramp(100), 8000, u32::MAX, true, t0);
        assert!(p.is_done());
        assert!(p.poll_frame(t0).is_none());
    }
}
