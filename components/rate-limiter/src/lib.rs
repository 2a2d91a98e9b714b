//! Default `rate-limiter` component: a token bucket per `userId:channelId`.
//!
//! The host owns the buckets; this component only chooses the key and does the arithmetic.
//! Its state encoding (13 bytes, see [`Bucket`]) is private to it: anything it cannot decode,
//! e.g. state left by an older version, is treated as a fresh, full bucket.
//!
//! Configuration (`init`), all optional:
//! * `burst`: bucket capacity, default 10.
//! * `refill-tokens`: tokens added per interval, default 5.
//! * `refill-interval-ms`: the interval, default 5000.
//! * `key`: `user-channel` (default), `user` or `channel`.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::LimitVerdict;

wit_bindgen::generate!({ world: "rate-limiter", path: "../../wit" });

/// Which request fields make up the bucket key.
#[derive(Clone, Copy)]
enum KeyScheme {
    UserChannel,
    User,
    Channel,
}

#[derive(Clone, Copy)]
struct Settings {
    burst: u32,
    refill_tokens: u32,
    refill_interval_ms: u64,
    key: KeyScheme,
}

const DEFAULTS: Settings = Settings {
    burst: 10,
    refill_tokens: 5,
    refill_interval_ms: 5000,
    key: KeyScheme::UserChannel,
};

static SETTINGS: Mutex<Settings> = Mutex::new(DEFAULTS);

fn settings() -> Settings {
    *SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
) -> Result<T, String> {
    match value.trim().parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("{key}: expected a positive integer, got {value:?}")),
    }
}

fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut s = DEFAULTS;
    for (key, value) in config {
        match key.as_str() {
            "burst" => s.burst = parse_positive(key, value)?,
            "refill-tokens" => s.refill_tokens = parse_positive(key, value)?,
            "refill-interval-ms" => s.refill_interval_ms = parse_positive(key, value)?,
            "key" => {
                s.key = match value.as_str() {
                    "user-channel" => KeyScheme::UserChannel,
                    "user" => KeyScheme::User,
                    "channel" => KeyScheme::Channel,
                    other => {
                        return Err(format!(
                            "key: expected user-channel, user or channel, got {other:?}"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(s)
}

/// A bucket as stored by the host: version 1, tokens, time of the last refill step.
struct Bucket {
    tokens: u32,
    last_refill_ms: u64,
}

const STATE_VERSION: u8 = 1;

impl Bucket {
    fn decode(bytes: &[u8]) -> Option<Bucket> {
        let (&version, rest) = bytes.split_first()?;
        if version != STATE_VERSION || rest.len() != 12 {
            return None;
        }
        let tokens = u32::from_le_bytes(rest[0..4].try_into().ok()?);
        let last_refill_ms = u64::from_le_bytes(rest[4..12].try_into().ok()?);
        Some(Bucket {
            tokens,
            last_refill_ms,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.tokens.to_le_bytes());
        out.extend_from_slice(&self.last_refill_ms.to_le_bytes());
        out
    }

    /// Add the tokens of every whole interval elapsed since the last refill.
    fn refill(&mut self, now_ms: u64, s: &Settings) {
        let elapsed = now_ms.saturating_sub(self.last_refill_ms);
        let intervals = elapsed / s.refill_interval_ms;
        if intervals == 0 {
            return;
        }
        let added = intervals.saturating_mul(u64::from(s.refill_tokens));
        self.tokens = (u64::from(self.tokens) + added).min(u64::from(s.burst)) as u32;
        self.last_refill_ms += intervals * s.refill_interval_ms;
        if self.tokens == s.burst {
            self.last_refill_ms = now_ms;
        }
    }

    /// Milliseconds until the bucket is full again (how long the host should keep it).
    fn time_to_full(&self, now_ms: u64, s: &Settings) -> u64 {
        let missing = u64::from(s.burst.saturating_sub(self.tokens));
        let steps = missing.div_ceil(u64::from(s.refill_tokens)).max(1);
        let into_interval = now_ms.saturating_sub(self.last_refill_ms);
        (steps * s.refill_interval_ms).saturating_sub(into_interval)
    }
}

struct RateLimiter;

impl Guest for RateLimiter {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn bucket_key(request: RateRequest) -> String {
        match settings().key {
            KeyScheme::UserChannel => format!("{}:{}", request.user_id, request.channel_id),
            KeyScheme::User => request.user_id,
            KeyScheme::Channel => request.channel_id,
        }
    }

    fn check(_request: RateRequest, now_ms: u64, state: Option<Vec<u8>>) -> LimitDecision {
        let s = settings();
        let mut bucket = state.as_deref().and_then(Bucket::decode).unwrap_or(Bucket {
            tokens: s.burst,
            last_refill_ms: now_ms,
        });
        bucket.refill(now_ms, &s);
        let verdict = if bucket.tokens > 0 {
            bucket.tokens -= 1;
            LimitVerdict::Allow(bucket.tokens)
        } else {
            let next = bucket.last_refill_ms + s.refill_interval_ms;
            LimitVerdict::Deny(next.saturating_sub(now_ms).max(1))
        };
        LimitDecision {
            verdict,
            ttl_ms: bucket.time_to_full(now_ms, &s),
            state: bucket.encode(),
        }
    }
}

export!(RateLimiter);
