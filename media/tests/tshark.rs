//! Cross-checks of the media code against `tshark` (Wireshark) on captures
//! of the very packets our code sees (issue 3, "Done means" 2 and 4).
//!
//! Each test builds RTP packets, feeds them to our code with their arrival
//! times, writes the same packets to a pcap (`pcap/mod.rs`, raw IPv4, the
//! arrival times as capture timestamps) and runs `tshark` on it:
//!
//! - `stats_match_tshark_rtp_streams`: `tshark -z rtp,streams` against
//!   `media::stats::ReceiveStats` on a PCMA stream with loss (a burst too),
//!   jitter, reordering and a sequence-number and timestamp wrap, and on a
//!   clean stream: loss exactly equal, jitter within 10 % or 0.5 ms.
//! - `dtmf_generated_decodes_in_tshark_and_in_our_receiver`: the digits
//!   `media::payload::dtmf::DtmfSender` generates decode to the same digits
//!   in tshark's rtpevent dissector and, with end packets lost, in a fresh
//!   `DtmfReceiver`, once each.
//! - `relay_injected_dtmf_decodes_in_tshark`: digits the relay injects into
//!   a live leg (`Relay::send_dtmf`), interleaved with the audio it
//!   forwards, decode to the same digits in tshark, on one RTP stream
//!   without a sequence gap.
//!
//! tshark comes from the Debian package `tshark` (`scripts/test` installs
//! it); without it these tests fail, saying so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod pcap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use media::format::{Encoding, LegFormat};
use media::payload::dtmf::{self, DtmfNotice, DtmfReceiver, DtmfSender};
use media::relay::{Action, LegConfig, Relay, RelayConfig};
use media::stats::ReceiveStats;
use pcap::PcapWriter;

const SENDER: [u8; 4] = [192, 0, 2, 10];
const RECEIVER: [u8; 4] = [192, 0, 2, 20];
/// Capture timestamps start here (2023-11-14), in µs since the epoch.
const EPOCH_US: u64 = 1_700_000_000_000_000;
const PT_PCMA: u8 = 8;
const PT_EVENT: u8 = 101;

/// Runs `tshark -n ARGS` and returns its standard output.
fn tshark(args: &[&str]) -> String {
    let out = match Command::new("tshark").arg("-n").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "tshark is not installed: install the Debian package `tshark` \
             (apt-get install tshark; scripts/test does it)"
        ),
        Err(e) => panic!("running tshark: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tshark {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Writes a capture under the target's scratch directory.
fn save(name: &str, capture: PcapWriter) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tshark-{name}-{}.pcap", std::process::id()));
    std::fs::write(&path, capture.into_bytes()).expect("write pcap");
    path
}

/// splitmix64: a deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// ---------------------------------------------------------------------------
// Done means 2: jitter and loss against `tshark -z rtp,streams`.
// ---------------------------------------------------------------------------

/// One received packet: what the receiver's stats see.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    seq: u16,
    ts: u32,
    marker: bool,
    /// µs after the capture's epoch.
    at_us: u64,
}

struct StreamSpec {
    ssrc: u32,
    /// Receiver port (the sender's is this − 10000).
    port: u16,
    packets: usize,
    first_seq: u16,
    first_ts: u32,
    /// Indices (in send order) of the packets lost on the way.
    lost: &'static [usize],
    /// Arrival = nominal (index × 20 ms) + a uniform 0..=max_jitter_us.
    max_jitter_us: u64,
    seed: u64,
    /// Positions (in arrival order) where two consecutive packets are
    /// swapped: the later one arrives first, at the earlier arrival time.
    swaps: &'static [usize],
}

/// The packets of a 20 ms PCMA stream (8 kHz, 160 samples a packet), in
/// arrival order.
fn arrivals(spec: &StreamSpec) -> Vec<Arrival> {
    let mut rng = Rng(spec.seed);
    let mut out: Vec<Arrival> = Vec::new();
    for i in 0..spec.packets {
        let offset = if spec.max_jitter_us == 0 {
            0
        } else {
            rng.next() % (spec.max_jitter_us + 1)
        };
        if spec.lost.contains(&i) {
            continue;
        }
        let n = u16::try_from(i).unwrap();
        let nominal = u64::from(n) * 20_000;
        // Keep arrivals in send order (0.1 ms apart at least); the swaps
        // below reorder on purpose.
        let at_us = match out.last() {
            Some(prev) => (nominal + offset).max(prev.at_us + 100),
            None => nominal + offset,
        };
        out.push(Arrival {
            seq: spec.first_seq.wrapping_add(n),
            ts: spec.first_ts.wrapping_add(u32::from(n) * 160),
            marker: i == 0,
            at_us,
        });
    }
    for &k in spec.swaps {
        let (a, b) = (out[k], out[k + 1]);
        out[k] = Arrival {
            at_us: a.at_us,
            ..b
        };
        out[k + 1] = Arrival {
            at_us: b.at_us,
            ..a
        };
    }
    out
}

