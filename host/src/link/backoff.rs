//! Reconnect backoff: exponential from a base to a cap, with jitter.
//!
//! Jitter keeps a fleet of hosts from reconnecting in lockstep after an upstream
//! restart. The delay is drawn from [0.8 × nominal, nominal], so it never exceeds the
//! cap and never collapses to zero (no busy loop, even against a refusing upstream).

use std::time::Duration;

use rand::Rng;

/// Lowest fraction of the nominal delay the jitter may pick.
const JITTER_FLOOR: f64 = 0.8;

/// Backoff state for one link.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubles up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The un-jittered delay for the current attempt.
    pub fn nominal(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt; advances the attempt count.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::rng().random_range(JITTER_FLOOR..=1.0))
    }

    /// The base delay, jittered, without advancing the attempt count (a deliberate
    /// reconnect, e.g. to resynchronise).
    pub fn base_delay(&self) -> Duration {
        self.base
            .mul_f64(rand::rng().random_range(JITTER_FLOOR..=1.0))
    }

    /// Back to `base` (after a stable connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let expected = [1, 2, 4, 8, 16, 30, 30];
        for secs in expected {
            let nominal = Duration::from_secs(secs);
            assert_eq!(b.nominal(), nominal);
            let d = b.next_delay();
            assert!(
                d <= nominal && d >= nominal.mul_f64(JITTER_FLOOR),
                "{d:?} vs {nominal:?}"
            );
        }
    }

    #[test]
    fn reset_returns_to_base() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.nominal(), Duration::from_millis(100));
    }
}
