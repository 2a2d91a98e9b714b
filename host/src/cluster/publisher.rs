//! The link holder's publisher: each upstream event routed once, stored once.
//!
//! Why here and not in the SSE hub: in cluster mode the routing decision must be made once
//! for the whole cluster, by the one host that reads the upstream, and every host must
//! serve the same frames with the same ids. So the holder routes each bus event through
//! its router slot (the same batched hop as the single-host hub), builds the frame body
//! without its id ([`crate::sse::frame::stored_body`]) and publishes it to the stream;
//! every host, the holder included, serves SSE from the stream.
//!
//! Publishes of a batch are pipelined (sent in order, then their acks awaited in order), so
//! the stream's order is the upstream's order. A frame the stream does not acknowledge
//! ends the publisher: the holder then steps away from the link rather than route events
//! it could not store. Every frame says through which upstream seq the publisher knew its
//! frames stored when it sent it (`Gateway-Upstream-Acked`): the next holder resumes from
//! there, so a batch cut in the middle by a broken connection is replayed whole, and it
//! skips the replayed events the stream holds already ([`FrameStream::resume`]). After
//! each acknowledged batch the upstream position goes into the lease (observability).
//!
//! An event too large for the stream (NATS's `max_payload`) is stored as a `reset`
//! (cause `too_large`) for the same topics, in its place: storing it would fail, and a
//! holder that stepped away from it would meet it again on the resume, for ever.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::lease::ResumePoint;
use super::stream::{FrameStream, Resume, RoutedFrame};
use crate::bus::{BusEvent, RecvError, Subscription};
use crate::policy::{Policies, RouteDecision};
use crate::sse::frame::{self, stored_body, stored_loss_body};

/// Most events routed per hop.
const ROUTE_BATCH: usize = 256;

/// Metric: events stored as a `too_large` reset.
pub const METRIC_TOO_LARGE: &str = "gateway_cluster_frames_too_large_total";

/// Why the publisher stopped.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("the host fell behind its upstream link and lost events")]
    Lagged,
    #[error("the bus closed")]
    Closed,
    #[error("the cluster stream did not store a frame: {0}")]
    Publish(anyhow::Error),
}

/// Routes and publishes every upstream event of `sub` until an error. `resumed`: where the
/// link resumed from (known stored) and the replayed events the stream holds already
/// (skipped, not published again).
pub async fn run(
    mut sub: Subscription,
    policies: Arc<Policies>,
    stream: FrameStream,
    set_resume: impl Fn(ResumePoint),
    resumed: Resume,
    resume_url: impl Fn() -> Option<String>,
) -> Stopped {
    // `acked`: the newest position known stored (each frame says it); `already`: replayed
    // events the stream holds from before this term.
    let Resume {
        point: mut acked,
        stored: mut already,
    } = resumed;
    let session = acked.as_ref().map(|p| p.session.clone());
    loop {
        let first = match sub.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged) => return Stopped::Lagged,
            Err(RecvError::Closed) => return Stopped::Closed,
        };
        let mut batch = vec![first];
        while batch.len() < ROUTE_BATCH {
            match sub.try_recv() {
                Ok(Some(event)) => batch.push(event),
                _ => break,
            }
        }
        let last = batch.last().cloned();
        if !already.is_empty() {
            skip_stored(&mut batch, session.as_deref(), &mut already);
        }
        let mut frames = route(&policies, &batch, true, resume_url()).await;
        for f in &mut frames {
            f.acked = acked
                .as_ref()
                .filter(|s| s.session == f.upstream.session)
                .map(|s| s.seq);
        }
        fit(&stream, &mut frames);
        if let Err(e) = publish_all(&stream, &frames).await {
            return Stopped::Publish(e);
        }
        if let Some(last) = last {
            let point = ResumePoint {
                session: last.session_id.to_string(),
                seq: last.seq,
                resume_url: resume_url(),
            };
            acked = Some(point.clone());
            set_resume(point);
        }
    }
}

/// Drops from `batch` the replayed events of `session` the stream holds already (taking
/// them out of `already`; once the replay is past them all, `already` is emptied).
fn skip_stored(batch: &mut Vec<Arc<BusEvent>>, session: Option<&str>, already: &mut BTreeSet<u64>) {
    let before = batch.len();
    batch.retain(|e| !(Some(&*e.session_id) == session && already.remove(&e.seq)));
    let past = batch.last().is_some_and(|e| {
        Some(&*e.session_id) != session || already.last().is_none_or(|max| e.seq > *max)
    });
    if past {
        already.clear();
    }
    let skipped = before - batch.len();
    if skipped > 0 {
        metrics::counter!("gateway_cluster_frames_duplicate_total").increment(skipped as u64);
        tracing::info!(
            skipped,
            "replayed events the stream holds already were not published again (a resume after a failover)"
        );
    }
}

