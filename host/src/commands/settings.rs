//! The command pipeline's knobs (`[commands]` in the TOML config file).
//!
//! Every bound of the pipeline is here, so an operator can see in one place how much
//! memory it may hold (queue, outcome store, body size) and how long a caller may wait.
//! Durations are in milliseconds, like the rest of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// Settings of the command pipeline. See `docs/commands.md` for the operator's view.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandSettings {
    /// Commands accepted but not yet finished (queued + in flight); beyond it: 503.
    pub queue_capacity: usize,
    /// Commands sent and awaiting their ack at once (at most one per channel).
    pub max_in_flight: usize,
    /// How long `POST` waits for the ack before answering 202 with the requestId.
    pub ack_wait_ms: u64,
    /// A command sent on a live link without an ack for this long is sent again.
    pub resend_after_ms: u64,
    /// First retry delay after a retryable failure; doubles per attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_cap_ms: u64,
    /// A command not finished this long after it was accepted ends `expired`.
    pub expiry_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a finished command's outcome can be read back.
    pub outcome_ttl_ms: u64,
    /// Finished outcomes kept at most (oldest evicted first).
    pub max_outcomes: usize,
    /// Commands one user (token `sub`) may have accepted and not finished; beyond: 429.
    pub max_per_user: usize,
    /// Invalid commands (400/413/415) a user may send in a burst; then 429 until refilled.
    pub invalid_burst: u32,
    /// One more invalid command is allowed per this many ms.
    pub invalid_refill_ms: u64,
    /// Users whose invalid-command budget is tracked at most (memory bound).
    pub max_tracked_users: usize,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            queue_capacity: 1000,
            max_in_flight: 256,
            ack_wait_ms: 5_000,
            resend_after_ms: 10_000,
            retry_base_ms: 250,
            retry_cap_ms: 30_000,
            expiry_ms: 60_000,
            max_body_bytes: 16 * 1024,
            outcome_ttl_ms: 600_000,
            max_outcomes: 100_000,
            max_per_user: 100,
            invalid_burst: 20,
            invalid_refill_ms: 1_000,
            max_tracked_users: 100_000,
        }
    }
}

impl CommandSettings {
    /// Refuses settings that would make the pipeline useless or unbounded.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("queue-capacity", self.queue_capacity as u64),
            ("max-in-flight", self.max_in_flight as u64),
            ("resend-after-ms", self.resend_after_ms),
            ("retry-base-ms", self.retry_base_ms),
            ("expiry-ms", self.expiry_ms),
            ("max-body-bytes", self.max_body_bytes as u64),
            ("max-outcomes", self.max_outcomes as u64),
            ("max-per-user", self.max_per_user as u64),
            ("invalid-burst", u64::from(self.invalid_burst)),
            ("invalid-refill-ms", self.invalid_refill_ms),
            ("max-tracked-users", self.max_tracked_users as u64),
        ];
        match positive.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!("[commands] {name} must be greater than 0")),
            None if self.retry_cap_ms < self.retry_base_ms => {
                Err("[commands] retry-cap-ms must be at least retry-base-ms".into())
            }
            None => Ok(()),
        }
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }

    pub fn resend_after(&self) -> Duration {
        Duration::from_millis(self.resend_after_ms)
    }

    pub fn expiry(&self) -> Duration {
        Duration::from_millis(self.expiry_ms)
    }

    pub fn outcome_ttl(&self) -> Duration {
        Duration::from_millis(self.outcome_ttl_ms)
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn invalid_refill(&self) -> Duration {
        Duration::from_millis(self.invalid_refill_ms)
    }

    pub fn retry_cap(&self) -> Duration {
        Duration::from_millis(self.retry_cap_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane_and_zeros_refused() {
        assert!(CommandSettings::default().check().is_ok());
        let zero = CommandSettings {
            queue_capacity: 0,
            ..Default::default()
        };
        assert!(zero.check().unwrap_err().contains("queue-capacity"));
        let cap = CommandSettings {
            retry_cap_ms: 1,
            ..Default::default()
        };
        assert!(cap.check().is_err());
    }
}
