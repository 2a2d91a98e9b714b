//! A `rate-limiter` with its own configuration keys, used by the test suite to prove that a
//! component's configuration travels with it (admin upload, `<slot>.toml` in the components
//! directory, the config file for a starting component) and is enforced.
//!
//! Configuration (`init`), all optional:
//! * `burst`: commands allowed per user before it must wait, default 3.
//! * `refill-ms`: one token comes back every `refill-ms` milliseconds, default 60000.
//!
//! Any other key is refused with `unknown config key "<key>"`; so is a value that is not a
//! positive integer. The bucket key is the user id alone.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::LimitVerdict;

wit_bindgen::generate!({ world: "rate-limiter", path: "../../../wit" });

#[derive(Clone, Copy)]
struct Settings {
    burst: u32,
    refill_ms: u64,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    burst: 3,
    refill_ms: 60_000,
});

fn positive(key: &str, value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{key}: expected a positive integer, got {value:?}")),
    }
}

struct Keyed;

impl Guest for Keyed {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut s = Settings {
            burst: 3,
            refill_ms: 60_000,
        };
        for (key, value) in &config {
            match key.as_str() {
                "burst" => {
                    s.burst = u32::try_from(positive(key, value)?)
                        .map_err(|_| format!("burst: {value} is too large"))?
                }
                "refill-ms" => s.refill_ms = positive(key, value)?,
                other => return Err(format!("unknown config key {other:?}")),
            }
        }
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = s;
        Ok(())
    }

    fn bucket_key(request: RateRequest) -> String {
        format!("keyed:{}", request.user_id)
    }

    fn check(_request: RateRequest, now_ms: u64, state: Option<Vec<u8>>) -> LimitDecision {
        let s = *SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        // State: tokens (u32 LE) then the time of the last refill (u64 LE).
        let (mut tokens, mut last) = match state.as_deref() {
            Some(b) if b.len() == 12 => (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
            ),
            _ => (s.burst, now_ms),
        };
        let back = now_ms.saturating_sub(last) / s.refill_ms;
        if back > 0 {
            tokens = tokens
                .saturating_add(back.min(u32::MAX as u64) as u32)
                .min(s.burst);
            last = last.saturating_add(back.saturating_mul(s.refill_ms));
        }
        let verdict = if tokens > 0 {
            tokens -= 1;
            LimitVerdict::Allow(tokens)
        } else {
            LimitVerdict::Deny(s.refill_ms - now_ms.saturating_sub(last).min(s.refill_ms - 1))
        };
        let mut out = Vec::with_capacity(12);
        out.extend_from_slice(&tokens.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
        LimitDecision {
            verdict,
            state: out,
            ttl_ms: s.refill_ms.saturating_mul(s.burst as u64).max(1),
        }
    }
}

export!(Keyed);
