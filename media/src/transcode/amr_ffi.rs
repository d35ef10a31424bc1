//! Our own binding to opencore-amrnb (AMR-NB encoder and decoder),
//! opencore-amrwb (AMR-WB decoder) and vo-amrwbenc (AMR-WB encoder).
//!
//! All four libraries speak the "storage" frame format (RFC 4867 §5 and the
//! `.amr` file format, which is also exactly one RFC 4867 octet-aligned frame
//! without the payload's CMR/ToC):
//!
//! ```text
//!  +-+-+-+-+-+-+-+-+---------------------------------+
//!  |P|  FT   |Q|P|P| speech bits, octet aligned ...   |
//!  +-+-+-+-+-+-+-+-+---------------------------------+
//! ```
//!
//! Safety contract of the C side, which every wrapper below enforces first:
//! - the decoders read `in[0]`, derive the frame type from it and then read
//!   the fixed number of bytes that frame type has, whatever the caller's
//!   buffer length. We validate the frame type and length, and still copy
//!   the frame into a zeroed array as long as the largest frame, so even a
//!   wrong table entry here could not make the C code read past it;
//! - the decoders write exactly 160 (NB) / 320 (WB) samples;
//! - the encoders read 160 / 320 samples and write at most 32 / 61 bytes.
//!   opencore's encoder writes into its `speech` input despite the `const`
//!   in its prototype, so it always gets our private copy.
//!
//! The states are plain heap structs owned by the handle: they have no
//! thread affinity and no global state is shared between handles, so a
//! handle may move to another thread (`Send`). They are not `Sync`: the C
//! functions mutate the state without locking.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_short, c_uchar, c_void};
use std::ptr::NonNull;

use super::TranscodeError;

/// Samples per 20 ms AMR-NB frame (8 kHz).
pub const AMR_NB_FRAME_SAMPLES: usize = 160;
/// Samples per 20 ms AMR-WB frame (16 kHz).
pub const AMR_WB_FRAME_SAMPLES: usize = 320;
/// Largest AMR-NB storage frame: header + 12.2 kbit/s speech (244 bits).
pub const AMR_NB_MAX_FRAME: usize = 32;
/// Largest AMR-WB storage frame: header + 23.85 kbit/s speech (477 bits).
pub const AMR_WB_MAX_FRAME: usize = 61;
/// Highest AMR-NB speech mode (12.2 kbit/s).
pub const AMR_NB_MAX_MODE: u8 = 7;
/// Highest AMR-WB speech mode (23.85 kbit/s).
pub const AMR_WB_MAX_MODE: u8 = 8;

/// NO_DATA frame type, same value for both codecs (RFC 4867 §4.3.2).
const FT_NO_DATA: u8 = 15;
/// Room the encoders may write into; more than the largest frame of either
/// codec so that a library bug of a byte or two cannot corrupt our memory.
const ENC_OUT_LEN: usize = 64;

/// Storage-frame length (header byte included) per AMR-NB frame type
/// (3GPP TS 26.101 table 1a: 95, 103, 118, 134, 148, 159, 204, 244 speech
/// bits, 39 SID bits). `None` = type we refuse (9-11 are SIDs of other
/// codecs, 12-14 are reserved).
const NB_FRAME_LEN: [Option<usize>; 16] = [
    Some(13),
    Some(14),
    Some(16),
    Some(18),
    Some(20),
    Some(21),
    Some(27),
    Some(32),
    Some(6),
    None,
    None,
    None,
    None,
    None,
    None,
    Some(1),
];

/// Storage-frame length per AMR-WB frame type (3GPP TS 26.201: 132, 177,
/// 253, 285, 317, 365, 397, 461, 477 speech bits, 40 SID bits; 10-13
/// reserved, 14 = SPEECH_LOST, 15 = NO_DATA, both header only).
const WB_FRAME_LEN: [Option<usize>; 16] = [
    Some(18),
    Some(24),
    Some(33),
    Some(37),
    Some(41),
    Some(47),
    Some(51),
    Some(59),
    Some(61),
    Some(6),
    None,
    None,
    None,
    None,
    Some(1),
    Some(1),
];

/// Frame type (FT) field of a storage header byte.
pub fn frame_type(header: u8) -> u8 {
    (header >> 3) & 0x0F
}

/// Quality (Q) bit of a storage header byte; 0 = the frame is damaged.
pub fn quality(header: u8) -> bool {
    header & 0x04 != 0
}