/// What our stats made of a stream: the API figures, and the running max
/// and mean of `jitter_ms()` read after every packet but the first (tshark
/// reports the max and mean of its estimate, not the last value).
#[derive(Debug)]
struct Ours {
    seen: u64,
    received: u64,
    expected: u64,
    lost: i64,
    loss_rate: f64,
    last_jitter_ms: f64,
    max_jitter_ms: f64,
    mean_jitter_ms: f64,
    api_mean_jitter_ms: f64,
    max_delta_ms: f64,
}

fn run_ours(packets: &[Arrival]) -> Ours {
    let mut stats = ReceiveStats::new(8000);
    let base = Instant::now();
    let (mut max, mut sum, mut n) = (0.0f64, 0.0f64, 0u32);
    for (i, p) in packets.iter().enumerate() {
        stats.on_packet(p.seq, p.ts, 160, base + Duration::from_micros(p.at_us));
        if i > 0 {
            let j = stats.jitter_ms();
            max = max.max(j);
            sum += j;
            n += 1;
        }
    }
    let max_delta_us = packets
        .windows(2)
        .map(|w| w[1].at_us - w[0].at_us)
        .max()
        .unwrap();
    Ours {
        seen: stats.packets_seen(),
        received: stats.received(),
        expected: stats.expected(),
        lost: stats.cumulative_lost(),
        loss_rate: stats.loss_rate(),
        last_jitter_ms: stats.jitter_ms(),
        max_jitter_ms: max,
        mean_jitter_ms: sum / f64::from(n),
        api_mean_jitter_ms: stats.mean_jitter_ms(),
        max_delta_ms: max_delta_us as f64 / 1000.0,
    }
}

/// One row of `tshark -q -z rtp,streams`.
#[derive(Debug)]
struct TsharkStream {
    pkts: u64,
    lost: i64,
    lost_percent: f64,
    max_delta_ms: f64,
    mean_jitter_ms: f64,
    max_jitter_ms: f64,
}

/// Finds the row of `ssrc` in the rtp,streams table. The columns are
/// `Start time, End time, Src IP addr, Port, Dest IP addr, Port, SSRC,
/// Payload, Pkts, Lost, Min Delta(ms), Mean Delta(ms), Max Delta(ms),
/// Min Jitter(ms), Mean Jitter(ms), Max Jitter(ms), Problems?`, Lost being
/// `N (P%)`; the payload name may hold spaces, so the row is read around
/// the `(P%)` token.
fn parse_streams(output: &str, ssrc: u32) -> TsharkStream {
    let tag = format!("0x{ssrc:08x}");
    let line = output
        .lines()
        .find(|l| l.to_ascii_lowercase().contains(&tag))
        .unwrap_or_else(|| panic!("no stream {tag} in tshark's output:\n{output}"));
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let pct = tokens
        .iter()
        .position(|t| t.starts_with('(') && t.ends_with("%)"))
        .unwrap_or_else(|| panic!("no lost percentage in {line:?}"));
    let num = |i: usize| -> f64 {
        tokens
            .get(i)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("column {i} of {line:?} is not a number"))
    };
    TsharkStream {
        pkts: tokens[pct - 2].parse().unwrap(),
        lost: tokens[pct - 1].parse().unwrap(),
        lost_percent: tokens[pct]
            .trim_start_matches('(')
            .trim_end_matches("%)")
            .parse()
            .unwrap(),
        max_delta_ms: num(pct + 3),
        mean_jitter_ms: num(pct + 5),
        max_jitter_ms: num(pct + 6),
    }
}

