//! Cluster mode (issue 12): routed frames in a JetStream stream, against a real
//! `nats-server -js` started per test.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use gateway_host::cluster::config::ClusterSettings;
use gateway_host::cluster::lease::ResumePoint;
use gateway_host::cluster::stream::{
    FrameStream, ReadError, ReadItem, RoutedFrame, StartAt, StreamFrame,
};
use gateway_host::cluster::{self};
use gateway_tests::nats::NatsServer;

fn settings(server: &NatsServer) -> ClusterSettings {
    ClusterSettings::new(server.url())
}

/// A "host": its own connection to NATS and its own handle on the stream.
async fn host(server: &NatsServer, settings: &ClusterSettings) -> anyhow::Result<FrameStream> {
    let nats = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    FrameStream::open(&nats.jetstream, settings).await
}

fn frame(session: &str, seq: u64) -> RoutedFrame {
    RoutedFrame {
        upstream: ResumePoint {
            session: session.into(),
            seq,
            resume_url: None,
        },
        topics: vec![format!("guild:{}", seq % 3), "all".into()],
        to_all: seq.is_multiple_of(10),
        body: Bytes::from(format!(
            "event: MESSAGE_CREATE\ndata: {{\"upstreamSeq\":{seq}}}\n"
        )),
        received_ms: 0,
        loss: false,
        resumable: true,
        acked: None,
    }
}

/// Reads `n` frames (no gap allowed) within `within`.
async fn read_frames(
    reader: &mut gateway_host::cluster::stream::FrameReader,
    n: usize,
    within: Duration,
) -> anyhow::Result<Vec<StreamFrame>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match reader.next_within(left).await? {
            Some(ReadItem::Frame(f)) => out.push(f),
            Some(gap) => anyhow::bail!("unexpected {gap:?} after {} frames", out.len()),
            None => anyhow::bail!("timed out with {} of {n} frames", out.len()),
        }
    }
    Ok(out)
}

#[tokio::test]
async fn two_hosts_read_1000_frames_in_the_same_order_with_the_same_sequences() -> anyhow::Result<()>
{
    let server = NatsServer::start()?;
    let s = settings(&server);
    let publisher = host(&server, &s).await?;
    let reader_a = host(&server, &s).await?;
    let reader_b = host(&server, &s).await?;
    // One reader is live before anything is published, the other replays from 1.
    let mut live = reader_a.read(StartAt::New).await?;
    let started = std::time::Instant::now();
    for seq in 1..=1000 {
        let p = publisher.publish(&frame("s1", seq)).await?;
        assert_eq!(p.seq, seq);
        assert!(!p.duplicate);
    }
    eprintln!("published 1000 frames in {:?}", started.elapsed());
    let mut replay = reader_b.read(StartAt::Sequence(1)).await?;
    let a = read_frames(&mut live, 1000, Duration::from_secs(20)).await?;
    let b = read_frames(&mut replay, 1000, Duration::from_secs(20)).await?;
    eprintln!("published and read twice in {:?}", started.elapsed());
    assert_eq!(a, b);
    for (i, f) in a.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(f.seq, seq);
        assert_eq!(f, &stream_frame(seq, &frame("s1", seq)));
    }
    assert_eq!(
        &a[41].sse_bytes()[..],
        b"id: 42\nevent: MESSAGE_CREATE\ndata: {\"upstreamSeq\":42}\n\n"
    );
    Ok(())
}

fn stream_frame(seq: u64, f: &RoutedFrame) -> StreamFrame {
    StreamFrame {
        seq,
        upstream: Some(f.upstream.clone()),
        topics: f.topics.clone(),
        to_all: f.to_all,
        body: f.body.clone(),
        received_ms: 0,
    }
}

#[tokio::test]
async fn a_new_leader_republishing_after_a_failover_stores_each_event_once() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let s = settings(&server);
    let old_leader = host(&server, &s).await?;
    for seq in 1..=100 {
        old_leader.publish(&frame("s1", seq)).await?;
    }
    // The new leader resumes the upstream from an older position (51) and re-publishes.
    let new_leader = host(&server, &s).await?;
    assert_eq!(
        new_leader.last_position().await?,
        Some((
            100,
            Some(ResumePoint {
                session: "s1".into(),
                seq: 100,
                resume_url: None,
            })
        ))
    );
    for seq in 51..=150 {
        let p = new_leader.publish(&frame("s1", seq)).await?;
        assert_eq!(p.duplicate, seq <= 100, "upstream seq {seq}");
        assert_eq!(p.seq, seq, "stream sequence of upstream seq {seq}");
    }
    assert_eq!(new_leader.bounds().await?, (1, 150));
    let mut reader = host(&server, &s).await?.read(StartAt::Sequence(1)).await?;
    let frames = read_frames(&mut reader, 150, Duration::from_secs(10)).await?;
    let upstream: Vec<u64> = frames
        .iter()
        .map(|f| f.upstream.as_ref().map_or(0, |u| u.seq))
        .collect();
    assert_eq!(upstream, (1..=150).collect::<Vec<_>>());
    // Nothing more: no duplicate follows.
    assert_eq!(reader.next_within(Duration::from_millis(300)).await?, None);
    Ok(())
}

