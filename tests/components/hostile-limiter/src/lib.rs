//! A misbehaving `rate-limiter` used by the test suite to prove the host contains it.
//!
//! `init` takes `mode` (other keys are ignored):
//! * `trap`: `check` hits `unreachable`.
//! * `spin`: `check` loops forever.
//! * `hog`: `check` allocates without bound.
//! * `init-trap`: `init` itself traps.
//! * `init-err`: `init` returns an error.
//! * `deny` (default): a well-behaved limiter that denies everything with retry-after 4242 ms,
//!   so a test can tell it apart from the default limiter.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::LimitVerdict;

wit_bindgen::generate!({ world: "rate-limiter", path: "../../../wit" });

static MODE: Mutex<String> = Mutex::new(String::new());

struct Hostile;

fn mode() -> String {
    MODE.lock().map(|m| m.clone()).unwrap_or_default()
}

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mode = config
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "deny".into());
        match mode.as_str() {
            "init-trap" => panic!("hostile component: deliberate trap"),
            "init-err" => return Err("hostile-limiter refuses to start (mode=init-err)".into()),
            _ => {}
        }
        if let Ok(mut m) = MODE.lock() {
            *m = mode;
        }
        Ok(())
    }

    fn bucket_key(request: RateRequest) -> String {
        format!("{}:{}", request.user_id, request.channel_id)
    }

    fn check(_request: RateRequest, _now_ms: u64, _state: Option<Vec<u8>>) -> LimitDecision {
        match mode().as_str() {
            "trap" => panic!("hostile component: deliberate trap"),
            "spin" => spin(),
            "hog" => hog(),
            _ => LimitDecision {
                verdict: LimitVerdict::Deny(4242),
                state: vec![0xFF],
                ttl_ms: 1000,
            },
        }
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export!(Hostile);
