//! The sequence rules against the real simulator: no seq anomaly stops delivery or
//! drops events silently. Each anomaly is counted (the stats mirror
//! `gateway_link_seq_resyncs_total` / `gateway_link_replay_gaps_total`), logged at WARN,
//! and events after a real loss carry `loss_before`.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_host::link::session::reason;
use gateway_tests::{LogCapture, collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

/// The Prometheus text of this test process (the recorder is process-wide, so counts
/// from other tests of this file add up: assert on presence and lower bounds only).
fn metric(name_and_labels: &str) -> f64 {
    gateway_host::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn seqs(events: &[std::sync::Arc<gateway_host::bus::BusEvent>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn one_far_ahead_seq_does_not_stop_delivery() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let (session, _) = sim.control().session();
    sim.control().emit(10);
    collect(&mut sub, 10, T).await?;

    sim.control().send_stray_event(1_000_000);
    wait_until(T, "a resync", || link.stats().resyncs == 1).await?;
    sim.control().emit(20);
    let events = collect(&mut sub, 20, T).await?;
    assert_eq!(seqs(&events), (11..=30).collect::<Vec<_>>());
    assert!(
        events.iter().all(|e| e.loss_before.is_none()),
        "the resume filled everything: no loss to report"
    );
    assert_eq!(link.stats().gaps, 0);
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("seq anomaly") && l.contains(&*session)),
        "{text}"
    );
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_real_seq_jump_is_taken_after_one_resync_and_marked_as_loss() -> anyhow::Result<()> {
    gateway_host::metrics::install();
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let (session, _) = sim.control().session();
    sim.control().emit(10);
    collect(&mut sub, 10, T).await?;

    sim.control().jump_seq(1_000_000);
    sim.control().emit(10);
    let events = collect(&mut sub, 10, T).await?;
    assert_eq!(seqs(&events), (1_000_011..=1_000_020).collect::<Vec<_>>());
    assert_eq!(events[0].loss_before, Some(reason::SEQ_GAP));
    assert!(events[1..].iter().all(|e| e.loss_before.is_none()));
    let stats = link.stats();
    assert_eq!((stats.resyncs, stats.gaps), (1, 1), "{stats:?}");
    assert!(metric("gateway_link_seq_resyncs_total{reason=\"seq_jump\"}") >= 1.0);
    assert!(metric("gateway_link_replay_gaps_total") >= 1.0);
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("could not fill a seq hole")
            && l.contains(&*session)),
        "{text}"
    );
    sim.control().emit(5);
    assert_eq!(collect(&mut sub, 5, T).await?[4].seq, 1_000_025);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_upstream_restart_that_keeps_its_session_id_does_not_stop_delivery() -> anyhow::Result<()>
{
    gateway_host::metrics::install();
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let (session, _) = sim.control().session();
    sim.control().emit(30);
    collect(&mut sub, 30, T).await?;

    assert_eq!(sim.control().restart_keeping_session_id(), session);
    sim.control().emit(5); // emitted while the host reconnects: replayed after it
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    sim.control().emit(5);
    let events = collect(&mut sub, 10, T).await?;
    assert_eq!(seqs(&events), (1..=10).collect::<Vec<_>>());
    assert_eq!(events[0].loss_before, Some(reason::RENUMBERED));
    assert!(events.iter().all(|e| *e.session_id == *session));
    assert_eq!(link.stats().resyncs, 1);
    assert_eq!(link.stats().gaps, 1);
    assert!(metric("gateway_link_seq_resyncs_total{reason=\"renumbered\"}") >= 1.0);
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("reused its session id")
            && l.contains(&*session)),
        "{text}"
    );
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_upstream_that_claims_to_resume_a_point_it_never_had_does_not_stop_delivery()
-> anyhow::Result<()> {
    let sim = start_sim().await?;
    sim.control().set_claim_resumed(true);
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().emit(50);
    collect(&mut sub, 50, T).await?;

    // The failure: same id after the restart, and `resumed: true` to lastSeq 50.
    sim.control().restart_keeping_session_id();
    sim.control().emit(3);
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    for round in 1..=3u64 {
        sim.control().emit(5);
        let events = collect(&mut sub, 5, T).await?;
        assert_eq!(events[4].seq, 3 + 5 * round, "round {round}");
        if round == 1 {
            assert_eq!(events[0].loss_before, Some(reason::RENUMBERED));
        }
    }
    assert_eq!(link.stats().resyncs, 1);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_new_session_marks_its_first_event() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().emit(3);
    let before = collect(&mut sub, 3, T).await?;
    assert!(before.iter().all(|e| e.loss_before.is_none()));
    sim.control().restart_session();
    wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    sim.control().emit(2);
    let after = collect(&mut sub, 2, T).await?;
    assert_eq!(after[0].loss_before, Some(reason::NEW_SESSION));
    assert_eq!(after[1].loss_before, None);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
