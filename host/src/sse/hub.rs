//! The stream hub: one task takes events off the bus, routes each through the router slot
//! once, serializes its frame once, records it in the replay ring and offers the same
//! `Arc<Frame>` to every subscriber whose topics match.
//!
//! Each subscriber has a bounded queue. Offering never waits: a subscriber whose queue is
//! full has fallen behind and is disconnected on the spot (it resumes with
//! `Last-Event-ID`), so a slow client never slows the others and never makes the host
//! buffer without bound. Subscribing takes the ring snapshot and registers the queue under
//! the same lock as publishing, so a resuming client gets no gap and no duplicate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

use super::frame::{self, EventId, Frame};
use super::replay::{ReplayRing, ResumePoint};
use crate::bus::{Bus, BusEvent, RecvError, Subscription as BusSubscription};
use crate::event_meta::policy_event;
use crate::policy::{Policies, RouteDecision};

/// Bus queue of the hub itself (it drains in batches, so this is rarely more than a few).
const HUB_BUS_CAPACITY: usize = 65_536;
/// Most events routed per hop to the policy call threads.
const ROUTE_BATCH: usize = 256;

/// Stream settings (the `[stream]` table of the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StreamSettings {
    /// Interval of the `: heartbeat` comment, in milliseconds.
    pub heartbeat_ms: u64,
    /// Frames kept for `Last-Event-ID` resumes.
    pub replay_capacity: usize,
    /// Frames queued per client before it counts as too slow and is disconnected.
    pub client_queue: usize,
    /// Concurrent streams; beyond this, `503`.
    pub max_clients: usize,
    /// The `retry:` hint sent at stream start, in milliseconds.
    pub retry_ms: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            heartbeat_ms: 15_000,
            replay_capacity: 10_000,
            client_queue: 1_024,
            max_clients: 20_000,
            retry_ms: 3_000,
        }
    }
}

struct Subscriber {
    id: u64,
    patterns: Vec<String>,
    tx: mpsc::Sender<Arc<Frame>>,
}

struct HubState {
    ring: ReplayRing,
    next_seq: u64,
    subscribers: Vec<Subscriber>,
}

struct Inner {
    state: Mutex<HubState>,
    epoch: u64,
    settings: StreamSettings,
    clients: AtomicUsize,
    next_subscriber: AtomicU64,
    lagged: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

/// The connection cap is reached.
#[derive(Debug, thiserror::Error)]
#[error("too many streams ({0} open)")]
pub struct AtCapacity(pub usize);

/// A new client's starting point: what to replay, whether to announce a reset, and its
/// live queue. Dropping it unsubscribes.
pub struct Subscription {
    pub replay: Vec<Arc<Frame>>,
    pub reset: Option<Bytes>,
    pub rx: mpsc::Receiver<Arc<Frame>>,
    pub shutdown: watch::Receiver<bool>,
    pub guard: SubscriberGuard,
}

/// Unsubscribes and frees the client's slot when dropped.
pub struct SubscriberGuard {
    hub: StreamHub,
    id: u64,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.hub
            .inner
            .state
            .lock()
            .subscribers
            .retain(|s| s.id != self.id);
        let now = self.hub.inner.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("gateway_sse_clients").set(now as f64);
    }
}

impl StreamHub {
    /// Start the hub task on the current runtime, fed by `bus`.
    pub fn start(bus: &Bus, policies: Arc<Policies>, settings: StreamSettings) -> StreamHub {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let hub = StreamHub {
            inner: Arc::new(Inner {
                state: Mutex::new(HubState {
                    ring: ReplayRing::new(settings.replay_capacity),
                    next_seq: 1,
                    subscribers: Vec::new(),
                }),
                epoch,
                settings,
                clients: AtomicUsize::new(0),
                next_subscriber: AtomicU64::new(0),
                lagged: AtomicU64::new(0),
                shutdown: watch::channel(false).0,
            }),
        };
        tokio::spawn(run(
            hub.clone(),
            bus.clone(),
            bus.subscribe(HUB_BUS_CAPACITY),
            policies,
        ));
        hub
    }

