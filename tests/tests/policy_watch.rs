//! Hot loading from a watched components directory: `<slot>.wasm` files go live when they
//! appear or change; refused files never do and are reported.

use std::sync::Arc;
use std::time::Duration;

use gateway_host::policy::defaults::default_component;
use gateway_host::policy::watch::watch_components_dir;
use gateway_host::policy::{LimitOutcome, Policies, SlotKind};
use gateway_tests::policy::{HOSTILE_LIMITER, rate_request, relaxed_settings, wait_until};

#[test]
fn watched_directory_hot_loads_and_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Present at start, same bytes as the live default: loaded at start, nothing to swap.
    std::fs::write(
        dir.path().join("event-router.wasm"),
        default_component(SlotKind::EventRouter),
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
    let policies = Arc::new(Policies::with_defaults(relaxed_settings()).expect("defaults load"));
    let _watcher = watch_components_dir(dir.path(), policies.clone(), 64 << 20).expect("watch");
    let info = |kind| policies.slot(kind).info();

    // Written elsewhere and renamed in (the safe way to publish a file): goes live.
    let staging = dir.path().join("staging.tmp");
    std::fs::write(&staging, HOSTILE_LIMITER).expect("write");
    std::fs::rename(&staging, dir.path().join("rate-limiter.wasm")).expect("rename");
    assert!(
        wait_until(Duration::from_secs(20), || info(SlotKind::RateLimiter)
            .swaps
            == 1),
        "new limiter goes live"
    );
    assert!(
        info(SlotKind::RateLimiter)
            .current
            .source
            .ends_with("rate-limiter.wasm")
    );
    assert_eq!(
        policies.check_rate(&rate_request("1", "2")).value,
        LimitOutcome::Deny {
            retry_after_ms: 4242
        }
    );

    // A component for another world, and garbage: refused, the live versions keep serving.
    std::fs::write(dir.path().join("voice-filter.wasm"), HOSTILE_LIMITER).expect("write");
    std::fs::write(dir.path().join("command-validator.wasm"), b"garbage").expect("write");
    assert!(wait_until(Duration::from_secs(20), || info(
        SlotKind::VoiceFilter
    )
    .last_rejection
    .is_some()));
    assert!(wait_until(Duration::from_secs(20), || info(
        SlotKind::CommandValidator
    )
    .last_rejection
    .is_some()));
    assert_eq!(info(SlotKind::VoiceFilter).swaps, 0);
    assert_eq!(info(SlotKind::CommandValidator).swaps, 0);
    assert_eq!(
        info(SlotKind::EventRouter).swaps,
        0,
        "unchanged bytes are not reloaded"
    );

    // Overwritten in place with the default limiter: goes live again.
    std::fs::write(
        dir.path().join("rate-limiter.wasm"),
        default_component(SlotKind::RateLimiter),
    )
    .expect("write");
    assert!(wait_until(Duration::from_secs(20), || info(
        SlotKind::RateLimiter
    )
    .swaps
        == 2));
    assert_eq!(
        policies.check_rate(&rate_request("1", "2")).value,
        LimitOutcome::Allow { remaining: 9 }
    );
}

/// After start, a symlink to `/dev/zero`, a FIFO and an oversize file appear under slot
/// names: each is refused without being read (no memory blow-up, no blocked watcher), and
/// a valid file written afterwards still goes live.
#[cfg(unix)]
#[test]
fn hostile_files_after_start_are_refused_and_the_watcher_keeps_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = Arc::new(Policies::with_defaults(relaxed_settings()).expect("defaults load"));
    let _watcher = watch_components_dir(dir.path(), policies.clone(), 1 << 20).expect("watch");
    let info = |kind| policies.slot(kind).info();

    // The FIFO sorts first, so a watcher blocked on it would never reach the valid file.
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("voice-filter.wasm")).expect("symlink");
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.path().join("command-validator.wasm"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success());
    std::fs::write(
        dir.path().join("event-router.wasm"),
        vec![0u8; (1 << 20) + 1],
    )
    .expect("write");
    std::fs::write(dir.path().join("rate-limiter.wasm"), HOSTILE_LIMITER).expect("write");
    assert!(
        wait_until(Duration::from_secs(20), || info(SlotKind::RateLimiter)
            .swaps
            == 1),
        "the valid file still goes live"
    );
    for kind in [
        SlotKind::CommandValidator,
        SlotKind::VoiceFilter,
        SlotKind::EventRouter,
    ] {
        assert_eq!(info(kind).swaps, 0, "{kind} kept its version");
    }
}
