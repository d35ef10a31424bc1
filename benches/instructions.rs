#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Instruction counts of the media hot path, under Callgrind (gungraun),
//! with a regression guard: each bench has a hard ceiling on instructions
//! executed (Callgrind `Ir`), about 20 % above the count measured when the
//! ceiling was set (see [`CEILINGS`]). Above it gungraun reports a
//! performance regression and the bench fails (exit code 3). Instruction
//! counts do not depend on machine load, so the guard is not flaky; they do
//! depend on the compiler, so a toolchain upgrade may need new figures.
//!
//! Each bench measures exactly one call on a warmed-up fixture (relay legs
//! past their latch window, statistics past probation): the setup runs
//! outside the measured function.
//!
//! Run with `scripts/bench-instructions` (installs valgrind and the
//! matching `gungraun-runner`), or `cargo bench --bench instructions` when
//! both are installed. Under `cargo test --all-targets` (no `--bench`
//! argument) this target only prints that it was skipped, so the test
//! suite does not need valgrind or gungraun-runner.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// (bench, Ir measured, ceiling). The ceilings are what the benches enforce;
/// keep this table in step with them when re-measuring.
#[allow(dead_code)]
const CEILINGS: &[(&str, u64, u64)] = &[
    ("relay::handle_rtp pcma_172b", PCMA_IR, PCMA_MAX),
    ("relay::handle_rtp pcma_172b_10000_calls", PCMA_IR, PCMA_MAX),
    ("relay::handle_rtp amr_nb_12k2_oa_to_be", AMR_IR, AMR_MAX),
    ("stats::on_packet receive_stats", STATS_IR, STATS_MAX),
];

/// Measured with rustc 1.95.0, valgrind 3.19, gungraun 0.20.0 (bench
/// profile, x86_64).
const PCMA_IR: u64 = 686;
const AMR_IR: u64 = 3_050;
const STATS_IR: u64 = 204;
/// The ceilings: the measured count + 20 %, rounded up.
const PCMA_MAX: u64 = 825;
const AMR_MAX: u64 = 3_660;
const STATS_MAX: u64 = 245;

const PT_PCMA: u8 = 8;
const PT_AMR_OA: u8 = 96;
const PT_AMR_BE: u8 = 97;
const FRAME: Duration = Duration::from_millis(20);

mod fixtures {
    use super::*;
    use media::format::{Encoding, LegFormat};
    use media::payload::amr::{self, AmrKind, PayloadMode};
    use media::relay::{Action, LegConfig, LegId, Relay, RelayConfig};
    use media::rtp;
    use media::stats::ReceiveStats;

    /// A relay and the next packet of phone A's stream on leg `leg`.
    pub struct RelayFixture {
        pub relay: Relay,
        pub leg: LegId,
        pub src: SocketAddr,
        pub packet: Vec<u8>,
        pub at: Instant,
    }

    pub struct StatsFixture {
        pub rx: ReceiveStats,
        pub seq: u16,
        pub ts: u32,
        pub at: Instant,
    }

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn format(payload_type: u8, encoding: Encoding) -> Option<LegFormat> {
        Some(LegFormat {
            payload_type,
            encoding,
            dtmf_payload_type: Some(101),
        })
    }

    fn packet(pt: u8, n: u16, ts_step: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        rtp::write(
            &mut p,
            false,
            pt,
            n,
            u32::from(n) * ts_step,
            0x1122_3344,
            payload,
        );
        p
    }

    /// `calls` bridged calls with formats `fa` (phone A's leg) and `fb`;
    /// 10 packets of `payload` already sent on the last call's A leg, the
    /// 11th ready.
    fn relay(
        calls: u32,
        fa: Option<LegFormat>,
        fb: Option<LegFormat>,
        pt: u8,
        payload: &[u8],
    ) -> RelayFixture {
        let t0 = Instant::now();
        let mut relay = Relay::new(RelayConfig::default());
        let mut last = None;
        for n in 0..calls {
            let [_, _, hi, lo] = n.to_be_bytes();
            let phone_a = SocketAddr::new(ip(10, 1, hi, lo), 40_000);
            let phone_b = SocketAddr::new(ip(10, 2, hi, lo), 50_000);
            let leg = |remote, port: u16| LegConfig {
                remote: Some(remote),
                ..LegConfig::new(SocketAddr::new(ip(192, 0, 2, 100), port))
            };
            let a = relay.add_leg_with_ssrc(leg(phone_a, 20_000), 0xA000_0000 | n, t0);
            let b = relay.add_leg_with_ssrc(leg(phone_b, 20_002), 0xB000_0000 | n, t0);
            relay.bridge(a, b).unwrap();
            relay.set_format(a, fa.clone()).unwrap();
            relay.set_format(b, fb.clone()).unwrap();
            last = Some((a, phone_a));
        }
        let (leg, src) = last.unwrap();
        for n in 0..10u16 {
            let mut p = packet(pt, n, 160, payload);
            let action = relay.handle_rtp(leg, src, &mut p, t0 + FRAME * u32::from(n));
            assert!(
                matches!(
                    action,
                    Action::Forward { .. } | Action::ForwardBuffer { .. }
                ),
                "warm-up packet not forwarded: {action:?}"
            );
        }
        RelayFixture {
            relay,
            leg,
            src,
            packet: packet(pt, 10, 160, payload),
            at: t0 + FRAME * 10,
        }
    }

