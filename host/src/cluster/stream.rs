//! Routed frames in a JetStream stream: the cluster's event log.
//!
//! The link holder routes each upstream event once and publishes the routed frame here;
//! every host reads the stream and serves SSE from it, with the **stream sequence as the
//! event id**, so a client can resume against any host.
//!
//! * A message's payload is the SSE frame *without* its `id:` line (`event: …\ndata: …\n`):
//!   the id is the stream sequence, known only once stored; [`StreamFrame::sse_bytes`] adds
//!   it. Headers carry the router's topics (`Gateway-Topics`, a JSON array), whether the
//!   frame goes to every subscriber (`Gateway-To-All: 1`, a `reset`) and the upstream
//!   position (`Gateway-Upstream-Session`, `Gateway-Upstream-Seq`).
//! * `Nats-Msg-Id` is `<upstream session>:<upstream seq>`: a new leader that resumes the
//!   upstream from an older position and re-publishes events inside the stream's duplicate
//!   window stores each of them once (the publish ack says `duplicate`).
//! * A reader is an ordered consumer from a given stream sequence (or only new frames). It
//!   yields frames in stream order with their sequence, and a [`ReadItem::Gap`] when the
//!   next frame is not the one expected: the start was below the stream's first retained
//!   sequence (discarded by the stream's limits), or frames were discarded while the reader
//!   lagged. SSE turns a gap into `reset`. A start beyond the end of the stream is refused
//!   ([`ReadError::Ahead`]): that id was never issued by this stream.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RawMessageErrorKind, StorageType};
use bytes::Bytes;
use futures_util::StreamExt;

use super::config::ClusterSettings;
use super::lease::ResumePoint;

/// Header: the router's topics, a JSON array of strings.
pub const HEADER_TOPICS: &str = "Gateway-Topics";
/// Header: `1` when the frame goes to every subscriber whatever its topics.
pub const HEADER_TO_ALL: &str = "Gateway-To-All";
/// Header: the upstream session the frame's event came from.
pub const HEADER_SESSION: &str = "Gateway-Upstream-Session";
/// Header: the upstream seq of the frame's event.
pub const HEADER_SEQ: &str = "Gateway-Upstream-Seq";
/// Header: where the upstream session can be resumed (direct Discord mode).
pub const HEADER_RESUME_URL: &str = "Gateway-Resume-Url";
/// Header: when the link holder read the upstream event, ms since the Unix epoch.
pub const HEADER_RECEIVED_MS: &str = "Gateway-Received-Ms";
/// Header: the upstream seq (same session) through which the publisher knew every frame it
/// had sent was stored, when it sent this one. A new holder resumes from the newest frame's
/// value, not from the newest frame itself (see [`FrameStream::resume`]).
pub const HEADER_ACKED: &str = "Gateway-Upstream-Acked";

/// A routed frame, as the link holder publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedFrame {
    /// Where the event came from upstream (also its de-duplication id).
    pub upstream: ResumePoint,
    pub topics: Vec<String>,
    pub to_all: bool,
    /// `event: …\ndata: …\n`: the SSE frame without `id:` and without the closing blank line.
    pub body: Bytes,
    /// When the holder read the upstream event (ms since the Unix epoch; 0: unknown).
    pub received_ms: u64,
    /// A `reset` announcing a loss before the event *after* `upstream` (its
    /// de-duplication id gets a `:loss` suffix, so it never collides with an event's).
    pub loss: bool,
    /// `upstream` is a position of the upstream link (a new holder may resume from it);
    /// false for app events (`POST /api/internal/events`), published by any host.
    pub resumable: bool,
    /// The upstream seq, in `upstream`'s session, through which the publisher knew its
    /// frames stored when it sent this one (header `Gateway-Upstream-Acked`).
    pub acked: Option<u64>,
}

