//! Pings measure the round-trip time: the RTT histogram is fed and the last value is
//! readable from the handle.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::{link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn rtt_is_measured() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, _sub, link) = link_to(&sim, |c| c.ping_interval = Duration::from_millis(50));
    wait_state(&link, LinkState::Connected, T).await?;
    wait_until(T, "3 RTT samples", || link.stats().rtt_samples >= 3).await?;
    let rtt = link
        .last_rtt()
        .ok_or_else(|| anyhow::anyhow!("no RTT recorded"))?;
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_secs(1),
        "rtt {rtt:?}"
    );
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
