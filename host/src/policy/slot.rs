//! A policy slot: the live component version of one world, hot-swappable and rollback-able.
//!
//! The live version sits behind an [`ArcSwap`]: a call clones the `Arc` and runs to the end
//! on that version even if a swap happens meanwhile, so calls in flight finish on the old
//! version and no call ever sees a half-loaded one. Candidates are fully loaded (see
//! [`ComponentVersion::load`]) before the swap; one that fails never goes live.
//!
//! Calls go through [`PolicySlot::call`], which consults the slot's circuit [`Breaker`]
//! first: a live version that keeps failing stops being called (and, if configured, the
//! slot rolls back to its previous version).
//!
//! Metrics: `gateway_component_swaps_total{slot}`, `gateway_component_rejections_total{slot}`,
//! `gateway_component_breaker_open{slot}` (1 while open or half-open),
//! `gateway_component_breaker_trips_total{slot}`, `gateway_component_auto_rollbacks_total{slot}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;

use super::breaker::{Breaker, BreakerInfo, BreakerSettings, Tripped};
use super::component_config::ComponentConfig;
use super::runtime::PolicyRuntime;
use super::slot_kind::{FailurePolicy, SlotKind};
use super::store_data::StoreData;
use super::version::{
    CallFailure, ComponentVersion, LoadError, VersionInfo, WorldInstance, sha256_hex, unix_ms,
};

/// Configuration of one slot.
#[derive(Debug, Clone)]
pub struct SlotSettings {
    /// What the slot answers when its component fails.
    pub failure: FailurePolicy,
    /// The config file's keys for the slot: handed to `init` of the slot's starting
    /// component, and of a components-directory file without its own `<slot>.toml`.
    pub config: Vec<(String, String)>,
}

impl SlotSettings {
    /// The slot's defaults: its default failure policy, empty configuration.
    pub fn defaults(kind: SlotKind) -> SlotSettings {
        SlotSettings {
            failure: kind.default_failure_policy(),
            config: Vec::new(),
        }
    }
}

/// What operators see of a slot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotInfo {
    pub slot: SlotKind,
    pub failure_policy: FailurePolicy,
    pub current: VersionInfo,
    pub previous: Option<VersionInfo>,
    pub swaps: u64,
    /// The last candidate refused for this slot, if any.
    pub last_rejection: Option<Rejection>,
    /// The circuit breaker of the live version.
    pub breaker: BreakerInfo,
}

/// A refused candidate, kept so operators can see why a load did not take.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub sha256: String,
    pub source: String,
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Rollback without a previous version.
#[derive(Debug, thiserror::Error)]
#[error("slot {0} has no previous version to roll back to")]
pub struct NoPreviousVersion(pub SlotKind);

/// One slot.
pub struct PolicySlot {
    kind: SlotKind,
    settings: SlotSettings,
    runtime: PolicyRuntime,
    current: ArcSwap<ComponentVersion>,
    /// The version replaced by the last swap; `Mutex` also serialises swaps and rollbacks.
    previous: Mutex<(Option<Arc<ComponentVersion>>, u64)>,
    last_rejection: Mutex<Option<Rejection>>,
    breaker: Breaker,
    /// The live version came from an automatic rollback: do not roll back from it again.
    auto_rolled_back: AtomicBool,
    clock: Instant,
}

impl PolicySlot {
    /// A slot serving `initial`, which must already be loaded for `kind`.
    pub fn new(
        runtime: PolicyRuntime,
        settings: SlotSettings,
        breaker: BreakerSettings,
        initial: ComponentVersion,
    ) -> PolicySlot {
        let kind = initial.kind();
        metrics::gauge!("gateway_component_breaker_open", "slot" => kind.as_str()).set(0.0);
        PolicySlot {
            kind,
            settings,
            runtime,
            current: ArcSwap::from_pointee(initial),
            previous: Mutex::new((None, 0)),
            last_rejection: Mutex::new(None),
            breaker: Breaker::new(breaker),
            auto_rolled_back: AtomicBool::new(false),
            clock: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Call the live version through the breaker: `Err(BreakerOpen)` without calling it
    /// while the breaker is open; otherwise the call's own outcome, recorded.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&mut wasmtime::Store<StoreData>, &WorldInstance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let Some(admission) = self.breaker.admit(|| self.now_ms()) else {
            return Err(CallFailure::BreakerOpen);
        };
        let result = self.current().call(f);
        match &result {
            Ok(_) => {
                self.breaker.succeeded(admission);
                if admission.is_probe() && !self.breaker.is_open() {
                    tracing::info!(slot = %self.kind, "component circuit breaker closed: the probe call succeeded");
                    self.set_open_gauge(false);
                }
            }
            Err(_) => match self.breaker.failed(admission, self.now_ms()) {
                Tripped::No | Tripped::Reopened => {}
                Tripped::Opened => self.tripped(),
            },
        }
        result
    }

    fn set_open_gauge(&self, open: bool) {
        metrics::gauge!("gateway_component_breaker_open", "slot" => self.kind.as_str())
            .set(if open { 1.0 } else { 0.0 });
    }