/// The issue's tolerance: within 10 % or 0.5 ms, whichever is larger.
fn assert_jitter_close(what: &str, ours: f64, theirs: f64) {
    let tolerance = (theirs.abs() * 0.10).max(0.5);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: ours {ours:.3} ms, tshark {theirs:.3} ms (tolerance {tolerance:.3} ms)"
    );
}

#[test]
fn stats_match_tshark_rtp_streams() {
    // Stream A: 500 packets, 7 lost (one of them seq 0, right at the wrap,
    // and a burst of 3), 0..30 ms of jitter, two reordered pairs, sequence
    // numbers wrapping after 200 packets and timestamps after 100.
    let jittery = StreamSpec {
        ssrc: 0x5EED_0001,
        port: 50_000,
        packets: 500,
        first_seq: 65_336,
        first_ts: u32::MAX - 100 * 160 + 1,
        lost: &[50, 120, 200, 300, 301, 302, 410],
        max_jitter_us: 30_000,
        seed: 3550,
        swaps: &[150, 350],
    };
    // Stream B: 300 packets exactly 20 ms apart, no loss.
    let clean = StreamSpec {
        ssrc: 0x5EED_0002,
        port: 50_002,
        packets: 300,
        first_seq: 1000,
        first_ts: 8000,
        lost: &[],
        max_jitter_us: 0,
        seed: 0,
        swaps: &[],
    };

    let streams: Vec<(&StreamSpec, Vec<Arrival>)> =
        [&jittery, &clean].map(|s| (s, arrivals(s))).into();
    // One capture, both streams interleaved in arrival order.
    let mut all: Vec<(u64, &StreamSpec, Arrival)> = streams
        .iter()
        .flat_map(|(s, a)| a.iter().map(move |p| (p.at_us, *s, *p)))
        .collect();
    all.sort_by_key(|(at, s, _)| (*at, s.port));
    let mut capture = PcapWriter::new();
    for (at, spec, p) in &all {
        let mut rtp = Vec::new();
        // PCMA silence.
        media::rtp::write(
            &mut rtp,
            p.marker,
            PT_PCMA,
            p.seq,
            p.ts,
            spec.ssrc,
            &[0xD5; 160],
        );
        capture.udp(
            EPOCH_US + at,
            (SENDER, spec.port - 10_000),
            (RECEIVER, spec.port),
            &rtp,
        );
    }
    let path = save("rtp-streams", capture);
    let file = path.to_str().unwrap();
    let output = tshark(&[
        "-q",
        "-r",
        file,
        "-d",
        "udp.port==50000,rtp",
        "-d",
        "udp.port==50002,rtp",
        "-z",
        "rtp,streams",
    ]);
    println!("{output}");

    for (spec, packets) in &streams {
        let ours = run_ours(packets);
        let theirs = parse_streams(&output, spec.ssrc);
        println!(
            "stream {:#010x}\n  ours:   {ours:?}\n  tshark: {theirs:?}",
            spec.ssrc
        );

        // The capture is what we think it is.
        assert_eq!(theirs.pkts, packets.len() as u64);
        assert!(
            (theirs.max_delta_ms - ours.max_delta_ms).abs() < 0.002,
            "max delta: capture {} ms, tshark {} ms",
            ours.max_delta_ms,
            theirs.max_delta_ms
        );

        // Loss: exact.
        assert_eq!(ours.seen, theirs.pkts);
        assert_eq!(ours.received, theirs.pkts);
        assert_eq!(ours.lost, i64::try_from(spec.lost.len()).unwrap());
        assert_eq!(ours.lost, theirs.lost, "cumulative loss");
        assert_eq!(ours.expected, spec.packets as u64);
        assert!(
            (ours.loss_rate * 100.0 - theirs.lost_percent).abs() <= 0.05,
            "loss rate: ours {}%, tshark {}%",
            ours.loss_rate * 100.0,
            theirs.lost_percent
        );

        // Jitter: within 10 % or 0.5 ms.
        assert_jitter_close("max jitter", ours.max_jitter_ms, theirs.max_jitter_ms);
        assert_jitter_close("mean jitter", ours.mean_jitter_ms, theirs.mean_jitter_ms);
        assert_jitter_close(
            "mean jitter (API avgIJ)",
            ours.api_mean_jitter_ms,
            theirs.mean_jitter_ms,
        );
        assert!(ours.last_jitter_ms <= ours.max_jitter_ms);
    }

    // The jittery stream did measure jitter (uniform 0..30 ms offsets give
    // a mean |D| of 10 ms), the clean one none, on both sides.
    let ours = run_ours(&streams[0].1);
    let theirs = parse_streams(&output, jittery.ssrc);
    assert!(ours.mean_jitter_ms > 5.0 && theirs.mean_jitter_ms > 5.0);
    let ours = run_ours(&streams[1].1);
    let theirs = parse_streams(&output, clean.ssrc);
    assert!(ours.max_jitter_ms < 1e-6, "{ours:?}");
    assert!(theirs.max_jitter_ms < 1e-6, "{theirs:?}");
    let _ = std::fs::remove_file(path);
}

