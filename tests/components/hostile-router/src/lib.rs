//! A misbehaving `event-router` used by the test suite: `route` traps on every call
//! (`mode=trap`, the default) or loops forever (`mode=spin`), so the tests can show the
//! host falling back to the router's failure policy.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

wit_bindgen::generate!({ world: "event-router", path: "../../../wit" });

static SPIN: Mutex<bool> = Mutex::new(false);

struct Hostile;

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let spin = config.iter().any(|(k, v)| k == "mode" && v == "spin");
        if let Ok(mut s) = SPIN.lock() {
            *s = spin;
        }
        Ok(())
    }

    fn route(_event: Event) -> Route {
        if SPIN.lock().map(|s| *s).unwrap_or(false) {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        panic!("hostile component: deliberate trap")
    }
}

export!(Hostile);
