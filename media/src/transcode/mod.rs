//! Transcoding between AMR-NB, AMR-WB, G.711 (µ-law / A-law) and Opus, in
//! any direction, used when the two legs of a call share no codec.
//!
//! ```text
//!  payload ─▶ decode ─▶ PCM @ decode rate ─▶ Resampler ─▶ FIFO @ encode rate
//!                                                         │ whole 20 ms frames
//!                                                         ▼
//!                                                      encode ─▶ payload
//! ```
//!
//! Payload conventions, in and out (the relay does the RTP framing):
//! - **G.711**: the RTP payload, one byte per 8 kHz sample.
//! - **AMR / AMR-WB**: one or more *storage-format* frames back to back:
//!   each is a header byte `(FT << 3) | (Q << 2)` followed by the speech
//!   bits octet-aligned, i.e. an RFC 4867 octet-aligned frame (and the
//!   `.amr` file format). The length of each frame follows from its FT
//!   ([`amr_nb_frame_len`], [`amr_wb_frame_len`]). Converting from/to an
//!   RTP payload (CMR, ToC, bandwidth-efficient packing) is the job of
//!   `payload::amr`, which this module deliberately does not depend on.
//! - **Opus**: one Opus packet (RFC 7587 payload), any duration up to
//!   120 ms; output packets carry all the whole 20 ms frames available (one
//!   20 ms packet per 20 ms of input in steady state).
//!
//! An input may carry up to 120 ms; the output carries every whole 20 ms
//! frame of the output codec the input completed, so a 10 ms Opus packet may
//! produce nothing and the next one a 20 ms frame. The call returns how many
//! samples, at the output codec's RTP clock rate, it wrote: the amount the
//! relay must advance the outgoing RTP timestamp by.
//!
//! Rates: G.711 and AMR-NB run at 8 kHz, AMR-WB at 16 kHz. Opus is always
//! signalled as 48000/2 but libopus encodes from and decodes to 8, 16 or
//! 48 kHz natively (the RTP clock stays 48 kHz), so the Opus side runs at the
//! rate of the other codec: Opus ⇄ AMR-NB needs no resampling at all, and no
//! second filter is stacked on libopus's own. The [`Resampler`] handles the
//! remaining 8 ⇄ 16 kHz conversions (and supports 48 kHz for other users).
//!
//! After warm-up (the first call sizes the buffers) no call allocates.

mod amr_ffi;
mod resample;

#[cfg(test)]
mod tests;

pub use amr_ffi::{
    amr_nb_frame_len, amr_wb_frame_len, AmrNbDecoder, AmrNbEncoder, AmrWbDecoder, AmrWbEncoder,
    AMR_NB_FRAME_SAMPLES, AMR_NB_MAX_FRAME, AMR_NB_MAX_MODE, AMR_WB_FRAME_SAMPLES,
    AMR_WB_MAX_FRAME, AMR_WB_MAX_MODE,
};
pub use resample::Resampler;

use crate::payload::g711;

/// Longest input accepted per call, in milliseconds (the longest Opus
/// packet); bounds every internal buffer.
pub const MAX_INPUT_MS: u32 = 120;
/// Largest Opus packet we produce or accept (RFC 6716 §3.4: 1275 bytes per
/// frame, at most 6 frames of 20 ms + framing), rounded up.
const MAX_OPUS_PACKET: usize = 8000;
/// Frames of 20 ms an Opus packet may carry (120 ms).
const MAX_OPUS_FRAMES: usize = 6;

/// A codec of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// AMR narrowband; `mode` (0 = 4.75 … 7 = 12.2 kbit/s) is the rate we
    /// encode at. Any mode is decoded.
    AmrNb { mode: u8 },
    /// AMR wideband; `mode` (0 = 6.60 … 8 = 23.85 kbit/s) is the rate we
    /// encode at. Any mode is decoded.
    AmrWb { mode: u8 },
    /// Opus, mono, 20 ms frames.
    Opus,
}

