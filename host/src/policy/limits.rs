//! Resource limits for component calls, configured in one place.

use std::time::Duration;

use serde::Deserialize;

/// Limits applied to every instance and every call of every slot.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuntimeLimits {
    /// Deadline of one call (route, check, validate, filter), in milliseconds.
    pub call_timeout_ms: u64,
    /// Deadline of instantiation plus `init`, in milliseconds.
    pub init_timeout_ms: u64,
    /// Linear memory an instance may grow to, in MiB (all its memories together).
    pub memory_limit_mib: usize,
    /// Warm instances kept per component version.
    pub warm_instances: usize,
    /// Calls after which an instance is retired and replaced by a fresh one, so nothing a
    /// long-lived store accumulates can grow without bound.
    pub max_calls_per_instance: u64,
    /// Threads that run component calls for async callers.
    pub executor_threads: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            call_timeout_ms: 20,
            init_timeout_ms: 2_000,
            memory_limit_mib: 64,
            warm_instances: 4,
            max_calls_per_instance: 100_000,
            executor_threads: 2,
        }
    }
}

/// The epoch ticker's period: deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

impl RuntimeLimits {
    /// Epoch ticks for a deadline of `ms` (at least two, so a tick landing right after the
    /// deadline is set cannot cut a call short).
    pub fn ticks(ms: u64) -> u64 {
        (ms / EPOCH_TICK.as_millis() as u64).max(1) + 1
    }

    /// Memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_mib.saturating_mul(1024 * 1024)
    }
}
