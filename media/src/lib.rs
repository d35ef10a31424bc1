//! Sans-IO RTP/RTCP relay (RFC 3550) for the softswitch.
//!
//! ```text
//!  UDP ─▶ driver (one event loop per core, port pool) ─▶ Relay::handle_rtp(leg, src, buf, now)
//!           parse (rtp) ─▶ latch/validate ─▶ rewrite SSRC/seq/ts in place
//!           ─▶ Action::Forward { out_leg, to } ─▶ send_to on the peer leg's socket
//!  payload (amr/opus/g711/dtmf), stats, transcode and playback are the pieces
//!  the relay composes per leg.
//!  Relay::poll_transmit ─▶ what the relay says itself (RFC 4733 digits, prompts)
//!  Relay::poll_event ─▶ what the call layer hears about (DTMF, end of a prompt)
//! ```
//!
//! The core reads no clock and does no I/O; the tokio driver owns sockets.
//! It never depends on `sip` or on the root crate: the call layer tells it
//! addresses and codecs, it tells the call layer what it measured.

#[cfg(feature = "tokio")]
pub mod driver;
pub mod format;
mod inject;
pub mod latency;
pub mod payload;
pub mod playback;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod stats;
#[cfg(feature = "transcode")]
pub mod transcode;
