//! Hostile components, built from `tests/components/` by this crate's build script: each
//! is refused at load or contained at call time, and the host keeps answering with the
//! old version or the slot's failure policy.

use std::sync::mpsc;
use std::time::Duration;

use gateway_host::policy::defaults::default_component;
use gateway_host::policy::{
    BreakerState, CallFailure, FailurePolicy, LimitOutcome, LoadError, Policies, PolicySettings,
    RouteDecision, RuntimeLimits, SlotKind, SlotSettings,
};
use gateway_tests::policy::{HOSTILE_LIMITER, HOSTILE_ROUTER, event, rate_request, relaxed_limits};

fn policies(limits: RuntimeLimits) -> Policies {
    Policies::with_defaults(PolicySettings {
        limits,
        ..Default::default()
    })
    .expect("defaults load")
}

/// Swap the hostile limiter in with `mode`.
fn install_hostile_limiter(p: &Policies, mode: &str) {
    let slot = p.slot(SlotKind::RateLimiter);
    let version = slot
        .prepare_with_config(HOSTILE_LIMITER, "test", vec![("mode".into(), mode.into())])
        .expect("the hostile limiter's init succeeds in this mode");
    slot.install(version);
}

/// Run `f` on another thread and fail the test if it does not return within `limit`:
/// proves a call cannot hang the caller.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the call returned within its bound")
}

fn assert_contained(p: Policies, mode: &'static str, expected: CallFailure) {
    install_hostile_limiter(&p, mode);
    let p = within(Duration::from_secs(20), move || {
        for _ in 0..3 {
            let v = p.check_rate(&rate_request("1", "2"));
            assert_eq!(v.fallback, Some(expected), "mode {mode}");
            assert_eq!(
                v.value,
                LimitOutcome::Deny {
                    retry_after_ms: 1000
                },
                "the limiter fails closed"
            );
        }
        p
    });
    let info = p.slot(SlotKind::RateLimiter).info();
    assert_eq!(info.current.failures, 3, "every failure is counted");
    // The host still answers, and the other slots are untouched.
    assert_eq!(
        p.route(&event("MESSAGE_CREATE", Some("1"), None)).fallback,
        None
    );
    // Rolling back restores a working limiter.
    p.slot(SlotKind::RateLimiter)
        .rollback()
        .expect("previous version kept");
    assert_eq!(
        p.check_rate(&rate_request("1", "2")).value,
        LimitOutcome::Allow { remaining: 9 }
    );
}

#[test]
fn a_trapping_component_is_contained() {
    assert_contained(policies(relaxed_limits()), "trap", CallFailure::Trap);
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let limits = RuntimeLimits {
        call_timeout_ms: 50,
        ..Default::default()
    };
    assert_contained(policies(limits), "spin", CallFailure::Deadline);
}

#[test]
fn unbounded_memory_growth_hits_the_limit() {
    // A generous deadline, so that on a loaded machine the memory limit, not the clock,
    // is what stops the component.
    let limits = RuntimeLimits {
        memory_limit_mib: 16,
        call_timeout_ms: 5_000,
        ..Default::default()
    };
    assert_contained(policies(limits), "hog", CallFailure::OutOfMemory);
}

fn assert_refused(
    p: &Policies,
    kind: SlotKind,
    bytes: &[u8],
    config: Vec<(String, String)>,
) -> LoadError {
    let slot = p.slot(kind);
    let before = slot.current().sha256().to_string();
    let err = slot
        .prepare_with_config(bytes, "test", config)
        .err()
        .expect("candidate refused");
    assert_eq!(
        slot.current().sha256(),
        before,
        "the old version keeps serving"
    );
    assert!(
        slot.info().last_rejection.is_some(),
        "the refusal is visible to operators"
    );
    err
}

