//! A refused token: no events, attempts spaced by the backoff, a clear log line that
//! names LINK_TOKEN and never shows the token.
//!
//! This file holds a single test on purpose: it captures logs with a thread-scoped
//! subscriber, and a concurrent test in the same binary can race tracing's per-callsite
//! interest cache and hide the line it looks for.

use std::time::Duration;

use gateway_host::link::{LinkState, LinkToken};
use gateway_sim::AttemptOutcome;
use gateway_tests::{LogCapture, link_to, start_sim, wait_until};

const WRONG: &str = "wrong-token-do-not-log";

#[tokio::test(flavor = "current_thread")]
async fn wrong_token_backs_off_and_says_so() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    sim.control().emit(3);
    let base = Duration::from_millis(100);
    let (_bus, mut sub, link) = link_to(&sim, |c| {
        c.token = LinkToken::new(WRONG);
        c.backoff_base = base;
        c.backoff_cap = Duration::from_millis(400);
    });

    wait_until(Duration::from_secs(10), "5 attempts", || {
        sim.control().attempts().len() >= 5
    })
    .await?;
    let attempts = sim.control().attempts();
    assert!(
        attempts
            .iter()
            .all(|a| a.outcome == AttemptOutcome::Unauthorized)
    );
    // Nominal delays 100, 200, 400, 400 ms; jitter takes at most 20 % off.
    let nominal = [100u64, 200, 400, 400];
    for (pair, nominal_ms) in attempts.windows(2).zip(nominal) {
        let gap = pair[1].at.duration_since(pair[0].at);
        let floor = Duration::from_millis(nominal_ms * 8 / 10 - 5);
        assert!(
            gap >= floor,
            "attempts {gap:?} apart, backoff floor {floor:?}"
        );
    }

    assert!(sub.try_recv()?.is_none(), "no events without a valid token");
    assert_ne!(link.state(), LinkState::Connected);
    assert_eq!(sim.control().links_accepted(), 0);
    // The simulator records an attempt before the host has read its 401.
    wait_until(
        Duration::from_secs(10),
        "5 auth failures counted by the host",
        || link.stats().auth_failures >= 5,
    )
    .await?;
    let text = logs.text();
    assert!(
        text.contains("upstream refused LINK_TOKEN (HTTP 401)"),
        "log was:\n{text}"
    );
    assert!(!text.contains(WRONG), "the token leaked into the log");
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
