//! What the relay itself sends into a leg: RFC 4733 digits
//! ([`crate::relay::Relay::send_dtmf`]) and WAV prompts
//! ([`crate::relay::Relay::play`]). The state here is per leg and owned by
//! the relay, which numbers the packets on the leg's output stream.
//!
//! ```text
//!  send_dtmf ─▶ DtmfTx (DtmfSender, one packet per 50 ms) ─┐
//!  play ──────▶ PlayTx (Playback, one 20 ms frame,          ├─▶ rtp::write with the leg's
//!               FrameEncoder in the leg's codec) ───────────┘   SSRC, next seq, ts ─▶ Transmit
//! ```
//!
//! Timestamps (RFC 4733 §2.1): events "MUST use the same sequence number
//! and timestamp base as the regular audio channel", so a press's RTP
//! timestamp is a position on the leg's audio timeline. Its duration field
//! counts telephone-event clock units, which RFC 4733 recommends (and 3GPP
//! TS 26.114 §G.2 requires) to be the audio clock; when the SDP says
//! otherwise the offsets between presses are scaled to the audio clock.

use std::time::{Duration, Instant};

use crate::format::Encoding;
use crate::payload::dtmf::{DtmfError, DtmfSender};
use crate::playback::Playback;

/// One telephone-event packet per 50 ms during a press (RFC 4733 §2.5.1.2
/// leaves the rate to the sender; 50 ms is customary).
pub(crate) const DTMF_INTERVAL: Duration = Duration::from_millis(50);
/// Played audio goes out in 20 ms frames, the usual ptime of every codec
/// the relay encodes.
pub(crate) const FRAME_MS: u32 = 20;

/// What the relay is sending into one leg.
#[derive(Debug, Default)]
pub(crate) struct Inject {
    pub(crate) dtmf: Option<DtmfTx>,
    pub(crate) play: Option<PlayTx>,
}

impl Inject {
    pub(crate) fn is_idle(&self) -> bool {
        self.dtmf.is_none() && self.play.is_none()
    }
}

/// Digits being sent: the paced [`DtmfSender`] and where its presses sit on
/// the leg's audio timeline.
#[derive(Debug)]
pub(crate) struct DtmfTx {
    sender: DtmfSender,
    pub(crate) payload_type: u8,
    event_rate: u32,
    audio_rate: u32,
    /// Audio timestamp of the sender's timestamp 0 (the first press).
    base_ts: u32,
    /// When the next packet is due.
    pub(crate) next_due: Instant,
}

impl DtmfTx {
    /// A sender of telephone-event `payload_type` at `event_rate` on a leg
    /// whose audio clock is `audio_rate`; its first packet is due `now`.
    pub(crate) fn new(payload_type: u8, event_rate: u32, audio_rate: u32, now: Instant) -> Self {
        let interval = u32::try_from(DTMF_INTERVAL.as_millis()).unwrap_or(50);
        DtmfTx {
            sender: DtmfSender::new(event_rate, interval),
            payload_type,
            event_rate: event_rate.max(1),
            audio_rate: audio_rate.max(1),
            base_ts: 0,
            next_due: now,
        }
    }

    /// Places the first press at `ts` on the audio timeline.
    pub(crate) fn set_base(&mut self, ts: u32) {
        self.base_ts = ts;
    }

    /// Queues `digits` behind what is being sent (all or none: the
    /// sender validates every digit and the duration before queuing).
    pub(crate) fn queue(&mut self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        // The sender's timeline starts at 0; `base_ts` maps it.
        self.sender.start_digits(digits, duration_ms, 0)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.sender.is_idle()
    }

    /// The next packet (marker, RTP timestamp on the audio timeline,
    /// payload); moves the deadline on by one interval.
    pub(crate) fn next_packet(&mut self) -> Option<(bool, u32, [u8; 4])> {
        let (marker, offset, payload) = self.sender.next_packet()?;
        self.next_due = self
            .next_due
            .checked_add(DTMF_INTERVAL)
            .unwrap_or(self.next_due);
        let scaled = if self.event_rate == self.audio_rate {
            offset
        } else {
            // Modulo 2^32 like every RTP timestamp.
            (u64::from(offset) * u64::from(self.audio_rate) / u64::from(self.event_rate)) as u32
        };
        Some((marker, self.base_ts.wrapping_add(scaled), payload))
    }
}

/// The PCM rate (= RTP clock) the relay encodes prompts at for
/// `encoding`, if it can encode it (see [`FrameEncoder::new`]).
pub(crate) fn encoder_rate(encoding: Encoding) -> Option<u32> {
    match encoding {
        Encoding::Pcmu | Encoding::Pcma => Some(8000),
        #[cfg(feature = "transcode")]
        Encoding::Amr { .. } | Encoding::Opus => Some(encoding.clock_rate()),
        _ => None,
    }
}