    /// The stream settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.inner.settings
    }

    /// Open streams.
    pub fn client_count(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Clients disconnected for falling behind, since start.
    pub fn lagged_total(&self) -> u64 {
        self.inner.lagged.load(Ordering::Relaxed)
    }

    /// The id the most recent frame got (`None` before the first).
    pub fn last_id(&self) -> Option<EventId> {
        let seq = self.inner.state.lock().next_seq - 1;
        (seq > 0).then_some(EventId {
            epoch: self.inner.epoch,
            seq,
        })
    }

    /// Tell every stream to end (graceful shutdown).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Subscribe to `patterns`, resuming after `last_event_id` if given.
    pub fn subscribe(
        &self,
        patterns: Vec<String>,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, AtCapacity> {
        let inner = &self.inner;
        let open = inner.clients.fetch_add(1, Ordering::Relaxed);
        if open >= inner.settings.max_clients {
            inner.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(AtCapacity(open));
        }
        metrics::gauge!("gateway_sse_clients").set((open + 1) as f64);
        let id = inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let guard = SubscriberGuard {
            hub: self.clone(),
            id,
        };
        let (tx, rx) = mpsc::channel(inner.settings.client_queue.max(1));
        let mut state = inner.state.lock();
        let (replay, reset) = match last_event_id {
            None => (Vec::new(), None),
            Some(raw) => match raw.parse::<EventId>() {
                Err(()) => (
                    Vec::new(),
                    Some(frame::reset_frame(
                        raw,
                        "the id is not a host event id",
                        state.ring.oldest(),
                    )),
                ),
                Ok(last) => match state.ring.locate(last, inner.epoch, state.next_seq) {
                    ResumePoint::After(seq) => (
                        state
                            .ring
                            .after(seq, |f| frame::matches(&patterns, &f.topics)),
                        None,
                    ),
                    ResumePoint::Unplaceable(why) => (
                        Vec::new(),
                        Some(frame::reset_frame(raw, why, state.ring.oldest())),
                    ),
                },
            },
        };
        state.subscribers.push(Subscriber { id, patterns, tx });
        drop(state);
        Ok(Subscription {
            replay,
            reset,
            rx,
            shutdown: inner.shutdown.subscribe(),
            guard,
        })
    }

    /// Record `frame` and offer it to every matching subscriber.
    fn publish(&self, frame: Arc<Frame>) {
        let mut state = self.inner.state.lock();
        state.next_seq = frame.id.seq + 1;
        state.ring.push(frame.clone());
        let mut delivered = 0u64;
        let mut lagged = 0u64;
        state.subscribers.retain(|s| {
            if !frame::matches(&s.patterns, &frame.topics) {
                return true;
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lagged += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        drop(state);
        metrics::counter!("gateway_sse_deliveries_total").increment(delivered);
        metrics::histogram!("gateway_event_to_sse_seconds")
            .record(frame.received_at.elapsed().as_secs_f64());
        if lagged > 0 {
            self.inner.lagged.fetch_add(lagged, Ordering::Relaxed);
            metrics::counter!("gateway_sse_slow_client_drops_total").increment(lagged);
            tracing::warn!(
                clients = lagged,
                "disconnected SSE clients that fell behind (they resume with Last-Event-ID)"
            );
        }
    }
}

/// The hub task: drain the bus in batches, route each batch in one hop, publish.
async fn run(hub: StreamHub, bus: Bus, mut sub: BusSubscription, policies: Arc<Policies>) {
    let mut next_seq = 1u64;
    loop {
        let first = match sub.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged) => {
                tracing::error!(
                    "the stream hub fell behind the bus; events were lost for SSE clients"
                );
                sub = bus.subscribe(HUB_BUS_CAPACITY);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let mut batch = vec![first];
        while batch.len() < ROUTE_BATCH {
            match sub.try_recv() {
                Ok(Some(event)) => batch.push(event),
                _ => break,
            }
        }
        route_batch(&hub, &policies, &batch, &mut next_seq).await;
    }
}

/// Route `batch` and publish each event as soon as its hop is back: a hop ends after about
/// one call deadline, so a failing router delays the events behind it by one deadline at
/// most, not by one deadline per event of the batch.
async fn route_batch(
    hub: &StreamHub,
    policies: &Arc<Policies>,
    batch: &[Arc<BusEvent>],
    next_seq: &mut u64,
) {
    let events = Arc::new(batch.iter().map(|e| policy_event(e)).collect::<Vec<_>>());
    let mut from = 0;
    while from < batch.len() {
        let verdicts = policies.route_events(events.clone(), from).await;
        if verdicts.is_empty() {
            return;
        }
        for verdict in verdicts {
            let (event, meta) = (&batch[from], &events[from].meta);
            if let RouteDecision::Deliver { topics, payload } = verdict.value {
                let id = EventId {
                    epoch: hub.inner.epoch,
                    seq: *next_seq,
                };
                *next_seq += 1;
                let replacement = payload.as_deref().and_then(|p| parse_payload(p, event));
                hub.publish(Arc::new(Frame::build(
                    id,
                    event,
                    meta,
                    topics,
                    replacement.as_deref(),
                )));
            }
            from += 1;
        }
    }
}

fn parse_payload(payload: &str, event: &BusEvent) -> Option<Box<RawValue>> {
    match RawValue::from_string(payload.to_string()) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::warn!(trace_id = %event.trace_id, error = %e, "router returned a payload that is not JSON; sending the original");
            None
        }
    }
}

/// How long a client may wait between heartbeats.
pub fn heartbeat(settings: &StreamSettings) -> Duration {
    Duration::from_millis(settings.heartbeat_ms.max(10))
}
