//! Malformed frames and unknown ops are skipped and counted; the link stays up and
//! the events around them arrive.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::{collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn junk_is_skipped_and_counted_and_the_link_stays_up() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;

    sim.control().emit(10);
    collect(&mut sub, 10, T).await?;
    sim.control().send_malformed(8);
    sim.control().send_unknown(3);
    wait_until(T, "8 malformed and 3 unknown counted", || {
        let s = link.stats();
        s.malformed == 8 && s.unknown == 3
    })
    .await?;
    sim.control().emit(10);
    let events = collect(&mut sub, 10, T).await?;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );

    assert_eq!(link.state(), LinkState::Connected);
    assert_eq!(
        sim.control().links_accepted(),
        1,
        "the link was never re-established"
    );
    assert_eq!(link.stats().reconnects, 0);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn periodic_malformed_frames_between_events() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    sim.control().set_malformed_every(5);
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().emit(50);
    let events = collect(&mut sub, 50, T).await?;
    assert_eq!(events.last().map(|e| e.seq), Some(50));
    wait_until(T, "10 malformed counted", || link.stats().malformed == 10).await?;
    assert_eq!(sim.control().links_accepted(), 1);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
