//! Cluster mode end to end, hosts in this process (issue 12): three hosts share one
//! upstream link through a private `nats-server -js`; every host serves SSE from the
//! cluster's stream with the stream sequence as the event id, so a client resumes against
//! any host.

use std::time::Duration;

use anyhow::Context as _;
use gateway_tests::cluster::{ClusterHost, wait_one_holder};
use gateway_tests::nats::NatsServer;
use gateway_tests::sse_client::{SseItem, SseResponse};
use gateway_tests::{start_sim, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

/// `(id, event name, data)` of the next `n` events.
async fn read(r: &mut SseResponse, n: usize) -> anyhow::Result<Vec<(String, String, Value)>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match r.next_event(T).await? {
            Some((Some(id), name, data)) => out.push((id, name, data)),
            Some((None, name, data)) => anyhow::bail!("an event without id: {name} {data}"),
            None => anyhow::bail!("the stream ended after {} events", out.len()),
        }
    }
    Ok(out)
}

fn ids(events: &[(String, String, Value)]) -> Vec<u64> {
    events
        .iter()
        .map(|(id, _, _)| id.parse().expect("cluster ids are stream sequences"))
        .collect()
}

fn upstream_seqs(events: &[(String, String, Value)]) -> Vec<u64> {
    events
        .iter()
        .map(|(_, _, d)| d["upstreamSeq"].as_u64().expect("upstreamSeq"))
        .collect()
}