// ---------------------------------------------------------------------------
// Done means 4: generated digits decode in tshark and in our receiver.
// ---------------------------------------------------------------------------

const ALL_DIGITS: &str = "0123456789*#ABCD";
/// RFC 4733 §3.2 Table 7, written out independently of `media`.
fn event_digit(event: u8) -> char {
    ALL_DIGITS.chars().nth(usize::from(event)).unwrap()
}

/// One generated telephone-event packet as sent.
#[derive(Clone, Debug)]
struct EventPacket {
    /// Which press (index into the digit string) it belongs to.
    press: usize,
    seq: u16,
    timestamp: u32,
    /// µs after the capture's epoch.
    at_us: u64,
    rtp: Vec<u8>,
}

/// tshark's view of the telephone-events (payload type `pt`) of a
/// capture: (seq, timestamp, marker, event, end, duration) per packet.
fn tshark_events(
    path: &std::path::Path,
    port: u16,
    pt: u8,
) -> Vec<(u16, u32, bool, u8, bool, u16)> {
    let decode = format!("udp.port=={port},rtp");
    let event_pt = format!("rtp.pt=={pt},rtpevent");
    let output = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-d",
        &decode,
        "-d",
        &event_pt,
        "-Y",
        "rtpevent",
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "rtp.seq",
        "-e",
        "rtp.timestamp",
        "-e",
        "rtp.marker",
        "-e",
        "rtp.p_type",
        "-e",
        "rtpevent.event_id",
        "-e",
        "rtpevent.end_of_event",
        "-e",
        "rtpevent.duration",
    ]);
    println!("{output}");
    output
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 7, "tshark row {line:?}");
            let flag = |s: &str| match s {
                "1" | "True" => true,
                "0" | "False" => false,
                _ => panic!("flag {s:?} in {line:?}"),
            };
            let num = |s: &str| -> u64 {
                s.parse()
                    .unwrap_or_else(|_| panic!("{s:?} in {line:?}: not decoded as rtpevent?"))
            };
            assert_eq!(num(f[3]), u64::from(pt), "{line:?}");
            (
                u16::try_from(num(f[0])).unwrap(),
                u32::try_from(num(f[1])).unwrap(),
                flag(f[2]),
                u8::try_from(num(f[4])).unwrap(),
                flag(f[5]),
                u16::try_from(num(f[6])).unwrap(),
            )
        })
        .collect()
}

/// Digits as tshark sees them: one per distinct RTP timestamp, in order.
fn tshark_digits(events: &[(u16, u32, bool, u8, bool, u16)]) -> String {
    let mut digits = String::new();
    let mut last_ts = None;
    for &(_, ts, _, event, _, _) in events {
        if last_ts != Some(ts) {
            digits.push(event_digit(event));
            last_ts = Some(ts);
        }
    }
    digits
}

fn capture_of(packets: &[EventPacket], port: u16) -> PcapWriter {
    let mut capture = PcapWriter::new();
    for p in packets {
        capture.udp(
            EPOCH_US + p.at_us,
            (SENDER, port - 10_000),
            (RECEIVER, port),
            &p.rtp,
        );
    }
    capture
}

