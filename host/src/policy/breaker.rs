//! A circuit breaker per slot: a version that keeps failing stops being called.
//!
//! Every failed call costs up to its deadline; a component that fails every time (a loop
//! that always hits the deadline) would otherwise hold the pipeline to one event per
//! deadline. After `failures` consecutive failures of the live version the breaker
//! *opens*: calls are not made and the slot's failure policy answers at once. After
//! `cooldown-ms` one *probe* call is let through (half-open); its success closes the
//! breaker, its failure opens it for another cool-down. A swap or a rollback resets the
//! breaker for the new version (outcomes of calls still running on the old one are
//! ignored, by generation).
//!
//! The hot path is two atomic loads and, on success, at most one store: no lock.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Breaker settings (`[policy.breaker]`), the same for every slot.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BreakerSettings {
    /// Consecutive failures of the live version that open the breaker; 0 disables it.
    pub failures: u32,
    /// How long an open breaker answers by the failure policy before it lets a probe
    /// call through, in milliseconds.
    pub cooldown_ms: u64,
    /// When the breaker opens and the slot has a previous version, roll back to it
    /// (once per install: a version reached by an automatic rollback is not rolled back
    /// from automatically).
    pub auto_rollback: bool,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            cooldown_ms: 5_000,
            auto_rollback: false,
        }
    }
}

/// The breaker's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go to the component.
    Closed,
    /// Calls are answered by the failure policy.
    Open,
    /// One probe call is under way; the others are answered by the failure policy.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What operators see of a breaker (`breaker` in `GET /admin/components`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerInfo {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Times it opened since the host started (all versions of the slot).
    pub trips: u64,
    pub threshold: u32,
    pub cooldown_ms: u64,
}

/// Permission to call the component, to be handed back with the call's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    generation: u64,
    probe: bool,
}

impl Admission {
    /// Is this the probe call of a half-open breaker?
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// One slot's breaker. Time is passed in (milliseconds on any monotonic scale) so the
/// state machine is testable without sleeping.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the breaker last opened or let a probe through.
    since_ms: AtomicU64,
    generation: AtomicU64,
    trips: AtomicU64,
}

