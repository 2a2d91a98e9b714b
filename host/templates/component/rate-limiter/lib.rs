//! A `rate-limiter` component: one token bucket per user.
//!
//! The host owns the buckets: it asks `bucket-key` which bucket a request draws from, hands
//! that bucket's last state to `check` with its clock (`now-ms`), and stores what `check`
//! returns. This component only does the arithmetic, so a hot swap or a lost instance loses
//! no bucket.
//!
//! A bucket holds up to `capacity` tokens and gains `refill-per-second` tokens per second
//! (counted in thousandths, so slow rates refill smoothly). Each command takes one token;
//! with none left it is denied with the milliseconds until one is back.
//!
//! Configuration (`init`), all optional; unknown keys are refused:
//! * `capacity`: bucket size and burst, default 5.
//! * `refill-per-second`: tokens added per second, default 1.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::LimitVerdict;

wit_bindgen::generate!({ world: "rate-limiter", path: "wit" });

#[derive(Clone, Copy)]
struct Settings {
    capacity: u64,
    refill_per_second: u64,
}

const DEFAULTS: Settings = Settings {
    capacity: 5,
    refill_per_second: 1,
};

static SETTINGS: Mutex<Settings> = Mutex::new(DEFAULTS);

/// One token, in the thousandths the bucket counts in.
const TOKEN: u64 = 1000;

fn parse_positive(key: &str, value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(v) if (1..=1_000_000).contains(&v) => Ok(v),
        _ => Err(format!(
            "{key}: expected an integer in 1..=1000000, got {value:?}"
        )),
    }
}

fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut s = DEFAULTS;
    for (key, value) in config {
        match key.as_str() {
            "capacity" => s.capacity = parse_positive(key, value)?,
            "refill-per-second" => s.refill_per_second = parse_positive(key, value)?,
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(s)
}

/// A bucket's state as the host stores it: thousandths of tokens, then the time they were
/// counted at, both little-endian u64. Anything else (e.g. another version's encoding) is
/// read as a full bucket, as the contract asks.
fn decode(state: Option<&[u8]>) -> Option<(u64, u64)> {
    let bytes = state?;
    if bytes.len() != 16 {
        return None;
    }
    let millis = u64::from_le_bytes(bytes[0..8].try_into().ok()?);
    let at = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((millis, at))
}

fn encode(millis: u64, at: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&millis.to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out
}

struct Limiter;

impl Guest for Limiter {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn bucket_key(request: RateRequest) -> String {
        request.user_id
    }

    fn check(_request: RateRequest, now_ms: u64, state: Option<Vec<u8>>) -> LimitDecision {
        let s = *SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        let full = s.capacity * TOKEN;
        let millis = match decode(state.as_deref()) {
            // The host's clock is monotonic, but never trust a difference to be positive.
            Some((millis, at)) => {
                let refilled = now_ms
                    .saturating_sub(at)
                    .saturating_mul(s.refill_per_second);
                millis.saturating_add(refilled).min(full)
            }
            None => full,
        };
        let (verdict, left) = if millis >= TOKEN {
            let left = millis - TOKEN;
            (LimitVerdict::Allow((left / TOKEN) as u32), left)
        } else {
            let wait = (TOKEN - millis).div_ceil(s.refill_per_second);
            (LimitVerdict::Deny(wait.max(1)), millis)
        };
        LimitDecision {
            verdict,
            state: encode(left, now_ms),
            // After this long the bucket is full again: the host may forget it.
            ttl_ms: (full - left).div_ceil(s.refill_per_second).max(1),
        }
    }
}

export!(Limiter);
