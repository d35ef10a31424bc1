//! The load generator behind `softswitch-bench` (issue 6) and the ng relay
//! behind `softswitch-relay`: RTP through our relay, rtpengine or no relay
//! at all, and SIP call set-up through the switch, Kamailio or nothing.
//!
//! ```text
//!  bencode ─ ng (client, SDP helpers) ─┬─ ng_relay (server on MediaDriver)
//!                                      └─ rtp_load (N calls of 20 ms RTP) ─┐
//!  sip_load (SIPp uac ─▶ system ─▶ SIPp uas, stepping the rate) ───────────┼─ report
//!  hist (µs latency histogram), procstat (CPU, memory from /proc) ─────────┘
//!  http_load (wrk ─▶ the status poll of a live app call, one core each) ───┘
//! ```

pub mod bencode;
pub mod hist;
pub mod http_load;
pub mod ng;
pub mod ng_relay;
pub mod procstat;
pub mod rtp_load;
pub mod sip_load;

/// Errors of a benchmark run: reported and the run goes on or stops; no
/// caller needs to tell them apart.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