/// Routes and stores app events (`POST /api/internal/events`), which any host publishes:
/// routed by this host's router slot, waiting for the stream's acknowledgement. Refused at
/// once while NATS is unreachable (sent then, it would be stored whenever the connection
/// comes back, after its caller was told it failed).
pub async fn publish_app_event(
    policies: &Arc<Policies>,
    stream: &FrameStream,
    event: Arc<BusEvent>,
) -> anyhow::Result<()> {
    anyhow::ensure!(stream.connected(), "this host is not connected to NATS");
    let mut frames = route(policies, &[event], false, None).await;
    fit(stream, &mut frames);
    publish_all(stream, &frames).await
}

/// The routed frames of `batch`, in order (a loss `reset` before an event that follows a
/// loss; nothing for a dropped event). `resumable`: the events come from the upstream link
/// (their positions are where a new holder resumes); false for app events.
async fn route(
    policies: &Arc<Policies>,
    batch: &[Arc<BusEvent>],
    resumable: bool,
    resume_url: Option<String>,
) -> Vec<RoutedFrame> {
    let mut frames = Vec::with_capacity(batch.len());
    crate::sse::hub::route_each(policies, batch, |event, meta, verdict| {
        let received_ms = received_ms(event);
        if let Some(why) = event.loss_before {
            frames.push(RoutedFrame {
                upstream: ResumePoint {
                    session: event.session_id.to_string(),
                    seq: event.seq.saturating_sub(1),
                    resume_url: resume_url.clone(),
                },
                topics: Vec::new(),
                to_all: true,
                body: stored_loss_body(
                    frame::CAUSE_UPSTREAM_LOSS,
                    &format!("events were lost upstream: {why}"),
                ),
                received_ms,
                loss: true,
                resumable,
                acked: None,
            });
        }
        if let RouteDecision::Deliver { topics, payload } = verdict.value {
            let replacement = payload
                .as_deref()
                .and_then(|p| crate::sse::hub::parse_payload(p, event));
            tracing::debug!(event = "event.routed", trace_id = %event.trace_id, topics = ?topics, "event routed for the cluster");
            frames.push(RoutedFrame {
                upstream: ResumePoint {
                    session: event.session_id.to_string(),
                    seq: event.seq,
                    resume_url: resume_url.clone(),
                },
                topics,
                to_all: false,
                body: stored_body(event, meta, replacement.as_deref()),
                received_ms,
                loss: false,
                resumable,
                acked: None,
            });
        } else {
            tracing::debug!(event = "event.dropped", trace_id = %event.trace_id, "event dropped by the router");
        }
    })
    .await;
    frames
}

/// Replaces each frame the stream cannot take (over NATS's `max_payload`) by a `reset`
/// (cause `too_large`) for the same topics, in the same place and with the same
/// de-duplication id; counted and logged.
fn fit(stream: &FrameStream, frames: &mut [RoutedFrame]) {
    let max = stream.max_message_bytes();
    for f in frames.iter_mut() {
        let size = f.wire_len();
        if size <= max {
            continue;
        }
        let name = event_name(&f.body);
        tracing::warn!(
            event = %name,
            upstream_session = %f.upstream.session,
            upstream_seq = f.upstream.seq,
            bytes = size,
            max_payload = max,
            "an event is larger than the cluster stream takes (NATS max_payload): its subscribers get a reset instead"
        );
        metrics::counter!(METRIC_TOO_LARGE).increment(1);
        f.body = stored_loss_body(
            frame::CAUSE_TOO_LARGE,
            &format!(
                "a {name} event of {size} bytes exceeded the cluster stream's message limit of {max} bytes"
            ),
        );
    }
}

/// The `event:` name of a stored body (for messages).
fn event_name(body: &[u8]) -> String {
    std::str::from_utf8(body)
        .ok()
        .and_then(|t| t.lines().next())
        .and_then(|l| l.strip_prefix("event: "))
        .unwrap_or("?")
        .chars()
        .take(64)
        .collect()
}

/// Publishes `frames` pipelined: all sent in order, then every ack awaited in order.
async fn publish_all(stream: &FrameStream, frames: &[RoutedFrame]) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(frames.len());
    for frame in frames {
        acks.push(stream.send(frame).await?);
    }
    let mut duplicates = 0u64;
    for ack in acks {
        if ack.await?.duplicate {
            duplicates += 1;
        }
    }
    metrics::counter!("gateway_cluster_frames_published_total").increment(frames.len() as u64);
    if duplicates > 0 {
        metrics::counter!("gateway_cluster_frames_duplicate_total").increment(duplicates);
        tracing::info!(
            duplicates,
            "frames already in the stream were not stored again (a resume after a failover)"
        );
    }
    Ok(())
}

/// When the host read `event`, in ms since the Unix epoch.
fn received_ms(event: &BusEvent) -> u64 {
    let age = event.received_at.elapsed().as_millis() as u64;
    crate::policy::version::unix_ms().saturating_sub(age)
}