#[test]
fn dtmf_generated_decodes_in_tshark_and_in_our_receiver() {
    const PORT: u16 = 50_004;
    const SSRC: u32 = 0x4733_0001;
    // 100 ms a digit at one packet every 50 ms: updates at 0 and 50 ms and
    // three end packets, 5 packets a press. Sequence numbers wrap during
    // the fourth digit.
    let mut sender = DtmfSender::new(8000, 50);
    sender
        .start_digits(ALL_DIGITS, 100, 0x0102_0304)
        .expect("digits");
    let mut sent: Vec<EventPacket> = Vec::new();
    let mut press = 0usize;
    while let Some((marker, timestamp, payload)) = sender.next_packet() {
        let index = u16::try_from(sent.len()).unwrap();
        if marker && !sent.is_empty() {
            press += 1;
        }
        let seq = 65_520u16.wrapping_add(index);
        let mut rtp = Vec::new();
        media::rtp::write(&mut rtp, marker, PT_EVENT, seq, timestamp, SSRC, &payload);
        sent.push(EventPacket {
            press,
            seq,
            timestamp,
            at_us: u64::from(index) * 50_000,
            rtp,
        });
    }
    assert_eq!(sent.len(), 5 * ALL_DIGITS.len());

    // tshark decodes every generated packet as the event of its press,
    // the same timestamp for the whole press, the marker on the first
    // packet only, three end packets with the final duration (800 units).
    let path = save("dtmf", capture_of(&sent, PORT));
    let events = tshark_events(&path, PORT, PT_EVENT);
    assert_eq!(events.len(), sent.len());
    for (p, &(seq, ts, marker, event, end, duration)) in sent.iter().zip(&events) {
        assert_eq!((seq, ts), (p.seq, p.timestamp));
        assert_eq!(event_digit(event), ALL_DIGITS.chars().nth(p.press).unwrap());
        let first = sent.iter().position(|q| q.press == p.press).unwrap();
        let nth = sent.iter().position(|q| q.seq == p.seq).unwrap() - first;
        assert_eq!(marker, nth == 0, "marker of seq {seq}");
        assert_eq!(end, nth >= 2, "E bit of seq {seq}");
        assert_eq!(
            duration,
            [0, 400, 800, 800, 800][nth],
            "duration of seq {seq}"
        );
    }
    assert_eq!(tshark_digits(&events), ALL_DIGITS);
    let _ = std::fs::remove_file(path);

    // The network loses: the first end packet of '3', every end packet of
    // '7', and every end packet of 'D', the last digit.
    let nth_of = |p: &EventPacket| {
        sent.iter().position(|q| q.seq == p.seq).unwrap()
            - sent.iter().position(|q| q.press == p.press).unwrap()
    };
    let lost = |p: &EventPacket| {
        let digit = ALL_DIGITS.chars().nth(p.press).unwrap();
        let nth = nth_of(p);
        (digit == '3' && nth == 2) || (matches!(digit, '7' | 'D') && nth >= 2)
    };
    let wire: Vec<EventPacket> = sent.iter().filter(|p| !lost(p)).cloned().collect();
    assert_eq!(wire.len(), sent.len() - 7);

    // tshark still sees every digit once.
    let path = save("dtmf-lossy", capture_of(&wire, PORT));
    let events = tshark_events(&path, PORT, PT_EVENT);
    assert_eq!(events.len(), wire.len());
    assert_eq!(tshark_digits(&events), ALL_DIGITS);
    let _ = std::fs::remove_file(path);

    // A fresh receiver of ours, fed the packets off the wire through our
    // RTP parser: one Started and one Ended per digit, in order; the press
    // of '7' is ended by the start of '8', the one of 'D' by flush().
    let mut rx = DtmfReceiver::new();
    let mut notices = Vec::new();
    for p in &wire {
        let header = media::rtp::parse(&p.rtp).expect("RTP");
        assert_eq!((header.payload_type, header.ssrc), (PT_EVENT, SSRC));
        let ev = dtmf::parse(header.payload(&p.rtp)).expect("telephone-event");
        notices.extend(rx.on_packet(header.timestamp, header.marker, &ev));
    }
    assert!(
        !matches!(notices.last(), Some(DtmfNotice::Ended { digit: 'D', .. })),
        "'D' lost its end packets: {notices:?}"
    );
    notices.extend(rx.flush());
    assert_eq!(rx.flush(), None, "flush reports a press once");
    let mut expected = Vec::new();
    for digit in ALL_DIGITS.chars() {
        expected.push(DtmfNotice::Started { digit });
        // Without end packets the duration is the last update's (400).
        let duration = if matches!(digit, '7' | 'D') { 400 } else { 800 };
        expected.push(DtmfNotice::Ended { digit, duration });
    }
    assert_eq!(notices, expected);
}

