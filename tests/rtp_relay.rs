#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: media through the switch's RTP relay, with real peers.
//!
//! SIPp caller (`uac_rtp.xml`) -> the real `softswitch` binary -> SIPp callee
//! (`uas.xml` with `-rtp_echo`). After the ACK the caller streams a file of
//! G.711 A-law (payload type 8, 160 bytes per 20 ms packet) with SIPp's
//! `rtp_stream`; the callee echoes every RTP packet that reaches its media port
//! back to where it came from, i.e. the relay, which must send it on to the
//! caller. The relay's counters reach `/metrics` when a call ends.
//!
//! The SDP each SIPp saw is read from its `-trace_msg` log (`*_messages.log`):
//! it must point at a relay port (127.0.0.1, inside the switch's `[media]`
//! range), never at the other SIPp's own media port.
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::rtp::{drops, metrics_after_calls, rtp_lines};
use common::trace::{traced, wait_traced, Traced};
use common::{
    media_range, metric_value, require_sipp, Sipp, SippCmd, SippPorts, Switch, SwitchCfg, TestDir,
    TrunkCfg,
};
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// The number every uac dials (only the callee trunk's "" prefix matches it).
const NUMBER: &str = "9123";

/// G.711 bytes per 20 ms packet, as SIPp's `rtp_stream` sends PCMA.
const FRAME: u64 = 160;

/// UDP payload of one such packet: the 12-byte RTP header plus the frame.
const PACKET_BYTES: u64 = 12 + FRAME;

/// The `rtp_packets_dropped_total` label of `DropReason::NotLatched`
/// (`media/src/relay.rs`).
const NOT_LATCHED: &str = "not_latched";

/// How long a SIPp message the test waits for may take to be logged.
const TRACE_WAIT: Duration = Duration::from_secs(10);

struct Setup {
    dir: TestDir,
    uac: SippPorts,
    uas: SippPorts,
}

