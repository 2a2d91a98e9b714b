//! Frame-level rules of the link: the inbound size limit (an oversize frame is counted
//! and skipped, the link comes back and resumes), and the close handshake (the host
//! answers the upstream's close frame before reconnecting).

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_host::link::session::reason;
use gateway_tests::{collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);
const LIMIT: usize = 64 * 1024;

#[tokio::test]
async fn an_oversize_frame_is_counted_and_skipped_without_loss() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |c| c.max_frame_bytes = LIMIT);
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().emit(10);
    collect(&mut sub, 10, T).await?;

    sim.control().send_oversize(4 * LIMIT);
    wait_until(T, "the oversize frame counted", || {
        link.stats().oversize == 1
    })
    .await?;
    sim.control().emit(10);
    let events = collect(&mut sub, 10, T).await?;
    assert_eq!(events[0].seq, 11);
    assert!(events.iter().all(|e| e.loss_before.is_none()));
    assert_eq!(link.stats().gaps, 0);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_oversize_event_is_skipped_and_marked_as_loss() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |c| c.max_frame_bytes = LIMIT);
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().emit(5);
    collect(&mut sub, 5, T).await?;

    let big = sim.control().emit_padded(2 * LIMIT);
    sim.control().emit(5);
    let events = collect(&mut sub, 5, T).await?;
    assert_eq!(
        events[0].seq,
        big + 1,
        "every event after the big one arrives"
    );
    assert_eq!(events[0].loss_before, Some(reason::OVERSIZE));
    assert_eq!(link.stats().oversize, 2, "retried once, then skipped");
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_upstreams_close_frame_is_answered_before_reconnecting() -> anyhow::Result<()> {
    let (logs, _guard) = gateway_tests::LogCapture::install();
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().close_links(4001);
    let answered = wait_until(T, "the host's close answer", || {
        sim.control().close_replies() == 1
    })
    .await;
    assert!(answered.is_ok(), "{}", logs.text());
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    sim.control().emit(3);
    collect(&mut sub, 3, T).await?;
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