#[test]
fn refused_at_load() {
    let p = policies(relaxed_limits());
    let mode = |m: &str| vec![("mode".to_string(), m.to_string())];

    let err = assert_refused(
        &p,
        SlotKind::RateLimiter,
        HOSTILE_LIMITER,
        mode("init-trap"),
    );
    assert!(matches!(err, LoadError::Instantiate(_)), "{err}");
    let err = assert_refused(&p, SlotKind::RateLimiter, HOSTILE_LIMITER, mode("init-err"));
    assert!(
        matches!(&err, LoadError::Init(m) if m.contains("refuses")),
        "{err}"
    );

    // A real component built for another world.
    let err = assert_refused(
        &p,
        SlotKind::RateLimiter,
        default_component(SlotKind::VoiceFilter),
        vec![],
    );
    assert!(
        matches!(
            err,
            LoadError::WrongWorld {
                slot: SlotKind::RateLimiter,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rate-limiter"), "{err}");
    let err = assert_refused(&p, SlotKind::EventRouter, HOSTILE_LIMITER, vec![]);
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");

    // Random bytes, an empty file, and a core module that is not a component.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for bytes in [noise.as_slice(), b"", b"\0asm\x01\0\0\0"] {
        let err = assert_refused(&p, SlotKind::CommandValidator, bytes, vec![]);
        assert!(matches!(err, LoadError::Compile(_)), "{err}");
    }

    // After all that, every slot still answers from its component.
    assert_eq!(
        p.check_rate(&rate_request("1", "2")).value,
        LimitOutcome::Allow { remaining: 9 }
    );
    assert_eq!(
        p.route(&event("MESSAGE_CREATE", Some("1"), None)).fallback,
        None
    );
}

fn route_with(failure: FailurePolicy, mode: &str) -> gateway_host::policy::Verdict<RouteDecision> {
    let mut settings = PolicySettings {
        limits: RuntimeLimits {
            call_timeout_ms: 50,
            ..Default::default()
        },
        ..Default::default()
    };
    settings.slots.insert(
        SlotKind::EventRouter,
        SlotSettings {
            failure,
            config: vec![],
        },
    );
    let p = Policies::with_defaults(settings).expect("defaults load");
    let slot = p.slot(SlotKind::EventRouter);
    let hostile = slot
        .prepare_with_config(HOSTILE_ROUTER, "test", vec![("mode".into(), mode.into())])
        .expect("hostile router loads");
    slot.install(hostile);
    within(Duration::from_secs(20), move || {
        p.route(&event("VOICE_STATE_UPDATE", Some("1"), Some("2")))
    })
}

#[test]
fn a_failing_router_delivers_on_default_topics_or_drops() {
    let open = route_with(FailurePolicy::FailOpen, "trap");
    assert_eq!(open.fallback, Some(CallFailure::Trap));
    assert_eq!(
        open.value,
        RouteDecision::Deliver {
            topics: vec!["guild:1".into(), "channel:2".into(), "voice:1".into()],
            payload: None
        }
    );
    let closed = route_with(FailurePolicy::FailClosed, "spin");
    assert_eq!(closed.fallback, Some(CallFailure::Deadline));
    assert_eq!(closed.value, RouteDecision::Drop);
}

fn hostile_router(settings: PolicySettings, mode: &str) -> Policies {
    let p = Policies::with_defaults(settings).expect("defaults load");
    let slot = p.slot(SlotKind::EventRouter);
    let hostile = slot
        .prepare_with_config(HOSTILE_ROUTER, "test", vec![("mode".into(), mode.into())])
        .expect("hostile router loads");
    slot.install(hostile);
    p
}

#[test]
fn answers_over_a_bound_are_failures() {
    for mode in ["topics", "long-topic", "big-payload"] {
        let settings = PolicySettings {
            limits: relaxed_limits(),
            ..Default::default()
        };
        let p = hostile_router(settings, mode);
        let v = within(Duration::from_secs(20), move || {
            p.route(&event("MESSAGE_CREATE", Some("1"), Some("2")))
        });
        assert_eq!(v.fallback, Some(CallFailure::OutputBound), "mode {mode}");
        assert_eq!(
            v.value,
            RouteDecision::Deliver {
                topics: vec!["guild:1".into(), "channel:2".into()],
                payload: None
            },
            "the failure policy answers instead (mode {mode})"
        );
    }
}

#[test]
fn the_breaker_stops_calling_a_failing_version() {
    let mut settings = PolicySettings {
        limits: relaxed_limits(),
        ..Default::default()
    };
    settings.breaker.failures = 3;
    settings.breaker.cooldown_ms = 60_000;
    let p = hostile_router(settings, "trap");
    let ev = event("MESSAGE_CREATE", Some("1"), None);
    for _ in 0..3 {
        assert_eq!(p.route(&ev).fallback, Some(CallFailure::Trap));
    }
    for _ in 0..10 {
        let v = p.route(&ev);
        assert_eq!(v.fallback, Some(CallFailure::BreakerOpen));
        assert_eq!(
            v.value,
            RouteDecision::Deliver {
                topics: vec!["guild:1".into()],
                payload: None
            }
        );
    }
    let info = p.slot(SlotKind::EventRouter).info();
    assert_eq!(info.current.failures, 3, "no call while open");
    assert_eq!(info.breaker.state, BreakerState::Open);
    assert_eq!(info.breaker.trips, 1);
    // Without auto-rollback the failing version stays live.
    assert_eq!(info.current.source, "test");
    // A swap resets it.
    p.slot(SlotKind::EventRouter).rollback().expect("previous");
    assert_eq!(p.route(&ev).fallback, None);
    assert_eq!(
        p.slot(SlotKind::EventRouter).info().breaker.state,
        BreakerState::Closed
    );
}

#[test]
fn the_breaker_can_roll_back_automatically() {
    let mut settings = PolicySettings {
        limits: relaxed_limits(),
        ..Default::default()
    };
    settings.breaker.failures = 2;
    settings.breaker.auto_rollback = true;
    let p = hostile_router(settings, "trap");
    let ev = event("MESSAGE_CREATE", Some("1"), None);
    let default_sha = p
        .slot(SlotKind::EventRouter)
        .info()
        .previous
        .expect("default kept")
        .sha256;
    for _ in 0..2 {
        assert_eq!(p.route(&ev).fallback, Some(CallFailure::Trap));
    }
    let info = p.slot(SlotKind::EventRouter).info();
    assert_eq!(
        info.current.sha256, default_sha,
        "rolled back to the default"
    );
    assert_eq!(info.breaker.state, BreakerState::Closed);
    assert_eq!(info.breaker.trips, 1);
    assert_eq!(p.route(&ev).fallback, None, "the default answers again");
}

/// A call that outlives its deadline (here: a fresh instance whose `init` takes seconds,
/// paid on the call path after a failed call) is abandoned by its async caller, which gets
/// the failure policy's answer at once; the call thread is replaced.
#[test]
fn an_async_caller_does_not_wait_for_a_slow_call() {
    let mut settings = PolicySettings {
        limits: RuntimeLimits {
            call_timeout_ms: 50,
            init_timeout_ms: 120_000,
            ..Default::default()
        },
        ..Default::default()
    };
    settings.breaker.failures = 0;
    let p = Policies::with_defaults(settings).expect("defaults load");
    let slot = p.slot(SlotKind::EventRouter);
    let config = vec![
        ("mode".to_string(), "trap".to_string()),
        ("init-spin".to_string(), "1500000000".to_string()),
    ];
    let slow = slot
        .prepare_with_config(HOSTILE_ROUTER, "test", config)
        .expect("the slow router loads within its generous init deadline");
    slot.install(slow);
    let p = std::sync::Arc::new(p);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let events = std::sync::Arc::new(vec![event("MESSAGE_CREATE", Some("1"), None)]);
    // The warm instance traps at once and is discarded…
    let first = rt.block_on(p.route_events(events.clone(), 0));
    assert_eq!(first[0].fallback, Some(CallFailure::Trap));
    // …so the next call must instantiate again, which takes seconds.
    let started = std::time::Instant::now();
    let second = rt.block_on(p.route_events(events, 0));
    let waited = started.elapsed();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].fallback, Some(CallFailure::Abandoned));
    assert_eq!(
        second[0].value,
        RouteDecision::Deliver {
            topics: vec!["guild:1".into()],
            payload: None
        }
    );
    // The caller's deadline is 2 × 50 ms + 20 ms; allow for a loaded machine.
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // The thread still instantiating was abandoned and replaced.
    assert_eq!(p.abandoned_threads(), 1);
}

