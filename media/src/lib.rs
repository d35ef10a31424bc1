//! Sans-IO RTP/RTCP relay (RFC 3550) for the softswitch.
//!
//! ```text
//!  UDP ─▶ driver (tokio, port pool) ─▶ Relay::handle_packet(leg, src, bytes, now)
//!           parse (rtp/rtcp) ─▶ latch/validate ─▶ payload (amr/opus/g711/dtmf)
//!           ─▶ stats ─▶ [transcode] ─▶ rewrite SSRC/seq/ts ─▶ poll_transmit() ─▶ other leg
//! ```
//!
//! The core reads no clock and does no I/O; the tokio driver owns sockets.
//! It never depends on `sip` or on the root crate: the call layer tells it
//! addresses and codecs, it tells the call layer what it measured.

pub mod payload;
pub mod playback;
pub mod rtcp;
pub mod rtp;
pub mod stats;
#[cfg(feature = "transcode")]
pub mod transcode;