#[tokio::test]
async fn reading_from_n_resumes_exactly_at_n() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let s = settings(&server);
    let stream = host(&server, &s).await?;
    for seq in 1..=100 {
        stream.publish(&frame("s1", seq)).await?;
    }
    let mut from_37 = stream.read(StartAt::Sequence(37)).await?;
    let frames = read_frames(&mut from_37, 64, Duration::from_secs(10)).await?;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (37..=100).collect::<Vec<_>>()
    );
    // Just past the end: waits for the next frame, which is exactly 101.
    let mut from_101 = stream.read(StartAt::Sequence(101)).await?;
    assert_eq!(
        from_101.next_within(Duration::from_millis(200)).await?,
        None
    );
    stream.publish(&frame("s1", 101)).await?;
    let next = read_frames(&mut from_101, 1, Duration::from_secs(5)).await?;
    assert_eq!(next[0].seq, 101);
    let next = read_frames(&mut from_37, 1, Duration::from_secs(5)).await?;
    assert_eq!(next[0].seq, 101);
    // Beyond the end, or zero: ids this stream never issued.
    match stream.read(StartAt::Sequence(500)).await {
        Err(ReadError::Ahead { requested, last }) => assert_eq!((requested, last), (500, 101)),
        Err(e) => anyhow::bail!("expected Ahead, got {e}"),
        Ok(_) => anyhow::bail!("expected Ahead, got a reader"),
    }
    assert!(matches!(
        stream.read(StartAt::Sequence(0)).await,
        Err(ReadError::Zero)
    ));
    Ok(())
}

#[tokio::test]
async fn a_start_below_the_first_retained_sequence_is_reported_as_a_gap() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let mut s = settings(&server);
    s.stream_max_msgs = 10;
    let stream = host(&server, &s).await?;
    for seq in 1..=30 {
        stream.publish(&frame("s1", seq)).await?;
    }
    assert_eq!(stream.bounds().await?, (21, 30));
    let mut reader = host(&server, &s).await?.read(StartAt::Sequence(5)).await?;
    let first = reader
        .next_within(Duration::from_secs(5))
        .await?
        .context("an item")?;
    assert_eq!(
        first,
        ReadItem::Gap {
            expected: 5,
            next_available: 21
        }
    );
    let frames = read_frames(&mut reader, 10, Duration::from_secs(5)).await?;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (21..=30).collect::<Vec<_>>()
    );
    // A start inside the retained range has no gap.
    let mut inside = stream.read(StartAt::Sequence(21)).await?;
    assert_eq!(
        read_frames(&mut inside, 10, Duration::from_secs(5)).await?,
        frames
    );
    Ok(())
}

#[tokio::test]
async fn a_frame_missing_in_the_middle_is_reported_as_a_gap_where_it_was() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let s = settings(&server);
    let stream = host(&server, &s).await?;
    for seq in 1..=10 {
        stream.publish(&frame("s1", seq)).await?;
    }
    // Frames 5 and 6 disappear (as when the stream's limits discard frames a lagging
    // reader has not read yet).
    let nats = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
    let raw = nats.jetstream.get_stream(&s.stream_name).await?;
    assert!(raw.delete_message(5).await?);
    assert!(raw.delete_message(6).await?);
    let mut reader = stream.read(StartAt::Sequence(1)).await?;
    let head = read_frames(&mut reader, 4, Duration::from_secs(5)).await?;
    assert_eq!(head.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let gap = reader
        .next_within(Duration::from_secs(5))
        .await?
        .context("an item")?;
    assert_eq!(
        gap,
        ReadItem::Gap {
            expected: 5,
            next_available: 7
        }
    );
    let tail = read_frames(&mut reader, 4, Duration::from_secs(5)).await?;
    assert_eq!(
        tail.iter().map(|f| f.seq).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    Ok(())
}
