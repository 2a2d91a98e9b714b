//! One loaded version of a component: compiled, type-checked, pre-linked, with warm
//! instances ready to call.
//!
//! Loading runs every check a candidate must pass before it may go live: it compiles, its
//! imports are satisfied by the sandbox, it exports the slot's world with the right types,
//! it was built against a `gateway:policy` version the host serves (see
//! [`super::wit_version`]), it instantiates within the limits, and its `init` accepts the
//! configuration it came with (kept with the version, see [`super::component_config`]).
//!
//! Calls take a warm instance from a small pool (instantiating one if none is free), run
//! under the epoch deadline and the store's memory limit, and put the instance back. An
//! instance whose call failed in any way is dropped, never re-entered: a trapped instance
//! is in an undefined state. Instances are also retired after a number of calls so a store
//! never accumulates without bound.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, Trap};

use super::bindings::{limiter, router, validator, voice};
use super::bounds::OutputBound;
use super::component_config::{ComponentConfig, ConfigSource};
use super::limits::RuntimeLimits;
use super::memory::MemoryCapExceeded;
use super::runtime::PolicyRuntime;
use super::slot_kind::SlotKind;
use super::store_data::{Origin, StoreData};
use super::wit_version::{check_version, imported_versions};

/// Why a candidate component was refused. Each names the step it failed at.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid WebAssembly component (or random bytes).
    #[error("not a valid component: {0}")]
    Compile(String),
    /// Built against a `gateway:policy` version this host does not serve.
    #[error("unsupported WIT version: {0}")]
    Version(String),
    /// It imports something the sandbox does not provide.
    #[error("imports not provided by the host sandbox: {0}")]
    Imports(String),
    /// It does not export the slot's world (or exports it with other types).
    #[error("does not implement world gateway:policy/{slot}@1.0.0: {reason}")]
    WrongWorld { slot: SlotKind, reason: String },
    /// Instantiation or `init` trapped, hit the deadline or the memory limit.
    #[error("failed to instantiate: {0}")]
    Instantiate(String),
    /// `init` returned an error: the configuration was refused.
    #[error("init refused the configuration: {0}")]
    Init(String),
}

/// Why one call failed; the slot then applies its failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// The call hit its epoch deadline.
    Deadline,
    /// The instance hit its memory limit.
    OutOfMemory,
    /// The guest trapped (panic, `unreachable`, out-of-bounds access…).
    Trap,
    /// A fresh instance could not be created (the call never ran).
    Instantiate,
    /// The component answered with more than the host accepts (too many or too long
    /// topics, too large a payload, too many field errors…).
    OutputBound,
    /// The slot's circuit breaker is open: the component was not called.
    BreakerOpen,
    /// The caller stopped waiting at its deadline (the call thread was stuck or busy).
    Abandoned,
}

impl CallFailure {
    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CallFailure::Deadline => "deadline",
            CallFailure::OutOfMemory => "out_of_memory",
            CallFailure::Trap => "trap",
            CallFailure::Instantiate => "instantiate",
            CallFailure::OutputBound => "output_bound",
            CallFailure::BreakerOpen => "breaker_open",
            CallFailure::Abandoned => "abandoned",
        }
    }
}

/// The typed, pre-linked form of the component for its slot's world.
enum WorldPre {
    Router(router::EventRouterPre<StoreData>),
    Limiter(limiter::RateLimiterPre<StoreData>),
    Validator(validator::CommandValidatorPre<StoreData>),
    Voice(voice::VoiceFilterPre<StoreData>),
}

/// A live instance's typed exports.
pub enum WorldInstance {
    Router(router::EventRouter),
    Limiter(limiter::RateLimiter),
    Validator(validator::CommandValidator),
    Voice(voice::VoiceFilter),
}

impl WorldPre {
    fn new(kind: SlotKind, pre: InstancePre<StoreData>) -> wasmtime::Result<WorldPre> {
        Ok(match kind {
            SlotKind::EventRouter => WorldPre::Router(router::EventRouterPre::new(pre)?),
            SlotKind::RateLimiter => WorldPre::Limiter(limiter::RateLimiterPre::new(pre)?),
            SlotKind::CommandValidator => {
                WorldPre::Validator(validator::CommandValidatorPre::new(pre)?)
            }
            SlotKind::VoiceFilter => WorldPre::Voice(voice::VoiceFilterPre::new(pre)?),
        })
    }

    /// Instantiate and run `init`; `Ok(Err(_))` is a refusal by `init` itself.
    fn instantiate(
        &self,
        store: &mut Store<StoreData>,
        config: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<WorldInstance, String>> {
        Ok(match self {
            WorldPre::Router(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_init(store, config)?
                    .map(|()| WorldInstance::Router(i))
            }
            WorldPre::Limiter(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_init(store, config)?
                    .map(|()| WorldInstance::Limiter(i))
            }
            WorldPre::Validator(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_init(store, config)?
                    .map(|()| WorldInstance::Validator(i))
            }
            WorldPre::Voice(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_init(store, config)?
                    .map(|()| WorldInstance::Voice(i))
            }
        })
    }
}

struct Warm {
    store: Store<StoreData>,
    instance: WorldInstance,
    calls: u64,
}

/// What operators see of a version (`GET /admin/components`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub sha256: String,
    pub size_bytes: usize,
    /// Milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    pub source: String,
    pub calls: u64,
    pub failures: u64,
    /// The configuration its `init` accepted.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Where that configuration came from.
    pub config_source: ConfigSource,
}