    pub fn pcma(calls: u32) -> RelayFixture {
        let pcma = format(PT_PCMA, Encoding::Pcma);
        relay(calls, pcma.clone(), pcma, PT_PCMA, &[0xD5; 160])
    }

    /// AMR-NB 12.2, octet-aligned from phone A, bandwidth-efficient to B.
    pub fn amr_oa_to_be() -> RelayFixture {
        let file = include_bytes!("../media/tests/data/amr/opencore-amrnb-all-modes-dtx.amr");
        let mut rest = &file[6..];
        let frame = loop {
            let ft = (rest[0] >> 3) & 0x0F;
            let len = AmrKind::Nb.frame_bits(ft).unwrap().div_ceil(8);
            if ft == 7 {
                break &rest[1..1 + len];
            }
            rest = &rest[1 + len..];
        };
        let mut oa = Vec::new();
        amr::build(
            AmrKind::Nb,
            PayloadMode::OctetAligned,
            15,
            &[(7, true, frame)],
            &mut oa,
        )
        .unwrap();
        let amr = |octet_aligned, pt| {
            format(
                pt,
                Encoding::Amr {
                    wideband: false,
                    octet_aligned,
                },
            )
        };
        relay(
            1,
            amr(true, PT_AMR_OA),
            amr(false, PT_AMR_BE),
            PT_AMR_OA,
            &oa,
        )
    }

    /// Statistics after 10 packets 20 ms apart; the 11th ready.
    pub fn stats() -> StatsFixture {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new(8000);
        for n in 0..10u16 {
            rx.on_packet(n, u32::from(n) * 160, 160, t0 + FRAME * u32::from(n));
        }
        StatsFixture {
            rx,
            seq: 10,
            ts: 1_600,
            at: t0 + FRAME * 10 + Duration::from_millis(2),
        }
    }
}

mod harness {
    use super::fixtures::{self, RelayFixture, StatsFixture};
    use super::*;
    use gungraun::{
        library_benchmark, library_benchmark_group, main, Callgrind, EventKind,
        LibraryBenchmarkConfig,
    };
    use std::hint::black_box;

    /// Callgrind without cache simulation (only `Ir` is guarded), failing
    /// the bench when `Ir` exceeds `max`.
    fn ceiling(max: u64) -> LibraryBenchmarkConfig {
        let mut config = LibraryBenchmarkConfig::default();
        config.tool(Callgrind::with_args(["--cache-sim=no"]).hard_limits([(EventKind::Ir, max)]));
        config
    }

    #[library_benchmark]
    #[bench::pcma_172b(args = (fixtures::pcma(1)), config = ceiling(PCMA_MAX))]
    #[bench::pcma_172b_10000_calls(args = (fixtures::pcma(10_000)), config = ceiling(PCMA_MAX))]
    #[bench::amr_nb_12k2_oa_to_be(args = (fixtures::amr_oa_to_be()), config = ceiling(AMR_MAX))]
    fn handle_rtp(mut f: RelayFixture) -> RelayFixture {
        black_box(
            f.relay
                .handle_rtp(f.leg, f.src, black_box(&mut f.packet), f.at),
        );
        f
    }

    #[library_benchmark]
    #[bench::receive_stats(args = (fixtures::stats()), config = ceiling(STATS_MAX))]
    fn on_packet(mut f: StatsFixture) -> StatsFixture {
        black_box(f.rx.on_packet(black_box(f.seq), f.ts, 160, f.at));
        f
    }

    library_benchmark_group!(name = relay, benchmarks = handle_rtp);
    library_benchmark_group!(name = stats, benchmarks = on_packet);

    main!(library_benchmark_groups = relay, stats);

    pub fn run() {
        main();
    }
}

fn main() {
    // `cargo bench` passes `--bench`; gungraun-runner re-executes this
    // binary under valgrind with `--gungraun-run ...`. Anything else
    // (`cargo test --all-targets`) skips: that needs neither valgrind nor
    // gungraun-runner.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench" || a == "--gungraun-run") {
        harness::run();
    } else {
        println!(
            "instructions: skipped (Callgrind instruction counts run only under \
             `cargo bench --bench instructions`; see scripts/bench-instructions)"
        );
    }
}