/// Three hosts of one cluster, each reading the stream, once exactly one holds the link;
/// returns them and the holder's index.
async fn three_hosts(
    nats: &NatsServer,
    sim: &gateway_sim::SimHandle,
    tweak: impl Fn(&mut gateway_host::config::Config),
) -> anyhow::Result<(Vec<ClusterHost>, usize)> {
    let mut hosts = Vec::new();
    for id in ["host-a", "host-b", "host-c"] {
        let h = ClusterHost::start(&nats.url(), sim, id, &tweak).await?;
        h.wait_reading().await?;
        hosts.push(h);
    }
    let refs: Vec<&ClusterHost> = hosts.iter().collect();
    let holder = wait_one_holder(&refs).await?;
    Ok((hosts, holder))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_one_link_every_client_gets_every_event_once_in_the_same_order_with_the_same_ids()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (hosts, _) = three_hosts(&nats, &sim, |_| {}).await?;
    wait_until(T, "the holder's link to connect", || {
        sim.control().live_links() == 1
    })
    .await?;
    let mut clients = Vec::new();
    for h in &hosts {
        clients.push(h.open_stream(None).await?);
    }
    let n = 300;
    sim.control().emit(n);
    let mut seen = Vec::new();
    for c in &mut clients {
        seen.push(read(c, n).await?);
    }
    let first = &seen[0];
    let first_ids = ids(first);
    assert!(
        first_ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids are consecutive stream sequences: {first_ids:?}"
    );
    assert_eq!(
        upstream_seqs(first),
        (1..=n as u64).collect::<Vec<_>>(),
        "every upstream event once, in order"
    );
    for (i, other) in seen.iter().enumerate().skip(1) {
        assert_eq!(ids(other), first_ids, "host {i} ids");
        assert_eq!(upstream_seqs(other), upstream_seqs(first), "host {i} order");
        for ((_, name_a, a), (id, name_b, b)) in first.iter().zip(other) {
            assert_eq!(name_a, name_b);
            assert_eq!(a, b, "the same frame on every host");
            assert_eq!(
                b["id"].as_str(),
                Some(id.as_str()),
                "the envelope id is the event id"
            );
        }
    }
    assert_eq!(
        sim.control().links_accepted(),
        1,
        "one upstream link for the cluster"
    );
    assert_eq!(sim.control().live_links(), 1);
    // Nothing more, nothing twice: no extra event follows on any host.
    for c in &mut clients {
        if let Ok(Some(SseItem::Event { id, event, .. })) = c.next(Duration::from_millis(300)).await
        {
            anyhow::bail!("an extra event {event} {id:?}")
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_host_from_the_stream_from_the_ring_and_from_ahead()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    // A small ring: resuming from older ids must go to the stream.
    let (hosts, _) = three_hosts(&nats, &sim, |c| c.stream.replay_capacity = 20).await?;
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    let mut on_a = a.open_stream(None).await?;
    sim.control().emit(100);
    let first = read(&mut on_a, 100).await.context("reading on A")?;
    drop(on_a);
    let base = ids(&first)[99];
    sim.control().emit(100);
    wait_until(T, "host B to read 200 frames", || {
        b.hub.last_id().map(|id| id.seq) == Some(base + 100)
    })
    .await?;

    // Older than B's ring (it holds the last 20): caught up from the stream, then live.
    let mut on_b = b.open_stream(Some(&base.to_string())).await?;
    let next = read(&mut on_b, 100).await.context("catching up on B")?;
    assert_eq!(
        ids(&next),
        (base + 1..=base + 100).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(upstream_seqs(&next), (101..=200).collect::<Vec<_>>());
    sim.control().emit(5);
    let live = read(&mut on_b, 5).await.context("live on B")?;
    assert_eq!(upstream_seqs(&live), (201..=205).collect::<Vec<_>>());
    assert_eq!(ids(&live), (base + 101..=base + 105).collect::<Vec<_>>());

    // Inside C's ring.
    wait_until(T, "host C to read 205 frames", || {
        c.hub.last_id().map(|id| id.seq) == Some(base + 105)
    })
    .await?;
    let mut on_c = c.open_stream(Some(&(base + 95).to_string())).await?;
    let tail = read(&mut on_c, 10).await.context("from C's ring")?;
    assert_eq!(upstream_seqs(&tail), (196..=205).collect::<Vec<_>>());

    // An id the stream never issued: a reset, then live events.
    let mut ahead = c.open_stream(Some(&(base + 10_000).to_string())).await?;
    let (id, name, data) = ahead
        .next_event(T)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ended"))?;
    assert_eq!(name, "reset", "{data}");
    assert_eq!(id, None);
    assert_eq!(data["cause"], "unplaceable_id");
    // The largest id there is (the sequence after it does not exist): the same answer.
    let mut at_max = c.open_stream(Some(&u64::MAX.to_string())).await?;
    let (_, name, data) = at_max
        .next_event(T)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ended"))?;
    assert_eq!(name, "reset", "{data}");
    assert_eq!(data["cause"], "unplaceable_id");
    sim.control().emit(1);
    let after = read(&mut ahead, 1).await?;
    assert_eq!(upstream_seqs(&after), vec![206]);
    let after = read(&mut at_max, 1).await?;
    assert_eq!(upstream_seqs(&after), vec![206]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_holder_stop_hands_the_link_over_and_resumes_the_upstream_session()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (mut hosts, holder) = three_hosts(&nats, &sim, |_| {}).await?;
    let watcher = (holder + 1) % 3;
    let mut client = hosts[watcher].open_stream(None).await?;
    sim.control().emit(50);
    let before = read(&mut client, 50).await?;
    let old = hosts.remove(holder);
    old.stop().await?;
    let refs: Vec<&ClusterHost> = hosts.iter().collect();
    wait_one_holder(&refs).await?;
    // Events emitted while nobody held the link are replayed by the upstream on resume.
    sim.control().emit(50);
    let after = read(&mut client, 50).await?;
    let mut all = before.clone();
    all.extend(after);
    assert_eq!(upstream_seqs(&all), (1..=100).collect::<Vec<_>>());
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|w| w[1] == w[0] + 1), "{all_ids:?}");
    assert!(
        all.iter().all(|(_, name, _)| name != "reset"),
        "the upstream session was resumed: no loss"
    );
    assert_eq!(sim.control().links_accepted(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_event_posted_on_one_host_reaches_sse_and_legacy_clients_on_the_others()
-> anyhow::Result<()> {
    use gateway_tests::commands::{Request, app_events_with_voice};
    use gateway_tests::legacy_ws::{Auth, connect};
    const GUILD: &str = "300000000000000001";
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (hosts, holder) = three_hosts(&nats, &sim, app_events_with_voice).await?;
    // Posted on a host that does not hold the link; watched on the other two.
    let (poster, sse_host, legacy_host) = ((holder + 1) % 3, holder, (holder + 2) % 3);
    let mut sse = hosts[sse_host].open_stream(None).await?;
    let viewer = hosts[legacy_host]
        .bearer("100000000000000001", &["*"])
        .trim_start_matches("Bearer ")
        .to_string();
    let (mut legacy, _) = connect(&hosts[legacy_host].addr, Auth::Header(&viewer)).await?;
    legacy.join(GUILD).await?;
    let publisher = hosts[poster].auth.mint_with_publish(
        "200000000000000001",
        vec![format!("guild:{GUILD}")],
        vec![],
        vec!["APP_*".into()],
        Duration::from_secs(600),
    )?;
    let data = serde_json::json!({"guild_id": GUILD, "note": "mic check"});
    let body = serde_json::json!({"type": "APP_VOICE_NOTICE", "data": data}).to_string();
    let reply = Request::post("/api/internal/events", body)
        .header("Content-Type", "application/json")
        .bearer(&publisher)
        .send(hosts[poster].addr.parse()?)
        .await?;
    assert_eq!(reply.status, 202);
    let trace_id = reply.json()?["traceId"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let (id, name, envelope) = sse
        .next_event(T)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ended"))?;
    assert_eq!(name, "APP_VOICE_NOTICE", "the first event of the stream");
    assert_eq!(envelope["traceId"], trace_id.as_str());
    assert_eq!(envelope["data"], data);
    let id = id.unwrap_or_default();
    assert!(id.parse::<u64>().is_ok(), "a stream sequence: {id}");
    assert_eq!(envelope["id"], id.as_str());
    // The first event frame (the bridge may send other ops, such as heartbeats).
    let frame = loop {
        let frame = legacy.next(T).await?;
        if frame["op"] == "event" {
            break frame;
        }
    };
    assert_eq!(frame["type"], "APP_VOICE_NOTICE");
    assert_eq!(frame["traceId"], trace_id.as_str());
    assert_eq!(frame["data"], data);
    // Upstream events follow on the same stream, in order.
    sim.control().emit(3);
    let next = read(&mut sse, 3).await?;
    assert_eq!(upstream_seqs(&next), vec![1, 2, 3]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_pauses_the_cluster_and_loses_nothing() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (hosts, _) = three_hosts(&nats, &sim, |_| {}).await?;
    let mut clients = Vec::new();
    for h in &hosts {
        clients.push(h.open_stream(None).await?);
    }
    sim.control().emit(20);
    for c in &mut clients {
        read(c, 20).await?;
    }
    nats.kill();
    // Nobody can hold the link without NATS: the holder steps down and closes it.
    wait_until(T, "every host to step down", || {
        hosts.iter().all(|h| !h.holds_link()) && sim.control().live_links() == 0
    })
    .await?;
    // Emitted while the cluster is cut off: the upstream keeps them for the resume.
    sim.control().emit(20);
    nats.restart()?;
    let refs: Vec<&ClusterHost> = hosts.iter().collect();
    wait_one_holder(&refs).await?;
    sim.control().emit(20);
    for (i, c) in clients.iter_mut().enumerate() {
        let after = read(c, 40)
            .await
            .with_context(|| format!("client on host {i}"))?;
        assert_eq!(
            upstream_seqs(&after),
            (21..=60).collect::<Vec<_>>(),
            "host {i}: the same open stream goes on without a gap or a repeat"
        );
        assert!(after.iter().all(|(_, name, _)| name != "reset"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_posted_to_hosts_without_the_link_are_delivered_once_and_limited_as_one_bucket()
-> anyhow::Result<()> {
    use gateway_host::link::LinkState;
    use gateway_tests::commands::{Request, limiter_config};
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (hosts, holder) = three_hosts(&nats, &sim, |c| {
        limiter_config(
            c,
            &[
                ("burst", "4"),
                ("refill-tokens", "4"),
                ("refill-interval-ms", "600000"),
            ],
        )
    })
    .await?;
    for h in &hosts {
        gateway_tests::wait_state(&h.link, LinkState::Connected, T).await?;
    }
    let post = |h: &ClusterHost, user: &str, content: String| {
        let token = h.bearer(user, &["*"]);
        let addr = h.addr.clone();
        async move {
            let body = serde_json::json!({"channelId": "77", "content": content}).to_string();
            Request::post("/api/commands/send-message", body)
                .header("Content-Type", "application/json")
                .header("Authorization", &token)
                .send(addr.parse()?)
                .await
        }
    };

    // Delivered once through a host that does not hold the link; read back there.
    let other = &hosts[(holder + 1) % 3];
    let reply = post(other, "1001", "through a non-holder".into()).await?;
    // 200 with the outcome, or 202 when the ack takes longer than ack-wait (a loaded machine).
    assert!(matches!(reply.status, 200 | 202), "{}", reply.body);
    let request_id = reply.json()?["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let status = Request::get(&format!("/api/commands/{request_id}"))
            .header("Authorization", &other.bearer("1001", &["*"]))
            .send(other.addr.parse()?)
            .await?;
        assert_eq!(
            status.status, 200,
            "read back on the accepting host: {}",
            status.body
        );
        let outcome = status.json()?["outcome"].clone();
        if outcome == "delivered" {
            break;
        }
        assert_eq!(outcome, "pending", "{}", status.body);
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let carried: Vec<_> = sim
        .received_commands()
        .into_iter()
        .filter(|r| r.command.request_id == request_id)
        .collect();
    assert_eq!(carried.len(), 1, "exactly once upstream");

    // One user's bucket (burst 4) holds across the three hosts.
    let mut answers = Vec::new();
    for i in 0..9 {
        let reply = post(&hosts[i % 3], "2002", format!("burst {i}")).await?;
        answers.push(reply.status);
    }
    assert_eq!(
        answers.iter().filter(|s| matches!(**s, 200 | 202)).count(),
        4,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 429).count(),
        5,
        "{answers:?}"
    );
    wait_until(T, "the 4 accepted commands upstream", || {
        sim.received_commands()
            .iter()
            .filter(|r| !r.duplicate)
            .count()
            > 4
    })
    .await?;
    assert_eq!(
        sim.received_commands()
            .iter()
            .filter(|r| !r.duplicate)
            .count(),
        1 + 4,
        "a 429 never reaches the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_loaded_on_one_host_is_live_on_all_three_within_seconds() -> anyhow::Result<()>
{
    use gateway_host::policy::version::sha256_hex;
    use gateway_tests::policy::REDACTING_ROUTER;
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let (hosts, holder) = three_hosts(&nats, &sim, |_| {}).await?;
    let mut clients = Vec::new();
    for h in &hosts {
        clients.push(h.open_stream(None).await?);
    }
    // Loaded through a host that does not hold the link (which is where routing happens).
    let loader = &hosts[(holder + 1) % 3];
    let sha = sha256_hex(REDACTING_ROUTER);
    let started = std::time::Instant::now();
    let (status, body) = loader
        .admin()?
        .put_with_config(
            "event-router",
            REDACTING_ROUTER,
            "tag = \"cluster-wide\"\ntrap-every = 0\n",
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let live_sha = |h: &ClusterHost| -> anyhow::Result<String> {
        let readyz = h.cluster.components.sync_status();
        let router = readyz
            .iter()
            .find(|s| s.slot == gateway_host::policy::SlotKind::EventRouter)
            .ok_or_else(|| anyhow::anyhow!("event-router sync status"))?;
        Ok(router.local_sha256.clone())
    };
    wait_until(
        Duration::from_secs(10),
        "the new router live on all three hosts",
        || hosts.iter().all(|h| live_sha(h).is_ok_and(|s| s == sha)),
    )
    .await?;
    eprintln!(
        "component live on all three hosts {:?} after the PUT",
        started.elapsed()
    );
    // Its effect is seen from every host: events are routed (on the holder) by it.
    sim.control().emit(30);
    for (i, c) in clients.iter_mut().enumerate() {
        let events = read(c, 30).await?;
        let messages: Vec<_> = events
            .iter()
            .filter(|(_, name, _)| name == "MESSAGE_CREATE")
            .collect();
        assert!(!messages.is_empty(), "the simulator sends messages");
        assert!(
            messages
                .iter()
                .all(|(_, _, d)| d["data"]["redactedBy"] == "cluster-wide"),
            "host {i} serves the new router's frames"
        );
    }
    Ok(())
}
