//! Exponential backoff with jitter, so that many consumers retrying a broker do not
//! retry in lockstep.

use std::time::Duration;

use crate::config::RetryBackoff;

pub(crate) struct Backoff {
    bounds: RetryBackoff,
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(bounds: RetryBackoff) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
        Self {
            bounds,
            next: bounds.initial,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt: uniform in [d/2, d], d doubling up to the max.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.saturating_mul(2).min(self.bounds.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = ceiling / 2;
        let span = (ceiling - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { self.rng % (span + 1) })
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.bounds.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_in_bounds() {
        let bounds = RetryBackoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(80),
        };
        let mut b = Backoff::new(bounds);
        let mut ceiling = bounds.initial;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(bounds.max);
        }
        b.reset();
        assert!(b.next_delay() <= bounds.initial);
    }
}
