//! RTP payload formats: AMR/AMR-WB (RFC 4867), Opus (RFC 7587), G.711
//! (ITU-T G.711, RFC 3551 §4.5.14) and telephone-event (RFC 4733).

pub mod amr;
pub mod dtmf;
pub mod g711;
pub mod opus;
