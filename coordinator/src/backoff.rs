//! Exponential backoff with full jitter for the service's retries (`docs/architecture.md`,
//! "A service that stays up"): the n-th delay is drawn uniformly from `[d/2, d]` with
//! `d = min(base * 2^n, max)`, so many validators restarting together do not retry in step.

use std::time::Duration;

use rand::Rng;

/// The delays between tries of one failing operation; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays from `base`, doubling per try, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next try: `min(base * 2^n, max)` scaled by a random factor in
    /// `[0.5, 1]`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Starts over from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let ceilings = [1, 2, 4, 8, 8, 8];
        for c in ceilings {
            let d = b.next_delay();
            let c = Duration::from_secs(c);
            assert!(d <= c && d >= c / 2, "{d:?} not in [{:?}, {c:?}]", c / 2);
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 1, "no jitter: {seen:?}");
    }
}
