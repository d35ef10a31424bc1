//! The latency the relay adds to a packet: from the moment its datagram was
//! received (the `Instant` taken right after `recv_from` returned) to the
//! moment the forwarded copy's `send_to` returned, as a histogram of fixed
//! buckets for Prometheus (`rtp_relay_latency_seconds`).
//!
//! ```text
//!  loop 0 ─record─▶ shard 0 ┐
//!  loop 1 ─record─▶ shard 1 ├─ snapshot() sums the shards ─▶ LatencySnapshot
//!  ...                      ┘
//! ```
//!
//! Lock-free: one shard of `AtomicU64` counters per event loop, each on its
//! own cache lines so loops on different cores never contend for a line,
//! updated with relaxed atomics (the counters are independent; a snapshot
//! taken during an update may miss that one packet, never corrupt a count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the `le` labels); a last
/// bucket, `+Inf`, holds the rest. From 5 µs (a loopback hop) to 25 ms
/// (a loop stalled for a whole packet time).
pub const LATENCY_BOUNDS_SECONDS: [f64; BOUNDS] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025,
];

const BOUNDS: usize = 12;

/// The same bounds in nanoseconds, for the per-packet comparison.
const BOUNDS_NS: [u64; BOUNDS] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 25_000_000,
];

/// One loop's counters. Aligned to 128 bytes (two cache lines, what
/// adjacent-line prefetching pairs up) so shards do not share lines.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard {
    /// Per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BOUNDS + 1],
    sum_ns: AtomicU64,
}

/// The relay-added latency histogram, shared by the event loops.
#[derive(Debug)]
pub struct LatencyHistogram {
    shards: Box<[Shard]>,
}

impl LatencyHistogram {
    /// A histogram with one shard per event loop (at least one).
    pub fn new(shards: usize) -> LatencyHistogram {
        LatencyHistogram {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    /// Records one packet's latency in `shard` (the loop's index; an index
    /// beyond the shards goes to the last one).
    pub fn record(&self, shard: usize, latency: Duration) {
        let Some(s) = self.shards.get(shard).or_else(|| self.shards.last()) else {
            return;
        };
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.iter().position(|&b| ns <= b).unwrap_or(BOUNDS);
        if let Some(b) = s.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        s.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far, summed over the shards.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut per_bucket = [0u64; BOUNDS + 1];
        let mut sum_ns = 0u64;
        for s in self.shards.iter() {
            for (total, b) in per_bucket.iter_mut().zip(s.buckets.iter()) {
                *total = total.saturating_add(b.load(Ordering::Relaxed));
            }
            sum_ns = sum_ns.saturating_add(s.sum_ns.load(Ordering::Relaxed));
        }
        let mut running = 0u64;
        let cumulative = per_bucket
            .iter()
            .map(|n| {
                running = running.saturating_add(*n);
                running
            })
            .collect();
        LatencySnapshot {
            bounds_seconds: &LATENCY_BOUNDS_SECONDS,
            cumulative,
            count: running,
            sum_seconds: sum_ns as f64 / 1e9,
        }
    }
}

/// A Prometheus histogram's worth of numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// The bucket upper bounds (`le`), in seconds, ascending.
    pub bounds_seconds: &'static [f64],
    /// Cumulative counts: `cumulative[i]` packets took at most
    /// `bounds_seconds[i]`; the extra last entry is the `+Inf` bucket and
    /// equals `count`.
    pub cumulative: Vec<u64>,
    /// Packets recorded.
    pub count: u64,
    /// Their latencies added up, in seconds.
    pub sum_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let h = LatencyHistogram::new(2);
        let us = Duration::from_micros;
        // 3 µs and exactly 5 µs in the first bucket (le is inclusive),
        // 7 µs in the second, 30 ms in +Inf; shard 9 falls to the last.
        h.record(0, us(3));
        h.record(1, us(5));
        h.record(0, us(7));
        h.record(9, Duration::from_millis(30));
        let s = h.snapshot();
        assert_eq!(s.bounds_seconds.len() + 1, s.cumulative.len());
        assert_eq!(&s.cumulative[..3], &[2, 3, 3]);
        assert_eq!(s.cumulative[BOUNDS - 1], 3);
        assert_eq!((s.cumulative[BOUNDS], s.count), (4, 4));
        assert!(
            (s.sum_seconds - 0.030_015).abs() < 1e-12,
            "{}",
            s.sum_seconds
        );
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert!(s.bounds_seconds.windows(2).all(|w| w[0] < w[1]));
        for (ns, s) in BOUNDS_NS.iter().zip(LATENCY_BOUNDS_SECONDS) {
            assert_eq!(*ns, (s * 1e9).round() as u64);
        }
        assert_eq!(std::mem::align_of::<Shard>(), 128);
    }
}
