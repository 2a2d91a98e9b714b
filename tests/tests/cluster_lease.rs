//! Cluster mode (issue 12): the link-holder lease in JetStream KV, against a real
//! `nats-server -js` started per test.

use std::time::Duration;

use anyhow::Context;
use gateway_host::cluster::config::ClusterSettings;
use gateway_host::cluster::lease::{self, LeaseHandle, ResumePoint};
use gateway_host::cluster::{self, Nats};
use gateway_tests::nats::NatsServer;
use gateway_tests::{bounded, wait_until};
use tokio::time::Instant;

const TTL: Duration = Duration::from_millis(1000);
const RETRY: Duration = Duration::from_millis(50);

fn settings(server: &NatsServer, name: &str) -> ClusterSettings {
    let mut s = ClusterSettings::new(server.url());
    s.holder_id = name.into();
    s.lease_ttl = TTL;
    s.renew_every = Duration::from_millis(250);
    s.acquire_every = RETRY;
    s.request_timeout = Duration::from_millis(500);
    s.validate().expect("test settings valid");
    s
}

/// One "host": its own NATS connection and its own contender.
async fn contender(server: &NatsServer, name: &str) -> anyhow::Result<(Nats, LeaseHandle)> {
    let nats = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    let handle = lease::spawn(nats.jetstream.clone(), settings(server, name));
    Ok((nats, handle))
}

fn leaders(handles: &[&LeaseHandle]) -> Vec<String> {
    handles
        .iter()
        .filter(|h| h.is_leader())
        .map(|h| h.holder_id().to_owned())
        .collect()
}

/// Samples every 5 ms for `during`: never more than one leader.
async fn never_two_leaders(handles: &[&LeaseHandle], during: Duration) -> anyhow::Result<usize> {
    let end = Instant::now() + during;
    let mut samples_with_one = 0;
    while Instant::now() < end {
        let now = leaders(handles);
        anyhow::ensure!(now.len() <= 1, "two leaders at once: {now:?}");
        if now.len() == 1 {
            samples_with_one += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(samples_with_one)
}

async fn wait_for_leader(handles: &[&LeaseHandle], within: Duration) -> anyhow::Result<String> {
    wait_until(within, "a leader", || leaders(handles).len() == 1).await?;
    Ok(leaders(handles).remove(0))
}

#[tokio::test]
async fn two_contenders_exactly_one_leader_across_renewals() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let (_na, a) = contender(&server, "host-a").await?;
    let (_nb, b) = contender(&server, "host-b").await?;
    let first = wait_for_leader(&[&a, &b], Duration::from_secs(5)).await?;
    // Several renewal periods: exactly one leader at every sample, and the same one.
    let with_one = never_two_leaders(&[&a, &b], Duration::from_millis(1500)).await?;
    assert!(with_one > 0);
    assert_eq!(leaders(&[&a, &b]), vec![first]);
    Ok(())
}

#[tokio::test]
async fn three_contenders_exactly_one_leader_and_the_lease_names_it() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let (_na, a) = contender(&server, "host-a").await?;
    let (_nb, b) = contender(&server, "host-b").await?;
    let (nc, c) = contender(&server, "host-c").await?;
    let all = [&a, &b, &c];
    let leader = wait_for_leader(&all, Duration::from_secs(5)).await?;
    never_two_leaders(&all, Duration::from_millis(1500)).await?;
    let store = lease::open_bucket(&nc.jetstream, &settings(&server, "reader")).await?;
    let (value, _rev) = lease::read(&store, "link")
        .await?
        .context("the lease is held")?;
    assert_eq!(value.holder, leader);
    Ok(())
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_within_ttl_plus_one_retry() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let (_na, a) = contender(&server, "host-a").await?;
    let (_nb, b) = contender(&server, "host-b").await?;
    let (_nc, c) = contender(&server, "host-c").await?;
    let leader = wait_for_leader(&[&a, &b, &c], Duration::from_secs(5)).await?;
    // Stop the leader's contender without releasing (as a crash would).
    let mut rest = Vec::new();
    for h in [a, b, c] {
        if h.holder_id() == leader {
            drop(h);
        } else {
            rest.push(h);
        }
    }
    let crashed_at = Instant::now();
    let survivors: Vec<&LeaseHandle> = rest.iter().collect();
    let next = wait_for_leader(&survivors, TTL * 3).await?;
    let took = crashed_at.elapsed();
    assert_ne!(next, leader);
    // The lease expires at most TTL after the crashed holder's last renewal; a contender
    // tries every RETRY. Slack for the server's expiry timer.
    let bound = TTL + RETRY + Duration::from_millis(750);
    assert!(took <= bound, "takeover took {took:?}, bound {bound:?}");
    never_two_leaders(&survivors, Duration::from_millis(600)).await?;
    eprintln!("takeover after a crash: {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_leader_that_loses_nats_steps_down_and_regains_after_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let (_na, a) = contender(&server, "host-a").await?;
    wait_for_leader(&[&a], Duration::from_secs(5)).await?;
    let mut watch = a.watch();
    server.kill();
    let killed_at = Instant::now();
    bounded(TTL + Duration::from_millis(200), "stepping down", async {
        watch.wait_for(|leader| !*leader).await?;
        Ok(())
    })
    .await?;
    let took = killed_at.elapsed();
    assert!(took <= TTL, "stepped down after {took:?}");
    eprintln!("stepped down {took:?} after NATS died");
    // Same store, same port: the contender reconnects and takes the lease again.
    server.restart()?;
    wait_for_leader(&[&a], Duration::from_secs(15)).await?;
    Ok(())
}

#[tokio::test]
async fn a_leader_regains_the_lease_from_a_nats_server_that_lost_its_store() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let (_na, a) = contender(&server, "host-a").await?;
    wait_for_leader(&[&a], Duration::from_secs(5)).await?;
    server.restart_empty()?;
    // The bucket is gone with the store: the contender re-creates it and takes the lease.
    let mut watch = a.watch();
    bounded(Duration::from_secs(5), "stepping down", async {
        watch.wait_for(|leader| !*leader).await?;
        Ok(())
    })
    .await?;
    wait_for_leader(&[&a], Duration::from_secs(15)).await?;
    let nats = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    let store = lease::open_bucket(&nats.jetstream, &settings(&server, "reader")).await?;
    let (value, _) = lease::read(&store, "link")
        .await?
        .context("the lease is held again")?;
    assert_eq!(value.holder, "host-a");
    Ok(())
}