/// `component test` on a router that never answers: the case fails with exit 1, and the
/// line names the budget it missed and the setting that raises it (an author whose
/// interpreted component is slow on a busy machine should not have to guess what
/// "deadline" means).
#[test]
fn component_test_names_the_missed_deadline_and_its_setting() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host_config = dir.path().join("gateway.toml");
    std::fs::write(&host_config, "[policy.limits]\ncall-timeout-ms = 50\n")?;
    let component_config = dir.path().join("spin.toml");
    std::fs::write(&component_config, "mode = \"spin\"\n")?;
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        r#"{"name": "a message is delivered", "event": {"name": "MESSAGE_CREATE", "guildId": "1", "channelId": "2", "payload": {"content": "hi"}}, "expect": {"deliver": {"topics": ["guild:1", "channel:2"]}}}"#,
    )?;
    let run = gateway_tests::foreign::run_host(&[
        "component",
        "test",
        "--slot",
        "event-router",
        env!("GATEWAY_TEST_HOSTILE_ROUTER_WASM"),
        "--cases",
        &cases.to_string_lossy(),
        "--config",
        &host_config.to_string_lossy(),
        "--component-config",
        &component_config.to_string_lossy(),
    ])?;
    let out = format!("{}{}", run.stdout, run.stderr);
    anyhow::ensure!(run.code == 1, "exit {}:\n{out}", run.code);
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL a message is delivered"))
        .ok_or_else(|| anyhow::anyhow!("no FAIL line:\n{out}"))?;
    anyhow::ensure!(
        line.contains("no answer within 50 ms") && line.contains("call-timeout-ms"),
        "{line}"
    );
    anyhow::ensure!(out.contains("0 passed, 1 failed"), "{out}");
    Ok(())
}