impl Codec {
    /// RTP clock rate, which for these codecs is also the sample rate of
    /// the signal as signalled in SDP (48000 for Opus).
    pub const fn sample_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma | Self::AmrNb { .. } => 8000,
            Self::AmrWb { .. } => 16000,
            Self::Opus => 48000,
        }
    }

    /// RTP timestamp units (samples at [`Self::sample_rate`]) per 20 ms frame.
    pub const fn frame_samples(self) -> usize {
        self.sample_rate() as usize / 50
    }

    fn check(self) -> Result<(), TranscodeError> {
        match self {
            Self::AmrNb { mode } if mode > AMR_NB_MAX_MODE => Err(TranscodeError::AmrMode {
                wideband: false,
                mode,
            }),
            Self::AmrWb { mode } if mode > AMR_WB_MAX_MODE => Err(TranscodeError::AmrMode {
                wideband: true,
                mode,
            }),
            _ => Ok(()),
        }
    }

    /// Rate of the PCM this codec exchanges with the pipeline when the
    /// other side is `peer` (see the module comment for Opus).
    fn pcm_rate(self, peer: Codec) -> u32 {
        match (self, peer) {
            (Self::Opus, Self::Opus) => 48000,
            (Self::Opus, peer) => peer.sample_rate(),
            (codec, _) => codec.sample_rate(),
        }
    }
}

/// Why a frame could not be transcoded. Nothing here is fatal to the
/// stream: the caller drops the packet (or conceals it) and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload of {0} bytes is longer than {MAX_INPUT_MS} ms")]
    TooLong(usize),
    #[error("AMR{} frame type {frame_type} is not accepted", wb(*.wideband))]
    AmrFrameType { wideband: bool, frame_type: u8 },
    #[error("AMR{} frame type {frame_type} needs {expected} bytes, got {got}", wb(*.wideband))]
    AmrFrameLength {
        wideband: bool,
        frame_type: u8,
        expected: usize,
        got: usize,
    },
    #[error("AMR{} mode {mode} does not exist", wb(*.wideband))]
    AmrMode { wideband: bool, mode: u8 },
    #[error("{0} could not be initialised")]
    CodecInit(&'static str),
    #[error("encoder: {0}")]
    Encode(&'static str),
    #[error("opus {function}: {description}")]
    Opus {
        function: &'static str,
        description: &'static str,
    },
}

fn wb(wideband: bool) -> &'static str {
    if wideband {
        "-WB"
    } else {
        ""
    }
}

impl From<opus2::Error> for TranscodeError {
    fn from(e: opus2::Error) -> Self {
        Self::Opus {
            function: e.function(),
            description: e.description(),
        }
    }
}

enum Decoder {
    Pcmu,
    Pcma,
    AmrNb(AmrNbDecoder),
    AmrWb(AmrWbDecoder),
    Opus(opus2::Decoder),
}

/// The AMR encoders carry their input/output buffers inline; boxed so the
/// other variants stay small.
enum Encoder {
    Pcmu,
    Pcma,
    AmrNb(Box<AmrNbEncoder>, u8),
    AmrWb(Box<AmrWbEncoder>, u8),
    Opus(opus2::Encoder),
}

