//! Cluster mode: the hub's feed from the cluster's stream, and clients catching up from it.
//!
//! Why a catch-up phase: in cluster mode the replay ring is only a cache of the stream. A
//! client may resume with an id older than this host's ring (it was away, or this host
//! just started), or with an id this host has not read yet (it was on a host further
//! ahead). Such a client first reads the stream itself, with its own ordered consumer,
//! from the frame after its id, and joins the live fan-out as soon as the ring holds the
//! frame after the last one it wrote ([`super::hub::StreamHub::join`], under the hub lock,
//! so there is no gap and no duplicate at the seam). It is not in the fan-out while it
//! catches up, so a long replay never overflows its live queue.
//!
//! Frames discarded by the stream's limits come out as a `reset` (cause `stream_limits`)
//! whose id is the last discarded sequence: resuming from it continues at the first
//! retained frame. An id beyond the stream's end was never issued: `reset`
//! (`unplaceable_id`), then live frames.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::frame::{self, CLUSTER_EPOCH, EventId, Frame};
use super::hub::{StreamHub, Subscriber};
use crate::bus::{Bus, BusEvent};
use crate::cluster::stream::{FrameStream, ReadError, ReadItem, StartAt, StreamFrame};

/// How long one catch-up read waits before the client tries to join again.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
/// Back-off of the hub's feed after its reader failed.
const FEED_RETRY: Duration = Duration::from_millis(250);
/// How often the hub's feed looks at the NATS connection.
const CONNECTION_CHECK: Duration = Duration::from_millis(100);

/// `cause` of a reset for frames the stream's limits discarded.
pub const CAUSE_STREAM_LIMITS: &str = "stream_limits";

/// What one catch-up step produced.
pub enum Step {
    /// Bytes to write (a frame, or a reset).
    Chunk(Bytes),
    /// Joined the live fan-out; write these ring frames, then live ones.
    Joined(Vec<Arc<Frame>>),
    /// Nothing yet.
    Idle,
    /// The stream cannot be read: end the response (the client resumes elsewhere or later).
    End,
}

/// A client reading the stream until it can join the hub.
pub struct CatchUp {
    hub: StreamHub,
    stream: FrameStream,
    /// The client has every frame through this sequence.
    have: u64,
    subscriber: Option<Subscriber>,
    reader: Option<crate::cluster::stream::FrameReader>,
    /// The NATS connection generation the reader was opened on.
    generation: u64,
    last_event_id: String,
}

impl CatchUp {
    pub(super) fn new(
        hub: StreamHub,
        stream: FrameStream,
        have: u64,
        subscriber: Subscriber,
        last_event_id: &str,
    ) -> CatchUp {
        CatchUp {
            hub,
            stream,
            have,
            subscriber: Some(subscriber),
            reader: None,
            generation: 0,
            last_event_id: last_event_id.to_string(),
        }
    }

    /// One step: join if the ring allows, else read the next frame from the stream.
    pub async fn step(&mut self) -> Step {
        let Some(subscriber) = self.subscriber.take() else {
            // Joined live already (after an unplaceable id's reset).
            return Step::Joined(Vec::new());
        };
        match self.hub.join(subscriber, self.have) {
            Ok(replay) => return Step::Joined(replay),
            Err(subscriber) => self.subscriber = Some(subscriber),
        }
        if self.reader.is_none() {
            self.generation = self.stream.connection_generation();
            match self
                .stream
                .read(StartAt::Sequence(self.have.saturating_add(1)))
                .await
            {
                Ok(reader) => self.reader = Some(reader),
                Err(ReadError::Ahead { last, .. }) => return self.unplaceable(last),
                Err(ReadError::Zero) => return self.unplaceable(0),
                Err(ReadError::Nats(e)) => {
                    tracing::warn!(error = %e, "a resuming client cannot read the cluster stream; ending its response");
                    return Step::End;
                }
            }
        }
        let Some(reader) = self.reader.as_mut() else {
            return Step::End;
        };
        // A reader that lived through a lost NATS connection may wait tens of seconds and
        // then skip frames (see `feed_from_stream`): end the response; the client resumes.
        if !self.stream.connected() || self.stream.connection_generation() != self.generation {
            tracing::warn!("a resuming client's NATS connection went down; ending its response");
            return Step::End;
        }
        match reader.next_within(CATCH_UP_POLL).await {
            Ok(None) => Step::Idle,
            Ok(Some(ReadItem::Frame(f))) => {
                self.have = f.seq;
                let wanted = self
                    .subscriber
                    .as_ref()
                    .is_some_and(|s| f.to_all || frame::matches(s.patterns(), &f.topics));
                if wanted {
                    Step::Chunk(stored_frame(f).bytes.clone())
                } else {
                    Step::Idle
                }
            }
            Ok(Some(ReadItem::Gap { next_available, .. })) => {
                self.have = next_available.saturating_sub(1);
                Step::Chunk(stream_limits_reset(self.have).bytes.clone())
            }
            Err(e) => {
                tracing::warn!(error = %e, "a resuming client's stream reader failed; ending its response");
                Step::End
            }
        }
    }

