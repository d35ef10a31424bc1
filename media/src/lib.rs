//! Sans-IO RTP/RTCP relay (RFC 3550) for the softswitch.
//!
//! This crate is laid out now and filled by the media issue: packets, payloads
//! (AMR, Opus, G.711, RFC 4733 DTMF), transcoding, statistics and the relay.
//! It never depends on `sip` or on the root crate.