/// Length in bytes (header included) of the AMR-NB storage frame starting
/// with `header`, or `None` for a frame type we do not accept.
pub fn amr_nb_frame_len(header: u8) -> Option<usize> {
    NB_FRAME_LEN
        .get(usize::from(frame_type(header)))
        .copied()
        .flatten()
}

/// Length in bytes (header included) of the AMR-WB storage frame starting
/// with `header`, or `None` for a frame type we do not accept.
pub fn amr_wb_frame_len(header: u8) -> Option<usize> {
    WB_FRAME_LEN
        .get(usize::from(frame_type(header)))
        .copied()
        .flatten()
}

/// Checks one storage frame against its header; returns its header byte.
fn validate(
    frame: &[u8],
    wideband: bool,
    len_of: fn(u8) -> Option<usize>,
) -> Result<u8, TranscodeError> {
    let header = *frame.first().ok_or(TranscodeError::Empty)?;
    let expected = len_of(header).ok_or(TranscodeError::AmrFrameType {
        wideband,
        frame_type: frame_type(header),
    })?;
    if frame.len() != expected {
        return Err(TranscodeError::AmrFrameLength {
            wideband,
            frame_type: frame_type(header),
            expected,
            got: frame.len(),
        });
    }
    Ok(header)
}

mod sys {
    use super::{c_int, c_short, c_uchar, c_void};

    // opencore-amrnb: interf_dec.h / interf_enc.h.
    extern "C" {
        pub fn Decoder_Interface_init() -> *mut c_void;
        pub fn Decoder_Interface_exit(state: *mut c_void);
        pub fn Decoder_Interface_Decode(
            state: *mut c_void,
            input: *const c_uchar,
            out: *mut c_short,
            bfi: c_int,
        );
        pub fn Encoder_Interface_init(dtx: c_int) -> *mut c_void;
        pub fn Encoder_Interface_exit(state: *mut c_void);
        // `enum Mode` is an int-sized C enum with values 0..=8.
        pub fn Encoder_Interface_Encode(
            state: *mut c_void,
            mode: c_int,
            speech: *const c_short,
            out: *mut c_uchar,
            force_speech: c_int,
        ) -> c_int;
    }

    // opencore-amrwb: dec_if.h.
    extern "C" {
        pub fn D_IF_init() -> *mut c_void;
        pub fn D_IF_decode(
            state: *mut c_void,
            bits: *const c_uchar,
            synth: *mut c_short,
            bfi: c_int,
        );
        pub fn D_IF_exit(state: *mut c_void);
    }

    // vo-amrwbenc: enc_if.h.
    extern "C" {
        pub fn E_IF_init() -> *mut c_void;
        pub fn E_IF_encode(
            state: *mut c_void,
            mode: c_int,
            speech: *const c_short,
            out: *mut c_uchar,
            dtx: c_int,
        ) -> c_int;
        pub fn E_IF_exit(state: *mut c_void);
    }
}

/// AMR-NB decoder (opencore-amrnb), 8 kHz output.
#[derive(Debug)]
pub struct AmrNbDecoder {
    state: NonNull<c_void>,
}

// SAFETY: the state is a heap struct private to this handle, with no thread
// affinity (see the module comment); `&mut self` serialises every call.
unsafe impl Send for AmrNbDecoder {}

impl AmrNbDecoder {
    /// Allocates a decoder state.
    pub fn new() -> Result<Self, TranscodeError> {
        // SAFETY: no arguments; returns a fresh state or null on failure.
        let state = unsafe { sys::Decoder_Interface_init() };
        NonNull::new(state)
            .map(|state| Self { state })
            .ok_or(TranscodeError::CodecInit("opencore-amrnb decoder"))
    }

    /// Decodes one storage-format frame (header byte first) into 160
    /// samples. A frame whose Q bit is 0 is concealed as the RFC asks.
    pub fn decode(
        &mut self,
        frame: &[u8],
        pcm: &mut [i16; AMR_NB_FRAME_SAMPLES],
    ) -> Result<(), TranscodeError> {
        let header = validate(frame, false, amr_nb_frame_len)?;
        let mut padded = [0u8; AMR_NB_MAX_FRAME];
        padded
            .get_mut(..frame.len())
            .ok_or(TranscodeError::Empty)?
            .copy_from_slice(frame);
        let bfi = c_int::from(!quality(header));
        // SAFETY: `padded` holds AMR_NB_MAX_FRAME bytes, the most any frame
        // type makes the decoder read, and its frame type was validated;
        // `pcm` has room for the 160 samples it writes; `state` is live.
        unsafe {
            sys::Decoder_Interface_Decode(
                self.state.as_ptr(),
                padded.as_ptr(),
                pcm.as_mut_ptr(),
                bfi,
            )
        };
        Ok(())
    }