impl RoutedFrame {
    /// The headers the frame is published with (`Nats-Msg-Id` apart).
    fn headers(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let mut headers = vec![(
            HEADER_TOPICS,
            serde_json::to_string(&self.topics).context("encoding topics")?,
        )];
        if self.to_all {
            headers.push((HEADER_TO_ALL, "1".into()));
        }
        if self.resumable {
            headers.push((HEADER_SESSION, self.upstream.session.clone()));
            headers.push((HEADER_SEQ, self.upstream.seq.to_string()));
            if let Some(url) = &self.upstream.resume_url {
                headers.push((HEADER_RESUME_URL, url.clone()));
            }
            if let Some(acked) = self.acked {
                headers.push((HEADER_ACKED, acked.to_string()));
            }
        }
        if self.received_ms > 0 {
            headers.push((HEADER_RECEIVED_MS, self.received_ms.to_string()));
        }
        Ok(headers)
    }

    /// `Nats-Msg-Id`: the upstream position, `:loss` for a loss `reset`.
    fn message_id(&self) -> String {
        let mut id = message_id(&self.upstream);
        if self.loss {
            id.push_str(":loss");
        }
        id
    }

    /// Bytes the frame takes on the wire (payload + headers, as NATS counts them against
    /// its `max_payload`).
    pub fn wire_len(&self) -> usize {
        let header_line = |name: &str, value: &str| name.len() + value.len() + 4;
        let headers: usize = self
            .headers()
            .map(|h| h.iter().map(|(k, v)| header_line(k, v)).sum())
            .unwrap_or(0);
        // `NATS/1.0\r\n` + the closing `\r\n`, and the message id header.
        12 + headers + header_line("Nats-Msg-Id", &self.message_id()) + self.body.len()
    }
}

/// A frame read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFrame {
    /// The stream sequence: the frame's event id.
    pub seq: u64,
    pub upstream: Option<ResumePoint>,
    pub topics: Vec<String>,
    pub to_all: bool,
    pub body: Bytes,
    /// When the holder read the upstream event (ms since the Unix epoch; 0: unknown).
    pub received_ms: u64,
}

impl StreamFrame {
    /// The complete SSE frame: `id: <seq>\n` + body + blank line.
    pub fn sse_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.body.len() + 24);
        out.extend_from_slice(format!("id: {}\n", self.seq).as_bytes());
        out.extend_from_slice(&self.body);
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// The outcome of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Stream sequence of the frame (of the first copy when `duplicate`).
    pub seq: u64,
    /// The stream already had this upstream session + seq: nothing was stored.
    pub duplicate: bool,
}

/// Where a new link holder resumes ([`FrameStream::resume`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The upstream position to resume from; `None`: the stream holds none.
    pub point: Option<ResumePoint>,
    /// Upstream seqs (in `point`'s session) after `point` that the stream holds already.
    pub stored: BTreeSet<u64>,
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At this stream sequence (the one after a client's `Last-Event-ID`).
    Sequence(u64),
    /// With the next frame published.
    New,
}

/// What a reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadItem {
    Frame(StreamFrame),
    /// Frames `expected..next_available` are gone (stream limits); the next frame read is
    /// `next_available` (or later, when it is gone too by then).
    Gap {
        expected: u64,
        next_available: u64,
    },
}

/// Why a reader could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The start is past the end of the stream: an id this stream never issued.
    #[error("stream sequence {requested} is beyond the stream's last sequence {last}")]
    Ahead { requested: u64, last: u64 },
    #[error("stream sequence 0 does not exist (sequences start at 1)")]
    Zero,
    #[error(transparent)]
    Nats(#[from] anyhow::Error),
}

/// The stream of routed frames.
#[derive(Clone)]
pub struct FrameStream {
    js: async_nats::jetstream::Context,
    stream: stream::Stream,
    subject: String,
    /// What the stream is created with (again, by [`FrameStream::ensure`]).
    config: stream::Config,
}

