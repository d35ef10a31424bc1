//! AMR (narrowband, 8 kHz) and AMR-WB (16 kHz) RTP payloads, RFC 4867 §4:
//! bandwidth-efficient (§4.3) and octet-aligned (§4.4) modes, parsed, built
//! and converted into each other without decoding speech.
//!
//! Single channel only, no interleaving, no frame CRC, no robust sorting:
//! those need SDP parameters the relay refuses in the offer/answer
//! ([`PayloadMode::from_fmtp`]), so they never reach this module.
//!
//! Bandwidth-efficient mode (§4.3): everything is packed bit after bit, and
//! only the whole payload is padded to an octet.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  CMR  |F|  FT   |Q|F|  FT   |Q| ... speech frame 1 ...          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | ... speech frame 1 | speech frame 2 ...            |P|P|P|P|P|P|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Octet-aligned mode (§4.4): the CMR and each ToC entry take one octet
//! each, and every speech frame is padded to a whole octet.
//!
//! ```text
//!  0 1 2 3 4 5 6 7   0 1 2 3 4 5 6 7   0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+ +-+-+-+-+-+-+-+-+ +-+-+-+-+-+-+-+-+
//! |  CMR  |R|R|R|R| |F|  FT   |Q|P|P| |F|  FT   |Q|P|P| ...
//! +-+-+-+-+-+-+-+-+ +-+-+-+-+-+-+-+-+ +-+-+-+-+-+-+-+-+
//!  speech frame 1 ...       |P|P|P|P|  speech frame 2 ...   |P|P|
//! ```
//!
//! CMR: codec mode request (15 = none; other values outside the speech
//! modes are carried unchanged, §4.3.1 lets the receiver ignore them).
//! F: another ToC entry follows. FT: frame type (sizes in
//! [`AmrKind::frame_bits`], from 3GPP TS 26.101 Table 1a and TS 26.201
//! Table 1a). Q: frame quality (0 = damaged). Speech bits are carried in
//! the order the codec gives them (class-ordered, §4.3.2); this module never
//! reorders them.
//!
//! Frames are copied with a bit reader/writer over the slices: conversion
//! runs on every packet of a call whose legs use different modes, so it
//! does no allocation beyond the caller's output buffer.

/// Why an AMR payload was refused; [`AmrError::label`] is the metrics reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmrError {
    #[error("payload ends inside the CMR or the table of contents")]
    Truncated,
    #[error("frame type {ft} is reserved (RFC 4867 §4.3.2: discard the packet)")]
    FrameType { ft: u8 },
    #[error("payload is {actual} octets, its table of contents says {expected}")]
    Length { expected: usize, actual: usize },
    #[error("a payload carries at least one frame")]
    Empty,
    #[error("CMR {cmr} does not fit in 4 bits")]
    Cmr { cmr: u8 },
    #[error("frame {index} (type {ft}) has {actual} octets, it needs {expected}")]
    FrameLength {
        index: usize,
        ft: u8,
        expected: usize,
        actual: usize,
    },
    #[error("AMR {feature} is not supported")]
    Unsupported { feature: &'static str },
}

impl AmrError {
    pub fn label(self) -> &'static str {
        match self {
            AmrError::Truncated => "amr_truncated",
            AmrError::FrameType { .. } => "amr_frame_type",
            AmrError::Length { .. } => "amr_length",
            AmrError::Empty => "amr_empty",
            AmrError::Cmr { .. } => "amr_cmr",
            AmrError::FrameLength { .. } => "amr_frame_length",
            AmrError::Unsupported { .. } => "amr_unsupported",
        }
    }
}

/// AMR (narrowband) or AMR-WB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmrKind {
    /// AMR, 8 kHz (`AMR/8000`).
    Nb,
    /// AMR-WB, 16 kHz (`AMR-WB/16000`).
    Wb,
}

/// Speech and SID frame sizes in bits, FT 0..=8 (3GPP TS 26.101 Table 1a).
const NB_FRAME_BITS: [u16; 9] = [95, 103, 118, 134, 148, 159, 204, 244, 39];
/// Speech and SID frame sizes in bits, FT 0..=9 (3GPP TS 26.201 Table 1a).
const WB_FRAME_BITS: [u16; 10] = [132, 177, 253, 285, 317, 365, 397, 461, 477, 40];

/// FT 15: no frame in this slot (DTX, or nothing to send), 0 bits.
pub const FT_NO_DATA: u8 = 15;
/// FT 14 in AMR-WB only: the frame was lost before the packetizer, 0 bits.
pub const FT_SPEECH_LOST: u8 = 14;

impl AmrKind {
    /// The RTP clock rate (RFC 4867 §8.1/§8.2).
    pub fn sample_rate(self) -> u32 {
        match self {
            AmrKind::Nb => 8000,
            AmrKind::Wb => 16000,
        }
    }

