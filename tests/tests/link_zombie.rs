//! A stalled upstream (TCP open, nothing sent) is detected by missing pongs and the
//! link reconnects within the documented bound (ping interval + pong timeout).

use std::time::{Duration, Instant};

use gateway_host::link::LinkState;
use gateway_tests::{collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_stall_is_detected_and_the_link_comes_back() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    wait_until(T, "a first pong", || link.stats().rtt_samples > 0).await?;
    let config = gateway_tests::fast_link_config(&sim.url(), gateway_tests::TOKEN);
    let bound = config.zombie_bound();

    let stalled_at = Instant::now();
    sim.control().stall_links();
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    let detected_after = stalled_at.elapsed();
    wait_state(&link, LinkState::Connected, T).await?;

    // Not before a pong could have been missed, and within the bound plus one
    // backoff step and scheduling slack.
    assert!(
        detected_after >= config.pong_timeout,
        "reconnected too early: {detected_after:?}"
    );
    let limit = bound + config.backoff_cap + Duration::from_millis(300);
    assert!(
        detected_after <= limit,
        "took {detected_after:?}, bound {limit:?}"
    );
    assert_eq!(link.stats().zombies, 1);

    // The new link works and resumes: events emitted now arrive.
    let last = sim.control().emit(5);
    let events = collect(&mut sub, 5, T).await?;
    assert_eq!(events.last().map(|e| e.seq), Some(last));
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
