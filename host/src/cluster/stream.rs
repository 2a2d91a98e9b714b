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

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
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
            .get_or_create_stream(config)
            .await
            .with_context(|| format!("opening the JetStream stream {}", settings.stream_name))?;
        Ok(FrameStream {
            js: js.clone(),
            stream,
            subject: settings.stream_subject.clone(),
        })
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
        let topics = serde_json::to_string(&frame.topics).context("encoding topics")?;
        headers.insert(HEADER_TOPICS, topics.as_str());
        if frame.to_all {
            headers.insert(HEADER_TO_ALL, "1");
        }
        if frame.resumable {
            headers.insert(HEADER_SESSION, frame.upstream.session.as_str());
            headers.insert(HEADER_SEQ, frame.upstream.seq.to_string().as_str());
            if let Some(url) = &frame.upstream.resume_url {
                headers.insert(HEADER_RESUME_URL, url.as_str());
            }
        }
        if frame.received_ms > 0 {
            headers.insert(HEADER_RECEIVED_MS, frame.received_ms.to_string().as_str());
        }
        let mut id = message_id(&frame.upstream);
        if frame.loss {
            id.push_str(":loss");
        }
        let message = PublishMessage::build()
            .headers(headers)
            .message_id(id)
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

    /// First and last retained sequences (`first > last` when the stream holds nothing).
    pub async fn bounds(&self) -> anyhow::Result<(u64, u64)> {
        let info = self.stream.get_info().await.context("stream info")?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The upstream position of the stream's newest frame that has one (app events have
    /// none), looking back at most [`POSITION_LOOKBACK`] frames; `None` when the stream
    /// is empty or holds no upstream position that recent. This is where a new link
    /// holder resumes the upstream. Returns the frame's sequence too.
    pub async fn last_position(&self) -> anyhow::Result<Option<(u64, Option<ResumePoint>)>> {
        let (first, last) = self.bounds().await?;
        if last == 0 || first > last {
            return Ok(None);
        }
        let stop = last.saturating_sub(POSITION_LOOKBACK).max(first);
        let mut seq = last;
        while seq >= stop {
            match self.stream.get_raw_message(seq).await {
                Ok(message) => {
                    if let Some(point) = upstream_of(&message.headers) {
                        return Ok(Some((seq, Some(point))));
                    }
                }
                // Deleted or discarded meanwhile: look further back.
                Err(e) if seq > first => {
                    tracing::debug!(seq, error = %e, "no frame at this sequence")
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
        Ok(Some((last, None)))
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