    /// Samples in one 20 ms frame: the RTP timestamp step per frame (§4.1).
    pub fn samples_per_frame(self) -> u32 {
        self.sample_rate() / 50
    }

    /// Frame size in bits for frame type `ft`, or `None` for a reserved type.
    ///
    /// AMR: 0-7 speech, 8 SID, 15 NO_DATA; 9-11 are the SIDs of GSM-EFR,
    /// TDMA-EFR and PDC-EFR (other codecs) and 12-14 are for future use, so
    /// 9-14 are refused as §4.3.2 asks. AMR-WB: 0-8 speech, 9 SID,
    /// 14 SPEECH_LOST, 15 NO_DATA; 10-13 are refused.
    pub fn frame_bits(self, ft: u8) -> Option<usize> {
        let table: &[u16] = match self {
            AmrKind::Nb => &NB_FRAME_BITS,
            AmrKind::Wb => &WB_FRAME_BITS,
        };
        match (self, ft) {
            (_, FT_NO_DATA) | (AmrKind::Wb, FT_SPEECH_LOST) => Some(0),
            _ => table.get(usize::from(ft)).map(|&b| usize::from(b)),
        }
    }

    /// Frame type of the SID (comfort noise) frame.
    pub fn sid_ft(self) -> u8 {
        match self {
            AmrKind::Nb => 8,
            AmrKind::Wb => 9,
        }
    }

    /// True for the speech modes (not SID, not NO_DATA/SPEECH_LOST).
    pub fn is_speech(self, ft: u8) -> bool {
        ft < self.sid_ft()
    }
}

/// The two payload layouts of RFC 4867 §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadMode {
    /// §4.3, `octet-align=0` or absent.
    BandwidthEfficient,
    /// §4.4, `octet-align=1`.
    OctetAligned,
}

impl PayloadMode {
    /// The mode for an `a=fmtp` line, refusing what this module does not
    /// carry: `crc=1`, `robust-sorting=1` and `interleaving` (any value)
    /// change the octet-aligned layout (§4.4.2.1, §4.4.3, §4.4.4), so the
    /// SDP layer must not accept them.
    pub fn from_fmtp(
        octet_align: bool,
        crc: bool,
        robust_sorting: bool,
        interleaving: bool,
    ) -> Result<PayloadMode, AmrError> {
        if crc {
            return Err(AmrError::Unsupported { feature: "crc" });
        }
        if robust_sorting {
            return Err(AmrError::Unsupported {
                feature: "robust-sorting",
            });
        }
        if interleaving {
            return Err(AmrError::Unsupported {
                feature: "interleaving",
            });
        }
        Ok(if octet_align {
            PayloadMode::OctetAligned
        } else {
            PayloadMode::BandwidthEfficient
        })
    }
}

/// One ToC entry and where its speech bits are in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmrFrame {
    /// Frame type (FT).
    pub ft: u8,
    /// Frame quality indicator (Q): false = damaged.
    pub q: bool,
    /// Speech bits in the frame (0 for NO_DATA and SPEECH_LOST).
    pub bits: usize,
    /// Bit offset of the frame's first bit from the start of the payload.
    pub bit_offset: usize,
}

/// A parsed, validated payload; the speech bits stay in the borrowed slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmrPayload<'a> {
    pub kind: AmrKind,
    pub mode: PayloadMode,
    /// Codec mode request, 4 bits.
    pub cmr: u8,
    /// In ToC order; the last one is the entry with F = 0.
    pub frames: Vec<AmrFrame>,
    data: &'a [u8],
}

impl<'a> AmrPayload<'a> {
    /// Parses and validates a payload: ToC chain, frame types, and a length
    /// that is exactly what the ToC announces (a longer or shorter payload
    /// is refused: it is also the sign of a peer in the other mode).
    pub fn parse(
        kind: AmrKind,
        mode: PayloadMode,
        payload: &'a [u8],
    ) -> Result<AmrPayload<'a>, AmrError> {
        let header = scan(kind, mode, payload)?;
        let mut frames = Vec::with_capacity(header.frames);
        let mut toc = BitReader::at(payload, header.toc_bit);
        let mut offset = header.data_bit;
        for _ in 0..header.frames {
            let entry = read_entry(&mut toc, mode).ok_or(AmrError::Truncated)?;
            let bits = kind
                .frame_bits(entry.ft)
                .ok_or(AmrError::FrameType { ft: entry.ft })?;
            frames.push(AmrFrame {
                ft: entry.ft,
                q: entry.q,
                bits,
                bit_offset: offset,
            });
            offset += stored_bits(mode, bits);
        }
        Ok(AmrPayload {
            kind,
            mode,
            cmr: header.cmr,
            frames,
            data: payload,
        })
    }

    /// Writes the speech bits of frame `index` into `out` (cleared first),
    /// left-aligned and zero-padded to a whole octet: the layout of the
    /// octet-aligned mode and of the storage format (§5.3). Returns the
    /// number of bits, or `None` when there is no such frame.
    pub fn frame_data(&self, index: usize, out: &mut Vec<u8>) -> Option<usize> {
        let frame = self.frames.get(index)?;
        out.clear();
        out.reserve(frame.bits.div_ceil(8));
        let mut reader = BitReader::at(self.data, frame.bit_offset);
        let mut writer = BitWriter::new(out);
        copy_bits(&mut reader, &mut writer, frame.bits)?;
        writer.pad();
        Some(frame.bits)
    }
}