/// A prompt being played: paced PCM frames, encoded in the leg's codec.
#[derive(Debug)]
pub(crate) struct PlayTx {
    playback: Playback,
    encoder: FrameEncoder,
    pub(crate) payload_type: u8,
    /// Audio timestamp of the first frame.
    base_ts: u32,
    /// One frame of PCM, reused.
    pcm: Vec<i16>,
    first: bool,
}

impl PlayTx {
    pub(crate) fn new(
        playback: Playback,
        encoder: FrameEncoder,
        payload_type: u8,
        base_ts: u32,
    ) -> Self {
        PlayTx {
            playback,
            encoder,
            payload_type,
            base_ts,
            pcm: Vec::new(),
            first: true,
        }
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.playback.poll_timeout()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.playback.is_done()
    }

    /// Encodes the frame due at `now` into `out`: (marker, RTP timestamp),
    /// or None when none is due or the encoder failed on it (the frame is
    /// skipped: the far end hears a gap, the timeline moves on).
    pub(crate) fn next_frame(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<(bool, u32)> {
        let offset = self.playback.poll_frame_into(now, &mut self.pcm)?;
        if !self.encoder.encode(&self.pcm, out) {
            return None;
        }
        // RFC 3551 §4.1: the marker starts a talkspurt.
        let marker = std::mem::replace(&mut self.first, false);
        Some((marker, self.base_ts.wrapping_add(offset)))
    }
}

/// An encoder of 20 ms PCM frames into one RTP payload of a leg's codec.
pub(crate) enum FrameEncoder {
    Pcmu,
    Pcma,
    /// AMR-NB 12.2 kbit/s, in the leg's payload mode.
    #[cfg(feature = "transcode")]
    AmrNb(
        Box<crate::transcode::AmrNbEncoder>,
        crate::payload::amr::PayloadMode,
    ),
    /// AMR-WB 23.85 kbit/s, in the leg's payload mode.
    #[cfg(feature = "transcode")]
    AmrWb(
        Box<crate::transcode::AmrWbEncoder>,
        crate::payload::amr::PayloadMode,
    ),
    /// Opus at 48 kHz (its RTP clock), mono.
    #[cfg(feature = "transcode")]
    Opus(Box<opus2::Encoder>),
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            FrameEncoder::Pcmu => "PCMU",
            FrameEncoder::Pcma => "PCMA",
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrNb(..) => "AMR",
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrWb(..) => "AMR-WB",
            #[cfg(feature = "transcode")]
            FrameEncoder::Opus(_) => "opus",
        };
        f.write_str(name)
    }
}

impl FrameEncoder {
    /// The encoder of `encoding`: G.711 always; AMR, AMR-WB and Opus with
    /// the `transcode` feature; None otherwise.
    pub(crate) fn new(encoding: Encoding) -> Option<FrameEncoder> {
        match encoding {
            Encoding::Pcmu => Some(FrameEncoder::Pcmu),
            Encoding::Pcma => Some(FrameEncoder::Pcma),
            #[cfg(feature = "transcode")]
            Encoding::Amr {
                wideband,
                octet_aligned,
            } => {
                use crate::payload::amr::PayloadMode;
                let mode = if octet_aligned {
                    PayloadMode::OctetAligned
                } else {
                    PayloadMode::BandwidthEfficient
                };
                // DTX off: a prompt is a continuous stream.
                if wideband {
                    let e = crate::transcode::AmrWbEncoder::new(false).ok()?;
                    Some(FrameEncoder::AmrWb(Box::new(e), mode))
                } else {
                    let e = crate::transcode::AmrNbEncoder::new(false).ok()?;
                    Some(FrameEncoder::AmrNb(Box::new(e), mode))
                }
            }
            #[cfg(feature = "transcode")]
            Encoding::Opus => crate::transcode::opus_encoder(48000)
                .ok()
                .map(|e| FrameEncoder::Opus(Box::new(e))),
            _ => None,
        }
    }

    /// The PCM sample rate the encoder takes, which is also the RTP clock
    /// of its payloads.
    pub(crate) fn rate(&self) -> u32 {
        match self {
            FrameEncoder::Pcmu | FrameEncoder::Pcma => 8000,
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrNb(..) => 8000,
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrWb(..) => 16000,
            #[cfg(feature = "transcode")]
            FrameEncoder::Opus(_) => 48000,
        }
    }

    /// Encodes one 20 ms frame at [`FrameEncoder::rate`] into `out`
    /// (cleared first); false if the encoder refused it.
    pub(crate) fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> bool {
        out.clear();
        match self {
            FrameEncoder::Pcmu => crate::payload::g711::encode_ulaw(pcm, out),
            FrameEncoder::Pcma => crate::payload::g711::encode_alaw(pcm, out),
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrNb(e, mode) => {
                let Ok(pcm) = pcm.try_into() else {
                    return false;
                };
                let Ok(storage) = e.encode(AMR_NB_MODE, pcm) else {
                    return false;
                };
                return amr_payload(crate::payload::amr::AmrKind::Nb, *mode, storage, out);
            }
            #[cfg(feature = "transcode")]
            FrameEncoder::AmrWb(e, mode) => {
                let Ok(pcm) = pcm.try_into() else {
                    return false;
                };
                let Ok(storage) = e.encode(AMR_WB_MODE, pcm) else {
                    return false;
                };
                return amr_payload(crate::payload::amr::AmrKind::Wb, *mode, storage, out);
            }
            #[cfg(feature = "transcode")]
            FrameEncoder::Opus(e) => {
                // RFC 6716 §3.4: at most 1275 bytes per 20 ms frame.
                out.resize(1275, 0);
                match e.encode(pcm, out) {
                    Ok(n) => out.truncate(n),
                    Err(_) => {
                        out.clear();
                        return false;
                    }
                }
            }
        }
        !out.is_empty()
    }
}

