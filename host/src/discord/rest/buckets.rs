//! Discord's REST rate limits, learned from response headers.
//!
//! As documented: each route maps to a bucket named by `X-RateLimit-Bucket`; routes with
//! a major parameter (here the channel id) get a bucket per parameter value. A response
//! says how many requests are left (`X-RateLimit-Remaining`) and when the bucket refills
//! (`X-RateLimit-Reset-After`). A `429` pauses the bucket, or with `X-RateLimit-Global`
//! (or `"global": true`) every request, for `retry_after`. On top, at most
//! `global_per_second` requests leave per second. [`RateLimits::permit`] answers "now"
//! or "not before T", and counts the request against the bucket, so a command is never
//! sent into a bucket known to be empty. A bucket not known yet lets one request through
//! (a probe) and holds the others until its answer tells the limits.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A request's route: the method and path template (`POST /channels/{id}/messages`)
/// plus the major parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub route: &'static str,
    pub major: String,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

/// What the headers of a response said about its bucket.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Learned {
    pub bucket: Option<String>,
    pub remaining: Option<u32>,
    pub reset_after: Option<Duration>,
}

/// How long an unanswered probe holds its bucket at most.
const PROBE_HOLD: Duration = Duration::from_secs(2);

/// All buckets, the global pause, and the global per-second window.
#[derive(Debug)]
pub struct RateLimits {
    /// Route template → bucket hash (learned).
    hashes: HashMap<&'static str, String>,
    /// (bucket hash or route template, major) → state.
    buckets: HashMap<(String, String), Bucket>,
    global_until: Option<Instant>,
    window_start: Instant,
    window_count: u32,
    per_second: u32,
}

impl RateLimits {
    pub fn new(per_second: u32) -> Self {
        Self {
            hashes: HashMap::new(),
            buckets: HashMap::new(),
            global_until: None,
            window_start: Instant::now(),
            window_count: 0,
            per_second: per_second.max(1),
        }
    }

    fn key(&self, route: &RouteKey) -> (String, String) {
        let bucket = self
            .hashes
            .get(route.route)
            .cloned()
            .unwrap_or_else(|| route.route.to_string());
        (bucket, route.major.clone())
    }

    /// `Ok` (and the request is counted) or the instant to wait for.
    pub fn permit(&mut self, route: &RouteKey, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.global_until.filter(|u| *u > now) {
            return Err(until);
        }
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.window_count = 0;
        }
        if self.window_count >= self.per_second {
            return Err(self.window_start + Duration::from_secs(1));
        }
        let key = self.key(route);
        match self.buckets.get_mut(&key) {
            Some(bucket) if bucket.reset_at > now => {
                if bucket.remaining == 0 {
                    return Err(bucket.reset_at);
                }
                bucket.remaining -= 1;
            }
            // Unknown, or past its reset: this request probes; the others wait for its answer.
            _ => {
                self.buckets.insert(
                    key,
                    Bucket {
                        remaining: 0,
                        reset_at: now + PROBE_HOLD,
                    },
                );
            }
        }
        self.window_count += 1;
        Ok(())
    }

    /// Records what a response's headers said (no headers, or no response: the bucket is
    /// unknown again, which releases a probe's hold).
    pub fn learn(&mut self, route: &RouteKey, learned: &Learned, now: Instant) {
        let before = self.key(route);
        if let Some(hash) = &learned.bucket {
            self.hashes.insert(route.route, hash.clone());
        }
        let key = self.key(route);
        if key != before {
            self.buckets.remove(&before);
        }
        match (learned.remaining, learned.reset_after) {
            (Some(remaining), Some(after)) => {
                self.buckets.insert(
                    key,
                    Bucket {
                        remaining,
                        reset_at: now + after,
                    },
                );
            }
            _ => {
                self.buckets.remove(&key);
            }
        }
    }

    /// A `429`: pause the route's bucket, or everything when `global`.
    pub fn limited(&mut self, route: &RouteKey, global: bool, retry_after: Duration, now: Instant) {
        if global {
            self.global_until = Some(now + retry_after);
        } else {
            let key = self.key(route);
            self.buckets.insert(
                key,
                Bucket {
                    remaining: 0,
                    reset_at: now + retry_after,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(major: &str) -> RouteKey {
        RouteKey {
            route: "POST /channels/{id}/messages",
            major: major.into(),
        }
    }

    #[test]
    fn an_empty_bucket_waits_for_its_reset_and_only_its_major() {
        let now = Instant::now();
        let mut limits = RateLimits::new(50);
        assert!(limits.permit(&route("1"), now).is_ok());
        assert!(
            limits.permit(&route("1"), now).is_err(),
            "one probe at a time"
        );
        let learned = Learned {
            bucket: Some("abc".into()),
            remaining: Some(0),
            reset_after: Some(Duration::from_millis(500)),
        };
        limits.learn(&route("1"), &learned, now);
        assert_eq!(
            limits.permit(&route("1"), now),
            Err(now + Duration::from_millis(500))
        );
        assert!(
            limits.permit(&route("2"), now).is_ok(),
            "another channel is another bucket"
        );
        assert!(
            limits
                .permit(&route("1"), now + Duration::from_millis(500))
                .is_ok()
        );
    }

    #[test]
    fn remaining_counts_down_and_a_global_429_pauses_everything() {
        let now = Instant::now();
        let mut limits = RateLimits::new(50);
        let learned = Learned {
            bucket: Some("abc".into()),
            remaining: Some(1),
            reset_after: Some(Duration::from_secs(1)),
        };
        limits.learn(&route("1"), &learned, now);
        assert!(limits.permit(&route("1"), now).is_ok());
        assert!(limits.permit(&route("1"), now).is_err());
        limits.limited(&route("2"), true, Duration::from_secs(2), now);
        assert_eq!(
            limits.permit(&route("3"), now),
            Err(now + Duration::from_secs(2))
        );
    }

    #[test]
    fn the_global_rate_is_capped_per_second() {
        let now = Instant::now();
        let mut limits = RateLimits::new(3);
        for i in 0..3 {
            assert!(limits.permit(&route(&i.to_string()), now).is_ok());
        }
        assert!(limits.permit(&route("9"), now).is_err());
    }
}
