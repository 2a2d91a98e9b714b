//! `/api/stream` end to end: real simulator, real link, real router component, real
//! sockets. Topic filtering, envelope, order, resume, reset, heartbeat, auth, cap, CORS,
//! and a router swap that keeps every subscriber.

use std::collections::HashSet;
use std::time::Duration;

use gateway_host::policy::SlotKind;
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::policy::HOSTILE_ROUTER;
use gateway_tests::sse_client::{SseItem, SseResponse, get};
use gateway_tests::wait_until;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

/// The guild ids of the events the simulator has sent from `from_seq` on, in seq order.
fn upstream_guilds(h: &TestHost, from_seq: u64) -> Vec<(u64, Option<String>)> {
    h.sim
        .control()
        .event_frames(from_seq)
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f).expect("sim frame is JSON");
            (
                v["seq"].as_u64().expect("seq"),
                v["d"]["guild_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

async fn open(h: &TestHost, query: &str, topics: &[&str], extra: &[(&str, &str)]) -> SseResponse {
    let auth = h.bearer(topics);
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let r = get(&h.addr, &format!("/api/stream{query}"), &headers)
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    r
}

/// Read `n` events.
async fn read_events(r: &mut SseResponse, n: usize) -> Vec<(String, String, Value)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (id, name, data) = r
            .next_event(T)
            .await
            .expect("event in time")
            .expect("stream open");
        out.push((id.expect("every event has an id"), name, data));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_subscriber_gets_exactly_that_guilds_events_in_order() -> anyhow::Result<()> {
    let h = start_host(|_| {}).await?;
    let mut all = open(&h, "?topics=*", &["*"], &[]).await;
    h.sim.control().emit(300);
    let upstream = upstream_guilds(&h, 1);
    let guild = upstream
        .iter()
        .find_map(|(_, g)| g.clone())
        .expect("some event has a guild");
    let expected: Vec<u64> = upstream
        .iter()
        .filter(|(_, g)| g.as_deref() == Some(&guild))
        .map(|(s, _)| *s)
        .collect();
    assert!(
        expected.len() > 10 && expected.len() < 300,
        "a guild sees a share of the traffic"
    );
    // Once the catch-all client has them, the hub has published these 300.
    read_events(&mut all, 300).await;

    let mut mine = open(&h, &format!("?topics=guild:{guild}"), &["guild:*"], &[]).await;
    // Everything emitted so far is before `mine` connected; emit the measured batch now.
    let first_new = upstream.last().map(|(s, _)| s + 1).unwrap_or(1);
    h.sim.control().emit(300);
    let upstream = upstream_guilds(&h, first_new);
    let expected: Vec<u64> = upstream
        .iter()
        .filter(|(_, g)| g.as_deref() == Some(&guild))
        .map(|(s, _)| *s)
        .collect();
    // The catch-all client receives the 300 new ones, so the hub has routed everything.
    read_events(&mut all, 300).await;

    let got = read_events(&mut mine, expected.len()).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, _, d)| d["upstreamSeq"].as_u64().expect("upstreamSeq"))
        .collect();
    assert_eq!(
        seqs, expected,
        "exactly guild {guild}'s events, in seq order"
    );
    let mut last_host_seq = 0;
    for (id, name, env) in &got {
        assert_eq!(env["version"], "1.0");
        assert_eq!(env["id"].as_str(), Some(id.as_str()));
        assert_eq!(env["type"].as_str(), Some(name.as_str()));
        assert!(env["traceId"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(env["guildId"].as_str(), Some(guild.as_str()));
        assert!(env["timestamp"].as_u64().is_some() && env["data"].is_object());
        let host_seq: u64 = id
            .split_once('-')
            .and_then(|(_, s)| s.parse().ok())
            .expect("epoch-seq id");
        assert!(host_seq > last_host_seq, "host ids increase");
        last_host_seq = host_seq;
    }
    // Nothing else is pending for this client.
    assert!(
        mine.next_event(Duration::from_millis(300)).await.is_err(),
        "no extra event"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_event_id_gets_exactly_the_missed_events() -> anyhow::Result<()> {
    let h = start_host(|c| c.stream.heartbeat_ms = 60_000).await?;
    let mut first = open(&h, "", &["*"], &[]).await;
    assert_eq!(
        first.next(T).await?,
        Some(SseItem::Retry(3000)),
        "a retry hint opens the stream"
    );
    h.sim.control().emit(20);
    let seen = read_events(&mut first, 20).await;
    drop(first);
    h.sim.control().emit(30);
    wait_until(T, "hub published 50", || {
        h.host().hub.last_id().is_some_and(|id| id.seq == 50)
    })
    .await?;

    let last = seen.last().map(|(id, _, _)| id.clone()).expect("an id");
    let mut resumed = open(&h, "", &["*"], &[("Last-Event-ID", &last)]).await;
    h.sim.control().emit(1);
    let got = read_events(&mut resumed, 31).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, _, d)| d["upstreamSeq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (21..=51).collect::<Vec<_>>(),
        "the 30 missed, then live, no gap, no repeat"
    );

    // The same through ?lastEventId= (EventSource's first connect cannot set the header).
    let mut by_query = open(&h, &format!("?lastEventId={last}"), &["*"], &[]).await;
    let got = read_events(&mut by_query, 31).await;
    assert_eq!(got[0].2["upstreamSeq"], 21);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_host_cannot_place_gets_reset() -> anyhow::Result<()> {
    let h = start_host(|c| c.stream.replay_capacity = 8).await?;
    let mut live = open(&h, "", &["*"], &[]).await;
    h.sim.control().emit(30);
    let seen = read_events(&mut live, 30).await;
    let epoch = seen[0]
        .0
        .split_once('-')
        .map(|(e, _)| e.to_string())
        .expect("epoch");
    for (id, why) in [
        (format!("{epoch}-2"), "older than the replay ring"),
        (
            format!("{}-25", epoch.parse::<u64>()? - 1),
            "another host epoch",
        ),
        ("not-an-id".to_string(), "not a host event id"),
        (format!("{epoch}-999"), "ahead of the newest event"),
    ] {
        let mut r = open(&h, "", &["*"], &[("Last-Event-ID", &id)]).await;
        let (reset_id, name, data) = r.next_event(T).await?.expect("an event");
        assert_eq!((name.as_str(), reset_id), ("reset", None), "{id}");
        assert!(
            data["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{id}: {data}"
        );
        assert_eq!(data["lastEventId"].as_str(), Some(id.as_str()));
        h.sim.control().emit(1);
        let (_, _, next) = r
            .next_event(T)
            .await?
            .expect("live events follow the reset");
        assert!(next["upstreamSeq"].as_u64().is_some());
        read_events(&mut live, 1).await;
    }
    // An id inside the ring replays normally.
    let mut ok = open(&h, "", &["*"], &[("Last-Event-ID", &seen[27].0)]).await;
    let (_, name, data) = ok.next_event(T).await?.expect("replayed event");
    assert_eq!(
        (name.as_str(), data["upstreamSeq"].as_u64()),
        (seen[28].1.as_str(), Some(29))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_comments_arrive_at_the_configured_interval() -> anyhow::Result<()> {
    let h = start_host(|c| c.stream.heartbeat_ms = 200).await?;
    let mut r = open(&h, "", &["*"], &[]).await;
    let start = tokio::time::Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        if let Some(SseItem::Comment(c)) = r.next(Duration::from_secs(5)).await? {
            assert_eq!(c, "heartbeat");
            beats.push(start.elapsed());
        }
    }
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150) && gap <= Duration::from_millis(1500),
            "gap {gap:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_topic_errors() -> anyhow::Result<()> {
    let h = start_host(|_| {}).await?;
    let r = get(&h.addr, "/api/stream", &[]).await?;
    assert_eq!(r.status, 401);
    let body = r.json().await?;
    assert_eq!(
        (body["version"].as_str(), body["error"]["code"].as_str()),
        (Some("1.0"), Some("unauthorized"))
    );
    assert!(body["traceId"].is_string());

    let r = get(
        &h.addr,
        "/api/stream",
        &[("Authorization", "Bearer nonsense")],
    )
    .await?;
    assert_eq!(r.status, 401);
    let wrong = gateway_host::auth::Authenticator::new(&gateway_host::config::Secret::new("other"))
        .mint("1", vec!["*".into()], vec![], Duration::from_secs(60))?;
    let r = get(
        &h.addr,
        "/api/stream",
        &[("Cookie", &format!("gateway_token={wrong}"))],
    )
    .await?;
    assert_eq!(r.status, 401, "a token signed with another secret");

    let auth = h.bearer(&["guild:1", "channel:*"]);
    let r = get(
        &h.addr,
        "/api/stream?topics=guild:2",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(r.status, 403);
    let body = r.json().await?;
    assert_eq!(body["error"]["code"], "forbidden_topic");
    assert_eq!(body["error"]["topics"], serde_json::json!(["guild:2"]));
    let r = get(
        &h.addr,
        "/api/stream?topics=guild:*",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(r.status, 403, "a wildcard wider than the grant");
    let r = get(
        &h.addr,
        "/api/stream?topics=guild:1,bad%20topic",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(r.status, 400);
    // The cookie works like the header (EventSource cannot send headers).
    let token = h.token("7", &["guild:1"]);
    let r = get(
        &h.addr,
        "/api/stream?topics=guild:1",
        &[("Cookie", &format!("gateway_token={token}"))],
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_and_cors() -> anyhow::Result<()> {
    let h = start_host(|c| {
        c.stream.max_clients = 2;
        c.cors_origins = vec!["http://app.example".into()];
    })
    .await?;
    let a = open(&h, "", &["*"], &[("Origin", "http://app.example")]).await;
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    let b = open(&h, "", &["*"], &[("Origin", "http://evil.example")]).await;
    assert_eq!(b.header("access-control-allow-origin"), None);
    let auth = h.bearer(&["*"]);
    let c = get(&h.addr, "/api/stream", &[("Authorization", &auth)]).await?;
    assert_eq!(c.status, 503);
    assert!(c.header("retry-after").is_some());
    // Closing a stream frees its slot.
    drop(a);
    wait_until(T, "slot freed", || h.host().hub.client_count() == 1).await?;
    open(&h, "", &["*"], &[]).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_swap_keeps_every_subscriber_and_event() -> anyhow::Result<()> {
    // Breaker off: every one of the 20 events below is a real (failed) call.
    let h = start_host(|c| c.policy.breaker.failures = 0).await?;
    let mut r = open(&h, "", &["*"], &[]).await;
    h.sim.control().emit(20);
    read_events(&mut r, 20).await;
    // Swap in a router that traps on every call: the failure policy (fail-open) routes on
    // the default topics, the stream stays open, no event is lost.
    let slot = h.host().policies.slot(SlotKind::EventRouter);
    slot.install(slot.prepare_with_config(HOSTILE_ROUTER, "test", vec![])?);
    h.sim.control().emit(20);
    let got = read_events(&mut r, 20).await;
    let seqs: HashSet<u64> = got
        .iter()
        .map(|(_, _, d)| d["upstreamSeq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (21..=40).collect());
    assert!(slot.info().current.failures >= 20);
    slot.rollback()?;
    h.sim.control().emit(5);
    read_events(&mut r, 5).await;
    assert_eq!(h.host().hub.client_count(), 1);
    Ok(())
}
