#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The media relay's packet path, stage by stage, with realistic packets.
//!
//! ```text
//!  rtp            RTP header parse
//!  rtcp           compound parse (SR+SDES, RR+SDES), Relay::handle_rtcp,
//!                 Relay::poll_rtcp building an SR
//!  relay_rtp      Relay::handle_rtp end to end, per payload path: PCMA,
//!                 AMR-NB 12.2 (same mode both legs, OA⇄BE conversion),
//!                 Opus, RFC 4733 DTMF, PCMA→AMR transcoded
//!  relay_scaling  Relay::handle_rtp with 1 … 10,000 calls open (one hot
//!                 call, and packets spread round-robin over every call)
//!  payload        the payload stages alone: AMR repack, Opus TOC check,
//!                 RFC 4733 parse + press detection
//!  stats          RFC 3550 receive statistics, E-model (R, MOS), snapshot
//!  transcode_20ms one 20 ms frame through the transcoder
//! ```
//!
//! Every relay bench first checks that its packets take the intended path
//! (the action returned), so a bench cannot silently measure a drop.
//!
//! `cargo bench --bench media_path -- --warm-up-time 1 --measurement-time 2`
//! (a filter selects groups: `cargo bench --bench media_path -- relay_scaling`).

use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
    Throughput,
};
use media::format::{Encoding, LegFormat};
use media::payload::amr::{self, AmrKind, PayloadMode};
use media::payload::dtmf::{self, DtmfReceiver, Event};
use media::payload::{g711, opus};
use media::relay::{Action, LegConfig, LegId, Relay, RelayConfig};
use media::rtcp::{self, ReportBlock, SenderInfo};
use media::stats::{self, CodecImpairment, PeerReport, QualitySnapshot, ReceiveStats, RttStats};
use media::transcode::{Codec, Transcoder};
use media::{rtp, transcode};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- fixtures

const PT_PCMA: u8 = 8;
const PT_AMR: u8 = 96;
const PT_AMR_OTHER: u8 = 97;
const PT_OPUS: u8 = 111;
const PT_DTMF: u8 = 101;
/// The phones' SSRCs (what the relay receives).
const SSRC_PHONE: u32 = 0x1122_3344;
/// Wall clock handed to `poll_rtcp` (for the SR's NTP timestamp).
const WALL: Duration = Duration::from_secs(1_700_000_000);
const FRAME: Duration = Duration::from_millis(20);

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn fmt(payload_type: u8, encoding: Encoding) -> Option<LegFormat> {
    Some(LegFormat {
        payload_type,
        encoding,
        dtmf_payload_type: Some(PT_DTMF),
    })
}

fn amr_nb(octet_aligned: bool) -> Encoding {
    Encoding::Amr {
        wideband: false,
        octet_aligned,
    }
}

/// One call: phone A (`remote_a`) on leg `a`, bridged to phone B on leg `b`.
struct Call {
    relay: Relay,
    a: LegId,
    b: LegId,
    phone_a: SocketAddr,
    phone_b: SocketAddr,
    t0: Instant,
}

/// Adds a bridged pair of legs for call number `n` (addresses derived from
/// `n`, fixed SSRCs so runs are comparable), with the given formats.
fn add_call(
    relay: &mut Relay,
    n: u32,
    fa: Option<LegFormat>,
    fb: Option<LegFormat>,
    t0: Instant,
) -> (LegId, LegId, SocketAddr, SocketAddr) {
    let [_, _, hi, lo] = n.to_be_bytes();
    let phone_a = SocketAddr::new(ip(10, 1, hi, lo), 40_000);
    let phone_b = SocketAddr::new(ip(10, 2, hi, lo), 50_000);
    let port = 20_000 + 2 * (n % 5_000) as u16;
    let leg = |remote, local: u16| LegConfig {
        remote: Some(remote),
        ..LegConfig::new(SocketAddr::new(ip(192, 0, 2, 100), local))
    };
    let a = relay.add_leg_with_ssrc(leg(phone_a, port), 0xA000_0000 | n, t0);
    let b = relay.add_leg_with_ssrc(leg(phone_b, port + 1), 0xB000_0000 | n, t0);
    relay.bridge(a, b).unwrap();
    relay.set_format(a, fa).unwrap();
    relay.set_format(b, fb).unwrap();
    (a, b, phone_a, phone_b)
}

