//! The refuse-auth fault: attempts are refused while it is on, and the link recovers
//! on its own once it is lifted.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_sim::AttemptOutcome;
use gateway_tests::{link_to, start_sim, wait_until};

#[tokio::test(flavor = "current_thread")]
async fn refuse_auth_fault_then_recovery() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    sim.control().set_refuse_auth(true);
    let (_bus, _sub, link) = link_to(&sim, |_| {});
    wait_until(Duration::from_secs(10), "3 refused attempts", || {
        sim.control().attempts().len() >= 3
    })
    .await?;
    assert!(link.state() != LinkState::Connected);
    sim.control().set_refuse_auth(false);
    gateway_tests::wait_state(&link, LinkState::Connected, Duration::from_secs(10)).await?;
    let refused = sim
        .control()
        .attempts()
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Refused)
        .count();
    assert!(refused >= 3);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