impl FrameStream {
    /// Opens the stream, creating it with the configured limits if it does not exist.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        settings: &ClusterSettings,
    ) -> anyhow::Result<FrameStream> {
        let config = stream::Config {
            name: settings.stream_name.clone(),
            description: Some("gateway-host routed frames".into()),
            subjects: vec![settings.stream_subject.clone()],
            max_messages: settings.stream_max_msgs,
            max_bytes: settings.stream_max_bytes,
            max_age: settings.stream_max_age,
            duplicate_window: settings.duplicate_window,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config.clone())
            .await
            .with_context(|| format!("opening the JetStream stream {}", settings.stream_name))?;
        Ok(FrameStream {
            js: js.clone(),
            stream,
            subject: settings.stream_subject.clone(),
            config,
        })
    }

    /// Creates the stream again if it is gone (a NATS server that lost its store): the
    /// link holder calls this at the start of each term, so a cluster recovers by itself
    /// instead of failing every publish until its hosts are restarted.
    pub async fn ensure(&self) -> anyhow::Result<()> {
        self.js
            .get_or_create_stream(self.config.clone())
            .await
            .with_context(|| format!("opening the JetStream stream {}", self.config.name))?;
        Ok(())
    }

    /// Publishes `frame` and waits for the stream's acknowledgement.
    pub async fn publish(&self, frame: &RoutedFrame) -> anyhow::Result<Published> {
        self.send(frame).await?.await
    }

    /// Sends `frame`; the returned future resolves with the stream's acknowledgement.
    /// Frames sent one after another on one connection are stored in that order, so a
    /// publisher can send a batch and then await its acks (pipelining).
    pub async fn send(
        &self,
        frame: &RoutedFrame,
    ) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<Published>> + use<>> {
        let mut headers = HeaderMap::new();
        for (name, value) in frame.headers()? {
            headers.insert(name, value.as_str());
        }
        let message = PublishMessage::build()
            .headers(headers)
            .message_id(frame.message_id())
            .payload(frame.body.clone());
        let ack = self
            .js
            .send_publish(self.subject.clone(), message)
            .await
            .context("publishing a frame")?;
        Ok(async move {
            let ack = ack
                .await
                .context("the stream did not acknowledge a frame")?;
            Ok(Published {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }

    /// Whether this host's NATS connection is up now. A publish made while it is down is
    /// queued by the client and may be stored much later, after a reconnect.
    pub fn connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    /// How many times this host's NATS connection was established (the first connect
    /// included): it moves on every reconnect, however short the outage was.
    pub fn connection_generation(&self) -> u64 {
        self.js
            .client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The largest message NATS takes (its `max_payload`, 1 MiB unless configured).
    pub fn max_message_bytes(&self) -> usize {
        self.js.client().max_payload()
    }

    /// When the stream was created (ns since the Unix epoch) and its last sequence: a
    /// stream created again (NATS lost its store) has another creation time, whatever its
    /// sequences are by then.
    pub async fn incarnation(&self) -> anyhow::Result<(i128, u64)> {
        let info = self.stream.get_info().await.context("stream info")?;
        Ok((
            info.created.unix_timestamp_nanos(),
            info.state.last_sequence,
        ))
    }

    /// First and last retained sequences (`first > last` when the stream holds nothing).
    pub async fn bounds(&self) -> anyhow::Result<(u64, u64)> {
        let info = self.stream.get_info().await.context("stream info")?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The upstream position of the stream's newest frame that has one (app events have
    /// none), looking back at most [`POSITION_LOOKBACK`] frames; `None` when the stream
    /// is empty, `Some((last, None))` when it holds no upstream position that recent.
    /// Returns the frame's sequence too.
    pub async fn last_position(&self) -> anyhow::Result<Option<(u64, Option<ResumePoint>)>> {
        let mut found = None;
        let last = self
            .walk_back(|seq, headers| match upstream_of(headers) {
                Some(point) => {
                    found = Some((seq, Some(point)));
                    false
                }
                None => true,
            })
            .await?;
        Ok(found.or(last.map(|last| (last, None))))
    }

    /// Where a new link holder resumes the upstream, and what it must not store again.
    ///
    /// A publisher sends a batch before awaiting its acks; if its NATS connection breaks
    /// mid-batch, a frame can be lost while later ones of the batch, still queued in the
    /// client, are stored after the reconnect. So the resume point is not the newest
    /// frame's position but the seq its publisher knew stored when it sent it
    /// (`Gateway-Upstream-Acked`): the upstream replays that one batch, and the lost frames
    /// are stored then. The batch's frames that *are* stored come back in
    /// [`Resume::stored`]: the new holder skips them (the stream's de-duplication window
    /// alone would not do when they were stored longer ago than the window).
    pub async fn resume(&self) -> anyhow::Result<Resume> {
        let mut newest: Option<ResumePoint> = None;
        let mut from = 0u64;
        let mut stored = BTreeSet::new();
        self.walk_back(|_, headers| {
            let Some(point) = upstream_of(headers) else {
                return true; // an app event
            };
            match &newest {
                None => {
                    from = acked_of(headers).map_or(point.seq, |a| a.min(point.seq));
                    let more = from < point.seq;
                    if more {
                        stored.insert(point.seq);
                    }
                    newest = Some(point);
                    more
                }
                Some(n) if point.session == n.session && point.seq > from => {
                    stored.insert(point.seq);
                    true
                }
                Some(_) => false,
            }
        })
        .await?;
        Ok(Resume {
            point: newest.map(|mut p| {
                p.seq = from;
                p
            }),
            stored,
        })
    }

    /// Visits the stream's frames from the newest back, at most [`POSITION_LOOKBACK`] of
    /// them, until `visit` returns false. A frame gone meanwhile is skipped; any other read
    /// error (a timeout, a lost connection) is an error: taking it for "no frame" would
    /// resume the upstream from an older position, or from none. Returns the stream's last
    /// sequence (`None`: empty).
    async fn walk_back(
        &self,
        mut visit: impl FnMut(u64, &HeaderMap) -> bool,
    ) -> anyhow::Result<Option<u64>> {
        let (first, last) = self.bounds().await?;
        if last == 0 || first > last {
            return Ok(None);
        }
        let stop = last.saturating_sub(POSITION_LOOKBACK).max(first);
        let mut seq = last;
        while seq >= stop {
            match self.stream.get_raw_message(seq).await {
                Ok(message) => {
                    if !visit(seq, &message.headers) {
                        break;
                    }
                }
                Err(e) if seq > first && e.kind() == RawMessageErrorKind::NoMessageFound => {
                    tracing::debug!(seq, "no frame at this sequence")
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::from(e).context(format!("reading stream sequence {seq}"))
                    );
                }
            }
            if seq == 0 {
                break;
            }
            seq -= 1;
        }
        Ok(Some(last))
    }

    /// Starts a reader at `start`.
    pub async fn read(&self, start: StartAt) -> Result<FrameReader, ReadError> {
        let (deliver_policy, expected, gap) = match start {
            StartAt::New => (DeliverPolicy::New, None, None),
            StartAt::Sequence(0) => return Err(ReadError::Zero),
            StartAt::Sequence(n) => {
                let (first, last) = self.bounds().await?;
                if n > last + 1 {
                    return Err(ReadError::Ahead { requested: n, last });
                }
                if n < first {
                    let gap = ReadItem::Gap {
                        expected: n,
                        next_available: first,
                    };
                    (
                        DeliverPolicy::ByStartSequence {
                            start_sequence: first,
                        },
                        Some(first),
                        Some(gap),
                    )
                } else {
                    (
                        DeliverPolicy::ByStartSequence { start_sequence: n },
                        Some(n),
                        None,
                    )
                }
            }
        };
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy,
                filter_subject: self.subject.clone(),
                ..Default::default()
            })
            .await
            .context("creating an ordered consumer")?;
        let messages = consumer
            .messages()
            .await
            .context("reading an ordered consumer")?;
        Ok(FrameReader {
            messages,
            expected,
            pending: gap,
        })
    }
}

/// Reads frames in stream order.
pub struct FrameReader {
    messages: consumer::pull::Ordered,
    /// The sequence the next frame should have (`None`: unknown yet, reading new frames).
    expected: Option<u64>,
    /// An item to yield before reading on.
    pending: Option<ReadItem>,
}

impl FrameReader {
    /// The next frame or gap; `None` when the consumer ended. Waits for new frames.
    pub async fn next(&mut self) -> Option<anyhow::Result<ReadItem>> {
        if let Some(item) = self.pending.take() {
            return Some(Ok(item));
        }
        let message = match self.messages.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(anyhow::anyhow!("reading the stream: {e}"))),
        };
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => return Some(Err(anyhow::anyhow!("stream message without info: {e}"))),
        };
        let frame = frame_of(seq, message.headers.as_ref(), message.payload.clone());
        let expected = self.expected.replace(seq + 1);
        match expected {
            Some(expected) if seq != expected => {
                self.pending = Some(ReadItem::Frame(frame));
                Some(Ok(ReadItem::Gap {
                    expected,
                    next_available: seq,
                }))
            }
            _ => Some(Ok(ReadItem::Frame(frame))),
        }
    }

    /// Like [`FrameReader::next`], bounded by `within`: `Ok(None)` when nothing came.
    pub async fn next_within(&mut self, within: Duration) -> anyhow::Result<Option<ReadItem>> {
        match tokio::time::timeout(within, self.next()).await {
            Err(_) => Ok(None),
            Ok(None) => anyhow::bail!("the stream reader ended"),
            Ok(Some(item)) => item.map(Some),
        }
    }
}

