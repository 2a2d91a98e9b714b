//! A per-second latency histogram the operator console reads its percentiles from.
//!
//! The Prometheus histogram `gateway_event_to_sse_seconds` is cumulative since start and has
//! coarse buckets, so it cannot say what p99 was *in the last second*. The stream hub records
//! the same measurement (upstream frame read → frame offered to subscribers), at the same
//! point, into this window too; the console's sampler takes (and empties) it once a second.
//!
//! Fixed memory: log-linear buckets over microseconds (exact below 16 µs, then 8 buckets per
//! power of two, i.e. within 12.5 %), up to ~67 s; longer latencies land in the last bucket.
//! Recording is one atomic add, with no lock, so the hub's publish path stays cheap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this (µs) get a bucket each.
const EXACT: u64 = 16;
/// Buckets per power of two above [`EXACT`].
const SUB: u64 = 8;
/// Highest power of two tracked (2^26 µs ≈ 67 s).
const MAX_OCTAVE: u64 = 26;
/// Number of buckets.
const BUCKETS: usize = (EXACT + (MAX_OCTAVE - 3) * SUB) as usize;

/// Latencies recorded since the last [`LatencyWindow::take`].
pub struct LatencyWindow {
    counts: Box<[AtomicU64]>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < EXACT {
        return us as usize;
    }
    let octave = (63 - us.leading_zeros() as u64).min(MAX_OCTAVE);
    let sub = if octave == MAX_OCTAVE && us >> MAX_OCTAVE > 1 {
        SUB - 1
    } else {
        (us >> (octave - 3)) & (SUB - 1)
    };
    (EXACT + (octave - 4) * SUB + sub) as usize
}

/// The value (µs) a bucket stands for: its midpoint.
fn bucket_value(index: usize) -> f64 {
    let i = index as u64;
    if i < EXACT {
        return i as f64;
    }
    let octave = (i - EXACT) / SUB + 4;
    let sub = (i - EXACT) % SUB;
    let width = 1u64 << (octave - 3);
    let low = (SUB + sub) * width;
    low as f64 + width as f64 / 2.0
}

/// Percentiles of one window, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyWindow {
    /// Record one latency.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empty the window and return the percentiles of what it held (`None` if nothing).
    pub fn take(&self) -> Option<Percentiles> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let at = |q: f64| {
            // The smallest bucket whose cumulative count reaches rank ceil(q * total).
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_value(i) / 1000.0;
                }
            }
            bucket_value(BUCKETS - 1) / 1000.0
        };
        let max = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
        Some(Percentiles {
            count: total,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: bucket_value(max) / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_an_eighth() {
        let mut last = 0;
        for us in [
            0u64, 1, 15, 16, 17, 100, 999, 1_000, 12_345, 1_000_000, 10_000_000,
        ] {
            let b = bucket(us);
            assert!(b >= last, "bucket of {us} goes backwards");
            last = b;
            let v = bucket_value(b);
            let err = (v - us as f64).abs() / (us.max(1) as f64);
            assert!(err <= 0.125, "{us} µs reads back as {v} ({err})");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(1 << 40), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_spread_and_take_empties() {
        let w = LatencyWindow::default();
        assert_eq!(w.take(), None);
        // 1..=100 ms: p50 ≈ 50 ms, p90 ≈ 90 ms, p99 ≈ 99 ms.
        for ms in 1..=100u64 {
            w.record(Duration::from_millis(ms));
        }
        let p = w.take().expect("recorded");
        assert_eq!(p.count, 100);
        for (got, want) in [(p.p50_ms, 50.0), (p.p90_ms, 90.0), (p.p99_ms, 99.0)] {
            assert!((got - want).abs() / want <= 0.125, "{got} vs {want}");
        }
        assert!(p.max_ms >= p.p99_ms);
        assert_eq!(w.take(), None, "take empties the window");
    }
}
