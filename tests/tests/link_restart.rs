//! An upstream restart starts a new session whose seq begins at 1 again: the host takes
//! the new session's events (instead of dropping them as old seqs) and records the gap.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::{collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn new_session_events_are_taken_and_the_gap_recorded() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let (old_session, _) = sim.control().session();
    sim.control().emit(30);
    collect(&mut sub, 30, T).await?;

    let new_session = sim.control().restart_session();
    assert_ne!(new_session, old_session);
    sim.control().emit(5); // before the host is back: must be delivered after resume
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    sim.control().emit(5);

    let events = collect(&mut sub, 10, T).await?;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(events.iter().all(|e| *e.session_id == *new_session));
    assert_eq!(link.stats().gaps, 1);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