fn call(fa: Option<LegFormat>, fb: Option<LegFormat>) -> Call {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let (a, b, phone_a, phone_b) = add_call(&mut relay, 0, fa, fb, t0);
    Call {
        relay,
        a,
        b,
        phone_a,
        phone_b,
        t0,
    }
}

/// An RTP packet from a phone: 12-byte header, no CSRC/extension.
fn rtp_packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    rtp::write(&mut p, marker, pt, seq, ts, SSRC_PHONE, payload);
    p
}

/// 1 s of a speech-like test signal at 8 kHz: three partials under a 4 Hz
/// syllabic envelope (so codecs see varying, non-trivial input).
fn speech_8k() -> Vec<i16> {
    (0..8000)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            let env = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let s = (2.0 * std::f64::consts::PI * 210.0 * t).sin() * 0.6
                + (2.0 * std::f64::consts::PI * 730.0 * t).sin() * 0.3
                + (2.0 * std::f64::consts::PI * 1_650.0 * t).sin() * 0.1;
            (9_000.0 * env * s) as i16
        })
        .collect()
}

/// 50 A-law frames of 20 ms (160 bytes each) of [`speech_8k`].
fn pcma_frames() -> Vec<Vec<u8>> {
    speech_8k()
        .chunks(160)
        .map(|pcm| {
            let mut out = Vec::with_capacity(160);
            g711::encode_alaw(pcm, &mut out);
            out
        })
        .collect()
}

/// The speech bits of every AMR-NB 12.2 kbit/s frame (FT 7) of the
/// real-encoder test vector.
fn amr_122_frames() -> Vec<Vec<u8>> {
    let file = include_bytes!("../media/tests/data/amr/opencore-amrnb-all-modes-dtx.amr");
    let mut rest = &file[6..];
    let mut frames = Vec::new();
    while let Some(&header) = rest.first() {
        let ft = (header >> 3) & 0x0F;
        let len = AmrKind::Nb
            .frame_bits(ft)
            .map_or(0, |bits| bits.div_ceil(8));
        if rest.len() < 1 + len {
            break;
        }
        if ft == 7 {
            frames.push(rest[1..1 + len].to_vec());
        }
        rest = &rest[1 + len..];
    }
    assert!(!frames.is_empty(), "no 12.2 kbit/s frame in the vector");
    frames
}

/// RTP payloads (CMR 15, one 12.2 frame each) in `mode`.
fn amr_payloads(mode: PayloadMode) -> Vec<Vec<u8>> {
    amr_122_frames()
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            amr::build(AmrKind::Nb, mode, 15, &[(7, true, f)], &mut out).unwrap();
            out
        })
        .collect()
}

