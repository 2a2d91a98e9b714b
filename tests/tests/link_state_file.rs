//! The link state file: a link that stops cleanly writes its session and last seq; a new
//! link (a restarted host) with the same file resumes that upstream session and receives
//! exactly the events emitted while it was away: no loss, no repeat.

use std::time::Duration;

use gateway_host::bus::Bus;
use gateway_host::link::{self, LinkState};
use gateway_tests::{TOKEN, collect, fast_link_config, start_sim, wait_state};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_restarted_link_resumes_from_the_state_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("link-state.json");
    let sim = start_sim().await?;
    let config = || {
        let mut c = fast_link_config(&sim.url(), TOKEN);
        c.state_file = Some(path.clone());
        c
    };

    let bus = Bus::new();
    let mut sub = bus.subscribe(1000);
    let first = link::spawn(config(), bus);
    wait_state(&first, LinkState::Connected, T).await?;
    sim.control().emit(20);
    collect(&mut sub, 20, T).await?;
    first.shutdown().await;
    let saved = std::fs::read_to_string(&path)?;
    assert!(saved.contains("\"lastSeq\":20"), "{saved}");

    sim.control().emit(15); // while no host is linked

    let bus = Bus::new();
    let mut sub = bus.subscribe(1000);
    let second = link::spawn(config(), bus);
    let events = collect(&mut sub, 15, T).await?;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (21..=35).collect::<Vec<_>>()
    );
    assert!(events.iter().all(|e| e.loss_before.is_none()));
    assert_eq!(second.stats().gaps, 0);
    sim.control().emit(1);
    assert_eq!(collect(&mut sub, 1, T).await?[0].seq, 36);
    second.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
