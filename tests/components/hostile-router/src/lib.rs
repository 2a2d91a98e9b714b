//! A misbehaving `event-router` used by the test suite. `init` takes `mode`:
//!
//! * `trap` (default): `route` panics.
//! * `spin`: `route` loops forever (the epoch deadline must stop it).
//! * `sleep`: `route` calls `std::thread::sleep(30 s)` (WASI `subscribe-duration` + `poll`),
//!   then delivers to `global` with a payload `{"sleptMs": <ms measured with Instant>}`.
//! * `clock`: `route` reads the wall and monotonic clocks and delivers to `global` with a
//!   payload `{"wallMs": <SystemTime since the Unix epoch>, "monoNs": <Instant elapsed>}`.
//! * `topics`: `route` delivers to 100,000 topics.
//! * `long-topic`: `route` delivers to one topic of 1 MiB.
//! * `big-payload`: `route` delivers a 4 MiB JSON string as the payload.
//!
//! `init-spin = N` (any mode) makes `init` busy-loop N times first: a slow instantiation,
//! which the host pays on the call path after every failed call.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway::policy::types::Delivery;

wit_bindgen::generate!({ world: "event-router", path: "../../../wit" });

static MODE: Mutex<String> = Mutex::new(String::new());
static CREATED: Mutex<Option<Instant>> = Mutex::new(None);

struct Hostile;

fn mode() -> String {
    MODE.lock().map(|m| m.clone()).unwrap_or_default()
}

fn deliver(topics: Vec<String>, payload: Option<String>) -> Route {
    Route::Deliver(Delivery { topics, payload })
}

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mode = config
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "trap".into());
        let spins: u64 = config
            .iter()
            .find(|(k, _)| k == "init-spin")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut x: u64 = 0;
        for _ in 0..spins {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        if let Ok(mut m) = MODE.lock() {
            *m = mode;
        }
        if let Ok(mut c) = CREATED.lock() {
            *c = Some(Instant::now());
        }
        Ok(())
    }

    fn route(_event: Event) -> Route {
        match mode().as_str() {
            "spin" => spin(),
            "sleep" => {
                let started = Instant::now();
                std::thread::sleep(Duration::from_secs(30));
                let slept = started.elapsed().as_millis();
                deliver(
                    vec!["global".into()],
                    Some(format!("{{\"sleptMs\":{slept}}}")),
                )
            }
            "clock" => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let created = CREATED.lock().ok().and_then(|c| *c);
                let mono = created.map(|c| c.elapsed().as_nanos()).unwrap_or(0);
                deliver(
                    vec!["global".into()],
                    Some(format!("{{\"wallMs\":{wall},\"monoNs\":{mono}}}")),
                )
            }
            "topics" => deliver((0..100_000).map(|i| format!("t:{i}")).collect(), None),
            "long-topic" => deliver(vec!["t".repeat(1 << 20)], None),
            "big-payload" => deliver(
                vec!["global".into()],
                Some(format!("\"{}\"", "x".repeat(4 << 20))),
            ),
            _ => panic!("hostile component: deliberate trap"),
        }
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

export!(Hostile);