/// How far back [`FrameStream::last_position`] looks for a frame with an upstream position.
pub const POSITION_LOOKBACK: u64 = 10_000;

/// `Nats-Msg-Id` of an upstream event.
pub fn message_id(upstream: &ResumePoint) -> String {
    format!("{}:{}", upstream.session, upstream.seq)
}

fn upstream_of(headers: &HeaderMap) -> Option<ResumePoint> {
    let session = headers.get(HEADER_SESSION)?.as_str().to_owned();
    let seq = headers.get(HEADER_SEQ)?.as_str().parse().ok()?;
    let resume_url = headers
        .get(HEADER_RESUME_URL)
        .map(|v| v.as_str().to_owned());
    Some(ResumePoint {
        session,
        seq,
        resume_url,
    })
}

fn acked_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(HEADER_ACKED)?.as_str().parse().ok()
}

fn frame_of(seq: u64, headers: Option<&HeaderMap>, body: Bytes) -> StreamFrame {
    let (topics, to_all, upstream, received_ms) = match headers {
        Some(h) => (
            h.get(HEADER_TOPICS)
                .and_then(|v| serde_json::from_str(v.as_str()).ok())
                .unwrap_or_default(),
            h.get(HEADER_TO_ALL).is_some_and(|v| v.as_str() == "1"),
            upstream_of(h),
            h.get(HEADER_RECEIVED_MS)
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0),
        ),
        None => (Vec::new(), false, None, 0),
    };
    StreamFrame {
        seq,
        upstream,
        topics,
        to_all,
        body,
        received_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_bytes_put_the_stream_sequence_first() {
        let frame = StreamFrame {
            seq: 42,
            upstream: None,
            topics: vec![],
            to_all: false,
            body: Bytes::from_static(b"event: MESSAGE_CREATE\ndata: {}\n"),
            received_ms: 0,
        };
        assert_eq!(
            &frame.sse_bytes()[..],
            b"id: 42\nevent: MESSAGE_CREATE\ndata: {}\n\n"
        );
    }

    #[test]
    fn headers_round_trip() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_TOPICS, r#"["guild:1","voice:2"]"#);
        h.insert(HEADER_TO_ALL, "1");
        h.insert(HEADER_SESSION, "s1");
        h.insert(HEADER_SEQ, "7");
        let f = frame_of(3, Some(&h), Bytes::new());
        assert_eq!(f.topics, vec!["guild:1", "voice:2"]);
        assert!(f.to_all);
        assert_eq!(
            f.upstream,
            Some(ResumePoint {
                session: "s1".into(),
                seq: 7,
                resume_url: None,
            })
        );
    }
}