/// One direction of a transcoded call: `from` payloads in, `to` payloads
/// out. Holds codec states and filter history, so use one per stream.
pub struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: Decoder,
    encoder: Encoder,
    resampler: Resampler,
    /// Decoded PCM of the current input, at the decode rate.
    pcm: Vec<i16>,
    /// Resampled PCM not yet encoded, at the encode rate.
    fifo: Vec<i16>,
    /// Samples per 20 ms at the decode and encode rates.
    dec_frame: usize,
    enc_frame: usize,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("pending", &self.fifo.len())
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    /// Sets up decoder, resampler and encoder for `from` → `to`.
    pub fn new(from: Codec, to: Codec) -> Result<Self, TranscodeError> {
        from.check()?;
        to.check()?;
        let dec_rate = from.pcm_rate(to);
        let enc_rate = to.pcm_rate(from);
        let decoder = match from {
            Codec::Pcmu => Decoder::Pcmu,
            Codec::Pcma => Decoder::Pcma,
            Codec::AmrNb { .. } => Decoder::AmrNb(AmrNbDecoder::new()?),
            Codec::AmrWb { .. } => Decoder::AmrWb(AmrWbDecoder::new()?),
            Codec::Opus => Decoder::Opus(opus2::Decoder::new(dec_rate, opus2::Channels::Mono)?),
        };
        let encoder = match to {
            Codec::Pcmu => Encoder::Pcmu,
            Codec::Pcma => Encoder::Pcma,
            // DTX off: the other leg's RTP stream stays continuous, which is
            // what a transcoded leg's jitter buffer and stats expect.
            Codec::AmrNb { mode } => Encoder::AmrNb(Box::new(AmrNbEncoder::new(false)?), mode),
            Codec::AmrWb { mode } => Encoder::AmrWb(Box::new(AmrWbEncoder::new(false)?), mode),
            Codec::Opus => Encoder::Opus(opus_encoder(enc_rate)?),
        };
        let resampler =
            Resampler::new(dec_rate, enc_rate).ok_or(TranscodeError::CodecInit("resampler"))?;
        let dec_frame = dec_rate as usize / 50;
        let enc_frame = enc_rate as usize / 50;
        let max_ms = MAX_INPUT_MS as usize;
        Ok(Self {
            from,
            to,
            decoder,
            encoder,
            resampler,
            pcm: Vec::with_capacity(dec_frame * max_ms / 20),
            fifo: Vec::with_capacity(enc_frame * (max_ms / 20 + 1)),
            dec_frame,
            enc_frame,
        })
    }

    /// Input codec.
    pub fn from(&self) -> Codec {
        self.from
    }

    /// Output codec.
    pub fn to(&self) -> Codec {
        self.to
    }

    /// Transcodes one payload of the input codec (see the module comment
    /// for the per-codec format), writing zero or more output frames into
    /// `out` (cleared first). Returns the RTP timestamp advance of what was
    /// written, in units of the output codec's clock rate.
    ///
    /// A malformed input is an error and produces no output; the caller
    /// drops it and may call [`Self::conceal`] instead. G.711 and AMR inputs
    /// are validated completely before any codec state changes; Opus packets
    /// are validated by libopus.
    pub fn transcode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, TranscodeError> {
        out.clear();
        if input.is_empty() {
            return Err(TranscodeError::Empty);
        }
        self.pcm.clear();
        self.decode(input)?;
        self.push_pcm();
        self.encode_ready(out)
    }

    /// Feeds one lost 20 ms input frame through the decoder's packet-loss
    /// concealment (AMR bad-frame handling, Opus PLC; G.711 has none, so
    /// silence) and encodes the result like [`Self::transcode`]. Returns the
    /// RTP timestamp advance written (0 if the encoder failed).
    pub fn conceal(&mut self, out: &mut Vec<u8>) -> usize {
        out.clear();
        self.pcm.clear();
        match &mut self.decoder {
            Decoder::Pcmu | Decoder::Pcma => self.pcm.resize(self.dec_frame, 0),
            Decoder::AmrNb(d) => {
                let mut frame = [0i16; AMR_NB_FRAME_SAMPLES];
                d.conceal(&mut frame);
                self.pcm.extend_from_slice(&frame);
            }
            Decoder::AmrWb(d) => {
                let mut frame = [0i16; AMR_WB_FRAME_SAMPLES];
                d.conceal(&mut frame);
                self.pcm.extend_from_slice(&frame);
            }
            Decoder::Opus(d) => {
                self.pcm.resize(self.dec_frame, 0);
                // Empty input = lost packet; the output length asks libopus
                // for 20 ms of concealment.
                match d.decode(&[], &mut self.pcm, false) {
                    Ok(n) => self.pcm.truncate(n),
                    Err(_) => self.pcm.fill(0),
                }
            }
        }
        self.push_pcm();
        self.encode_ready(out).unwrap_or(0)
    }

    /// Decodes `input` into `self.pcm`, validating it completely first.
    fn decode(&mut self, input: &[u8]) -> Result<(), TranscodeError> {
        let max_ms = MAX_INPUT_MS as usize;
        match &mut self.decoder {
            Decoder::Pcmu | Decoder::Pcma => {
                if input.len() > self.dec_frame * max_ms / 20 {
                    return Err(TranscodeError::TooLong(input.len()));
                }
                if matches!(self.decoder, Decoder::Pcmu) {
                    g711::decode_ulaw(input, &mut self.pcm);
                } else {
                    g711::decode_alaw(input, &mut self.pcm);
                }
            }
            Decoder::AmrNb(d) => {
                check_amr(input, false, amr_nb_frame_len)?;
                let mut frame = [0i16; AMR_NB_FRAME_SAMPLES];
                for bytes in AmrFrames::new(input, amr_nb_frame_len) {
                    d.decode(bytes, &mut frame)?;
                    self.pcm.extend_from_slice(&frame);
                }
            }
            Decoder::AmrWb(d) => {
                check_amr(input, true, amr_wb_frame_len)?;
                let mut frame = [0i16; AMR_WB_FRAME_SAMPLES];
                for bytes in AmrFrames::new(input, amr_wb_frame_len) {
                    d.decode(bytes, &mut frame)?;
                    self.pcm.extend_from_slice(&frame);
                }
            }
            Decoder::Opus(d) => {
                if input.len() > MAX_OPUS_PACKET {
                    return Err(TranscodeError::TooLong(input.len()));
                }
                // Room for the longest packet; libopus checks the packet's
                // own duration against it and rejects malformed packets.
                self.pcm.resize(self.dec_frame * max_ms / 20, 0);
                let n = d.decode(input, &mut self.pcm, false);
                match n {
                    Ok(n) => self.pcm.truncate(n),
                    Err(e) => {
                        self.pcm.clear();
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    fn push_pcm(&mut self) {
        self.resampler.process(&self.pcm, &mut self.fifo);
    }

    /// Encodes every whole 20 ms frame waiting in the FIFO into `out`.
    fn encode_ready(&mut self, out: &mut Vec<u8>) -> Result<usize, TranscodeError> {
        let mut frames = self.fifo.len() / self.enc_frame;
        if frames == 0 {
            return Ok(0);
        }
        let result = match &mut self.encoder {
            Encoder::Pcmu => {
                let pcm = self.fifo.get(..frames * self.enc_frame).unwrap_or_default();
                g711::encode_ulaw(pcm, out);
                Ok(())
            }
            Encoder::Pcma => {
                let pcm = self.fifo.get(..frames * self.enc_frame).unwrap_or_default();
                g711::encode_alaw(pcm, out);
                Ok(())
            }
            Encoder::AmrNb(e, mode) => encode_amr(&self.fifo, self.enc_frame, frames, |pcm| {
                let pcm: &[i16; AMR_NB_FRAME_SAMPLES] = pcm.try_into().ok()?;
                Some(e.encode(*mode, pcm).map(|f| out.extend_from_slice(f)))
            }),
            Encoder::AmrWb(e, mode) => encode_amr(&self.fifo, self.enc_frame, frames, |pcm| {
                let pcm: &[i16; AMR_WB_FRAME_SAMPLES] = pcm.try_into().ok()?;
                Some(e.encode(*mode, pcm).map(|f| out.extend_from_slice(f)))
            }),
            Encoder::Opus(e) => {
                // One packet must carry everything (an RTP payload holds a
                // single Opus packet); libopus encodes 20-120 ms frames.
                frames = frames.min(MAX_OPUS_FRAMES);
                let pcm = self.fifo.get(..frames * self.enc_frame).unwrap_or_default();
                out.resize(MAX_OPUS_PACKET, 0);
                match e.encode(pcm, out) {
                    Ok(n) => {
                        out.truncate(n);
                        Ok(())
                    }
                    Err(err) => {
                        out.clear();
                        Err(err.into())
                    }
                }
            }
        };
        // Drop the consumed PCM even on failure, so a broken encoder cannot
        // make the FIFO grow without bound.
        self.fifo
            .drain(..(frames * self.enc_frame).min(self.fifo.len()));
        result.map(|()| frames * self.to.frame_samples())
    }
}

/// Encodes `frames` whole frames from the FIFO, one call of `encode` per
/// frame-sized slice; `encode` returns `None` if the slice has the wrong
/// size (which the chunking rules out).
fn encode_amr(
    fifo: &[i16],
    frame_len: usize,
    frames: usize,
    mut encode: impl FnMut(&[i16]) -> Option<Result<(), TranscodeError>>,
) -> Result<(), TranscodeError> {
    for pcm in fifo.chunks_exact(frame_len.max(1)).take(frames) {
        encode(pcm).unwrap_or(Err(TranscodeError::Encode("frame size")))?;
    }
    Ok(())
}

/// Mono VoIP encoder at `rate`, 20 ms frames, no FEC, no DTX.
pub(crate) fn opus_encoder(rate: u32) -> Result<opus2::Encoder, TranscodeError> {
    let mut e = opus2::Encoder::new(rate, opus2::Channels::Mono, opus2::Application::Voip)?;
    // Enough for transparent speech at each bandwidth without wasting the
    // leg's bandwidth; the peer's SDP `maxaveragebitrate` could lower it.
    let bitrate = match rate {
        8000 => 16_000,
        16000 => 24_000,
        _ => 32_000,
    };
    e.set_bitrate(opus2::Bitrate::Bits(bitrate))?;
    e.set_signal(opus2::Signal::Voice)?;
    e.set_inband_fec(false)?;
    e.set_dtx(false)?;
    Ok(e)
}

/// Walks the storage frames of an AMR input; `check_amr` has validated it.
struct AmrFrames<'a> {
    rest: &'a [u8],
    len_of: fn(u8) -> Option<usize>,
}

impl<'a> AmrFrames<'a> {
    fn new(input: &'a [u8], len_of: fn(u8) -> Option<usize>) -> Self {
        Self {
            rest: input,
            len_of,
        }
    }
}

impl<'a> Iterator for AmrFrames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = (self.len_of)(*self.rest.first()?)?;
        if len > self.rest.len() {
            return None;
        }
        let (frame, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(frame)
    }
}

/// Validates a run of AMR storage frames: known frame types, exact total
/// length, at most [`MAX_INPUT_MS`] of audio.
fn check_amr(
    input: &[u8],
    wideband: bool,
    len_of: fn(u8) -> Option<usize>,
) -> Result<(), TranscodeError> {
    let max_frames = (MAX_INPUT_MS / 20) as usize;
    let mut rest = input;
    let mut frames = 0;
    while let Some(&header) = rest.first() {
        let frame_type = (header >> 3) & 0x0F;
        let expected = len_of(header).ok_or(TranscodeError::AmrFrameType {
            wideband,
            frame_type,
        })?;
        if expected > rest.len() {
            return Err(TranscodeError::AmrFrameLength {
                wideband,
                frame_type,
                expected,
                got: rest.len(),
            });
        }
        frames += 1;
        if frames > max_frames {
            return Err(TranscodeError::TooLong(input.len()));
        }
        rest = rest.get(expected..).unwrap_or_default();
    }
    Ok(())
}