/// Converts a payload between the two modes without decoding speech: same
/// CMR, same ToC (F, FT, Q), same speech bits, NO_DATA entries kept.
/// Reserved and padding bits are written as zero. `out` is cleared first.
///
/// With `from == to` the payload is validated and copied unchanged.
pub fn convert(
    kind: AmrKind,
    from: PayloadMode,
    to: PayloadMode,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), AmrError> {
    let header = scan(kind, from, payload)?;
    out.clear();
    if from == to {
        out.extend_from_slice(payload);
        return Ok(());
    }
    out.reserve(payload_len(
        to,
        header.frames,
        header.speech_bits_padded(to),
    ));
    let mut writer = BitWriter::new(out);
    write_cmr(&mut writer, to, header.cmr);
    let mut toc = BitReader::at(payload, header.toc_bit);
    for _ in 0..header.frames {
        let entry = read_entry(&mut toc, from).ok_or(AmrError::Truncated)?;
        write_entry(&mut writer, to, entry);
    }
    // Second pass over the ToC for the sizes: cheaper than storing them.
    let mut toc = BitReader::at(payload, header.toc_bit);
    let mut data = BitReader::at(payload, header.data_bit);
    for _ in 0..header.frames {
        let entry = read_entry(&mut toc, from).ok_or(AmrError::Truncated)?;
        let bits = kind
            .frame_bits(entry.ft)
            .ok_or(AmrError::FrameType { ft: entry.ft })?;
        copy_bits(&mut data, &mut writer, bits).ok_or(AmrError::Truncated)?;
        if from == PayloadMode::OctetAligned {
            data.align();
        }
        if to == PayloadMode::OctetAligned {
            writer.pad();
        }
    }
    writer.pad();
    Ok(())
}