/// A 58-byte Opus payload (70-byte packet): TOC config 9 (SILK wideband,
/// 20 ms), mono, code 0, then frame bytes. The relay forwards it as is.
fn opus_payload() -> Vec<u8> {
    let mut p = vec![9 << 3];
    p.extend((0..57u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    p
}

/// What `handle_rtp` must return for a bench to be meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Rewritten in place.
    Forward,
    /// Built in the relay's output buffer (converted or transcoded).
    ForwardBuffer,
}

fn check(action: Action, expect: Expect, what: &str) {
    let ok = matches!(
        (action, expect),
        (Action::Forward { .. }, Expect::Forward)
            | (Action::ForwardBuffer { .. }, Expect::ForwardBuffer)
    );
    assert!(ok, "{what}: expected {expect:?}, got {action:?}");
}

/// A stream of packets from phone A: packet `n` is `payloads[n % len]` with
/// sequence number `n`, timestamp `n * ts_step`, arriving at `t0 + n * 20 ms`.
struct Stream {
    pt: u8,
    payloads: Vec<Vec<u8>>,
    ts_step: u32,
    n: u64,
}

impl Stream {
    fn new(pt: u8, payloads: Vec<Vec<u8>>, ts_step: u32) -> Stream {
        Stream {
            pt,
            payloads,
            ts_step,
            n: 0,
        }
    }

    fn next(&mut self, t0: Instant) -> (Vec<u8>, Instant) {
        let n = self.n;
        self.n += 1;
        let payload = &self.payloads[(n % self.payloads.len() as u64) as usize];
        let packet = rtp_packet(
            self.pt,
            n as u16,
            (n as u32).wrapping_mul(self.ts_step),
            false,
            payload,
        );
        (packet, t0 + FRAME * (n as u32))
    }
}

/// Benches `Relay::handle_rtp` for phone A's stream on `c`, after checking
/// (past the latch window) that the packets take the expected path.
fn bench_handle_rtp(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut c: Call,
    mut stream: Stream,
    expect: Expect,
) {
    for _ in 0..10 {
        let (mut p, at) = stream.next(c.t0);
        let action = c.relay.handle_rtp(c.a, c.phone_a, &mut p, at);
        check(action, expect, name);
    }
    let (relay, a, src, t0) = (&mut c.relay, c.a, c.phone_a, c.t0);
    g.bench_function(name, |bench| {
        bench.iter_batched_ref(
            || stream.next(t0),
            |(p, at)| black_box(relay.handle_rtp(a, src, p, *at)),
            BatchSize::SmallInput,
        )
    });
    let counters = c.relay.leg_counters(c.a).unwrap();
    assert_eq!(counters.dropped_total(), 0, "{name}: packets were dropped");
}

// ------------------------------------------------------------------ stages

fn rtp_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    let pcma = rtp_packet(PT_PCMA, 7, 1_120, false, &[0xD5; 160]);
    g.bench_function("parse_pcma_172B", |b| {
        b.iter(|| black_box(rtp::parse(black_box(&pcma))))
    });
    let amr = rtp_packet(
        PT_AMR,
        7,
        1_120,
        false,
        &amr_payloads(PayloadMode::OctetAligned)[0],
    );
    g.bench_function(format!("parse_amr_nb_oa_{}B", amr.len()), |b| {
        b.iter(|| black_box(rtp::parse(black_box(&amr))))
    });
    g.finish();
}

/// A phone's compound (SR or RR with one report block about the relay's
/// stream, then SDES CNAME), as `rtcp::write_report` lays it out.
fn phone_compound(sender: bool, about: u32) -> Vec<u8> {
    let info = SenderInfo {
        ntp_timestamp: rtcp::ntp_from_unix(WALL),
        rtp_timestamp: 160_000,
        packet_count: 250,
        octet_count: 40_000,
    };
    let block = ReportBlock {
        ssrc: about,
        fraction_lost: 3,
        cumulative_lost: 12,
        extended_highest_seq: 0x0001_0123,
        jitter: 42,
        lsr: 0x1234_5678,
        dlsr: 0x0000_8000,
    };
    let mut out = Vec::new();
    rtcp::write_report(
        &mut out,
        SSRC_PHONE,
        sender.then_some(info),
        &[block],
        "alice@192.0.2.1",
    );
    out
}

