#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The RTP relay's per-packet work, piece by piece: parse → leg lookup →
//! latch check → header rewrite (`Relay::handle_rtp`), AMR mode conversion,
//! RFC 4733 decode, and the RFC 3550 statistics update.
//!
//! `cargo bench --bench media_path -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use media::payload::amr::{self, AmrKind, PayloadMode};
use media::payload::dtmf::{self, DtmfReceiver};
use media::relay::{LegConfig, Relay, RelayConfig};
use media::stats::ReceiveStats;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn pcma_packet(seq: u16) -> [u8; 172] {
    let mut p = [0xD5u8; 172];
    p[..12].copy_from_slice(&[0x80, 8, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p
}

fn relay(c: &mut Criterion) {
    let now = Instant::now();
    let phone_a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let phone_b: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let mut relay = Relay::new(RelayConfig::default());
    let a = relay.add_leg(
        LegConfig {
            remote: Some(phone_a),
            ..LegConfig::new("127.0.0.1:30000".parse().unwrap())
        },
        now,
    );
    let b = relay.add_leg(
        LegConfig {
            remote: Some(phone_b),
            ..LegConfig::new("127.0.0.1:30002".parse().unwrap())
        },
        now,
    );
    relay.bridge(a, b).unwrap();
    let mut seq: u16 = 0;
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(1));
    g.bench_function("handle_rtp_pcma_172B", |bench| {
        bench.iter_batched_ref(
            || {
                seq = seq.wrapping_add(1);
                pcma_packet(seq)
            },
            |p| black_box(relay.handle_rtp(a, phone_a, p, now + Duration::from_millis(20))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rtp_parse", |bench| {
        let p = pcma_packet(7);
        bench.iter(|| black_box(media::rtp::parse(black_box(&p))))
    });
    g.finish();
}

fn amr(c: &mut Criterion) {
    // One 12.2 kbit/s frame from the real-encoder vectors, octet-aligned.
    let file = include_bytes!("../media/tests/data/amr/opencore-amrnb-all-modes-dtx.amr");
    let mut rest = &file[6..];
    let frame = loop {
        let ft = (rest[0] >> 3) & 0x0F;
        let len = AmrKind::Nb.frame_bits(ft).unwrap().div_ceil(8);
        if ft == 7 {
            break rest[1..1 + len].to_vec();
        }
        rest = &rest[1 + len..];
    };
    let mut oa = Vec::new();
    amr::build(
        AmrKind::Nb,
        PayloadMode::OctetAligned,
        15,
        &[(7, true, &frame)],
        &mut oa,
    )
    .unwrap();
    let mut be = Vec::new();
    amr::convert(
        AmrKind::Nb,
        PayloadMode::OctetAligned,
        PayloadMode::BandwidthEfficient,
        &oa,
        &mut be,
    )
    .unwrap();
    let mut out = Vec::with_capacity(64);
    let mut g = c.benchmark_group("amr");
    g.throughput(Throughput::Elements(1));
    g.bench_function("octet_aligned_to_bandwidth_efficient_12k2", |bench| {
        bench.iter(|| {
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
    g.bench_function("bandwidth_efficient_to_octet_aligned_12k2", |bench| {
        bench.iter(|| {
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
    g.finish();
}

fn dtmf_decode(c: &mut Criterion) {
    let mut rx = DtmfReceiver::new();
    let mut ts: u32 = 0;
    let mut g = c.benchmark_group("dtmf");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_and_receive", |bench| {
        bench.iter(|| {
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

fn stats(c: &mut Criterion) {
    let start = Instant::now();
    let mut rx = ReceiveStats::new(8000);
    let mut seq: u16 = 0;
    let mut g = c.benchmark_group("stats");
    g.throughput(Throughput::Elements(1));
    g.bench_function("receive_stats_on_packet", |bench| {
        bench.iter(|| {
            seq = seq.wrapping_add(1);
            let arrival = start + Duration::from_millis(u64::from(seq) * 20);
            black_box(rx.on_packet(seq, u32::from(seq) * 160, 160, arrival))
        })
    });
    g.finish();
}

criterion_group!(benches, relay, amr, dtmf_decode, stats);
criterion_main!(benches);
