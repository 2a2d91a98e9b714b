//! [`InvalidBudget`]: how many invalid commands a user may send before the host stops
//! listening to them for a while.
//!
//! Why: the rate limiter only sees valid commands (an invalid one must not cost a token
//! from the user's bucket), so without this a client could send invalid bodies as fast as
//! it likes, and each would cost a command-validator component call. Here each user (the
//! token's `sub`) has a small token bucket that only invalid requests drain (`400`, `413`,
//! `415`): `invalid-burst` of them, refilled one per `invalid-refill-ms`. While it is
//! empty, the user's commands are answered `429 too_many_invalid` right after the token
//! check: no body parsing, no component call.
//!
//! Memory stays bounded: only users who sent something invalid have an entry, a bucket
//! that has refilled is removed (on the user's next request, or by a sweep when the map is
//! full), and at most `max-tracked-users` entries exist; past that (after a sweep), a new
//! user is not tracked (counted in `gateway_command_invalid_untracked_total`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-user budgets of invalid requests.
pub struct InvalidBudget {
    buckets: Mutex<HashMap<String, Bucket>>,
    burst: f64,
    refill_every: Duration,
    max_users: usize,
}

impl InvalidBudget {
    /// `burst` invalid requests at once, one more per `refill_every`, at most `max_users`
    /// users tracked.
    pub fn new(burst: u32, refill_every: Duration, max_users: usize) -> InvalidBudget {
        InvalidBudget {
            buckets: Mutex::new(HashMap::new()),
            burst: f64::from(burst.max(1)),
            refill_every: refill_every.max(Duration::from_millis(1)),
            max_users,
        }
    }

    /// `Ok` when `user` may be heard; else how long until it may.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        let Some(bucket) = buckets.get_mut(user) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.tokens >= self.burst {
            buckets.remove(user);
            return Ok(());
        }
        if bucket.tokens >= 1.0 {
            return Ok(());
        }
        Err(self.refill_every.mul_f64(1.0 - bucket.tokens))
    }

    /// `user` sent an invalid request: it costs one unit of the budget.
    pub fn charge(&self, user: &str, now: Instant) {
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(user) && buckets.len() >= self.max_users {
            buckets.retain(|_, b| !self.is_full(b, now));
            if buckets.len() >= self.max_users {
                metrics::counter!("gateway_command_invalid_untracked_total").increment(1);
                return;
            }
        }
        let bucket = buckets.entry(user.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// Users with an entry (some budget spent and not yet refilled).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let gained = now.saturating_duration_since(bucket.at).as_secs_f64()
            / self.refill_every.as_secs_f64();
        bucket.tokens = (bucket.tokens + gained).min(self.burst);
        bucket.at = now;
    }

    fn is_full(&self, bucket: &Bucket, now: Instant) -> bool {
        let gained = now.saturating_duration_since(bucket.at).as_secs_f64()
            / self.refill_every.as_secs_f64();
        bucket.tokens + gained >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn burst_then_refused_then_refilled_and_forgotten() {
        let budget = InvalidBudget::new(3, SEC, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(budget.check("a", t0).is_ok());
            budget.charge("a", t0);
        }
        let wait = budget.check("a", t0).unwrap_err();
        assert_eq!(wait, SEC);
        assert!(budget.check("b", t0).is_ok(), "others unaffected");
        assert!(budget.check("a", t0 + SEC).is_ok(), "one refilled");
        assert_eq!(budget.tracked(), 1);
        assert!(budget.check("a", t0 + 3 * SEC).is_ok());
        assert_eq!(budget.tracked(), 0, "a refilled bucket is dropped");
    }

    #[test]
    fn memory_is_bounded() {
        let budget = InvalidBudget::new(2, SEC, 3);
        let t0 = Instant::now();
        for user in ["a", "b", "c", "d"] {
            budget.charge(user, t0);
        }
        assert_eq!(
            budget.tracked(),
            3,
            "d is not tracked while the map is full"
        );
        budget.charge("e", t0 + 2 * SEC);
        assert_eq!(budget.tracked(), 1, "refilled entries were swept for e");
    }
}