    /// Packet-loss concealment for one lost 20 ms frame.
    pub fn conceal(&mut self, pcm: &mut [i16; AMR_NB_FRAME_SAMPLES]) {
        // opencore turns bfi into a NO_DATA frame; give it a NO_DATA header
        // anyway so the bytes it looks at are consistent.
        let mut padded = [0u8; AMR_NB_MAX_FRAME];
        padded[0] = FT_NO_DATA << 3;
        // SAFETY: as in `decode`: a full-size zeroed frame buffer, a
        // 160-sample output, a live state.
        unsafe {
            sys::Decoder_Interface_Decode(self.state.as_ptr(), padded.as_ptr(), pcm.as_mut_ptr(), 1)
        };
    }
}

impl Drop for AmrNbDecoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from Decoder_Interface_init and is freed once.
        unsafe { sys::Decoder_Interface_exit(self.state.as_ptr()) };
    }
}

/// AMR-NB encoder (opencore-amrnb), 8 kHz input.
#[derive(Debug)]
pub struct AmrNbEncoder {
    state: NonNull<c_void>,
    /// Private copy of the input: the library writes into it.
    speech: [i16; AMR_NB_FRAME_SAMPLES],
    out: [u8; ENC_OUT_LEN],
}

// SAFETY: see `AmrNbDecoder`.
unsafe impl Send for AmrNbEncoder {}

impl AmrNbEncoder {
    /// Allocates an encoder state; `dtx` enables VAD/DTX (SID and NO_DATA
    /// frames during silence).
    pub fn new(dtx: bool) -> Result<Self, TranscodeError> {
        // SAFETY: plain int argument; returns a fresh state or null.
        let state = unsafe { sys::Encoder_Interface_init(c_int::from(dtx)) };
        NonNull::new(state)
            .map(|state| Self {
                state,
                speech: [0; AMR_NB_FRAME_SAMPLES],
                out: [0; ENC_OUT_LEN],
            })
            .ok_or(TranscodeError::CodecInit("opencore-amrnb encoder"))
    }

    /// Encodes 160 samples in `mode` (0 = 4.75 … 7 = 12.2 kbit/s); returns
    /// the storage-format frame (header byte first). `pcm` is not modified.
    pub fn encode(
        &mut self,
        mode: u8,
        pcm: &[i16; AMR_NB_FRAME_SAMPLES],
    ) -> Result<&[u8], TranscodeError> {
        if mode > AMR_NB_MAX_MODE {
            return Err(TranscodeError::AmrMode {
                wideband: false,
                mode,
            });
        }
        self.speech.copy_from_slice(pcm);
        // SAFETY: `speech` is our own 160-sample copy (the library may
        // write into it), `out` has ENC_OUT_LEN >= 32 bytes, mode is in
        // 0..=7, `state` is live.
        let n = unsafe {
            sys::Encoder_Interface_Encode(
                self.state.as_ptr(),
                c_int::from(mode),
                self.speech.as_mut_ptr(),
                self.out.as_mut_ptr(),
                0,
            )
        };
        encoded(&self.out, n, amr_nb_frame_len)
    }
}

impl Drop for AmrNbEncoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from Encoder_Interface_init and is freed once.
        unsafe { sys::Encoder_Interface_exit(self.state.as_ptr()) };
    }
}

/// The encoded frame in `out`, after checking the length the library
/// returned against the frame type it wrote.
fn encoded(out: &[u8], n: c_int, len_of: fn(u8) -> Option<usize>) -> Result<&[u8], TranscodeError> {
    let n = usize::try_from(n).map_err(|_| TranscodeError::Encode("AMR encoder failed"))?;
    let frame = out
        .get(..n)
        .ok_or(TranscodeError::Encode("AMR encoder overran its buffer"))?;
    match frame.first().copied().and_then(len_of) {
        Some(len) if len == n => Ok(frame),
        _ => Err(TranscodeError::Encode(
            "AMR encoder wrote an inconsistent frame",
        )),
    }
}

/// AMR-WB decoder (opencore-amrwb), 16 kHz output.
#[derive(Debug)]
pub struct AmrWbDecoder {
    state: NonNull<c_void>,
}

// SAFETY: see `AmrNbDecoder`.
unsafe impl Send for AmrWbDecoder {}

