//! One client's response body.
//!
//! Order: the `retry:` hint (and a `reset` event if the resume id could not be placed),
//! the replayed frames, then live frames. When several frames are pending they are
//! written as one chunk (fewer writes, fewer wake-ups). A `: heartbeat` comment keeps
//! proxies and browsers from timing the stream out. The stream ends when the hub drops
//! the client for falling behind (after the frames already queued), or on shutdown.
//! Dropping the body (client gone) drops the subscription guard: the client is
//! unsubscribed and its heartbeat timer stops with it. Replayed frames are released as
//! they are written: a resumed client never pins frames the ring has since evicted.
//! Cluster mode: a client resuming from outside the ring first catches up from the
//! cluster's stream ([`super::catch_up`]), then replays from the ring and goes live.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream};
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use super::catch_up::{CatchUp, Step};
use super::frame::Frame;
use super::hub::{StreamSettings, Subscription, heartbeat};

/// Largest chunk written at once when coalescing.
const MAX_CHUNK: usize = 64 * 1024;

const HEARTBEAT: &[u8] = b": heartbeat\n\n";
const SHUTDOWN: &[u8] = b"event: shutdown\ndata: {\"version\":\"1.0\",\"type\":\"shutdown\",\"reason\":\"the host is shutting down; reconnect with Last-Event-ID\"}\n\n";

struct ClientStream {
    prelude: Option<Bytes>,
    replay: VecDeque<Arc<Frame>>,
    sub: Subscription,
    catch_up: Option<Box<CatchUp>>,
    heartbeat: Interval,
    done: bool,
}

/// The SSE body for `sub`.
pub fn client_stream(
    mut sub: Subscription,
    settings: &StreamSettings,
) -> impl Stream<Item = Result<Bytes, Infallible>> + use<> {
    let mut prelude = BytesMut::from(format!("retry: {}\n\n", settings.retry_ms).as_bytes());
    if let Some(reset) = sub.reset.take() {
        prelude.extend_from_slice(&reset);
    }
    let period = heartbeat(settings);
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = ClientStream {
        prelude: Some(prelude.freeze()),
        replay: std::mem::take(&mut sub.replay).into(),
        catch_up: sub.catch_up.take(),
        sub,
        heartbeat,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        s.next_chunk().await.map(|b| (Ok(b), s))
    })
}

impl ClientStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(prelude) = self.prelude.take() {
            return Some(prelude);
        }
        if !self.replay.is_empty() {
            return Some(self.drain_replay());
        }
        if self.done || *self.sub.shutdown.borrow() {
            return None;
        }
        while let Some(catch_up) = self.catch_up.as_mut() {
            if *self.sub.shutdown.borrow() {
                self.done = true;
                return Some(Bytes::from_static(SHUTDOWN));
            }
            // Boxed: the catch-up's read state must not grow every client's future.
            match Box::pin(catch_up.step()).await {
                Step::Chunk(bytes) => return Some(bytes),
                Step::Joined(replay) => {
                    self.catch_up = None;
                    self.replay = replay.into();
                    if !self.replay.is_empty() {
                        return Some(self.drain_replay());
                    }
                }
                Step::Idle => {
                    if self.heartbeat.tick().now_or_never().is_some() {
                        return Some(Bytes::from_static(HEARTBEAT));
                    }
                }
                Step::End => return None,
            }
        }
        tokio::select! {
            biased;
            _ = self.sub.shutdown.changed() => {
                self.done = true;
                Some(Bytes::from_static(SHUTDOWN))
            }
            frame = self.sub.rx.recv() => frame.map(|f| self.coalesce(f)),
            _ = self.heartbeat.tick() => Some(Bytes::from_static(HEARTBEAT)),
        }
    }

    fn drain_replay(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(frame) = self.replay.front() {
            if !out.is_empty() && out.len() + frame.bytes.len() > MAX_CHUNK {
                break;
            }
            out.extend_from_slice(&frame.bytes);
            // Sent: drop this client's hold on it (the ring may have evicted it already).
            self.replay.pop_front();
        }
        if self.replay.is_empty() {
            self.replay = VecDeque::new();
        }
        out.freeze()
    }

    /// `first` plus whatever else is already queued, as one chunk. A lone frame is passed
    /// through without a copy.
    fn coalesce(&mut self, first: Arc<Frame>) -> Bytes {
        let Ok(second) = self.sub.rx.try_recv() else {
            return first.bytes.clone();
        };
        let mut out = BytesMut::with_capacity(first.bytes.len() * 4);
        out.extend_from_slice(&first.bytes);
        out.extend_from_slice(&second.bytes);
        while out.len() < MAX_CHUNK {
            match self.sub.rx.try_recv() {
                Ok(frame) => out.extend_from_slice(&frame.bytes),
                Err(_) => break,
            }
        }
        out.freeze()
    }
}