    /// The breaker just opened: count it, log it, and roll back if configured to.
    fn tripped(&self) {
        let settings = self.breaker.settings();
        let current = self.current();
        tracing::warn!(slot = %self.kind, component = %&current.sha256()[..12], failures = settings.failures, cooldown_ms = settings.cooldown_ms, "component circuit breaker opened: the slot answers by its failure policy");
        metrics::counter!("gateway_component_breaker_trips_total", "slot" => self.kind.as_str())
            .increment(1);
        self.set_open_gauge(true);
        if !settings.auto_rollback || self.auto_rolled_back.load(Ordering::Acquire) {
            return;
        }
        match self.swap_back() {
            Ok(info) => {
                self.auto_rolled_back.store(true, Ordering::Release);
                tracing::warn!(slot = %self.kind, from = %&current.sha256()[..12], to = %&info.sha256[..12], "automatic rollback: the breaker opened and the previous version is live again");
                metrics::counter!("gateway_component_auto_rollbacks_total", "slot" => self.kind.as_str())
                    .increment(1);
            }
            Err(NoPreviousVersion(_)) => {
                tracing::warn!(slot = %self.kind, "automatic rollback impossible: no previous version");
            }
        }
    }

    /// Load `bytes` for this slot with `config` (the slow part, no lock held) without
    /// making it live. A refusal is counted and kept as the slot's last rejection.
    pub fn prepare(
        &self,
        bytes: &[u8],
        source: &str,
        config: ComponentConfig,
    ) -> Result<ComponentVersion, LoadError> {
        ComponentVersion::load(&self.runtime, self.kind, bytes, config, source).inspect_err(|e| {
            metrics::counter!("gateway_component_rejections_total", "slot" => self.kind.as_str())
                .increment(1);
            *self.last_rejection.lock() = Some(Rejection {
                sha256: sha256_hex(bytes),
                source: source.to_string(),
                reason: e.to_string(),
                at_ms: unix_ms(),
            });
        })
    }

    /// Like [`PolicySlot::prepare`] with explicit pairs (tests and tools).
    pub fn prepare_with_config(
        &self,
        bytes: &[u8],
        source: &str,
        config: Vec<(String, String)>,
    ) -> Result<ComponentVersion, LoadError> {
        self.prepare(bytes, source, config.into())
    }

    /// Load `bytes` with `config` and, if every step passes, make it the live version.
    pub fn load(
        &self,
        bytes: &[u8],
        source: &str,
        config: ComponentConfig,
    ) -> Result<VersionInfo, LoadError> {
        let candidate = self.prepare(bytes, source, config)?;
        Ok(self.install(candidate))
    }

    /// The config file's keys for this slot (see [`SlotSettings::config`]).
    pub fn config_file_keys(&self) -> &[(String, String)] {
        &self.settings.config
    }

    /// Make an already loaded version live; the replaced one is kept for rollback.
    pub fn install(&self, candidate: ComponentVersion) -> VersionInfo {
        let info = candidate.info();
        let mut previous = self.previous.lock();
        let old = self.current.swap(Arc::new(candidate));
        tracing::info!(slot = %self.kind, from = %&old.sha256()[..12], to = %&info.sha256[..12], source = %info.source, "component swapped in");
        previous.0 = Some(old);
        previous.1 += 1;
        self.new_version_live();
        metrics::counter!("gateway_component_swaps_total", "slot" => self.kind.as_str())
            .increment(1);
        info
    }

    /// A new version is live: its breaker starts closed.
    fn new_version_live(&self) {
        self.breaker.reset();
        self.auto_rolled_back.store(false, Ordering::Release);
        self.set_open_gauge(false);
    }

    /// Swap the previous version back in (the current one becomes the previous).
    pub fn rollback(&self) -> Result<VersionInfo, NoPreviousVersion> {
        let info = self.swap_back()?;
        self.auto_rolled_back.store(false, Ordering::Release);
        Ok(info)
    }

    fn swap_back(&self) -> Result<VersionInfo, NoPreviousVersion> {
        let mut previous = self.previous.lock();
        let back = previous.0.take().ok_or(NoPreviousVersion(self.kind))?;
        let info = back.info();
        let old = self.current.swap(back);
        tracing::info!(slot = %self.kind, from = %&old.sha256()[..12], to = %&info.sha256[..12], "component rolled back");
        previous.0 = Some(old);
        previous.1 += 1;
        self.breaker.reset();
        self.set_open_gauge(false);
        metrics::counter!("gateway_component_swaps_total", "slot" => self.kind.as_str())
            .increment(1);
        Ok(info)
    }

    /// The version the last swap replaced, if any (what `fail-previous` asks).
    pub fn previous(&self) -> Option<Arc<ComponentVersion>> {
        self.previous.lock().0.clone()
    }

    /// The live version (hold the `Arc` for the duration of one call).
    pub fn current(&self) -> Arc<ComponentVersion> {
        self.current.load_full()
    }

    /// The slot's name.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }

    /// The slot's failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.settings.failure
    }

    /// Snapshot for operators.
    pub fn info(&self) -> SlotInfo {
        let previous = self.previous.lock();
        SlotInfo {
            slot: self.kind,
            failure_policy: self.settings.failure,
            current: self.current.load().info(),
            previous: previous.0.as_ref().map(|v| v.info()),
            swaps: previous.1,
            last_rejection: self.last_rejection.lock().clone(),
            breaker: self.breaker.info(),
        }
    }
}
