//! A latency histogram fine enough for sub-millisecond percentiles: 1 µs
//! buckets up to 10 ms, 100 µs buckets up to 1 s, one overflow bucket,
//! and the exact maximum. Percentiles are bucket upper edges, so they err
//! by at most one bucket (1 µs where the relay's criterion, 1 ms, lies).

/// 1 µs buckets below this.
const FINE_LIMIT_NS: u64 = 10_000_000;
const FINE_STEP_NS: u64 = 1_000;
/// 100 µs buckets below this; the overflow bucket above.
const COARSE_LIMIT_NS: u64 = 1_000_000_000;
const COARSE_STEP_NS: u64 = 100_000;

const FINE: usize = (FINE_LIMIT_NS / FINE_STEP_NS) as usize;
const COARSE: usize = ((COARSE_LIMIT_NS - FINE_LIMIT_NS) / COARSE_STEP_NS) as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    /// FINE fine buckets, COARSE coarse ones, then the overflow bucket.
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: vec![0; FINE + COARSE + 1],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn index(ns: u64) -> usize {
        let i = if ns < FINE_LIMIT_NS {
            ns / FINE_STEP_NS
        } else if ns < COARSE_LIMIT_NS {
            FINE as u64 + (ns - FINE_LIMIT_NS) / COARSE_STEP_NS
        } else {
            (FINE + COARSE) as u64
        };
        usize::try_from(i).unwrap_or(FINE + COARSE)
    }

    /// The upper edge of bucket `i` (the overflow bucket's is the maximum).
    fn upper_ns(&self, i: usize) -> u64 {
        let i = i as u64;
        if i < FINE as u64 {
            (i + 1) * FINE_STEP_NS
        } else if i < (FINE + COARSE) as u64 {
            FINE_LIMIT_NS + (i - FINE as u64 + 1) * COARSE_STEP_NS
        } else {
            self.max_ns
        }
    }

    pub fn record(&mut self, ns: u64) {
        if let Some(b) = self.buckets.get_mut(Self::index(ns)) {
            *b += 1;
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    pub fn mean_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            u64::try_from(self.sum_ns / u128::from(self.count)).unwrap_or(u64::MAX)
        }
    }

    /// The smallest bucket edge at or below which a fraction `q` (0..=1)
    /// of the samples lie, never above the maximum; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return self.upper_ns(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_on_the_right_bucket() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_ns(0.99), 0);
        // 990 packets at 20.5 µs, 9 at 800 µs, one at 2 s.
        for _ in 0..990 {
            h.record(20_500);
        }
        for _ in 0..9 {
            h.record(800_000);
        }
        h.record(2_000_000_000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile_ns(0.5), 21_000);
        assert_eq!(h.quantile_ns(0.99), 21_000);
        assert_eq!(h.quantile_ns(0.995), 801_000);
        assert_eq!(h.quantile_ns(0.999), 801_000);
        assert_eq!(h.quantile_ns(1.0), 2_000_000_000);
        assert_eq!(h.max_ns(), 2_000_000_000);
        let mut m = Histogram::new();
        m.record(15_000_000);
        m.merge(&h);
        assert_eq!(m.count(), 1001);
        assert_eq!(m.quantile_ns(0.999), 15_100_000);
    }
}
