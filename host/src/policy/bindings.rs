//! Typed bindings for the four worlds of `gateway:policy@1.0.0` (generated from `wit/`).
//!
//! The shared `types` and `log` interfaces are generated once (in [`router`]) and reused by
//! the other worlds through `with`, so a `Event` or `Command` is one Rust type host-wide and
//! one linker serves every slot.

/// The `event-router` world; also the home of the shared `types` and `log` interfaces.
pub mod router {
    wasmtime::component::bindgen!({
        world: "event-router",
        path: "../wit",
        additional_derives: [PartialEq, Eq],
    });
}

/// The `rate-limiter` world.
pub mod limiter {
    wasmtime::component::bindgen!({
        world: "rate-limiter",
        path: "../wit",
        with: {
            "gateway:policy/types": super::router::gateway::policy::types,
            "gateway:policy/log": super::router::gateway::policy::log,
        },
    });
}

/// The `command-validator` world.
pub mod validator {
    wasmtime::component::bindgen!({
        world: "command-validator",
        path: "../wit",
        with: {
            "gateway:policy/types": super::router::gateway::policy::types,
            "gateway:policy/log": super::router::gateway::policy::log,
        },
    });
}

/// The `voice-filter` world.
pub mod voice {
    wasmtime::component::bindgen!({
        world: "voice-filter",
        path: "../wit",
        with: {
            "gateway:policy/types": super::router::gateway::policy::types,
            "gateway:policy/log": super::router::gateway::policy::log,
        },
    });
}

pub use router::gateway::policy::log;
pub use router::gateway::policy::types;