#[tokio::test]
async fn graceful_release_hands_over_faster_than_the_ttl() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let long = |name: &str| {
        let mut s = settings(&server, name);
        s.lease_ttl = Duration::from_secs(5);
        s.renew_every = Duration::from_secs(1);
        s
    };
    let na = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    let nb = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    let a = lease::spawn(na.jetstream.clone(), long("host-a"));
    wait_for_leader(&[&a], Duration::from_secs(5)).await?;
    let b = lease::spawn(nb.jetstream.clone(), long("host-b"));
    // b contends for a while and does not get it.
    never_two_leaders(&[&a, &b], Duration::from_millis(300)).await?;
    assert!(a.is_leader() && !b.is_leader());
    let released_at = Instant::now();
    a.release().await;
    wait_for_leader(&[&b], Duration::from_secs(5)).await?;
    let took = released_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "handover took {took:?}, TTL is 5s"
    );
    eprintln!("graceful handover: {took:?}");
    Ok(())
}

#[tokio::test]
async fn the_lease_carries_the_resume_point_and_metrics_count_changes() -> anyhow::Result<()> {
    gateway_host::metrics::install();
    let server = NatsServer::start()?;
    let (nats, a) = contender(&server, "host-a").await?;
    wait_for_leader(&[&a], Duration::from_secs(5)).await?;
    let point = ResumePoint {
        session: "sess-1".into(),
        seq: 4242,
        resume_url: None,
    };
    a.set_resume(point.clone());
    let store = lease::open_bucket(&nats.jetstream, &settings(&server, "reader")).await?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some((value, _)) = lease::read(&store, "link").await?
            && value.resume.as_ref() == Some(&point)
        {
            assert_eq!(value.holder, "host-a");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "resume point never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = gateway_host::metrics::render();
    assert!(
        text.contains(lease::METRIC_CHANGES),
        "no {} in /metrics",
        lease::METRIC_CHANGES
    );
    assert!(text.contains(lease::METRIC_LEADER));
    Ok(())
}
