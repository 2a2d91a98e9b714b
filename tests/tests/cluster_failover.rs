//! Cluster failover between processes (issue 12's must-show): three `gateway-host serve`
//! processes share one upstream link emitting 200 events/s; the link holder is killed with
//! SIGKILL; another host takes the link within the lease TTL plus the upstream resume, and
//! a client that was on the dead host reconnects to another host with `Last-Event-ID` and
//! gets every event after it: no gap, no duplicate, no `reset`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gateway_host::auth::Authenticator;
use gateway_host::config::Secret;
use gateway_sim::{SimConfig, Simulator};
use gateway_tests::TOKEN;
use gateway_tests::cluster_process::{HostProcess, JWT_SECRET};
use gateway_tests::nats::NatsServer;
use gateway_tests::sse_client::{SseResponse, get};

const T: Duration = Duration::from_secs(15);

fn bearer() -> anyhow::Result<String> {
    let auth = Authenticator::new(&Secret::new(JWT_SECRET));
    let token = auth.mint(
        "100000000000000001",
        vec!["*".into()],
        vec![],
        Duration::from_secs(600),
    )?;
    Ok(format!("Bearer {token}"))
}

/// `(stream id, upstream seq, event name)` of one event.
type Seen = (u64, u64, String);

/// Reads events until the stream ends or `until` returns true; returns what was read.
async fn read_until(
    r: &mut SseResponse,
    seen: &mut Vec<Seen>,
    mut until: impl FnMut(&[Seen]) -> bool,
) -> anyhow::Result<bool> {
    loop {
        if until(seen) {
            return Ok(true);
        }
        match r.next_event(T).await {
            Ok(Some((Some(id), name, data))) => {
                let id: u64 = id.parse().context("cluster ids are numbers")?;
                let seq = data["upstreamSeq"].as_u64().unwrap_or(0);
                seen.push((id, seq, name));
            }
            Ok(Some((None, name, data))) => anyhow::bail!("an event without id: {name} {data}"),
            // The host died under the client.
            Ok(None) | Err(_) => return Ok(false),
        }
    }
}

/// The neighbours in `values` that are not `n, n + 1` (a gap or a repeat).
fn not_consecutive(values: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let values: Vec<u64> = values.collect();
    values
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_link_holder_under_200_events_per_second_loses_and_repeats_nothing()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let mut sim_config = SimConfig::new(TOKEN);
    sim_config.rate = 200.0;
    sim_config.replay_capacity = 100_000;
    let sim = Simulator::start(sim_config).await?;
    let mut hosts = Vec::new();
    for id in ["proc-a", "proc-b", "proc-c"] {
        hosts.push(HostProcess::start(&nats.url(), &sim.url(), TOKEN, id)?);
    }
    let deadline = Instant::now() + T;
    let holder = loop {
        let holding: Vec<usize> = (0..3).filter(|&i| hosts[i].holds_link()).collect();
        if holding.len() == 1 {
            break holding[0];
        }
        anyhow::ensure!(Instant::now() < deadline, "no single holder: {holding:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let auth = bearer()?;
    let headers = [("Authorization", auth.as_str())];

    // A client on the holder's host reads for a while (≈ 1 s of events).
    let mut on_holder = get(&hosts[holder].addr, "/api/stream", &headers).await?;
    anyhow::ensure!(on_holder.status == 200, "stream refused");
    let mut seen = Vec::new();
    read_until(&mut on_holder, &mut seen, |s| s.len() >= 200).await?;

    // SIGKILL the holder; the client's stream dies with it.
    let killed_at = Instant::now();
    hosts[holder].kill();
    read_until(&mut on_holder, &mut seen, |_| false).await?;
    let last_id = seen.last().map(|s| s.0).context("events before the kill")?;

    // Another host takes the link.
    let others: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    let new_holder = loop {
        if let Some(&i) = others.iter().find(|&&i| hosts[i].holds_link()) {
            break i;
        }
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no host took the link after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took_link = killed_at.elapsed();

    // The client reconnects to the host that is *not* the new holder: any host serves it.
    let other = others
        .iter()
        .copied()
        .find(|&i| i != new_holder)
        .context("third host")?;
    let id = last_id.to_string();
    let resumed_headers = [
        ("Authorization", auth.as_str()),
        ("Last-Event-ID", id.as_str()),
    ];
    let mut resumed = get(&hosts[other].addr, "/api/stream", &resumed_headers).await?;
    anyhow::ensure!(resumed.status == 200, "resume refused");
    let before = seen.len();
    // Read on until well past the failover: 2 s of events after the resume point.
    let target = seen[before - 1].1 + 400;
    let ok = read_until(&mut resumed, &mut seen, |s| {
        s.last().is_some_and(|l| l.1 >= target)
    })
    .await?;
    anyhow::ensure!(ok, "the resumed stream ended");
    let first_new_event = killed_at.elapsed();

    let resets: Vec<&Seen> = seen.iter().filter(|s| s.2 == "reset").collect();
    assert!(resets.is_empty(), "no loss announced: {resets:?}");
    let gaps = not_consecutive(seen.iter().map(|s| s.0));
    assert!(gaps.is_empty(), "event ids without gap or repeat: {gaps:?}");
    let seq_gaps = not_consecutive(seen.iter().map(|s| s.1));
    assert!(
        seq_gaps.is_empty(),
        "every upstream event exactly once across the failover: {seq_gaps:?}"
    );
    // One live upstream link again.
    assert_eq!(sim.control().live_links(), 1);
    eprintln!(
        "failover: link taken {took_link:?} after SIGKILL; {} events before, {} after; resumed stream caught up {first_new_event:?} after the kill",
        before,
        seen.len() - before
    );
    Ok(())
}