    /// The id is beyond the stream's end: say so and go live.
    fn unplaceable(&mut self, last: u64) -> Step {
        metrics::counter!("gateway_sse_resets_total", "cause" => frame::CAUSE_UNPLACEABLE)
            .increment(1);
        if let Some(subscriber) = self.subscriber.take() {
            self.hub.join_live(subscriber);
        }
        let reset = frame::reset_frame(
            &self.last_event_id,
            "the id is ahead of the newest event of the cluster's stream",
            (last > 0).then_some(EventId {
                epoch: CLUSTER_EPOCH,
                seq: last,
            }),
        );
        Step::Chunk(reset)
    }
}

/// The `reset` standing for frames the stream discarded, with the last discarded sequence
/// as its id (counted in `gateway_sse_resets_total{cause="stream_limits"}`).
fn stream_limits_reset(last_discarded: u64) -> Frame {
    metrics::counter!("gateway_sse_resets_total", "cause" => CAUSE_STREAM_LIMITS).increment(1);
    Frame::loss(
        EventId {
            epoch: CLUSTER_EPOCH,
            seq: last_discarded,
        },
        CAUSE_STREAM_LIMITS,
        "events older than the cluster stream's retention are gone",
    )
}

/// A stream frame as the hub serves it. Its latency clock starts when the link holder
/// read the upstream event (same-machine clocks; unknown → now).
fn stored_frame(f: StreamFrame) -> Frame {
    let received_at = match f.received_ms {
        0 => Instant::now(),
        ms => {
            let age = crate::policy::version::unix_ms().saturating_sub(ms);
            Instant::now()
                .checked_sub(Duration::from_millis(age))
                .unwrap_or_else(Instant::now)
        }
    };
    Frame::from_stored(f.seq, f.topics, f.to_all, &f.body, received_at)
}

/// The stored envelope's fields a bus event needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEnvelope {
    #[serde(rename = "type")]
    kind: String,
    trace_id: String,
    timestamp: u64,
    upstream_session: String,
    upstream_seq: u64,
    data: Box<RawValue>,
}

/// The bus event behind a stored frame (its routed payload); `None` for a `reset`.
fn bus_event_of(f: &StreamFrame) -> Option<BusEvent> {
    let text = std::str::from_utf8(&f.body).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let envelope: StoredEnvelope = serde_json::from_str(data).ok()?;
    Some(BusEvent {
        session_id: envelope.upstream_session.into(),
        seq: envelope.upstream_seq,
        trace_id: envelope.trace_id,
        t: envelope.kind,
        ts: envelope.timestamp,
        d: envelope.data,
        received_at: Instant::now(),
        loss_before: None,
    })
}

