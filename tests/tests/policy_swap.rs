//! Hot swap under load: threads call the limiter in a loop while versions are swapped and
//! rolled back; every call gets a verdict from the old or the new version, none fails.
//! Buckets live in the host, so a swap keeps them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use gateway_host::policy::defaults::default_component;
use gateway_host::policy::{LimitOutcome, Policies, SlotKind};
use gateway_tests::policy::{HOSTILE_LIMITER, rate_request, relaxed_settings, wait_until};

/// The default limiter on a fresh key: allowed, 9 left.
const OLD: LimitOutcome = LimitOutcome::Allow { remaining: 9 };
/// The hostile limiter in its well-behaved `deny` mode.
const NEW: LimitOutcome = LimitOutcome::Deny {
    retry_after_ms: 4242,
};

#[test]
fn swap_and_rollback_while_calls_are_running() {
    let p = Arc::new(Policies::with_defaults(relaxed_settings()).expect("defaults load"));
    let slot_sha = |p: &Policies| p.slot(SlotKind::RateLimiter).current().sha256().to_string();
    let default_sha = slot_sha(&p);
    let stop = Arc::new(AtomicBool::new(false));
    let (old_seen, new_seen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let callers: Vec<_> = (0..4)
        .map(|t| {
            let (p, stop, old_seen, new_seen) =
                (p.clone(), stop.clone(), old_seen.clone(), new_seen.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A fresh key per call, so the default limiter always has a full bucket.
                    let v = p.check_rate(&rate_request(&format!("{t}{n}"), "1"));
                    assert_eq!(v.fallback, None, "no call fails during a swap");
                    match v.value {
                        OLD => old_seen.fetch_add(1, Ordering::Relaxed),
                        NEW => new_seen.fetch_add(1, Ordering::Relaxed),
                        other => panic!("verdict from neither version: {other:?}"),
                    };
                }
                n
            })
        })
        .collect();

    let slot = p.slot(SlotKind::RateLimiter);
    for round in 0..10 {
        let new_before = new_seen.load(Ordering::Relaxed);
        let info = slot
            .load(HOSTILE_LIMITER, "test", Default::default())
            .expect("candidate loads");
        assert_ne!(info.sha256, default_sha);
        assert!(
            wait_until(Duration::from_secs(10), || new_seen.load(Ordering::Relaxed)
                > new_before + 10),
            "round {round}: callers see the new version"
        );
        let old_before = old_seen.load(Ordering::Relaxed);
        let back = slot.rollback().expect("previous version kept");
        assert_eq!(
            back.sha256, default_sha,
            "rollback restores the previous sha256"
        );
        assert!(
            wait_until(Duration::from_secs(10), || old_seen.load(Ordering::Relaxed)
                > old_before + 10),
            "round {round}: callers see the old version again"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers
        .into_iter()
        .map(|c| c.join().expect("caller thread ok"))
        .sum();
    assert!(calls > 100);
    assert_eq!(slot_sha(&p), default_sha);
    let info = slot.info();
    assert_eq!(info.swaps, 20);
    assert_eq!(info.current.failures, 0);
}

#[test]
fn buckets_survive_a_limiter_swap() {
    let p = Policies::with_defaults(relaxed_settings()).expect("defaults load");
    let request = rate_request("42", "7");
    for _ in 0..5 {
        assert!(matches!(
            p.check_rate_at(&request, 0).value,
            LimitOutcome::Allow { .. }
        ));
    }
    // A new version (the same rules, freshly compiled and instantiated) takes over mid-burst.
    let slot = p.slot(SlotKind::RateLimiter);
    slot.load(
        default_component(SlotKind::RateLimiter),
        "test",
        Default::default(),
    )
    .expect("reload");
    assert_eq!(slot.info().swaps, 1);
    for i in 0..5 {
        assert_eq!(
            p.check_rate_at(&request, 0).value,
            LimitOutcome::Allow { remaining: 4 - i }
        );
    }
    assert_eq!(
        p.check_rate_at(&request, 0).value,
        LimitOutcome::Deny {
            retry_after_ms: 5000
        }
    );
    // State the new version cannot decode counts as a fresh bucket: the hostile limiter
    // writes [0xFF]; the default limiter, back again, must not choke on it.
    slot.load(HOSTILE_LIMITER, "test", Default::default())
        .expect("hostile deny-mode limiter loads");
    assert_eq!(
        p.check_rate_at(&request, 0).value,
        LimitOutcome::Deny {
            retry_after_ms: 4242
        }
    );
    slot.rollback().expect("rollback");
    let v = p.check_rate_at(&request, 0);
    assert_eq!(
        (v.value, v.fallback),
        (LimitOutcome::Allow { remaining: 9 }, None)
    );
}