fn rtcp_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtcp");
    g.throughput(Throughput::Elements(1));
    let sr = phone_compound(true, 0xA000_0000);
    let rr = phone_compound(false, 0xA000_0000);
    g.bench_function(format!("parse_compound_sr_sdes_{}B", sr.len()), |b| {
        b.iter(|| black_box(rtcp::parse_compound(black_box(&sr)).unwrap()))
    });
    g.bench_function(format!("parse_compound_rr_sdes_{}B", rr.len()), |b| {
        b.iter(|| black_box(rtcp::parse_compound(black_box(&rr)).unwrap()))
    });

    // A phone's SR arriving on the leg's RTCP socket (signalled port + 1).
    let mut c1 = call(fmt(PT_PCMA, Encoding::Pcma), fmt(PT_PCMA, Encoding::Pcma));
    let sr = phone_compound(true, c1.relay.leg_ssrc(c1.a).unwrap());
    let rtcp_src = SocketAddr::new(c1.phone_a.ip(), c1.phone_a.port() + 1);
    let action = c1.relay.handle_rtcp(c1.a, rtcp_src, &sr, c1.t0);
    assert_eq!(action, Action::Consumed, "handle_rtcp");
    let mut n = 0u32;
    g.bench_function("relay_handle_rtcp_sr_sdes", |b| {
        b.iter(|| {
            n += 1;
            let at = c1.t0 + Duration::from_secs(5) * n;
            black_box(c1.relay.handle_rtcp(c1.a, rtcp_src, black_box(&sr), at))
        })
    });
    assert_eq!(c1.relay.leg_counters(c1.a).unwrap().dropped_total(), 0);

    // poll_rtcp building one leg's SR (+ report block + SDES): media flows
    // both ways, then the report is due. Only the poll_rtcp call is timed.
    let mut c2 = call(fmt(PT_PCMA, Encoding::Pcma), fmt(PT_PCMA, Encoding::Pcma));
    let mut seq = 0u16;
    let mut at = c2.t0;
    let mut media = |call: &mut Call, at: Instant| {
        seq = seq.wrapping_add(1);
        let ts = u32::from(seq) * 160;
        let mut p = rtp_packet(PT_PCMA, seq, ts, false, &[0xD5; 160]);
        check(
            call.relay.handle_rtp(call.a, call.phone_a, &mut p, at),
            Expect::Forward,
            "poll_rtcp media a→b",
        );
        let mut p = rtp_packet(PT_PCMA, seq, ts, false, &[0xD5; 160]);
        check(
            call.relay.handle_rtp(call.b, call.phone_b, &mut p, at),
            Expect::Forward,
            "poll_rtcp media b→a",
        );
    };
    // Reports come every 0.5–1.5 × 5 s: 8 s on, both legs are due.
    let step = Duration::from_secs(8);
    media(&mut c2, at);
    at += step;
    let first = c2.relay.poll_rtcp(at, WALL).expect("an RTCP report is due");
    assert_eq!(first.3[1], 200, "the report is an SR");
    while c2.relay.poll_rtcp(at, WALL).is_some() {}
    g.bench_function("relay_poll_rtcp_sr_rr_block_sdes", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                media(&mut c2, at);
                at += step;
                let start = Instant::now();
                let report = c2.relay.poll_rtcp(at, WALL);
                total += start.elapsed();
                black_box(report.expect("an RTCP report is due"));
                // The other leg's report, untimed.
                while c2.relay.poll_rtcp(at, WALL).is_some() {}
            }
            total
        })
    });
    g.finish();
}