impl Setup {
    fn new(test: &str) -> Setup {
        require_sipp();
        Setup {
            dir: TestDir::new(test),
            uac: SippPorts::new(),
            uas: SippPorts::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Calls come from the uac and go to the uas over UDP.
    fn switch(&self) -> Switch {
        let cfg = SwitchCfg::new(vec![
            TrunkCfg::caller(self.uac.addr().to_string()),
            TrunkCfg::callee(self.uas.addr().to_string()),
        ]);
        Switch::start(self.path(), &cfg)
    }

    /// The switch's relay port range, read back from the config it was given.
    fn media_range(&self) -> (u16, u16) {
        media_range(self.path())
    }

    /// The callee: `uas.xml` answering `calls` calls, echoing RTP.
    fn uas(&self, calls: u32) -> Sipp {
        SippCmd::new("uas", "uas.xml", self.uas)
            .args(&["-m", &calls.to_string(), "-rtp_echo", "-trace_msg"])
            .timeout_s(30)
            .spawn(self.path())
    }

    /// The caller: `calls` calls at 10 cps, each streaming `packets` packets of
    /// PCMA after the ACK and hanging up after `hold_ms`.
    fn uac(&self, sw: &Switch, calls: u32, packets: u64, hold_ms: u64) -> Sipp {
        assert!(
            hold_ms > packets * 20 + 200,
            "the call must outlast the stream"
        );
        // SIPp 3.6.1 streams every call from -mp; newer versions give each
        // call its own port (-mp, -mp + 2, ...) and the block SippPorts
        // reserved ends at -mp + 5.
        assert!(calls <= 3, "SippPorts has room for 3 rtpstream ports");
        write_stream_file(&self.dir.sub("uac").join("stream.wav"), packets);
        SippCmd::new("uac", "uac_rtp.xml", self.uac)
            .remote(sw.sip)
            .args(&[
                "-s",
                NUMBER,
                "-m",
                &calls.to_string(),
                "-r",
                "10",
                "-d",
                &hold_ms.to_string(),
                "-trace_msg",
            ])
            .timeout_s(30)
            .spawn(self.path())
    }
}

/// Writes an 8 kHz mono A-law WAV file that SIPp 3.6.1 streams as exactly
/// `packets` RTP packets. That SIPp does not skip the WAV header: it sends the
/// file's bytes as they are, 160 per packet, so the whole file (44-byte header
/// included) is made `packets * 160` bytes long.
fn write_stream_file(path: &Path, packets: u64) {
    const HEADER: usize = 44;
    let total = usize::try_from(packets * FRAME).expect("file size");
    let data_len = total - HEADER;
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&u32::try_from(total - 8).expect("size").to_le_bytes());
    f.extend_from_slice(b"WAVE");
    f.extend_from_slice(b"fmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&6u16.to_le_bytes()); // WAVE_FORMAT_ALAW
    f.extend_from_slice(&1u16.to_le_bytes()); // mono
    f.extend_from_slice(&8000u32.to_le_bytes()); // samples per second
    f.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    f.extend_from_slice(&1u16.to_le_bytes()); // block align
    f.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    f.extend_from_slice(b"data");
    f.extend_from_slice(&u32::try_from(data_len).expect("size").to_le_bytes());
    // A quiet, changing signal around A-law's zero (0xD5).
    f.extend((0..data_len).map(|i| 0xD5 ^ ((i * 7) % 64) as u8));
    assert_eq!(f.len(), total);
    std::fs::write(path, &f).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------
// SIPp message logs
// ---------------------------------------------------------------------------------

/// Asserts that an SDP a SIPp received points at a relay port of the switch:
/// 127.0.0.1, a port in `range`, none of `peer_ports` (the other SIPp's own
/// media ports). Returns the port.
fn assert_anchored(m: &Traced, range: (u16, u16), peer_ports: &BTreeSet<u16>, who: &str) -> u16 {
    let Some((ip, port)) = &m.sdp else {
        panic!("{who}: no c=/m=audio in the SDP of\n{}", m.text)
    };
    assert_eq!(
        ip, "127.0.0.1",
        "{who}: c= is not the relay's bind_ip in\n{}",
        m.text
    );
    assert!(
        (range.0..=range.1).contains(port),
        "{who}: m=audio port {port} is outside the switch's media range {range:?} in\n{}",
        m.text
    );
    assert!(
        !peer_ports.contains(port),
        "{who}: m=audio port {port} is the other SIPp's own media port (passed through, \
         not anchored) in\n{}",
        m.text
    );
    *port
}

// ---------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------

fn counter(m: &str, series: &str) -> u64 {
    metric_value(m, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{m}")) as u64
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Three calls, each streaming 1.5 s of PCMA from the caller, echoed by the
/// callee: every packet crosses the relay twice (uac -> relay -> uas and
/// uas -> relay -> uac), and each SIPp only ever saw relay addresses.
#[test]
fn rtp_flows_both_ways_through_the_relay() {
    const CALLS: u32 = 3;
    const PACKETS: u64 = 75;
    let start = Instant::now();
    let s = Setup::new("rtp_flows_both_ways");
    let sw = s.switch();
    let range = s.media_range();
    let mut uas = s.uas(CALLS);
    let mut uac = s.uac(&sw, CALLS, PACKETS, 1900);
    let ctx = || sw.log_tail(40);
    let took = uac.expect_success(Duration::from_secs(40), &ctx);
    uas.expect_success(Duration::from_secs(20), &|| {
        format!("{}\n{}", uac.report(), ctx())
    });
    eprintln!("e2e rtp_flows_both_ways: {CALLS} calls done in {took:?}");

    // Signalling: each side saw only the relay.
    let uac_msgs = traced(&uac);
    let uas_msgs = traced(&uas);
    let uac_ports: BTreeSet<u16> = uac_msgs
        .iter()
        .filter(|m| m.sent && m.is_request("INVITE"))
        .filter_map(|m| m.sdp.as_ref().map(|(_, p)| *p))
        .collect();
    let uas_ports: BTreeSet<u16> = uas_msgs
        .iter()
        .filter(|m| m.sent && m.is_invite_200())
        .filter_map(|m| m.sdp.as_ref().map(|(_, p)| *p))
        .collect();
    // SIPp 3.6.1 streams every call from -mp (newer ones step by 2 per call).
    assert!(
        !uac_ports.is_empty() && uac_ports.iter().all(|p| *p >= s.uac.media),
        "the uac offers its rtpstream port(s): {uac_ports:?}"
    );
    assert_eq!(
        uas_ports,
        BTreeSet::from([s.uas.media]),
        "the uas answers with its -mp port"
    );
    let mut toward_uas = BTreeSet::new();
    let mut calls_in = BTreeSet::new();
    for m in uas_msgs
        .iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
    {
        toward_uas.insert(assert_anchored(
            m,
            range,
            &uac_ports,
            "INVITE received by the uas",
        ));
        calls_in.insert(m.call_id.clone());
    }
    assert_eq!(
        calls_in.len(),
        CALLS as usize,
        "INVITEs the uas received: {calls_in:?}"
    );
    let mut toward_uac = BTreeSet::new();
    let mut calls_out = BTreeSet::new();
    for m in uac_msgs.iter().filter(|m| !m.sent && m.is_invite_200()) {
        toward_uac.insert(assert_anchored(
            m,
            range,
            &uas_ports,
            "200 OK received by the uac",
        ));
        calls_out.insert(m.call_id.clone());
    }
    assert_eq!(
        calls_out.len(),
        CALLS as usize,
        "200s the uac received: {calls_out:?}"
    );
    assert_eq!(
        toward_uas.len(),
        CALLS as usize,
        "one relay port per call toward the uas"
    );
    assert_eq!(
        toward_uac.len(),
        CALLS as usize,
        "one relay port per call toward the uac"
    );
    assert!(
        toward_uas.is_disjoint(&toward_uac),
        "the two legs of a call share a relay port: {toward_uas:?} / {toward_uac:?}"
    );

    // Media: both directions, all of it (give or take the last packets in
    // flight at the BYE), nothing invented, nothing dropped.
    let m = metrics_after_calls(&sw, u64::from(CALLS));
    let expected = 2 * PACKETS * u64::from(CALLS);
    let relayed = counter(&m, "rtp_packets_relayed_total");
    let bytes = counter(&m, "rtp_bytes_relayed_total");
    let dropped = drops(&m);
    eprintln!(
        "e2e rtp_flows_both_ways: streamed {} packets, relayed {relayed} ({bytes} bytes, \
         {} more than the RTP) of {expected} expected, drops {dropped:?}, total {:?}",
        PACKETS * u64::from(CALLS),
        bytes.saturating_sub(relayed * PACKET_BYTES),
        start.elapsed()
    );
    let report = || format!("{}\n{}\n{}", rtp_lines(&m), uac.report(), uas.report());
    assert!(
        relayed * 10 >= expected * 9,
        "relayed {relayed} RTP packets, expected at least 90% of {expected} \
         (uac -> uas and the echo back):\n{}",
        report()
    );
    assert!(
        relayed <= expected,
        "relayed {relayed} RTP packets, more than the {expected} the peers sent:\n{}",
        report()
    );
    // Every RTP packet is 172 bytes. The byte counter also has the RTCP the
    // relay sends (its own SR/RR reports and a BYE per leg at the end, none of
    // them counted in rtp_packets_relayed_total): at most RTCP's 5% share
    // (RFC 3550 §6.2) plus a BYE of at most 256 bytes per leg.
    let rtp_bytes = relayed * PACKET_BYTES;
    let rtcp_allowance = rtp_bytes / 20 + 2 * u64::from(CALLS) * 256;
    assert!(
        bytes >= rtp_bytes && bytes - rtp_bytes <= rtcp_allowance,
        "rtp_bytes_relayed_total {bytes}: expected {relayed} packets of {PACKET_BYTES} bytes \
         (12 + 160 of G.711) = {rtp_bytes}, plus at most {rtcp_allowance} of RTCP:\n{}",
        report()
    );
    let nonzero: Vec<_> = dropped.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        nonzero.is_empty(),
        "unexpected drops {nonzero:?}:\n{}",
        report()
    );
    // The added-latency histogram saw every forwarded packet (RTP and the
    // relay's own RTCP are not forwarded packets, so at least the RTP).
    let latency_count = common::metric_value(&m, "rtp_relay_latency_seconds_count")
        .unwrap_or_else(|| panic!("no rtp_relay_latency_seconds_count:\n{m}"));
    let inf = common::metric_value(&m, "rtp_relay_latency_seconds_bucket{le=\"+Inf\"}")
        .unwrap_or_else(|| panic!("no +Inf bucket:\n{m}"));
    assert!(
        latency_count >= relayed as f64 && inf == latency_count,
        "rtp_relay_latency_seconds_count {latency_count} (+Inf {inf}) for {relayed} relayed"
    );
}

/// RTP Bleed: once both legs have latched on the real peers, packets from a
/// third party to either relay port are dropped (counted as not latched),
/// never forwarded, and nothing is sent back to it.
#[test]
fn rtp_bleed_is_blocked() {
    const PACKETS: u64 = 150; // 3 s
    const SPOOFED: u64 = 50;
    let start = Instant::now();
    let s = Setup::new("rtp_bleed_is_blocked");
    let sw = s.switch();
    let range = s.media_range();
    let mut uas = s.uas(1);
    let mut uac = s.uac(&sw, 1, PACKETS, 3400);

    let peer_ports = BTreeSet::from([s.uac.media, s.uas.media]);
    let toward_uas = wait_traced(&uas, "INVITE with SDP received", TRACE_WAIT, |msgs| {
        msgs.iter()
            .find(|m| !m.sent && m.is_request("INVITE") && m.sdp.is_some())
            .map(|m| assert_anchored(m, range, &peer_ports, "INVITE received by the uas"))
    });
    let toward_uac = wait_traced(&uac, "200 OK with SDP received", TRACE_WAIT, |msgs| {
        msgs.iter()
            .find(|m| !m.sent && m.is_invite_200() && m.sdp.is_some())
            .map(|m| assert_anchored(m, range, &peer_ports, "200 OK received by the uac"))
    });
    let acked = wait_traced(&uac, "ACK sent", TRACE_WAIT, |msgs| {
        msgs.iter()
            .any(|m| m.sent && m.is_request("ACK"))
            .then(Instant::now)
    });
    // Both legs latch on their peer's first packet: the uac streams right
    // after the ACK and the uas echoes it at once. Well inside the 3 s stream.
    std::thread::sleep(Duration::from_secs(1).saturating_sub(acked.elapsed()));

    let spoofer = UdpSocket::bind("127.0.0.1:0").expect("bind spoofer");
    let targets = [
        SocketAddr::from(([127, 0, 0, 1], toward_uas)),
        SocketAddr::from(([127, 0, 0, 1], toward_uac)),
    ];
    let mut pkt = [0u8; PACKET_BYTES as usize];
    for seq in 0..SPOOFED {
        pkt[0] = 0x80; // V=2, no padding/extension/CSRC
        pkt[1] = 8; // PT 8 (PCMA), no marker
        pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        pkt[4..8].copy_from_slice(&((seq as u32) * 160).to_be_bytes());
        pkt[8..12].copy_from_slice(&0x5bad_5eedu32.to_be_bytes());
        pkt[12..].fill(0xD5);
        for to in targets {
            spoofer.send_to(&pkt, to).expect("send spoofed RTP");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let spoof_done = acked.elapsed();
    spoofer
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    match spoofer.recv_from(&mut buf) {
        Ok((n, from)) => panic!(
            "the spoofer got {n} bytes back from {from}: the relay sent media to an \
             unsignalled, unlatched address"
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "spoofer recv: {e}"
        ),
    }
    assert!(
        spoof_done < Duration::from_millis(PACKETS * 20),
        "spoofing ended {spoof_done:?} after the ACK, after the stream: the test proves nothing"
    );

    let ctx = || sw.log_tail(40);
    let took = uac.expect_success(Duration::from_secs(40), &ctx);
    uas.expect_success(Duration::from_secs(20), &|| {
        format!("{}\n{}", uac.report(), ctx())
    });
    let m = metrics_after_calls(&sw, 1);
    let expected = 2 * PACKETS;
    let relayed = counter(&m, "rtp_packets_relayed_total");
    let dropped = drops(&m);
    eprintln!(
        "e2e rtp_bleed_is_blocked: relay ports {toward_uac} (uac side) / {toward_uas} (uas side), \
         spoofing done {spoof_done:?} after the ACK, call took {took:?}, relayed {relayed} of \
         {expected}, drops {dropped:?}, total {:?}",
        start.elapsed()
    );
    let report = || format!("{}\n{}\n{}", rtp_lines(&m), uac.report(), uas.report());
    let not_latched = dropped
        .iter()
        .find(|(r, _)| r == NOT_LATCHED)
        .map_or(0, |(_, n)| *n);
    assert_eq!(
        not_latched,
        2 * SPOOFED,
        "rtp_packets_dropped_total{{reason=\"{NOT_LATCHED}\"}}: {SPOOFED} spoofed packets \
         went to each relay port:\n{}",
        report()
    );
    let other: Vec<_> = dropped
        .iter()
        .filter(|(r, n)| r != NOT_LATCHED && *n > 0)
        .collect();
    assert!(
        other.is_empty(),
        "unexpected drops {other:?}:\n{}",
        report()
    );
    assert!(
        relayed <= expected,
        "relayed {relayed} RTP packets, more than the {expected} the peers sent \
         (spoofed packets forwarded?):\n{}",
        report()
    );
    assert!(
        relayed * 10 >= expected * 9,
        "relayed {relayed} RTP packets, expected at least 90% of {expected}: the spoofing \
         disturbed the real media:\n{}",
        report()
    );
}

/// The caller's trunk speaks only PCMA, the callee's only PCMU: the switch
/// offers the callee PCMU (a fresh offer on its relay port), answers the
/// caller PCMA, and the relay transcodes both ways (A-law ⇄ µ-law through
/// the transcoder). SIPp streams PCMA, the callee echoes what it gets.
#[test]
fn transcoded_call_relays_both_ways() {
    const PACKETS: u64 = 75;
    let s = Setup::new("rtp_transcoded");
    let cfg = SwitchCfg::new(vec![
        TrunkCfg::caller(s.uac.addr().to_string()).codecs(&["PCMA", "telephone-event"]),
        TrunkCfg::callee(s.uas.addr().to_string()).codecs(&["PCMU", "telephone-event"]),
    ]);
    let sw = Switch::start(s.path(), &cfg);
    let mut uas = SippCmd::new("uas", "uas_pcmu.xml", s.uas)
        .args(&["-m", "1", "-rtp_echo", "-trace_msg"])
        .timeout_s(30)
        .spawn(s.path());
    let mut uac = s.uac(&sw, 1, PACKETS, 1900);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(40), &ctx);
    uas.expect_success(Duration::from_secs(20), &ctx);

    // Signalling: the callee was offered µ-law only, the caller answered A-law.
    let invite = traced(&uas)
        .into_iter()
        .find(|m| !m.sent && m.is_request("INVITE"))
        .expect("the uas got an INVITE");
    assert!(
        invite.text.contains("RTP/AVP 0 101"),
        "the callee is offered PCMU (+ telephone-event) only:\n{}",
        invite.text
    );
    let ok = traced(&uac)
        .into_iter()
        .find(|m| !m.sent && m.is_invite_200())
        .expect("the uac got a 200");
    assert!(
        ok.text.contains("RTP/AVP 8"),
        "the caller is answered PCMA:\n{}",
        ok.text
    );

    // Media: every packet crossed the relay in both directions, transcoded.
    let m = metrics_after_calls(&sw, 1);
    let expected = 2 * PACKETS;
    let relayed = counter(&m, "rtp_packets_relayed_total");
    let report = || format!("{}\n{}\n{}", rtp_lines(&m), uac.report(), uas.report());
    assert!(
        relayed * 10 >= expected * 9 && relayed <= expected,
        "relayed {relayed} of {expected} (PCMA -> PCMU -> echo -> PCMA):\n{}",
        report()
    );
    let nonzero: Vec<_> = drops(&m).into_iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        nonzero.is_empty(),
        "unexpected drops {nonzero:?}:\n{}",
        report()
    );
}
