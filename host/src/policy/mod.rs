//! The policy runtime: four WebAssembly component slots, sandboxed and hot-swappable.
//!
//! * [`runtime`]: the wasmtime engine, linker (WASI p2 sandbox + `log`) and epoch ticker.
//! * [`version`]: one loaded component version: checks, warm instances, bounded calls.
//! * [`component_config`]: the configuration that travels with a version.
//! * [`wit_version`]: which `gateway:policy` version a component targets; which the host serves.
//! * [`slot`]: the live version of one world, atomic swap and rollback.
//! * [`policies`]: the four slots with typed calls and failure policies.
//! * [`clocks`]: the virtual clocks components see (no real time, no blocking sleeps).
//! * [`memory`]: the memory cap summed over all of an instance's memories.
//! * [`bounds`]: bounds on component answers.
//! * [`breaker`]: the per-slot circuit breaker.
//! * [`executor`]: call threads for async callers, with stuck ones abandoned and replaced.
//! * [`buckets`]: rate-limit state kept by the host across swaps.
//! * [`watch`]: hot-loading from a components directory.
//!
//! The contract with component authors is the WIT package in `wit/`.

pub mod bindings;
pub mod bounds;
pub mod breaker;
pub mod buckets;
pub mod clocks;
pub mod component_config;
pub mod defaults;
pub mod executor;
pub mod limits;
pub mod memory;
pub mod policies;
pub mod runtime;
pub mod slot;
pub mod slot_kind;
pub mod store_data;
pub mod version;
pub mod watch;
pub mod wit_version;

pub use bindings::types;
pub use breaker::{BreakerInfo, BreakerSettings, BreakerState};
pub use component_config::{ComponentConfig, ConfigSource};
pub use limits::RuntimeLimits;
pub use policies::{
    LimitOutcome, Policies, PolicySettings, RouteDecision, Validation, Verdict, VoiceDecision,
};
pub use slot::{PolicySlot, Rejection, SlotInfo, SlotSettings};
pub use slot_kind::{FailurePolicy, SlotKind};
pub use version::{CallFailure, ComponentVersion, LoadError, VersionInfo};