/// The highest AMR rates (12.2 and 23.85 kbit/s), as the transcoder uses.
#[cfg(feature = "transcode")]
const AMR_NB_MODE: u8 = 7;
#[cfg(feature = "transcode")]
const AMR_WB_MODE: u8 = 8;

/// One storage-format AMR frame (header byte, speech bits) as an RFC 4867
/// payload in `mode`, CMR 15 (no mode request).
#[cfg(feature = "transcode")]
fn amr_payload(
    kind: crate::payload::amr::AmrKind,
    mode: crate::payload::amr::PayloadMode,
    storage: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Some((&header, bits)) = storage.split_first() else {
        return false;
    };
    let frame = ((header >> 3) & 0x0F, header & 0x04 != 0, bits);
    crate::payload::amr::build(kind, mode, 15, &[frame], out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::dtmf;

    #[test]
    fn digits_on_the_audio_timeline() {
        let t0 = Instant::now();
        // telephone-event/8000 next to a 16 kHz codec: offsets doubled.
        let mut tx = DtmfTx::new(101, 8000, 16000, t0);
        tx.queue("12", 100).unwrap();
        tx.set_base(1_000_000);
        let packets: Vec<_> = std::iter::from_fn(|| tx.next_packet()).collect();
        assert_eq!(packets.len(), 10);
        assert!(tx.is_idle());
        assert_eq!(tx.next_due, t0 + DTMF_INTERVAL * 10);
        assert!(packets[..5].iter().all(|p| p.1 == 1_000_000));
        // The second press starts 250 ms later: 2000 event units, 4000 audio.
        assert!(packets[5..].iter().all(|p| p.1 == 1_004_000));
        // Durations stay in event units: 100 ms = 800.
        let last = dtmf::parse(&packets[4].2).unwrap();
        assert_eq!((last.end, last.duration), (true, 800));
        assert_eq!(
            tx.queue("x", 100),
            Err(DtmfError::UnknownDigit { digit: 'x' })
        );
    }

    #[test]
    fn g711_frames() {
        let mut e = FrameEncoder::new(Encoding::Pcma).unwrap();
        assert_eq!(e.rate(), 8000);
        let mut out = Vec::new();
        assert!(e.encode(&[0i16; 160], &mut out));
        assert_eq!(out, [0xD5; 160]);
        let mut e = FrameEncoder::new(Encoding::Pcmu).unwrap();
        assert!(e.encode(&[0i16; 160], &mut out));
        assert_eq!(out, [0xFF; 160]);
        assert!(FrameEncoder::new(Encoding::Other { clock_rate: 8000 }).is_none());
        #[cfg(not(feature = "transcode"))]
        assert!(FrameEncoder::new(Encoding::Opus).is_none());
    }

    #[cfg(feature = "transcode")]
    #[test]
    fn amr_and_opus_frames() {
        use crate::payload::amr::{AmrKind, AmrPayload, PayloadMode};
        let mut out = Vec::new();
        let mut nb = FrameEncoder::new(Encoding::Amr {
            wideband: false,
            octet_aligned: false,
        })
        .unwrap();
        assert_eq!(nb.rate(), 8000);
        assert!(nb.encode(&[100i16; 160], &mut out));
        let p = AmrPayload::parse(AmrKind::Nb, PayloadMode::BandwidthEfficient, &out).unwrap();
        assert_eq!(p.frames.len(), 1);
        assert_eq!(p.frames[0].ft, 7);
        // A frame of the wrong size is refused, not a panic.
        assert!(!nb.encode(&[0i16; 100], &mut out));
        let mut wb = FrameEncoder::new(Encoding::Amr {
            wideband: true,
            octet_aligned: true,
        })
        .unwrap();
        assert_eq!(wb.rate(), 16000);
        assert!(wb.encode(&[100i16; 320], &mut out));
        let p = AmrPayload::parse(AmrKind::Wb, PayloadMode::OctetAligned, &out).unwrap();
        assert_eq!(p.frames[0].ft, 8);
        let mut opus = FrameEncoder::new(Encoding::Opus).unwrap();
        assert_eq!(opus.rate(), 48000);
        assert!(opus.encode(&[0i16; 960], &mut out));
        let packet = crate::payload::opus::parse_payload(&out).unwrap().unwrap();
        assert_eq!(packet.samples_48k(), 960);
    }
}