/// What a failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Nothing changed state.
    No,
    /// The breaker opened from closed.
    Opened,
    /// A probe failed: open again for another cool-down.
    Reopened,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            since_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            trips: AtomicU64::new(0),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// May a call go to the component now? `None`: answer by the failure policy. `now_ms`
    /// is only read when the breaker is not closed (reading a clock costs more than the
    /// rest of this check).
    pub fn admit(&self, now_ms: impl FnOnce() -> u64) -> Option<Admission> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Some(Admission {
                generation,
                probe: false,
            });
        }
        let now_ms = now_ms();
        let since = self.since_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(since) < self.settings.cooldown_ms {
            return None;
        }
        // One caller wins the right to probe; a probe that never reports back (its caller
        // gave up) is replaced by another one after a further cool-down.
        self.since_ms
            .compare_exchange(since, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.state.store(HALF_OPEN, Ordering::Release);
        Some(Admission {
            generation,
            probe: true,
        })
    }

    /// The call admitted by `admission` succeeded.
    pub fn succeeded(&self, admission: Admission) {
        if admission.generation != self.generation.load(Ordering::Acquire) {
            return;
        }
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if admission.probe {
            self.state.store(CLOSED, Ordering::Release);
        }
    }

    /// The call admitted by `admission` failed at `now_ms`.
    pub fn failed(&self, admission: Admission, now_ms: u64) -> Tripped {
        if self.settings.failures == 0
            || admission.generation != self.generation.load(Ordering::Acquire)
        {
            return Tripped::No;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if admission.probe {
            self.since_ms.store(now_ms, Ordering::Release);
            self.state.store(OPEN, Ordering::Release);
            return Tripped::Reopened;
        }
        if failures < self.settings.failures {
            return Tripped::No;
        }
        self.since_ms.store(now_ms, Ordering::Release);
        match self
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.trips.fetch_add(1, Ordering::Relaxed);
                Tripped::Opened
            }
            Err(_) => Tripped::No,
        }
    }

    /// A new version went live: closed, no failures, outcomes of older calls ignored.
    pub fn reset(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.failures.store(0, Ordering::Relaxed);
        self.state.store(CLOSED, Ordering::Release);
    }

    /// Is the breaker keeping calls away from the component (open or half-open)?
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) != CLOSED
    }

    /// Snapshot for operators.
    pub fn info(&self) -> BreakerInfo {
        BreakerInfo {
            state: match self.state.load(Ordering::Acquire) {
                CLOSED => BreakerState::Closed,
                OPEN => BreakerState::Open,
                _ => BreakerState::HalfOpen,
            },
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            trips: self.trips.load(Ordering::Relaxed),
            threshold: self.settings.failures,
            cooldown_ms: self.settings.cooldown_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings {
            failures,
            cooldown_ms,
            auto_rollback: false,
        })
    }

    fn fail(b: &Breaker, now: u64) -> Tripped {
        let a = b.admit(|| now).expect("admitted");
        b.failed(a, now)
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let b = breaker(3, 1_000);
        assert_eq!(fail(&b, 0), Tripped::No);
        assert_eq!(fail(&b, 0), Tripped::No);
        // A success in between starts the count again.
        let a = b.admit(|| 0).expect("closed");
        b.succeeded(a);
        assert_eq!(b.info().consecutive_failures, 0);
        assert_eq!(fail(&b, 1), Tripped::No);
        assert_eq!(fail(&b, 2), Tripped::No);
        assert_eq!(fail(&b, 3), Tripped::Opened);
        assert_eq!(b.info().state, BreakerState::Open);
        assert_eq!(b.info().trips, 1);
        assert!(
            b.admit(|| 500).is_none(),
            "open: no call during the cool-down"
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let b = breaker(1, 1_000);
        assert_eq!(fail(&b, 0), Tripped::Opened);
        assert!(b.admit(|| 999).is_none());
        let probe = b.admit(|| 1_000).expect("probe after the cool-down");
        assert_eq!(b.info().state, BreakerState::HalfOpen);
        assert!(b.admit(|| 1_001).is_none(), "only one probe at a time");
        // A failed probe opens it again for a full cool-down.
        assert_eq!(b.failed(probe, 1_010), Tripped::Reopened);
        assert_eq!(b.info().state, BreakerState::Open);
        assert!(b.admit(|| 2_000).is_none());
        let probe = b.admit(|| 2_010).expect("second probe");
        b.succeeded(probe);
        assert_eq!(b.info().state, BreakerState::Closed);
        assert!(b.admit(|| 2_011).is_some());
        assert_eq!(
            b.info().trips,
            1,
            "re-opening after a probe is not a new trip"
        );
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let b = breaker(1, 100);
        fail(&b, 0);
        let _lost = b.admit(|| 100).expect("probe");
        assert!(b.admit(|| 150).is_none());
        assert!(b.admit(|| 200).is_some(), "another probe");
    }

    #[test]
    fn reset_closes_and_ignores_outcomes_of_the_old_version() {
        let b = breaker(2, 1_000);
        let old = b.admit(|| 0).expect("closed");
        fail(&b, 0);
        b.reset();
        assert_eq!(b.failed(old, 1), Tripped::No, "old generation");
        assert_eq!(b.info().consecutive_failures, 0);
        assert_eq!(fail(&b, 2), Tripped::No);
        assert_eq!(fail(&b, 3), Tripped::Opened);
        b.reset();
        assert_eq!(b.info().state, BreakerState::Closed);
        assert!(b.admit(|| 4).is_some());
    }

    #[test]
    fn zero_disables_it() {
        let b = breaker(0, 1_000);
        for t in 0..100 {
            assert_eq!(fail(&b, t), Tripped::No);
        }
        assert!(!b.is_open());
    }
}
