//! The simulator drops the link 20 times during a stream: the host reconnects each time
//! and resumes, and the bus sees every seq exactly once. The simulator replays with an
//! overlap (re-sends a few events the host already had), so de-duplication is exercised.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::{collect, link_to, start_sim, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);
const DROPS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_drops_lose_and_repeat_nothing() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    sim.control().set_replay_overlap(5);
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;

    // A steady stream while the link is being cut.
    let control = sim.control().clone();
    let streaming = Arc::new(AtomicBool::new(true));
    let flag = streaming.clone();
    let emitter = tokio::spawn(async move {
        while flag.load(Ordering::Relaxed) {
            control.emit(3);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    for i in 1..=DROPS {
        // Link `i` must be the live one before it is cut: the simulator counts a link just
        // after its hello, which the host may already have acted on, so comparing with a
        // count read earlier could take a stale count for the new link.
        wait_until(T, "link i live on the simulator", || {
            sim.control().links_accepted() == i && sim.control().live_links() == 1
        })
        .await?;
        wait_until(T, "some events on the live link", || {
            sim.control().session().1 >= i * 30
        })
        .await?;
        sim.control().drop_links();
        wait_until(T, "a new link after the drop", || {
            sim.control().links_accepted() > i
        })
        .await?;
    }
    streaming.store(false, Ordering::Relaxed);
    emitter.await?;
    let last = sim.control().emit(10);

    let events = collect(&mut sub, last as usize, Duration::from_secs(20)).await?;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(seqs, expected, "every seq exactly once, in order");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sub.try_recv()?.is_none(), "no event after the last seq");

    let stats = link.stats();
    assert_eq!(sim.control().links_accepted(), DROPS + 1);
    assert_eq!(stats.reconnects, DROPS);
    assert_eq!(stats.gaps, 0);
    assert!(
        stats.duplicates >= DROPS,
        "the overlap was replayed and skipped: {stats:?}"
    );
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