/// The hub's feed in cluster mode: every frame of the stream, in order, from the first one
/// after the stream's end when the feed starts. A reader failure is retried from the frame
/// after the last one taken (never "new frames only": what was published while the reader
/// was down would reach no live client); frames the stream discarded meanwhile become one
/// `reset`. A stream created again (NATS lost its store: its creation time changed)
/// restarts the hub's ids: open streams end and get a `reset` when they resume. With
/// `legacy`, each event is also handed to that bus (the legacy voice bridge), rebuilt
/// from the stored envelope.
pub async fn feed_from_stream(hub: StreamHub, stream: FrameStream, legacy: Option<Bus>) {
    // The stream's creation time when the feed first read it, and where to read next
    // (set by that first look: the sequence after the stream's end).
    let mut created = None;
    let mut start = StartAt::New;
    loop {
        // The stream this host read may be gone and created again meanwhile: its new
        // sequences would be taken for the old ones.
        match stream.incarnation().await {
            Ok((now, last)) => match created {
                None => {
                    created = Some(now);
                    start = StartAt::Sequence(last.saturating_add(1));
                }
                Some(before) if before != now => {
                    created = Some(now);
                    restart_ids(&hub, "the cluster stream was created again");
                    start = StartAt::Sequence(1);
                }
                Some(_) => {}
            },
            Err(e) => {
                hub.set_stream_ok(false);
                tracing::warn!(error = %e, "cannot read the cluster stream; retrying");
                tokio::time::sleep(FEED_RETRY).await;
                continue;
            }
        }
        let mut reader = match stream.read(start).await {
            Ok(reader) => reader,
            Err(ReadError::Ahead { .. }) => {
                restart_ids(&hub, "the cluster stream is behind this host");
                start = StartAt::Sequence(1);
                continue;
            }
            Err(e) => {
                hub.set_stream_ok(false);
                tracing::warn!(error = %e, "cannot read the cluster stream; retrying");
                tokio::time::sleep(FEED_RETRY).await;
                continue;
            }
        };
        hub.set_stream_ok(true);
        // The NATS client's ordered consumer recovers from a lost connection by itself, but
        // only after missed heartbeats (tens of seconds), and at the next sequence it
        // expected whatever became of the stream (re-created: its new frames below that are
        // skipped). So a connection that went down and came back reopens the reader here,
        // through `read`, which places the sequence against the stream's bounds again.
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        let generation = stream.connection_generation();
        loop {
            let item = tokio::select! {
                item = reader.next() => item,
                _ = check.tick() => {
                    if !stream.connected() {
                        hub.set_stream_ok(false);
                    } else if stream.connection_generation() != generation {
                        tracing::info!("the NATS connection was re-established; reopening the cluster stream reader");
                        break;
                    }
                    continue;
                }
            };
            match item {
                Some(Ok(ReadItem::Frame(f))) => {
                    start = StartAt::Sequence(f.seq + 1);
                    if let Some(bus) = &legacy
                        && let Some(event) = bus_event_of(&f)
                    {
                        bus.publish(Arc::new(event));
                    }
                    hub.publish(Arc::new(stored_frame(f)));
                }
                Some(Ok(ReadItem::Gap {
                    expected,
                    next_available,
                })) => {
                    tracing::warn!(
                        expected,
                        next_available,
                        "this host fell behind the cluster stream's retention; clients get a reset"
                    );
                    hub.publish(Arc::new(stream_limits_reset(next_available - 1)));
                    start = StartAt::Sequence(next_available);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the cluster stream reader failed; reopening");
                    break;
                }
                None => {
                    tracing::warn!("the cluster stream reader ended; reopening");
                    break;
                }
            }
        }
        hub.set_stream_ok(false);
        tokio::time::sleep(FEED_RETRY).await;
    }
}

/// The stream's sequences started again: the hub forgets its ring and ends open streams.
fn restart_ids(hub: &StreamHub, why: &str) {
    let ended = hub.restart_ids();
    metrics::counter!("gateway_cluster_stream_restarts_total").increment(1);
    tracing::error!(
        streams_ended = ended,
        "{why} (NATS lost its store?): event ids start again; open streams end and get a reset when they resume"
    );
}