impl AmrWbDecoder {
    /// Allocates a decoder state.
    pub fn new() -> Result<Self, TranscodeError> {
        // SAFETY: no arguments; returns a fresh state or null.
        let state = unsafe { sys::D_IF_init() };
        NonNull::new(state)
            .map(|state| Self { state })
            .ok_or(TranscodeError::CodecInit("opencore-amrwb decoder"))
    }

    /// Decodes one storage-format frame (header byte first) into 320
    /// samples. A frame whose Q bit is 0 is concealed.
    pub fn decode(
        &mut self,
        frame: &[u8],
        pcm: &mut [i16; AMR_WB_FRAME_SAMPLES],
    ) -> Result<(), TranscodeError> {
        let header = validate(frame, true, amr_wb_frame_len)?;
        let mut padded = [0u8; AMR_WB_MAX_FRAME];
        padded
            .get_mut(..frame.len())
            .ok_or(TranscodeError::Empty)?
            .copy_from_slice(frame);
        let bfi = c_int::from(!quality(header));
        // SAFETY: `padded` holds AMR_WB_MAX_FRAME bytes, the most any frame
        // type makes the decoder read, and its frame type was validated;
        // `pcm` has room for the 320 samples it writes; `state` is live.
        unsafe { sys::D_IF_decode(self.state.as_ptr(), padded.as_ptr(), pcm.as_mut_ptr(), bfi) };
        Ok(())
    }

    /// Packet-loss concealment for one lost 20 ms frame.
    pub fn conceal(&mut self, pcm: &mut [i16; AMR_WB_FRAME_SAMPLES]) {
        let mut padded = [0u8; AMR_WB_MAX_FRAME];
        // SPEECH_LOST: the decoder extrapolates from its history.
        padded[0] = 14 << 3;
        // SAFETY: as in `decode`.
        unsafe { sys::D_IF_decode(self.state.as_ptr(), padded.as_ptr(), pcm.as_mut_ptr(), 1) };
    }
}

impl Drop for AmrWbDecoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from D_IF_init and is freed once.
        unsafe { sys::D_IF_exit(self.state.as_ptr()) };
    }
}

/// AMR-WB encoder (vo-amrwbenc), 16 kHz input.
#[derive(Debug)]
pub struct AmrWbEncoder {
    state: NonNull<c_void>,
    /// Private copy of the input, as for AMR-NB.
    speech: [i16; AMR_WB_FRAME_SAMPLES],
    out: [u8; ENC_OUT_LEN],
    dtx: bool,
}

// SAFETY: see `AmrNbDecoder`.
unsafe impl Send for AmrWbEncoder {}

impl AmrWbEncoder {
    /// Allocates an encoder state; `dtx` enables VAD/DTX.
    pub fn new(dtx: bool) -> Result<Self, TranscodeError> {
        // SAFETY: no arguments; returns a fresh state or null.
        let state = unsafe { sys::E_IF_init() };
        NonNull::new(state)
            .map(|state| Self {
                state,
                speech: [0; AMR_WB_FRAME_SAMPLES],
                out: [0; ENC_OUT_LEN],
                dtx,
            })
            .ok_or(TranscodeError::CodecInit("vo-amrwbenc encoder"))
    }

    /// Encodes 320 samples in `mode` (0 = 6.60 … 8 = 23.85 kbit/s); returns
    /// the storage-format frame (header byte first). `pcm` is not modified.
    pub fn encode(
        &mut self,
        mode: u8,
        pcm: &[i16; AMR_WB_FRAME_SAMPLES],
    ) -> Result<&[u8], TranscodeError> {
        if mode > AMR_WB_MAX_MODE {
            return Err(TranscodeError::AmrMode {
                wideband: true,
                mode,
            });
        }
        self.speech.copy_from_slice(pcm);
        // SAFETY: `speech` is our own 320-sample copy, `out` has
        // ENC_OUT_LEN >= 61 bytes, mode is in 0..=8, `state` is live.
        let n = unsafe {
            sys::E_IF_encode(
                self.state.as_ptr(),
                c_int::from(mode),
                self.speech.as_mut_ptr(),
                self.out.as_mut_ptr(),
                c_int::from(self.dtx),
            )
        };
        encoded(&self.out, n, amr_wb_frame_len)
    }
}

impl Drop for AmrWbEncoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from E_IF_init and is freed once.
        unsafe { sys::E_IF_exit(self.state.as_ptr()) };
    }
}