/// Builds a payload from `(ft, q, speech bits)` frames, in ToC order; the
/// speech bits are left-aligned in `ceil(bits / 8)` octets (the trailing
/// bits of the last octet are ignored), empty for NO_DATA. F bits are set
/// for all entries but the last. `out` is cleared first.
pub fn build(
    kind: AmrKind,
    mode: PayloadMode,
    cmr: u8,
    frames: &[(u8, bool, &[u8])],
    out: &mut Vec<u8>,
) -> Result<(), AmrError> {
    if cmr > 15 {
        return Err(AmrError::Cmr { cmr });
    }
    if frames.is_empty() {
        return Err(AmrError::Empty);
    }
    let mut speech_bits = 0;
    for (index, &(ft, _, data)) in frames.iter().enumerate() {
        let bits = kind.frame_bits(ft).ok_or(AmrError::FrameType { ft })?;
        let expected = bits.div_ceil(8);
        if data.len() != expected {
            return Err(AmrError::FrameLength {
                index,
                ft,
                expected,
                actual: data.len(),
            });
        }
        speech_bits += stored_bits(mode, bits);
    }
    out.clear();
    out.reserve(payload_len(mode, frames.len(), speech_bits));
    let mut writer = BitWriter::new(out);
    write_cmr(&mut writer, mode, cmr);
    let last = frames.len() - 1;
    for (index, &(ft, q, _)) in frames.iter().enumerate() {
        write_entry(
            &mut writer,
            mode,
            TocEntry {
                f: index != last,
                ft,
                q,
            },
        );
    }
    for &(ft, _, data) in frames {
        let bits = kind.frame_bits(ft).ok_or(AmrError::FrameType { ft })?;
        copy_bits(&mut BitReader::at(data, 0), &mut writer, bits).ok_or(AmrError::Truncated)?;
        if mode == PayloadMode::OctetAligned {
            writer.pad();
        }
    }
    writer.pad();
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TocEntry {
    f: bool,
    ft: u8,
    q: bool,
}

/// What a first pass over the header and ToC found.
struct Header {
    cmr: u8,
    frames: usize,
    toc_bit: usize,
    data_bit: usize,
    /// Sum of the frames' speech bits, unpadded.
    speech_bits: usize,
    /// Sum of the frames' speech bits, each padded to an octet.
    speech_bits_octets: usize,
}

impl Header {
    fn speech_bits_padded(&self, mode: PayloadMode) -> usize {
        match mode {
            PayloadMode::BandwidthEfficient => self.speech_bits,
            PayloadMode::OctetAligned => self.speech_bits_octets,
        }
    }
}

/// Bits a frame of `bits` speech bits takes in `mode`.
fn stored_bits(mode: PayloadMode, bits: usize) -> usize {
    match mode {
        PayloadMode::BandwidthEfficient => bits,
        PayloadMode::OctetAligned => bits.div_ceil(8) * 8,
    }
}

/// Payload octets for `frames` ToC entries and `speech_bits` of frames
/// (already padded per frame in octet-aligned mode).
fn payload_len(mode: PayloadMode, frames: usize, speech_bits: usize) -> usize {
    match mode {
        PayloadMode::BandwidthEfficient => (4 + 6 * frames + speech_bits).div_ceil(8),
        PayloadMode::OctetAligned => 1 + frames + speech_bits / 8,
    }
}

/// Reads the CMR and walks the ToC chain, checking frame types and the
/// payload length. Bounded: every entry consumes at least 6 bits.
fn scan(kind: AmrKind, mode: PayloadMode, payload: &[u8]) -> Result<Header, AmrError> {
    let mut reader = BitReader::at(payload, 0);
    let cmr = match mode {
        PayloadMode::BandwidthEfficient => reader.read(4),
        PayloadMode::OctetAligned => reader.read(8).map(|b| b >> 4),
    }
    .ok_or(AmrError::Truncated)?;
    let toc_bit = reader.pos;
    let mut frames = 0;
    let mut speech_bits = 0;
    let mut speech_bits_octets = 0;
    loop {
        let entry = read_entry(&mut reader, mode).ok_or(AmrError::Truncated)?;
        let bits = kind
            .frame_bits(entry.ft)
            .ok_or(AmrError::FrameType { ft: entry.ft })?;
        frames += 1;
        speech_bits += bits;
        speech_bits_octets += stored_bits(PayloadMode::OctetAligned, bits);
        if !entry.f {
            break;
        }
    }
    let header = Header {
        cmr,
        frames,
        toc_bit,
        data_bit: reader.pos,
        speech_bits,
        speech_bits_octets,
    };
    let expected = payload_len(mode, frames, header.speech_bits_padded(mode));
    if payload.len() != expected {
        return Err(AmrError::Length {
            expected,
            actual: payload.len(),
        });
    }
    Ok(header)
}

fn read_entry(reader: &mut BitReader<'_>, mode: PayloadMode) -> Option<TocEntry> {
    // F FT Q, plus two padding bits in octet-aligned mode.
    let bits = match mode {
        PayloadMode::BandwidthEfficient => reader.read(6)?,
        PayloadMode::OctetAligned => reader.read(8)? >> 2,
    };
    Some(TocEntry {
        f: bits & 0x20 != 0,
        ft: (bits >> 1) & 0x0F,
        q: bits & 0x01 != 0,
    })
}

fn write_entry(writer: &mut BitWriter<'_>, mode: PayloadMode, entry: TocEntry) {
    let bits = (u8::from(entry.f) << 5) | ((entry.ft & 0x0F) << 1) | u8::from(entry.q);
    match mode {
        PayloadMode::BandwidthEfficient => writer.write(bits, 6),
        PayloadMode::OctetAligned => writer.write(bits << 2, 8),
    }
}

fn write_cmr(writer: &mut BitWriter<'_>, mode: PayloadMode, cmr: u8) {
    match mode {
        PayloadMode::BandwidthEfficient => writer.write(cmr & 0x0F, 4),
        PayloadMode::OctetAligned => writer.write((cmr & 0x0F) << 4, 8),
    }
}

/// MSB-first bit reader over a slice.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn at(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader { data, pos }
    }

    /// Reads `n` bits (1..=8), right-aligned; `None` past the end.
    fn read(&mut self, n: u32) -> Option<u8> {
        let end = self.pos.checked_add(n as usize)?;
        if n == 0 || n > 8 || end.div_ceil(8) > self.data.len() {
            return None;
        }
        let byte = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        let hi = *self.data.get(byte)?;
        // Past the last octet only when the bits fit in `hi`.
        let lo = self.data.get(byte + 1).copied().unwrap_or(0);
        let word = u16::from_be_bytes([hi, lo]) << shift;
        self.pos = end;
        Some((word >> (16 - n)) as u8)
    }

    /// Whole octets from an octet boundary, or `None` if not aligned/short.
    fn read_aligned(&mut self, octets: usize) -> Option<&'a [u8]> {
        if !self.pos.is_multiple_of(8) {
            return None;
        }
        let start = self.pos / 8;
        let slice = self.data.get(start..start.checked_add(octets)?)?;
        self.pos += octets * 8;
        Some(slice)
    }

    /// Skips to the next octet boundary (frame padding in octet-aligned mode).
    fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