fn relay_rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_rtp");
    g.throughput(Throughput::Elements(1));
    let pcma = fmt(PT_PCMA, Encoding::Pcma);
    let oa = fmt(PT_AMR, amr_nb(true));
    let be = fmt(PT_AMR, amr_nb(false));
    let be_other_pt = fmt(PT_AMR_OTHER, amr_nb(false));
    let opus = fmt(PT_OPUS, Encoding::Opus);

    bench_handle_rtp(
        &mut g,
        "pcma_172B",
        call(pcma.clone(), pcma.clone()),
        Stream::new(PT_PCMA, pcma_frames(), 160),
        Expect::Forward,
    );
    let oa_payloads = amr_payloads(PayloadMode::OctetAligned);
    let be_payloads = amr_payloads(PayloadMode::BandwidthEfficient);
    let oa_len = 12 + oa_payloads[0].len();
    let be_len = 12 + be_payloads[0].len();
    bench_handle_rtp(
        &mut g,
        &format!("amr_nb_12k2_oa_to_oa_{oa_len}B"),
        call(oa.clone(), oa.clone()),
        Stream::new(PT_AMR, oa_payloads.clone(), 160),
        Expect::Forward,
    );
    bench_handle_rtp(
        &mut g,
        &format!("amr_nb_12k2_be_to_be_{be_len}B"),
        call(be.clone(), be.clone()),
        Stream::new(PT_AMR, be_payloads.clone(), 160),
        Expect::Forward,
    );
    bench_handle_rtp(
        &mut g,
        &format!("amr_nb_12k2_oa_to_be_{oa_len}B"),
        call(oa.clone(), be_other_pt.clone()),
        Stream::new(PT_AMR, oa_payloads, 160),
        Expect::ForwardBuffer,
    );
    bench_handle_rtp(
        &mut g,
        &format!("amr_nb_12k2_be_to_oa_{be_len}B"),
        call(be.clone(), oa.clone()),
        Stream::new(PT_AMR, be_payloads, 160),
        Expect::ForwardBuffer,
    );
    bench_handle_rtp(
        &mut g,
        "opus_70B",
        call(opus.clone(), opus.clone()),
        Stream::new(PT_OPUS, vec![opus_payload()], 960),
        Expect::Forward,
    );
    bench_handle_rtp(
        &mut g,
        "pcma_to_amr_nb_12k2_transcoded",
        call(pcma.clone(), oa.clone()),
        Stream::new(PT_PCMA, pcma_frames(), 160),
        Expect::ForwardBuffer,
    );

    // RFC 4733: presses of 8 packets (start with marker, 4 updates every
    // 50 ms, 3 end packets), one after the other, on the audio sequence.
    let mut c = call(pcma.clone(), pcma);
    let mut n = 0u64;
    let mut dtmf_packet = move |t0: Instant| {
        let press = n / 8;
        let i = (n % 8) as u16;
        let ts = (press as u32).wrapping_mul(8_000);
        let end = i >= 5;
        let ev = Event {
            event: (press % 10) as u8,
            end,
            volume: 10,
            duration: 400 * i.min(5),
        };
        let p = rtp_packet(PT_DTMF, n as u16, ts, i == 0, &ev.to_bytes());
        let at = t0 + Duration::from_millis(press * 1_000 + 50 * u64::from(i.min(5)));
        n += 1;
        (p, at)
    };
    for _ in 0..16 {
        let (mut p, at) = dtmf_packet(c.t0);
        check(
            c.relay.handle_rtp(c.a, c.phone_a, &mut p, at),
            Expect::Forward,
            "dtmf",
        );
    }
    assert!(
        std::iter::from_fn(|| c.relay.poll_event()).count() >= 2,
        "dtmf: the presses are reported"
    );
    let (relay, a, src, t0) = (&mut c.relay, c.a, c.phone_a, c.t0);
    g.bench_function("dtmf_rfc4733_16B", |bench| {
        bench.iter_batched_ref(
            || dtmf_packet(t0),
            |(p, at)| black_box(relay.handle_rtp(a, src, p, *at)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A relay with `calls` bridged PCMA calls (2 legs each), every one past
/// its latch window: phone A's leg and address per call.
fn loaded_relay(calls: u32, t0: Instant) -> (Relay, Vec<(LegId, SocketAddr)>) {
    let mut relay = Relay::new(RelayConfig::default());
    let legs: Vec<(LegId, SocketAddr)> = (0..calls)
        .map(|n| {
            let pcma = fmt(PT_PCMA, Encoding::Pcma);
            let (a, _, phone_a, _) = add_call(&mut relay, n, pcma.clone(), pcma, t0);
            (a, phone_a)
        })
        .collect();
    assert_eq!(relay.leg_count(), 2 * calls as usize);
    for seq in 0..8u16 {
        for &(a, src) in &legs {
            let mut p = rtp_packet(PT_PCMA, seq, u32::from(seq) * 160, false, &[0xD5; 160]);
            let at = t0 + FRAME * u32::from(seq);
            check(
                relay.handle_rtp(a, src, &mut p, at),
                Expect::Forward,
                "scaling",
            );
        }
    }
    (relay, legs)
}

fn assert_no_drops(relay: &Relay, legs: &[(LegId, SocketAddr)]) {
    let drops: u64 = legs
        .iter()
        .map(|&(a, _)| relay.leg_counters(a).unwrap().dropped_total())
        .sum();
    assert_eq!(drops, 0, "scaling: packets were dropped");
}

/// `handle_rtp` (PCMA, 172 B) with `calls` bridged calls (2 legs each) on
/// the relay: packets of one call only, and packets spread round-robin
/// over all calls (each call's stream still 20 ms apart), which touches
/// every call's state as a loaded relay does.
fn relay_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_scaling");
    g.throughput(Throughput::Elements(1));
    let payload = [0xD5u8; 160];
    for calls in [1u32, 100, 1_000, 10_000] {
        let t0 = Instant::now();
        let (mut relay, legs) = loaded_relay(calls, t0);
        // One hot call: the last one added.
        let (hot, hot_src) = *legs.last().unwrap();
        let mut n = 8u64;
        g.bench_with_input(
            BenchmarkId::new("pcma_172B_one_call_of", calls),
            &calls,
            |bench, _| {
                bench.iter_batched_ref(
                    || {
                        let p = rtp_packet(PT_PCMA, n as u16, (n as u32) * 160, false, &payload);
                        let at = t0 + FRAME * (n as u32);
                        n += 1;
                        (p, at)
                    },
                    |(p, at)| black_box(relay.handle_rtp(hot, hot_src, p, *at)),
                    BatchSize::SmallInput,
                )
            },
        );
        assert_no_drops(&relay, &legs);
        drop(relay);

        let (mut relay, legs) = loaded_relay(calls, t0);
        let mut n = 8 * u64::from(calls);
        g.bench_with_input(
            BenchmarkId::new("pcma_172B_round_robin_over", calls),
            &calls,
            |bench, _| {
                bench.iter_batched_ref(
                    || {
                        let (leg, src) = legs[(n % u64::from(calls)) as usize];
                        let k = n / u64::from(calls);
                        n += 1;
                        let p = rtp_packet(PT_PCMA, k as u16, (k as u32) * 160, false, &payload);
                        (leg, src, p, t0 + FRAME * (k as u32))
                    },
                    |(leg, src, p, at)| black_box(relay.handle_rtp(*leg, *src, p, *at)),
                    BatchSize::SmallInput,
                )
            },
        );
        assert_no_drops(&relay, &legs);
    }
    g.finish();
}

fn payload_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(1));
    let oa = amr_payloads(PayloadMode::OctetAligned).swap_remove(0);
    let be = amr_payloads(PayloadMode::BandwidthEfficient).swap_remove(0);
    let mut out = Vec::with_capacity(64);
    g.bench_function("amr_nb_12k2_oa_to_be", |b| {
        b.iter(|| {
            amr::convert(
                AmrKind::Nb,
                PayloadMode::OctetAligned,
                PayloadMode::BandwidthEfficient,
                black_box(&oa),
                &mut out,
            )
            .unwrap();
        })
    });
    g.bench_function("amr_nb_12k2_be_to_oa", |b| {
        b.iter(|| {
            amr::convert(
                AmrKind::Nb,
                PayloadMode::BandwidthEfficient,
                PayloadMode::OctetAligned,
                black_box(&be),
                &mut out,
            )
            .unwrap();
        })
    });
    let op = opus_payload();
    g.bench_function("opus_toc_check_58B", |b| {
        b.iter(|| black_box(opus::parse_payload(black_box(&op)).unwrap()))
    });
    let mut rx = DtmfReceiver::new();
    let mut ts: u32 = 0;
    g.bench_function("dtmf_parse_and_detect", |b| {
        b.iter(|| {
            // A new press every iteration: the worst case (a notice each time).
            ts = ts.wrapping_add(1280);
            let ev = dtmf::parse(black_box(&[5, 0x0A, 0x01, 0x40])).unwrap();
            for n in rx.on_packet(ts, true, &ev) {
                black_box(n);
            }
        })
    });
    g.finish();
}

fn stats_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats");
    g.throughput(Throughput::Elements(1));
    let start = Instant::now();
    let mut rx = ReceiveStats::new(8000);
    let mut seq: u16 = 0;
    let mut n: u64 = 0;
    g.bench_function("receive_stats_on_packet", |b| {
        b.iter(|| {
            n += 1;
            seq = seq.wrapping_add(1);
            // Arrival jitters by up to ±3 ms around the 20 ms cadence.
            let wobble = (n * 5 % 7) as i64 - 3;
            let ms = (n * 20) as i64 + wobble;
            let arrival = start + Duration::from_millis(ms.max(0) as u64);
            black_box(rx.on_packet(seq, u32::from(seq) * 160, 160, arrival))
        })
    });
    let amr = CodecImpairment::for_codec("AMR");
    g.bench_function("e_model_r_factor_and_mos", |b| {
        b.iter(|| {
            // 150 ms mouth-to-ear (past G.107's 100 ms knee), 2 % loss.
            let r = stats::r_factor(black_box(amr), black_box(150.0), black_box(2.0), 1.0);
            black_box(stats::mos_from_r(r))
        })
    });
    // A leg's snapshot (both directions' E-model) after 1,000 packets with
    // some loss, an RTT and the peer's RR.
    let mut rx = ReceiveStats::new(8000);
    for i in 0..1_000u16 {
        if i % 50 != 7 {
            rx.on_packet(i, u32::from(i) * 160, 160, start + FRAME * u32::from(i));
        }
    }
    let mut rtt = RttStats::new();
    rtt.add(Duration::from_millis(84));
    let peer = Some(PeerReport {
        loss_rate: 0.01,
        jitter_ms: 4.0,
    });
    g.bench_function("quality_snapshot_build", |b| {
        b.iter(|| black_box(QualitySnapshot::build(black_box(&rx), &rtt, peer, amr)))
    });
    g.finish();
}

