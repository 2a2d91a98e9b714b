//! `fail-previous` (issue 10): when the live version fails, the slot's previous version
//! answers the call (also while the breaker is open, and from async callers); when there
//! is no previous version, or it fails too, the slot fails closed.

use gateway_host::policy::defaults::default_component;
use gateway_host::policy::{
    BreakerSettings, CallFailure, FailurePolicy, LimitOutcome, Policies, PolicySettings, SlotKind,
    SlotSettings,
};
use gateway_tests::policy::{HOSTILE_LIMITER, rate_request, relaxed_limits};
use std::sync::Arc;

const CLOSED: LimitOutcome = LimitOutcome::Deny {
    retry_after_ms: 1000,
};

fn settings(config: Vec<(String, String)>) -> PolicySettings {
    let mut s = PolicySettings {
        limits: relaxed_limits(),
        breaker: BreakerSettings {
            failures: 3,
            cooldown_ms: 60_000,
            auto_rollback: false,
        },
        ..Default::default()
    };
    s.slots.insert(
        SlotKind::RateLimiter,
        SlotSettings {
            failure: FailurePolicy::FailPrevious,
            config,
        },
    );
    s
}

fn install_trapping(p: &Policies) {
    let slot = p.slot(SlotKind::RateLimiter);
    let v = slot
        .prepare_with_config(
            HOSTILE_LIMITER,
            "test",
            vec![("mode".into(), "trap".into())],
        )
        .expect("the hostile limiter loads");
    slot.install(v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_version_answers_then_the_slot_fails_closed() -> anyhow::Result<()> {
    let p = Arc::new(Policies::with_defaults(settings(Vec::new()))?);
    install_trapping(&p);

    // The default limiter (previous) answers: allowed, with its own bucket arithmetic.
    let v = p.check_rate(&rate_request("1", "2"));
    assert_eq!(v.fallback, Some(CallFailure::Trap));
    assert!(v.by_previous, "answered by the previous version");
    assert_eq!(v.value, LimitOutcome::Allow { remaining: 9 });
    assert_eq!(v.answered_by(), "previous");
    let v = p.check_rate_async(rate_request("1", "2")).await;
    assert!(v.by_previous && v.fallback == Some(CallFailure::Trap));
    assert_eq!(v.value, LimitOutcome::Allow { remaining: 8 });

    // Once the breaker is open the live version is not called; the previous still answers.
    p.check_rate(&rate_request("1", "2"));
    let v = p.check_rate(&rate_request("1", "2"));
    assert_eq!(v.fallback, Some(CallFailure::BreakerOpen));
    assert!(v.by_previous);
    assert_eq!(v.value, LimitOutcome::Allow { remaining: 6 });
    let slot = p.slot(SlotKind::RateLimiter);
    assert_eq!(slot.current().info().failures, 3, "the breaker opened at 3");
    assert!(slot.previous().is_some_and(|v| v.info().calls == 4));

    // Previous fails too (a trapping version replaced by another): fail closed.
    install_trapping(&p);
    let v = p.check_rate(&rate_request("1", "2"));
    assert_eq!(v.fallback, Some(CallFailure::Trap));
    assert!(!v.by_previous);
    assert_eq!(v.value, CLOSED);
    Ok(())
}

#[test]
fn without_a_previous_version_the_slot_fails_closed() -> anyhow::Result<()> {
    // The trapping limiter is the slot's starting component: nothing to fall back on.
    let p =
        Policies::with_components(
            settings(vec![("mode".into(), "trap".into())]),
            |kind| match kind {
                SlotKind::RateLimiter => HOSTILE_LIMITER.to_vec(),
                other => default_component(other).to_vec(),
            },
        )?;
    let v = p.check_rate(&rate_request("1", "2"));
    assert_eq!(v.fallback, Some(CallFailure::Trap));
    assert!(!v.by_previous);
    assert_eq!(v.value, CLOSED);
    Ok(())
}
