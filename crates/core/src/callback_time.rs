//! A small fixed-size histogram of sampled callback durations, per partition.
//!
//! Powers-of-two buckets in nanoseconds: recording is a leading-zeros count and an add,
//! cheap enough for the consumer thread, and quantiles come out within a factor of two,
//! which is what an operator needs to tell a 1 ms handler from a 100 ms one.

use std::time::Duration;

/// Bucket `i` holds durations in [2^i, 2^(i+1)) ns; 40 buckets reach ~18 minutes.
const BUCKETS: usize = 40;

#[derive(Clone)]
pub(crate) struct TimeHistogram {
    counts: [u64; BUCKETS],
    samples: u64,
    max: Duration,
}

impl Default for TimeHistogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            samples: 0,
            max: Duration::ZERO,
        }
    }
}

impl TimeHistogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let bucket = (63 - nanos.leading_zeros() as usize).min(BUCKETS - 1);
        self.counts[bucket] += 1;
        self.samples += 1;
        self.max = self.max.max(d);
    }

    /// The summary `stats()` shows; `None` before the first sample.
    pub(crate) fn summary(&self) -> Option<CallbackTime> {
        (self.samples > 0).then(|| CallbackTime {
            samples: self.samples,
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.max,
        })
    }

    /// The upper bound of the bucket holding quantile `q` (capped by the maximum seen).
    fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.samples as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let upper = Duration::from_nanos(1u64 << (i + 1).min(63));
                return upper.min(self.max);
            }
        }
        self.max
    }
}

/// Sampled callback durations of one partition, from
/// [`PartitionStats::callback_time`](crate::PartitionStats::callback_time).
///
/// The consumer thread times one callback in every 64 (reading the clock for each would
/// cost more than a fast callback); quantiles are bucket bounds, within a factor of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackTime {
    /// Callbacks timed.
    pub samples: u64,
    /// Median, rounded up to a power of two nanoseconds.
    pub p50: Duration,
    /// 99th percentile, rounded up to a power of two nanoseconds.
    pub p99: Duration,
    /// The longest sample.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let mut h = TimeHistogram::default();
        assert!(h.summary().is_none());
        for _ in 0..98 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(50));
        h.record(Duration::from_millis(60));
        let s = h.summary().unwrap();
        assert_eq!(s.samples, 100);
        assert!(
            s.p50 >= Duration::from_micros(100) && s.p50 < Duration::from_micros(200),
            "{s:?}"
        );
        assert!(
            s.p99 >= Duration::from_millis(50) && s.p99 <= Duration::from_millis(60),
            "{s:?}"
        );
        assert_eq!(s.max, Duration::from_millis(60));
    }
}