/// One loaded component version.
pub struct ComponentVersion {
    kind: SlotKind,
    sha256: String,
    size_bytes: usize,
    loaded_at_ms: u64,
    source: String,
    origin: Origin,
    pre: WorldPre,
    config: ComponentConfig,
    runtime: PolicyRuntime,
    pool: Mutex<Vec<Warm>>,
    calls: AtomicU64,
    failures: AtomicU64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentVersion {
    /// Compile, check and warm up `bytes` for slot `kind`. Nothing here touches a live slot.
    pub fn load(
        runtime: &PolicyRuntime,
        kind: SlotKind,
        bytes: &[u8],
        config: impl Into<ComponentConfig>,
        source: impl Into<String>,
    ) -> Result<ComponentVersion, LoadError> {
        let config = config.into();
        let sha256 = sha256_hex(bytes);
        // Binary only: a text (WAT) upload would be compiled by `Component::new`, and its
        // parse errors read like nonsense to whoever uploaded random bytes.
        let component = Component::from_binary(runtime.engine(), bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        // Before linking: a version mismatch must read as one, not as a missing import.
        for version in imported_versions(&component, runtime.engine()) {
            check_version(&version).map_err(LoadError::Version)?;
        }
        let pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let pre = WorldPre::new(kind, pre).map_err(|e| LoadError::WrongWorld {
            slot: kind,
            reason: format!("{e:#}"),
        })?;
        let origin = Origin {
            slot: kind.as_str(),
            short_hash: sha256[..12].into(),
        };
        let version = ComponentVersion {
            kind,
            size_bytes: bytes.len(),
            loaded_at_ms: unix_ms(),
            source: source.into(),
            origin,
            pre,
            config,
            runtime: runtime.clone(),
            pool: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sha256,
        };
        let warm = version.instantiate()?;
        version.pool.lock().push(warm);
        Ok(version)
    }

    fn limits(&self) -> &RuntimeLimits {
        self.runtime.limits()
    }

    /// The wall-time budget of one call (the runtime's `call-timeout-ms`).
    pub fn call_timeout_ms(&self) -> u64 {
        self.limits().call_timeout_ms
    }

    /// A fresh instance with `init` done, under the init deadline.
    fn instantiate(&self) -> Result<Warm, LoadError> {
        let mut store = Store::new(
            self.runtime.engine(),
            StoreData::new(self.origin.clone(), self.limits()),
        );
        store.limiter(|data| &mut data.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(RuntimeLimits::ticks(self.limits().init_timeout_ms));
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.pre.instantiate(&mut store, &self.config.pairs)
        }));
        match result {
            Ok(Ok(Ok(instance))) => Ok(Warm {
                store,
                instance,
                calls: 0,
            }),
            Ok(Ok(Err(refusal))) => Err(LoadError::Init(refusal)),
            Ok(Err(e)) => Err(LoadError::Instantiate(describe(&e))),
            Err(_) => Err(LoadError::Instantiate(
                "host panicked while instantiating".into(),
            )),
        }
    }

    /// Run `f` on a warm instance under the call deadline. On any failure the instance is
    /// dropped and the failure counted; the caller applies the failure policy.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<StoreData>, &WorldInstance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let started = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let warm = self.pool.lock().pop();
        let mut warm = match warm {
            Some(w) => w,
            None => self.instantiate().map_err(|e| {
                tracing::warn!(slot = self.origin.slot, component = %self.origin.short_hash, error = %e, "could not instantiate component");
                self.record_failure(CallFailure::Instantiate)
            })?,
        };
        warm.store
            .set_epoch_deadline(RuntimeLimits::ticks(self.limits().call_timeout_ms));
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut warm.store, &warm.instance)));
        metrics::histogram!("gateway_component_call_duration_seconds", "slot" => self.kind.as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(value)) => {
                warm.calls += 1;
                self.recycle(warm);
                Ok(value)
            }
            Ok(Err(e)) => {
                let failure = classify(&e);
                tracing::warn!(slot = self.origin.slot, component = %self.origin.short_hash, reason = failure.as_str(), error = %describe(&e), "component call failed; instance discarded");
                Err(self.record_failure(failure))
            }
            Err(_) => {
                tracing::error!(slot = self.origin.slot, component = %self.origin.short_hash, "host panicked during a component call; instance discarded");
                Err(self.record_failure(CallFailure::Trap))
            }
        }
    }

    fn recycle(&self, warm: Warm) {
        if warm.calls >= self.limits().max_calls_per_instance {
            return;
        }
        let mut pool = self.pool.lock();
        if pool.len() < self.limits().warm_instances {
            pool.push(warm);
        }
    }

    fn record_failure(&self, failure: CallFailure) -> CallFailure {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gateway_component_failures_total", "slot" => self.kind.as_str(), "reason" => failure.as_str())
            .increment(1);
        failure
    }

    /// The slot this version was built for.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The configuration its `init` accepted, and where it came from.
    pub fn config(&self) -> &ComponentConfig {
        &self.config
    }

    /// Snapshot for operators.
    pub fn info(&self) -> VersionInfo {
        VersionInfo {
            sha256: self.sha256.clone(),
            size_bytes: self.size_bytes,
            loaded_at_ms: self.loaded_at_ms,
            source: self.source.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            config: self.config.to_json(),
            config_source: self.config.source,
        }
    }
}

fn classify(e: &wasmtime::Error) -> CallFailure {
    if e.downcast_ref::<MemoryCapExceeded>().is_some() {
        return CallFailure::OutOfMemory;
    }
    if e.downcast_ref::<OutputBound>().is_some() {
        return CallFailure::OutputBound;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::Deadline,
        _ if format!("{e:#}").contains("growing memory") => CallFailure::OutOfMemory,
        _ => CallFailure::Trap,
    }
}

fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "deadline exceeded".to_string(),
        _ => {
            let text = format!("{e:#}");
            // Backtraces make error messages long; the first lines say what happened.
            text.lines().take(3).collect::<Vec<_>>().join(" | ")
        }
    }
}