// ---------------------------------------------------------------------------
// Digits the relay injects into a live leg decode in tshark.
// ---------------------------------------------------------------------------

#[test]
fn relay_injected_dtmf_decodes_in_tshark() {
    const PORT: u16 = 50_006;
    /// Phone B's telephone-event payload type (phone A's is 101: remapped).
    const PT_B_EVENT: u8 = 100;
    let relay_b = SocketAddr::from((SENDER, PORT - 10_000));
    let phone_a: SocketAddr = "192.0.2.30:40000".parse().unwrap();
    let phone_b = SocketAddr::from((RECEIVER, PORT));
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let a = relay.add_leg(
        LegConfig {
            remote: Some(phone_a),
            ..LegConfig::new("192.0.2.10:30000".parse().unwrap())
        },
        t0,
    );
    let b = relay.add_leg(
        LegConfig {
            remote: Some(phone_b),
            ..LegConfig::new(relay_b)
        },
        t0,
    );
    relay.bridge(a, b).unwrap();
    let format = |dtmf| LegFormat {
        payload_type: PT_PCMA,
        encoding: Encoding::Pcma,
        dtmf_payload_type: Some(dtmf),
    };
    relay.set_format(a, Some(format(PT_EVENT))).unwrap();
    relay.set_format(b, Some(format(PT_B_EVENT))).unwrap();

    // Phone A talks (20 ms PCMA) for 4.5 s; at 100 ms the switch starts
    // sending all sixteen digits into B (250 ms each). Everything that
    // goes to phone B is captured at the time it leaves.
    let mut capture = PcapWriter::new();
    let mut packets = 0usize;
    let mut capture_packet = |at_ms: u64, rtp: &[u8]| {
        capture.udp(
            EPOCH_US + at_ms * 1000,
            (SENDER, PORT - 10_000),
            (RECEIVER, PORT),
            rtp,
        );
    };
    for t in 0..=4500u64 {
        let now = t0 + Duration::from_millis(t);
        if t % 20 == 0 {
            let seq = 4000 + (t / 20) as u16;
            let mut p = Vec::new();
            media::rtp::write(
                &mut p,
                false,
                PT_PCMA,
                seq,
                u32::from(seq) * 160,
                0xA,
                &[0xD5; 160],
            );
            let action = relay.handle_rtp(a, phone_a, &mut p, now);
            assert!(matches!(action, Action::Forward { to, .. } if to == phone_b));
            capture_packet(t, &p);
            packets += 1;
        }
        if t == 100 {
            relay.send_dtmf(b, ALL_DIGITS, 100, now).expect("send_dtmf");
        }
        while let Some(tx) = relay.poll_transmit(now) {
            assert_eq!((tx.leg, tx.to), (b, phone_b));
            capture_packet(t, relay.output());
            packets += 1;
        }
    }
    let path = save("relay-dtmf", capture);

    // tshark: every press once, in order, each with its own timestamp, the
    // marker on its first packet and three end packets.
    let events = tshark_events(&path, PORT, PT_B_EVENT);
    assert_eq!(events.len(), 5 * ALL_DIGITS.len());
    assert_eq!(tshark_digits(&events), ALL_DIGITS);
    for press in events.chunks(5) {
        let ts = press[0].1;
        assert!(press.iter().all(|e| e.1 == ts && e.3 == press[0].3));
        let markers: Vec<bool> = press.iter().map(|e| e.2).collect();
        assert_eq!(markers, [true, false, false, false, false]);
        let ends: Vec<(bool, u16)> = press.iter().map(|e| (e.4, e.5)).collect();
        assert_eq!(
            ends,
            [
                (false, 0),
                (false, 400),
                (true, 800),
                (true, 800),
                (true, 800)
            ]
        );
    }

    // And one RTP stream (B's SSRC), audio and events together, with no
    // sequence number missing.
    let decode = format!("udp.port=={PORT},rtp");
    let output = tshark(&[
        "-q",
        "-r",
        path.to_str().unwrap(),
        "-d",
        &decode,
        "-z",
        "rtp,streams",
    ]);
    println!("{output}");
    let stream = parse_streams(&output, relay.leg_ssrc(b).unwrap());
    assert_eq!((stream.pkts, stream.lost), (packets as u64, 0));
    let _ = std::fs::remove_file(path);
}
