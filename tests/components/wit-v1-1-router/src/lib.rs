//! An `event-router` built against its own copy of the WIT with `package
//! gateway:policy@1.1.0;` (see `wit/` beside this crate), the same types otherwise. The host
//! serves `gateway:policy@1.0.0` and must refuse it at the `version` step, naming both
//! versions. It logs from `init`, so it imports `log@1.1.0` as well as `types@1.1.0`.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use gateway::policy::log::{Level, log};
use gateway::policy::types::Delivery;

wit_bindgen::generate!({ world: "event-router", path: "wit" });

struct Router;

impl Guest for Router {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        log(Level::Info, "built against gateway:policy@1.1.0");
        Ok(())
    }

    fn route(_event: Event) -> Route {
        Route::Deliver(Delivery {
            topics: vec!["global".into()],
            payload: None,
        })
    }
}

export!(Router);
