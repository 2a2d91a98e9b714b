//! Resource limits for component calls and bounds on their answers, configured in one
//! place (`[policy.limits]`).

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
    /// Added to an async caller's deadline (the call deadline times the calls it waits
    /// for) before it gives up and the failure policy answers, in milliseconds.
    pub caller_margin_ms: u64,
    /// Call threads abandoned while stuck (and replaced) that may be outstanding at once;
    /// past this a stuck thread is not replaced until one of them finishes.
    pub max_abandoned_threads: usize,
    /// Topics one routed event may go to.
    pub max_topics: usize,
    /// Bytes of one topic name.
    pub max_topic_bytes: usize,
    /// Bytes of a router's replacement payload.
    pub max_payload_bytes: usize,
    /// Field errors one validation may return.
    pub max_field_errors: usize,
    /// Bytes of one field error (field, code and message together).
    pub max_field_error_bytes: usize,
    /// Bytes of the guild id a voice filter relays to.
    pub max_guild_id_bytes: usize,
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
            caller_margin_ms: 20,
            max_abandoned_threads: 8,
            max_topics: 64,
            max_topic_bytes: 256,
            max_payload_bytes: 256 * 1024,
            max_field_errors: 32,
            max_field_error_bytes: 1024,
            max_guild_id_bytes: 64,
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

    /// How long an async caller waits for `calls` component calls before giving up.
    pub fn caller_deadline(&self, calls: u64) -> Duration {
        Duration::from_millis(
            self.call_timeout_ms
                .saturating_mul(calls.max(1))
                .saturating_add(self.caller_margin_ms),
        )
    }

    /// Memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_mib.saturating_mul(1024 * 1024)
    }
}
