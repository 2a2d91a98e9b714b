//! Cluster mode under faults (issue 12, from a review of the cluster code): each test is a
//! failure that lost events or wedged the cluster before its fix.
//!
//! * App events posted while the stream cannot store them are refused (`503`), and the
//!   host publishes again once NATS is back (before: one failed publish ended the app
//!   publisher for good, and every later `202` went nowhere).
//! * A batch cut in the middle (a frame lost, later ones of the batch stored) is replayed
//!   whole by the next link holder (before: it resumed after the newest stored frame, and
//!   the lost frames were gone without a `reset`), and the replayed frames the stream holds
//!   already are not stored again, even past its de-duplication window.
//! * An event larger than NATS's `max_payload` becomes a `too_large` reset and the events
//!   after it flow (before: every holder failed on it, stepped away and met it again on the
//!   resume, for ever).
//! * A NATS server that lost its store gets the stream back from the next link holder, and
//!   the hosts serve again (before: every publish failed until the hosts were restarted).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use gateway_host::cluster::lease::ResumePoint;
use gateway_host::cluster::stream::{FrameStream, ReadItem, RoutedFrame, StartAt};
use gateway_tests::cluster::{ClusterHost, fast_cluster, wait_one_holder};
use gateway_tests::commands::Request;
use gateway_tests::nats::NatsServer;
use gateway_tests::sse_client::SseResponse;
use gateway_tests::{TOKEN, fast_link_config, start_sim, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

/// The next event (name, data) on `r`, within `T` (heartbeats do not extend it).
async fn next(r: &mut SseResponse) -> anyhow::Result<(String, Value)> {
    match tokio::time::timeout(T, r.next_event(T)).await {
        Err(_) => anyhow::bail!("no event within {T:?}"),
        Ok(event) => match event? {
            Some((_, name, data)) => Ok((name, data)),
            None => anyhow::bail!("the stream ended"),
        },
    }
}

/// The stream as a test's own "host" sees it (same settings as the hosts').
async fn stream_of(nats: &NatsServer) -> anyhow::Result<FrameStream> {
    let connection = gateway_host::cluster::connect(&nats.url(), Duration::from_secs(5)).await?;
    FrameStream::open(&connection.jetstream, &fast_cluster(&nats.url(), "test")).await
}

/// Upstream seq → how many frames of the stream carry it, reading from sequence 1 until
/// `done` says so (or the deadline passes).
async fn upstream_counts(
    stream: &FrameStream,
    done: impl Fn(&BTreeMap<u64, usize>) -> bool,
) -> anyhow::Result<BTreeMap<u64, usize>> {
    let mut reader = stream.read(StartAt::Sequence(1)).await?;
    let deadline = tokio::time::Instant::now() + T;
    let mut counts = BTreeMap::new();
    while !done(&counts) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        anyhow::ensure!(!left.is_zero(), "timed out; the stream holds {counts:?}");
        if let Some(ReadItem::Frame(f)) = reader.next_within(left).await? {
            let seq = f
                .upstream
                .map(|u| u.seq)
                .context("a frame without position")?;
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

async fn post_app_event(h: &ClusterHost, note: &str) -> anyhow::Result<(u16, Value)> {
    let publisher = h.auth.mint_with_publish(
        "200000000000000001",
        vec!["guild:300000000000000001".into()],
        vec![],
        vec!["APP_*".into()],
        Duration::from_secs(600),
    )?;
    let data = serde_json::json!({"guild_id": "300000000000000001", "note": note});
    let body = serde_json::json!({"type": "APP_NOTICE", "data": data}).to_string();
    let reply = Request::post("/api/internal/events", body)
        .header("Content-Type", "application/json")
        .bearer(&publisher)
        .send(h.addr.parse()?)
        .await?;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_events_are_refused_while_nats_is_away_and_published_again_once_it_is_back()
-> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let host = ClusterHost::start(&nats.url(), &sim, "host-a", |c| {
        c.internal_events.enabled = true
    })
    .await?;
    host.wait_reading().await?;
    wait_one_holder(&[&host]).await?;
    let mut sse = host.open_stream(None).await?;

    let (status, _) = post_app_event(&host, "one").await?;
    assert_eq!(status, 202);
    let (name, data) = next(&mut sse).await?;
    assert_eq!(
        (name.as_str(), &data["data"]["note"]),
        ("APP_NOTICE", &"one".into())
    );

    nats.kill();
    wait_until(T, "the host to see NATS gone", || {
        !host.cluster.nats_connected() && !host.hub.stream_ok()
    })
    .await?;
    let (status, body) = post_app_event(&host, "two").await?;
    assert_eq!(
        status, 503,
        "not a 202 for an event that goes nowhere: {body}"
    );
    assert_eq!(body["error"]["code"], "cluster_unavailable");

    nats.restart()?;
    wait_until(T, "the host to read the stream again", || {
        host.cluster.nats_connected() && host.hub.stream_ok()
    })
    .await?;
    let (status, body) = post_app_event(&host, "three").await?;
    assert_eq!(status, 202, "{body}");
    let (name, data) = next(&mut sse).await?;
    assert_eq!(name, "APP_NOTICE");
    assert_eq!(
        data["data"]["note"], "three",
        "published after the outage (and the refused one was not)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_in_the_middle_is_replayed_whole_by_the_next_holder() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    sim.control().emit(10);
    let (session, last) = sim.control().session();
    assert_eq!(last, 10);
    // What a holder whose connection broke mid-batch leaves: 1..4 stored batch by batch,
    // then a batch 5..10 sent while 4 was the newest acknowledged, of which 5 and 6 were
    // lost and 7..10 stored after the client reconnected.
    let stream = stream_of(&nats).await?;
    for seq in (1..=4).chain(7..=10) {
        let acked = match seq {
            1 => None,
            2..=4 => Some(seq - 1),
            _ => Some(4),
        };
        stream.publish(&frame(&session, seq, acked)).await?;
    }
    let host = ClusterHost::start(&nats.url(), &sim, "host-a", |_| {}).await?;
    wait_one_holder(&[&host]).await?;
    let counts = upstream_counts(&stream, |c| c.len() >= 10).await?;
    assert_eq!(
        counts,
        (1..=10).map(|seq| (seq, 1)).collect::<BTreeMap<_, _>>(),
        "every event once: the lost ones replayed, the stored ones not stored twice"
    );
    sim.control().emit(1);
    let counts = upstream_counts(&stream, |c| c.len() >= 11).await?;
    assert_eq!(counts.get(&11), Some(&1));
    assert_eq!(counts.values().sum::<usize>(), 11, "{counts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_resuming_after_the_deduplication_window_stores_nothing_twice()
-> anyhow::Result<()> {
    const WINDOW: Duration = Duration::from_secs(1);
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    sim.control().emit(10);
    let (session, _) = sim.control().session();
    let mut settings = fast_cluster(&nats.url(), "test");
    settings.duplicate_window = WINDOW;
    let connection = gateway_host::cluster::connect(&nats.url(), Duration::from_secs(5)).await?;
    let stream = FrameStream::open(&connection.jetstream, &settings).await?;
    // A holder's whole term, every batch stored: 1..6 one by one, then 7..10 in one batch.
    for seq in 1..=10 {
        let acked = match seq {
            1 => None,
            2..=7 => Some(seq - 1),
            _ => Some(6),
        };
        stream.publish(&frame(&session, seq, acked)).await?;
    }
    // A quiet upstream: the last batch is older than the stream's de-duplication window
    // when the next holder replays it, so only the holder itself can keep it out.
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    let host = ClusterHost::start(&nats.url(), &sim, "host-a", |c| {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.duplicate_window = WINDOW;
        }
    })
    .await?;
    wait_one_holder(&[&host]).await?;
    sim.control().emit(1);
    let counts = upstream_counts(&stream, |c| c.contains_key(&11)).await?;
    assert_eq!(
        counts,
        (1..=11).map(|seq| (seq, 1)).collect::<BTreeMap<_, _>>(),
        "the replayed batch (7..10) was not stored again"
    );
    Ok(())
}

/// A frame as a link holder publishes it (the body is what the hosts serve).
fn frame(session: &str, seq: u64, acked: Option<u64>) -> RoutedFrame {
    RoutedFrame {
        upstream: ResumePoint {
            session: session.into(),
            seq,
            resume_url: None,
        },
        topics: vec!["guild:1".into()],
        to_all: false,
        body: Bytes::from(format!(
            "event: MESSAGE_CREATE\ndata: {{\"version\":\"1.0\",\"id\":\"\",\"upstreamSeq\":{seq}}}\n"
        )),
        received_ms: 0,
        loss: false,
        resumable: true,
        acked,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_the_stream_is_a_reset_and_the_events_after_it_flow()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let mut link = fast_link_config(&sim.url(), TOKEN);
    link.max_frame_bytes = 4 * 1024 * 1024;
    let host = ClusterHost::start_upstream(&nats.url(), link, "host-a", |_| {}).await?;
    host.wait_reading().await?;
    wait_one_holder(&[&host]).await?;
    let mut sse = host.open_stream(None).await?;
    // Over NATS's default max_payload (1 MiB), under the link's frame limit.
    let big = sim.control().emit_padded(1_500_000);
    let last = sim.control().emit(3);
    let (name, data) = next(&mut sse).await?;
    assert_eq!(name, "reset", "{data}");
    assert_eq!(data["cause"], "too_large");
    let reason = data["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("MESSAGE_CREATE"), "{reason}");
    for seq in big + 1..=last {
        let (name, data) = next(&mut sse).await?;
        assert_ne!(name, "reset", "{data}");
        assert_eq!(data["upstreamSeq"], seq);
    }
    assert!(host.holds_link(), "the holder kept the link");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_that_lost_its_store_gets_the_stream_back_and_the_hosts_serve_again()
-> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let sim = start_sim().await?;
    let a = ClusterHost::start(&nats.url(), &sim, "host-a", |_| {}).await?;
    let b = ClusterHost::start(&nats.url(), &sim, "host-b", |_| {}).await?;
    for h in [&a, &b] {
        h.wait_reading().await?;
    }
    wait_one_holder(&[&a, &b]).await?;
    let mut old = b.open_stream(None).await?;
    sim.control().emit(5);
    for _ in 0..5 {
        next(&mut old).await?;
    }

    nats.restart_empty()?;
    wait_one_holder(&[&a, &b]).await?;
    wait_until(T, "both hosts to read the new stream", || {
        [&a, &b]
            .iter()
            .all(|h| h.hub.id_restarts() == 1 && h.hub.stream_ok())
    })
    .await?;
    // The open stream's ids belonged to the old stream: it ends (the client resumes and
    // is told what it cannot have).
    let ended = tokio::time::timeout(T, async {
        loop {
            match old.next_event(T).await {
                Ok(None) | Err(_) => break,
                Ok(Some((_, name, _))) if name == "reset" => break,
                Ok(Some(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the old stream did not end");
    let mut on_a = a.open_stream(None).await?;
    let mut on_b = b.open_stream(None).await?;
    let last = sim.control().emit(3);
    for sse in [&mut on_a, &mut on_b] {
        // The new holder may replay the upstream from its start (the new stream has no
        // position to resume from) before or after this client opened: read up to `last`.
        let mut seqs = Vec::new();
        while seqs.last() != Some(&last) {
            let (name, data) = next(sse).await?;
            if name != "reset" {
                seqs.push(data["upstreamSeq"].as_u64().unwrap_or(0));
            }
        }
        assert!(
            seqs.ends_with(&[last - 2, last - 1, last]),
            "the new events, in order: {seqs:?}"
        );
    }
    Ok(())
}