/// One 20 ms frame through a warmed-up transcoder, inputs cycling over 1 s
/// of real codec output.
fn transcode_stage(c: &mut Criterion) {
    const AMR_NB_122: Codec = Codec::AmrNb { mode: 7 };
    let mut g = c.benchmark_group("transcode_20ms");
    g.throughput(Throughput::Elements(1));
    let pcma = pcma_frames();
    // AMR storage format: header (FT 7, Q 1) + speech bits.
    let amr: Vec<Vec<u8>> = amr_122_frames()
        .into_iter()
        .map(|f| {
            let mut s = vec![(7 << 3) | (1 << 2)];
            s.extend_from_slice(&f);
            assert_eq!(s.len(), transcode::amr_nb_frame_len(s[0]).unwrap_or(0));
            s
        })
        .collect();
    let mut enc = Transcoder::new(Codec::Pcma, Codec::Opus).unwrap();
    let opus: Vec<Vec<u8>> = pcma
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            enc.transcode(f, &mut out).unwrap();
            assert!(!out.is_empty(), "one Opus packet per 20 ms");
            out
        })
        .collect();
    let cases: [(&str, Codec, Codec, &[Vec<u8>]); 4] = [
        ("pcma_to_amr_nb_12k2", Codec::Pcma, AMR_NB_122, &pcma),
        ("amr_nb_12k2_to_pcma", AMR_NB_122, Codec::Pcma, &amr),
        ("opus_to_pcma", Codec::Opus, Codec::Pcma, &opus),
        ("pcma_to_opus", Codec::Pcma, Codec::Opus, &pcma),
    ];
    for (name, from, to, inputs) in cases {
        let mut t = Transcoder::new(from, to).unwrap();
        let mut out = Vec::with_capacity(2_048);
        for input in inputs {
            t.transcode(input, &mut out).unwrap();
        }
        assert!(
            !out.is_empty(),
            "{name}: steady state gives a frame per frame"
        );
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % inputs.len();
                black_box(t.transcode(black_box(&inputs[i]), &mut out).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    rtp_stage,
    rtcp_stage,
    relay_rtp,
    relay_scaling,
    payload_stage,
    stats_stage,
    transcode_stage
);
criterion_main!(benches);