/// MSB-first bit writer appending to a caller's buffer.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Pending bits, right-aligned; fewer than 8.
    acc: u16,
    pending: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> BitWriter<'a> {
        BitWriter {
            out,
            acc: 0,
            pending: 0,
        }
    }

    /// Appends the low `n` bits (1..=8) of `value`.
    fn write(&mut self, value: u8, n: u32) {
        let n = n.min(8);
        let mask = ((1u16 << n) - 1) as u8;
        self.acc = (self.acc << n) | u16::from(value & mask);
        self.pending += n;
        if self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
            self.acc &= (1u16 << self.pending) - 1;
        }
    }

    /// Zero bits up to the next octet boundary.
    fn pad(&mut self) {
        if self.pending > 0 {
            self.write(0, 8 - self.pending);
        }
    }
}

/// Copies `bits` bits; octet-wise when both sides are aligned (octet-aligned
/// frames), else a byte at a time through the shifters.
fn copy_bits(reader: &mut BitReader<'_>, writer: &mut BitWriter<'_>, bits: usize) -> Option<()> {
    let mut left = bits;
    if writer.pending == 0 && reader.pos.is_multiple_of(8) {
        let octets = left / 8;
        writer.out.extend_from_slice(reader.read_aligned(octets)?);
        left -= octets * 8;
    }
    while left >= 8 {
        writer.write(reader.read(8)?, 8);
        left -= 8;
    }
    if left > 0 {
        writer.write(reader.read(left as u32)?, left as u32);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const BE: PayloadMode = PayloadMode::BandwidthEfficient;
    const OA: PayloadMode = PayloadMode::OctetAligned;

    fn bit(data: &[u8], i: usize) -> bool {
        data[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// d(i) for the examples: an irregular but reproducible pattern.
    fn d(i: usize) -> bool {
        (i * 7 + i / 3) % 5 < 2
    }

    /// Left-aligned octets holding d(0)..d(bits-1).
    fn pattern(bits: usize) -> Vec<u8> {
        let mut v = vec![0u8; bits.div_ceil(8)];
        for i in 0..bits {
            if d(i) {
                v[i / 8] |= 0x80 >> (i % 8);
            }
        }
        v
    }

    fn random_frame(rng: &mut impl Rng, kind: AmrKind, ft: u8) -> Vec<u8> {
        let bits = kind.frame_bits(ft).unwrap();
        let mut v: Vec<u8> = (0..bits.div_ceil(8)).map(|_| rng.gen()).collect();
        // Bits after the frame end are not carried: clear them so the
        // octet-aligned copy compares equal.
        if !bits.is_multiple_of(8) {
            *v.last_mut().unwrap() &= 0xFFu8 << (8 - bits % 8);
        }
        v
    }

    #[test]
    fn frame_sizes_are_those_of_rfc_4867() {
        let nb: Vec<_> = (0..16).map(|ft| AmrKind::Nb.frame_bits(ft)).collect();
        let mut want_nb: Vec<Option<usize>> = [95, 103, 118, 134, 148, 159, 204, 244, 39]
            .into_iter()
            .map(Some)
            .collect();
        want_nb.extend([None; 6]);
        want_nb.push(Some(0));
        assert_eq!(nb, want_nb);

        let wb: Vec<_> = (0..16).map(|ft| AmrKind::Wb.frame_bits(ft)).collect();
        let mut want_wb: Vec<Option<usize>> = [132, 177, 253, 285, 317, 365, 397, 461, 477, 40]
            .into_iter()
            .map(Some)
            .collect();
        want_wb.extend([None; 4]);
        want_wb.extend([Some(0), Some(0)]);
        assert_eq!(wb, want_wb);
        assert_eq!(AmrKind::Nb.frame_bits(16), None);
        assert_eq!(AmrKind::Wb.frame_bits(255), None);

        // Octet-aligned frame sizes, as in the storage format (§5.3).
        let nb_octets: Vec<_> = (0..=8)
            .map(|ft| AmrKind::Nb.frame_bits(ft).unwrap().div_ceil(8))
            .collect();
        assert_eq!(nb_octets, [12, 13, 15, 17, 19, 20, 26, 31, 5]);
        let wb_octets: Vec<_> = (0..=9)
            .map(|ft| AmrKind::Wb.frame_bits(ft).unwrap().div_ceil(8))
            .collect();
        assert_eq!(wb_octets, [17, 23, 32, 36, 40, 46, 50, 58, 60, 5]);
        assert_eq!(AmrKind::Nb.sample_rate(), 8000);
        assert_eq!(AmrKind::Wb.samples_per_frame(), 320);
        assert!(AmrKind::Wb.is_speech(8) && !AmrKind::Wb.is_speech(9));
    }

    #[test]
    fn rfc_4867_4_3_5_1_bandwidth_efficient_example() {
        // CMR=15, one frame, F=0, FT=4 (7.4 kbit/s, 148 bits), Q=1, d(0)..d(147), 2 padding bits.
        let mut out = Vec::new();
        build(AmrKind::Nb, BE, 15, &[(4, true, &pattern(148))], &mut out).unwrap();
        assert_eq!(out.len(), 20);
        let header = [1, 1, 1, 1, 0, 0, 1, 0, 0, 1];
        for (i, &b) in header.iter().enumerate() {
            assert_eq!(bit(&out, i), b == 1, "header bit {i}");
        }
        for i in 0..148 {
            assert_eq!(bit(&out, 10 + i), d(i), "d({i})");
        }
        assert!(!bit(&out, 158) && !bit(&out, 159), "padding");
        assert_eq!(out[0], 0xF2);

        let p = AmrPayload::parse(AmrKind::Nb, BE, &out).unwrap();
        assert_eq!(p.cmr, 15);
        assert_eq!(
            p.frames,
            [AmrFrame {
                ft: 4,
                q: true,
                bits: 148,
                bit_offset: 10
            }]
        );
        let mut frame = Vec::new();
        assert_eq!(p.frame_data(0, &mut frame), Some(148));
        assert_eq!(frame, pattern(148));
        assert_eq!(p.frame_data(1, &mut frame), None);
    }

    #[test]
    fn rfc_4867_4_4_5_1_octet_aligned_example() {
        // CMR=15 RRRR, ToC F=0 FT=4 Q=1 PP, d(0)..d(147) + 4 padding bits.
        let mut out = Vec::new();
        build(AmrKind::Nb, OA, 15, &[(4, true, &pattern(148))], &mut out).unwrap();
        assert_eq!(out.len(), 21);
        assert_eq!(&out[..2], &[0xF0, 0x24]);
        for i in 0..148 {
            assert_eq!(bit(&out, 16 + i), d(i), "d({i})");
        }
        assert_eq!(out[20] & 0x0F, 0);
        let p = AmrPayload::parse(AmrKind::Nb, OA, &out).unwrap();
        assert_eq!(p.frames[0].bit_offset, 16);
        let mut be = Vec::new();
        convert(AmrKind::Nb, OA, BE, &out, &mut be).unwrap();
        let mut want = Vec::new();
        build(AmrKind::Nb, BE, 15, &[(4, true, &pattern(148))], &mut want).unwrap();
        assert_eq!(be, want);
    }

    #[test]
    fn nb_12_2_both_modes_by_hand() {
        // CMR=7 (request 12.2), FT 7, Q=1, 244 bits.
        let speech = pattern(244);
        let mut be = Vec::new();
        build(AmrKind::Nb, BE, 7, &[(7, true, &speech)], &mut be).unwrap();
        // 4 + 6 + 244 = 254 bits -> 32 octets, 2 padding bits.
        assert_eq!(be.len(), 32);
        // 0111 | 0 0111 1 -> 0111 0011 | 11 d0..d5
        assert_eq!(be[0], 0x73);
        assert_eq!(be[1] >> 6, 0b11);
        for i in 0..244 {
            assert_eq!(bit(&be, 10 + i), d(i));
        }
        let mut oa = Vec::new();
        build(AmrKind::Nb, OA, 7, &[(7, true, &speech)], &mut oa).unwrap();
        assert_eq!(oa.len(), 33);
        assert_eq!(&oa[..2], &[0x70, 0x3C]);
        assert_eq!(&oa[2..], &speech[..]);
        let mut conv = Vec::new();
        convert(AmrKind::Nb, BE, OA, &be, &mut conv).unwrap();
        assert_eq!(conv, oa);
        convert(AmrKind::Nb, OA, BE, &oa, &mut conv).unwrap();
        assert_eq!(conv, be);
    }

    #[test]
    fn wb_23_85_both_modes_by_hand() {
        // CMR=15, FT 8 (23.85 kbit/s), Q=0 (damaged), 477 bits.
        let speech = pattern(477);
        let mut be = Vec::new();
        build(AmrKind::Wb, BE, 15, &[(8, false, &speech)], &mut be).unwrap();
        // 4 + 6 + 477 = 487 bits -> 61 octets.
        assert_eq!(be.len(), 61);
        // 1111 | 0 1000 0 -> 1111 0100 | 00 d0..d5
        assert_eq!(be[0], 0xF4);
        assert_eq!(be[1] >> 6, 0);
        for i in 0..477 {
            assert_eq!(bit(&be, 10 + i), d(i));
        }
        assert!(!bit(&be, 487));
        let mut oa = Vec::new();
        build(AmrKind::Wb, OA, 15, &[(8, false, &speech)], &mut oa).unwrap();
        assert_eq!(oa.len(), 62);
        assert_eq!(&oa[..2], &[0xF0, 0x40]);
        assert_eq!(&oa[2..], &speech[..]);
        let mut conv = Vec::new();
        convert(AmrKind::Wb, BE, OA, &be, &mut conv).unwrap();
        assert_eq!(conv, oa);
        convert(AmrKind::Wb, OA, BE, &oa, &mut conv).unwrap();
        assert_eq!(conv, be);
        let p = AmrPayload::parse(AmrKind::Wb, BE, &be).unwrap();
        assert!(!p.frames[0].q);
    }

    #[test]
    fn f_bit_chain_and_no_data() {
        // Three entries: speech, NO_DATA, SID. F = 1, 1, 0.
        let speech = pattern(118);
        let sid = pattern(39);
        let frames: [(u8, bool, &[u8]); 3] = [(2, true, &speech), (15, true, &[]), (8, true, &sid)];
        let mut oa = Vec::new();
        build(AmrKind::Nb, OA, 15, &frames, &mut oa).unwrap();
        assert_eq!(
            &oa[..4],
            &[
                0xF0,
                0x80 | (2 << 3) | 4,
                0x80 | (15 << 3) | 4,
                (8 << 3) | 4
            ]
        );
        assert_eq!(oa.len(), 1 + 3 + 15 + 5);
        let mut be = Vec::new();
        build(AmrKind::Nb, BE, 15, &frames, &mut be).unwrap();
        assert_eq!(be.len(), (4 + 18 + 118 + 39usize).div_ceil(8));
        // F bits at 4, 10, 16.
        assert!(bit(&be, 4) && bit(&be, 10) && !bit(&be, 16));
        for mode in [BE, OA] {
            let data = if mode == BE { &be } else { &oa };
            let p = AmrPayload::parse(AmrKind::Nb, mode, data).unwrap();
            let fts: Vec<_> = p.frames.iter().map(|f| (f.ft, f.bits)).collect();
            assert_eq!(fts, [(2, 118), (15, 0), (8, 39)]);
            let mut f = Vec::new();
            assert_eq!(p.frame_data(1, &mut f), Some(0));
            assert!(f.is_empty());
            assert_eq!(p.frame_data(2, &mut f), Some(39));
            assert_eq!(f, sid);
        }
        // A payload of only NO_DATA is valid: 4 + 6 bits.
        let mut out = Vec::new();
        build(AmrKind::Wb, BE, 15, &[(15, true, &[])], &mut out).unwrap();
        assert_eq!(out, [0xF7, 0xC0]);
        build(AmrKind::Wb, BE, 15, &[(14, false, &[])], &mut out).unwrap();
        assert_eq!(out, [0xF7, 0x00]);
    }

    #[test]
    fn be_oa_be_is_the_identity_for_random_frames() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4867);
        let mut oa = Vec::new();
        let mut back = Vec::new();
        let mut built_oa = Vec::new();
        for kind in [AmrKind::Nb, AmrKind::Wb] {
            let fts: Vec<u8> = (0..16)
                .filter(|&ft| kind.frame_bits(ft).is_some())
                .collect();
            for round in 0..400 {
                let n = 1 + round % 6;
                let frames: Vec<(u8, bool, Vec<u8>)> = (0..n)
                    .map(|i| {
                        // Every valid FT appears, at every position.
                        let ft = fts[(round + i) % fts.len()];
                        (ft, rng.gen(), random_frame(&mut rng, kind, ft))
                    })
                    .collect();
                let refs: Vec<(u8, bool, &[u8])> = frames
                    .iter()
                    .map(|(ft, q, d)| (*ft, *q, d.as_slice()))
                    .collect();
                let cmr = rng.gen_range(0..16);
                let mut be = Vec::new();
                build(kind, BE, cmr, &refs, &mut be).unwrap();
                convert(kind, BE, OA, &be, &mut oa).unwrap();
                build(kind, OA, cmr, &refs, &mut built_oa).unwrap();
                assert_eq!(oa, built_oa);
                convert(kind, OA, BE, &oa, &mut back).unwrap();
                assert_eq!(back, be, "{kind:?} round {round}");
                convert(kind, BE, BE, &be, &mut back).unwrap();
                assert_eq!(back, be);
                let p = AmrPayload::parse(kind, OA, &oa).unwrap();
                assert_eq!(p.cmr, cmr);
                let mut f = Vec::new();
                for (i, (ft, q, data)) in frames.iter().enumerate() {
                    assert_eq!((p.frames[i].ft, p.frames[i].q), (*ft, *q));
                    p.frame_data(i, &mut f).unwrap();
                    assert_eq!(&f, data);
                }
            }
        }
    }

    #[test]
    fn bad_payloads_are_errors() {
        let mut out = Vec::new();
        build(AmrKind::Nb, BE, 15, &[(7, true, &pattern(244))], &mut out).unwrap();
        // Truncated and extended.
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, BE, &out[..31]).unwrap_err(),
            AmrError::Length {
                expected: 32,
                actual: 31
            }
        );
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, BE, &longer)
                .unwrap_err()
                .label(),
            "amr_length"
        );
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, BE, &[]).unwrap_err(),
            AmrError::Truncated
        );
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, OA, &[0xF0]).unwrap_err(),
            AmrError::Truncated
        );
        // An F chain that never ends.
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, OA, &[0xF0, 0xFC, 0xFC]).unwrap_err(),
            AmrError::Truncated
        );
        // Reserved frame types.
        for ft in 9..=14 {
            assert_eq!(
                AmrPayload::parse(AmrKind::Nb, OA, &[0xF0, ft << 3]).unwrap_err(),
                AmrError::FrameType { ft }
            );
        }
        for ft in 10..=13 {
            assert_eq!(
                AmrPayload::parse(AmrKind::Wb, OA, &[0xF0, ft << 3]).unwrap_err(),
                AmrError::FrameType { ft }
            );
        }
        assert_eq!(
            AmrPayload::parse(AmrKind::Nb, OA, &[0xF0, 14 << 3])
                .unwrap_err()
                .label(),
            "amr_frame_type"
        );
        // Building.
        assert_eq!(
            build(AmrKind::Nb, BE, 16, &[(15, true, &[])], &mut out),
            Err(AmrError::Cmr { cmr: 16 })
        );
        assert_eq!(
            build(AmrKind::Nb, BE, 15, &[], &mut out),
            Err(AmrError::Empty)
        );
        assert_eq!(
            build(AmrKind::Nb, BE, 15, &[(7, true, &[0; 30])], &mut out),
            Err(AmrError::FrameLength {
                index: 0,
                ft: 7,
                expected: 31,
                actual: 30
            })
        );
        assert_eq!(
            build(AmrKind::Wb, OA, 15, &[(10, true, &[])], &mut out),
            Err(AmrError::FrameType { ft: 10 })
        );
        // Convert refuses what parse refuses and leaves no half payload claims.
        assert_eq!(
            convert(AmrKind::Nb, BE, OA, &[0xFF, 0xFF], &mut out),
            Err(AmrError::Truncated)
        );
    }

    #[test]
    fn fmtp_refuses_what_is_not_carried() {
        assert_eq!(PayloadMode::from_fmtp(false, false, false, false), Ok(BE));
        assert_eq!(PayloadMode::from_fmtp(true, false, false, false), Ok(OA));
        for (crc, rs, il) in [
            (true, false, false),
            (false, true, false),
            (false, false, true),
        ] {
            assert_eq!(
                PayloadMode::from_fmtp(true, crc, rs, il)
                    .unwrap_err()
                    .label(),
                "amr_unsupported"
            );
        }
    }

    #[test]
    fn every_prefix_and_bit_flip_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut out = Vec::new();
        let mut frame = Vec::new();
        for kind in [AmrKind::Nb, AmrKind::Wb] {
            for mode in [BE, OA] {
                let speech = random_frame(&mut rng, kind, 1);
                let sid = random_frame(&mut rng, kind, kind.sid_ft());
                let mut good = Vec::new();
                build(
                    kind,
                    mode,
                    3,
                    &[
                        (1, true, &speech),
                        (15, false, &[]),
                        (kind.sid_ft(), true, &sid),
                    ],
                    &mut good,
                )
                .unwrap();
                let mut inputs: Vec<Vec<u8>> =
                    (0..good.len()).map(|n| good[..n].to_vec()).collect();
                for i in 0..good.len() * 8 {
                    let mut p = good.clone();
                    p[i / 8] ^= 0x80 >> (i % 8);
                    inputs.push(p);
                }
                for _ in 0..300 {
                    let len = rng.gen_range(0..80);
                    inputs.push((0..len).map(|_| rng.gen()).collect());
                }
                for p in &inputs {
                    if let Ok(parsed) = AmrPayload::parse(kind, mode, p) {
                        for i in 0..parsed.frames.len() {
                            parsed.frame_data(i, &mut frame).unwrap();
                        }
                    }
                    for to in [BE, OA] {
                        let ok = convert(kind, mode, to, p, &mut out).is_ok();
                        assert_eq!(ok, AmrPayload::parse(kind, mode, p).is_ok());
                    }
                }
            }
        }
    }
}
