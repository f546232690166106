//! A latency histogram small enough to pass from a worker process to the
//! parent as one JSON line: logarithmic buckets with 16 steps per power of
//! two (values within 1/16, about 6 %, of the truth), kept sparse.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Steps per power of two: `SUB_BITS` bits of mantissa.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hist {
    /// Bucket index -> count. Indexes below `SUB` are exact nanoseconds.
    buckets: BTreeMap<u32, u64>,
}

fn index(ns: u64) -> u32 {
    if ns < SUB {
        return ns as u32;
    }
    let e = 63 - ns.leading_zeros(); // floor(log2), >= SUB_BITS
    let sub = (ns >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as u64 * SUB + sub) as u32
}

/// The middle of bucket `i`, in nanoseconds.
fn middle(i: u32) -> f64 {
    let i = u64::from(i);
    if i < SUB {
        return i as f64;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let low = (SUB + i % SUB) << (e - SUB_BITS);
    let width = 1u64 << (e - SUB_BITS);
    low as f64 + width as f64 / 2.0
}

impl Hist {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        *self.buckets.entry(index(ns)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (&i, &c) in &other.buckets {
            *self.buckets.entry(i).or_default() += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The `q` quantile (0..=1) in microseconds; `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The smallest value with at least ceil(q * n) values at or below it.
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (&i, &c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(middle(i) / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{index, middle, Hist};
    use std::time::Duration;

    #[test]
    fn buckets_are_within_a_sixteenth() {
        for ns in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            1000,
            65_535,
            123_456_789,
            u64::MAX / 2,
        ] {
            let m = middle(index(ns));
            assert!(
                (m - ns as f64).abs() <= ns as f64 / 16.0 + 0.5,
                "{ns} ns landed in a bucket centred on {m}"
            );
        }
        // Increasing values never go to a lower bucket.
        let mut last = 0;
        for ns in 0..100_000u64 {
            let i = index(ns);
            assert!(i >= last, "{ns} ns went back to bucket {i} from {last}");
            last = i;
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Hist::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let mut other = Hist::default();
        other.record(Duration::from_millis(10));
        h.merge(&other);
        assert_eq!(h.count(), 101);
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((48.0..=54.0).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((94.0..=104.0).contains(&p99), "p99 {p99}");
        let max = h.quantile_us(1.0).unwrap();
        assert!((9_500.0..=10_500.0).contains(&max), "max {max}");
        assert_eq!(Hist::default().quantile_us(0.5), None);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hist>(&json).unwrap(), h);
    }
}
