//! The stream hub: one task takes events off the bus, routes each through the router slot
//! once, serializes its frame once, records it in the replay ring and offers the same
//! `Arc<Frame>` to every subscriber whose topics match.
//!
//! Each subscriber has a bounded queue. Offering never waits: a subscriber whose queue is
//! full has fallen behind and is disconnected on the spot (it resumes with
//! `Last-Event-ID`), so a slow client never slows the others and never makes the host
//! buffer without bound. Subscribing takes the ring snapshot (pointer copies only) and
//! registers the queue under the same lock as publishing, so a resuming client gets no gap
//! and no duplicate; the topic filter over the snapshot runs outside the lock.
//!
//! Loss is never silent: when the link marks an event with `loss_before` (an upstream seq
//! hole, a new upstream session, a resume the upstream could not replay) or the hub itself
//! fell behind the bus, the hub publishes a `reset` frame with the next host id before the
//! next event. It goes to every subscriber whatever its topics and sits in the replay ring,
//! so a client resuming from before it gets it in its replay.
//!
//! Cluster mode (`docs/cluster.md`): the hub is fed by the cluster's JetStream stream of
//! routed frames instead of the bus ([`StreamHub::start_cluster`]); ids are stream
//! sequences, the ring is a cache in front of the stream, and a client resuming from an id
//! the ring cannot place catches up from the stream first (see [`super::catch_up`]).
//!
//! Caps: `max-clients` streams in all (503 `too_many_streams`) and
//! `max-streams-per-user` per token `sub` (429 `too_many_user_streams`).
//!
//! Metrics: `gateway_sse_clients` (gauge), `gateway_sse_deliveries_total`,
//! `gateway_sse_slow_client_drops_total`, `gateway_sse_resets_total{cause}`,
//! `gateway_sse_replay_bytes` (gauge), `gateway_event_to_sse_seconds` (also recorded per
//! second for the operator console, see [`crate::console`]).

use std::collections::HashMap;
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
use crate::console::latency::LatencyWindow;
use crate::event_meta::policy_event;
use crate::policy::types::EventMeta;
use crate::policy::{Policies, RouteDecision, Verdict};

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
    /// Bytes of frames kept for resumes, in MiB (the ring's second bound).
    pub replay_max_mib: usize,
    /// Frames queued per client before it counts as too slow and is disconnected.
    pub client_queue: usize,
    /// Concurrent streams; beyond this, `503`. 0: derived below the connection cap.
    pub max_clients: usize,
    /// Concurrent streams of one user (token `sub`); beyond this, `429`.
    pub max_streams_per_user: usize,
    /// The `retry:` hint sent at stream start, in milliseconds.
    pub retry_ms: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            heartbeat_ms: 15_000,
            replay_capacity: 10_000,
            replay_max_mib: 64,
            client_queue: 1_024,
            max_clients: 0,
            max_streams_per_user: 32,
            retry_ms: 3_000,
        }
    }
}

pub(super) struct Subscriber {
    id: u64,
    patterns: Vec<String>,
    tx: mpsc::Sender<Arc<Frame>>,
}

impl Subscriber {
    /// The topic patterns this client asked for.
    pub(super) fn patterns(&self) -> &[String] {
        &self.patterns
    }
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
    /// Open streams per user.
    per_user: Mutex<HashMap<String, usize>>,
    next_subscriber: AtomicU64,
    lagged: AtomicU64,
    /// Cluster mode: times the stream's sequences started again ([`StreamHub::restart_ids`]).
    id_restarts: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// `gateway_sse_replay_bytes`, resolved once (setting it is one atomic store).
    replay_bytes: metrics::Gauge,
    /// The same gateway→SSE latencies as `gateway_event_to_sse_seconds`, per second, for
    /// the operator console.
    latency: Arc<LatencyWindow>,
    /// Cluster mode: the stream the hub reads, and whether its reader is up.
    cluster: Option<crate::cluster::stream::FrameStream>,
    stream_ok: std::sync::atomic::AtomicBool,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

/// Why a stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The stream cap is reached.
    #[error("too many streams ({0} open)")]
    AtCapacity(usize),
    /// This user has as many streams as allowed.
    #[error("too many streams for this user ({0} open)")]
    UserAtCapacity(usize),
}

/// A new client's starting point: what to replay, whether to announce a reset, and its
/// live queue. Dropping it unsubscribes.
pub struct Subscription {
    pub replay: Vec<Arc<Frame>>,
    pub reset: Option<Bytes>,
    pub rx: mpsc::Receiver<Arc<Frame>>,
    pub shutdown: watch::Receiver<bool>,
    pub guard: SubscriberGuard,
    /// Cluster mode: the client resumes from before what the ring holds (or from ahead of
    /// this host) and first catches up from the stream.
    /// (Boxed: a rare, large state that must not grow every client's stream.)
    pub catch_up: Option<Box<super::catch_up::CatchUp>>,
}

/// Unsubscribes and frees the client's slot when dropped.
pub struct SubscriberGuard {
    hub: StreamHub,
    id: u64,
    _user: UserSlot,
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

/// Frees one of a user's stream slots when dropped.
struct UserSlot {
    hub: StreamHub,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut per_user = self.hub.inner.per_user.lock();
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

impl StreamHub {
    /// Start the hub task on the current runtime, fed by `bus`.
    pub fn start(bus: &Bus, policies: Arc<Policies>, settings: StreamSettings) -> StreamHub {
        Self::start_with_bus_capacity(bus, policies, settings, HUB_BUS_CAPACITY)
    }

    fn start_with_bus_capacity(
        bus: &Bus,
        policies: Arc<Policies>,
        settings: StreamSettings,
        bus_capacity: usize,
    ) -> StreamHub {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            .max(1);
        let hub = StreamHub::new(epoch, settings, None);
        tokio::spawn(run(
            hub.clone(),
            bus.clone(),
            bus.subscribe(bus_capacity),
            policies,
            bus_capacity,
        ));
        hub
    }

    /// Cluster mode: start the hub fed by the cluster's stream of routed frames (from the
    /// first frame after the stream's end at start); ids are stream sequences. Needs a
    /// tokio runtime.
    /// `legacy`: a bus to hand each event to as well (the legacy voice bridge's).
    pub fn start_cluster(
        stream: crate::cluster::stream::FrameStream,
        settings: StreamSettings,
        legacy: Option<Bus>,
    ) -> StreamHub {
        let hub = StreamHub::new(frame::CLUSTER_EPOCH, settings, Some(stream.clone()));
        let feed = super::catch_up::feed_from_stream(hub.clone(), stream, legacy);
        let mut stopped = hub.inner.shutdown.subscribe();
        // The feed (and its NATS consumer) ends with the hub's shutdown.
        tokio::spawn(async move {
            tokio::select! {
                _ = feed => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
        hub
    }

    fn new(
        epoch: u64,
        settings: StreamSettings,
        cluster: Option<crate::cluster::stream::FrameStream>,
    ) -> StreamHub {
        StreamHub {
            inner: Arc::new(Inner {
                state: Mutex::new(HubState {
                    ring: ReplayRing::new(
                        settings.replay_capacity,
                        settings.replay_max_mib.saturating_mul(1024 * 1024),
                    ),
                    next_seq: 1,
                    subscribers: Vec::new(),
                }),
                epoch,
                settings,
                clients: AtomicUsize::new(0),
                per_user: Mutex::new(HashMap::new()),
                next_subscriber: AtomicU64::new(0),
                lagged: AtomicU64::new(0),
                id_restarts: AtomicU64::new(0),
                shutdown: watch::channel(false).0,
                replay_bytes: metrics::gauge!("gateway_sse_replay_bytes"),
                latency: Arc::new(LatencyWindow::default()),
                cluster,
                stream_ok: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Cluster mode: whether the hub's stream reader is up.
    pub fn stream_ok(&self) -> bool {
        self.inner.stream_ok.load(Ordering::Relaxed)
    }

    pub(super) fn set_stream_ok(&self, ok: bool) {
        self.inner.stream_ok.store(ok, Ordering::Relaxed);
    }

    /// Whether the hub serves the cluster's stream.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// The stream settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.inner.settings
    }

    /// The window the hub records each frame's gateway→SSE latency into (the console's
    /// sampler empties it once a second).
    pub fn latency_window(&self) -> Arc<LatencyWindow> {
        self.inner.latency.clone()
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

    /// End every open stream now, after the frames already queued for it; clients come
    /// back with `Last-Event-ID` and resume from the replay ring. Returns how many ended.
    /// (The demo's "drop my stream" button shows resuming with it.)
    pub fn disconnect_all(&self) -> usize {
        let mut state = self.inner.state.lock();
        let n = state.subscribers.len();
        state.subscribers.clear();
        n
    }

    /// Cluster mode: the stream was created again (a NATS server that lost its store) and
    /// its sequences start again. Forget the ring and end every open stream:
    /// their ids belong to the old stream, so they come back, cannot be placed, and get a
    /// `reset` instead of being mixed with the new stream's ids. Returns how many ended.
    pub(super) fn restart_ids(&self) -> usize {
        let mut state = self.inner.state.lock();
        state.ring.clear();
        state.next_seq = 1;
        let n = state.subscribers.len();
        state.subscribers.clear();
        drop(state);
        self.inner.replay_bytes.set(0.0);
        self.inner.id_restarts.fetch_add(1, Ordering::Relaxed);
        n
    }

    /// Cluster mode: how many times the stream was found re-created and the ids started
    /// again.
    pub fn id_restarts(&self) -> u64 {
        self.inner.id_restarts.load(Ordering::Relaxed)
    }

    /// Tell every stream to end (graceful shutdown).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Subscribe `user` to `patterns`, resuming after `last_event_id` if given.
    pub fn subscribe(
        &self,
        user: &str,
        patterns: Vec<String>,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, SubscribeError> {
        let user_slot = self.take_user_slot(user)?;
        let inner = &self.inner;
        let open = inner.clients.fetch_add(1, Ordering::Relaxed);
        if open >= inner.settings.max_clients.max(1) {
            inner.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(SubscribeError::AtCapacity(open));
        }
        metrics::gauge!("gateway_sse_clients").set((open + 1) as f64);
        let id = inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let guard = SubscriberGuard {
            hub: self.clone(),
            id,
            _user: user_slot,
        };
        let (tx, rx) = mpsc::channel(inner.settings.client_queue.max(1));
        // Under the lock: place the id, copy the ring's pointers after it, register.
        let mut state = inner.state.lock();
        let mut catch_up_from = None;
        let (mut replay, reset) = match last_event_id {
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
                    ResumePoint::After(seq) => (state.ring.range_after(seq), None),
                    // Cluster mode: the stream itself places the id (or says it cannot).
                    ResumePoint::Unplaceable(_)
                        if inner.cluster.is_some() && last.epoch == frame::CLUSTER_EPOCH =>
                    {
                        catch_up_from = Some(last.seq);
                        (Vec::new(), None)
                    }
                    ResumePoint::Unplaceable(why) => (
                        Vec::new(),
                        Some(frame::reset_frame(raw, why, state.ring.oldest())),
                    ),
                },
            },
        };
        let subscriber = Subscriber {
            id,
            patterns: patterns.clone(),
            tx,
        };
        let catch_up = match (catch_up_from, &inner.cluster) {
            (Some(have), Some(stream)) => Some(Box::new(super::catch_up::CatchUp::new(
                self.clone(),
                stream.clone(),
                have,
                subscriber,
                last_event_id.unwrap_or_default(),
            ))),
            _ => {
                state.subscribers.push(subscriber);
                None
            }
        };
        drop(state);
        // Outside it: keep what this client's topics match.
        replay.retain(|f| f.to_all || frame::matches(&patterns, &f.topics));
        if reset.is_some() {
            metrics::counter!("gateway_sse_resets_total", "cause" => frame::CAUSE_UNPLACEABLE)
                .increment(1);
        }
        Ok(Subscription {
            replay,
            reset,
            rx,
            shutdown: inner.shutdown.subscribe(),
            guard,
            catch_up,
        })
    }

    /// Cluster mode: a catching-up client that has every frame through `have` joins the
    /// live fan-out if the ring can take it from there; it gets the ring's frames after
    /// `have` (filtered by its topics). `Err` gives the subscriber back: not yet.
    pub(super) fn join(
        &self,
        subscriber: Subscriber,
        have: u64,
    ) -> Result<Vec<Arc<Frame>>, Subscriber> {
        let mut state = self.inner.state.lock();
        let id = EventId {
            epoch: self.inner.epoch,
            seq: have,
        };
        match state.ring.locate(id, self.inner.epoch, state.next_seq) {
            ResumePoint::After(seq) => {
                let mut replay = state.ring.range_after(seq);
                let patterns = subscriber.patterns.clone();
                state.subscribers.push(subscriber);
                drop(state);
                replay.retain(|f| f.to_all || frame::matches(&patterns, &f.topics));
                Ok(replay)
            }
            ResumePoint::Unplaceable(_) => Err(subscriber),
        }
    }

    /// Cluster mode: a catching-up client joins the live fan-out as it is now, without
    /// replay (after a `reset`).
    pub(super) fn join_live(&self, subscriber: Subscriber) {
        self.inner.state.lock().subscribers.push(subscriber);
    }

    fn take_user_slot(&self, user: &str) -> Result<UserSlot, SubscribeError> {
        let mut per_user = self.inner.per_user.lock();
        let n = per_user.entry(user.to_string()).or_insert(0);
        if *n >= self.inner.settings.max_streams_per_user.max(1) {
            return Err(SubscribeError::UserAtCapacity(*n));
        }
        *n += 1;
        Ok(UserSlot {
            hub: self.clone(),
            user: user.to_string(),
        })
    }

    /// Publish a `reset` announcing a loss before the next event (it takes the next id).
    fn publish_loss(&self, next_seq: &mut u64, cause: &'static str, reason: &str) {
        let id = EventId {
            epoch: self.inner.epoch,
            seq: *next_seq,
        };
        *next_seq += 1;
        metrics::counter!("gateway_sse_resets_total", "cause" => cause).increment(1);
        tracing::warn!(%id, cause, reason, "events were lost; clients get a reset");
        self.publish(Arc::new(Frame::loss(id, cause, reason)));
    }

    /// Record `frame` and offer it to every matching subscriber (the bus's routed events,
    /// or in cluster mode the stream's frames). Returns how many subscribers got it.
    pub(super) fn publish(&self, frame: Arc<Frame>) -> u64 {
        let mut state = self.inner.state.lock();
        state.next_seq = frame.id.seq + 1;
        state.ring.push(frame.clone());
        let ring_bytes = state.ring.bytes();
        let mut delivered = 0u64;
        let mut lagged = 0u64;
        state.subscribers.retain(|s| {
            if !frame.to_all && !frame::matches(&s.patterns, &frame.topics) {
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
        self.inner.replay_bytes.set(ring_bytes as f64);
        metrics::counter!("gateway_sse_deliveries_total").increment(delivered);
        let latency = frame.received_at.elapsed();
        metrics::histogram!("gateway_event_to_sse_seconds").record(latency.as_secs_f64());
        self.inner.latency.record(latency);
        if lagged > 0 {
            self.inner.lagged.fetch_add(lagged, Ordering::Relaxed);
            metrics::counter!("gateway_sse_slow_client_drops_total").increment(lagged);
            tracing::warn!(
                clients = lagged,
                "disconnected SSE clients that fell behind (they resume with Last-Event-ID)"
            );
        }
        delivered
    }
}

/// The hub task: drain the bus in batches, route each batch in one hop, publish.
async fn run(
    hub: StreamHub,
    bus: Bus,
    mut sub: BusSubscription,
    policies: Arc<Policies>,
    bus_capacity: usize,
) {
    let mut next_seq = 1u64;
    loop {
        let first = match sub.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged) => {
                tracing::error!(
                    "the stream hub fell behind the bus; events were lost for SSE clients"
                );
                sub = bus.subscribe(bus_capacity);
                hub.publish_loss(
                    &mut next_seq,
                    frame::CAUSE_HUB_LAG,
                    "the host fell behind its upstream and lost events",
                );
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
/// most, not by one deadline per event of the batch. An event that follows a loss is
/// preceded by a `reset` frame.
async fn route_batch(
    hub: &StreamHub,
    policies: &Arc<Policies>,
    batch: &[Arc<BusEvent>],
    next_seq: &mut u64,
) {
    route_each(policies, batch, |event, meta, verdict| {
        if let Some(why) = event.loss_before {
            hub.publish_loss(
                next_seq,
                frame::CAUSE_UPSTREAM_LOSS,
                &format!("events were lost upstream: {why}"),
            );
        }
        let answered_by = verdict.answered_by();
        match verdict.value {
            RouteDecision::Deliver { topics, payload } => {
                let id = EventId {
                    epoch: hub.inner.epoch,
                    seq: *next_seq,
                };
                *next_seq += 1;
                tracing::debug!(event = "event.routed", trace_id = %event.trace_id, %id, topics = ?topics, fallback = verdict.fallback.is_some(), answered_by, "event routed");
                let replacement = payload.as_deref().and_then(|p| parse_payload(p, event));
                let clients = hub.publish(Arc::new(Frame::build(
                    id,
                    event,
                    meta,
                    topics,
                    replacement.as_deref(),
                )));
                let latency_ms = event.received_at.elapsed().as_secs_f64() * 1000.0;
                tracing::debug!(event = "event.delivered", trace_id = %event.trace_id, %id, clients, latency_ms, "event delivered");
            }
            RouteDecision::Drop => {
                tracing::debug!(event = "event.dropped", trace_id = %event.trace_id, fallback = verdict.fallback.is_some(), answered_by, "event dropped by the router");
            }
        }
    })
    .await;
}

/// Routes `batch` through the router slot in as few hops as possible and hands each
/// event's verdict to `on`, in order, as soon as its hop is back: a hop ends after about
/// one call deadline, so a failing router delays the events behind it by one deadline at
/// most, not by one deadline per event. Shared by the single-host hub and the cluster's
/// publisher.
pub(crate) async fn route_each(
    policies: &Arc<Policies>,
    batch: &[Arc<BusEvent>],
    mut on: impl FnMut(&Arc<BusEvent>, &EventMeta, Verdict<RouteDecision>),
) {
    let events = Arc::new(batch.iter().map(|e| policy_event(e)).collect::<Vec<_>>());
    let mut from = 0;
    while from < batch.len() {
        let verdicts = policies.route_events(events.clone(), from).await;
        if verdicts.is_empty() {
            return;
        }
        for verdict in verdicts {
            on(&batch[from], &events[from].meta, verdict);
            from += 1;
        }
    }
}

/// The router's replacement payload as raw JSON (`None`, logged: not JSON; the original
/// is sent). Also used by the cluster's publisher.
pub(crate) fn parse_payload(payload: &str, event: &BusEvent) -> Option<Box<RawValue>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySettings;
    use std::time::Instant;

    fn event(seq: u64) -> Arc<BusEvent> {
        Arc::new(BusEvent {
            session_id: "s".into(),
            seq,
            trace_id: format!("t{seq}"),
            t: "MESSAGE_CREATE".into(),
            ts: 0,
            d: RawValue::from_string(r#"{"guild_id":"1"}"#.into()).expect("valid json"),
            received_at: Instant::now(),
            loss_before: None,
        })
    }

    fn text(f: &Frame) -> &str {
        std::str::from_utf8(&f.bytes).unwrap_or("")
    }

    /// A resumed client holds its replayed frames only until it has written them.
    #[tokio::test(flavor = "current_thread")]
    async fn replayed_frames_are_released_once_written() -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let bus = Bus::new();
        let policies = Arc::new(Policies::with_defaults(PolicySettings::default())?);
        let settings = StreamSettings {
            max_clients: 10,
            ..StreamSettings::default()
        };
        let hub = StreamHub::start(&bus, policies, settings.clone());
        for seq in 1..=20 {
            bus.publish(event(seq));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while hub.last_id().map(|i| i.seq) != Some(20) {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "hub never published"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = format!("{}-1", hub.inner.epoch);
        let sub = hub
            .subscribe("u", vec!["*".into()], Some(&first))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(sub.replay.len(), 19);
        let ring = hub.inner.state.lock().ring.range_after(0);
        let mut body = Box::pin(super::super::stream::client_stream(sub, &settings));
        // Prelude (retry hint), then the replay in one chunk.
        let mut written = String::new();
        while written.matches("event: MESSAGE_CREATE").count() < 19 {
            let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("body ended"))??;
            written.push_str(std::str::from_utf8(&chunk)?);
        }
        // Only the ring and this test's snapshot hold the frames now.
        assert!(
            ring.iter().all(|f| Arc::strong_count(f) == 2),
            "{:?}",
            ring.iter().map(Arc::strong_count).collect::<Vec<_>>()
        );
        drop(body);
        Ok(())
    }

    /// The hub falling behind the bus is a loss too: a `reset` (cause `hub_lag`) with its
    /// own id comes between the events before and after the hole.
    #[tokio::test(flavor = "current_thread")]
    async fn hub_lag_publishes_a_reset_before_the_next_event() -> anyhow::Result<()> {
        let bus = Bus::new();
        let policies = Arc::new(Policies::with_defaults(PolicySettings::default())?);
        let settings = StreamSettings {
            max_clients: 10,
            ..StreamSettings::default()
        };
        let hub = StreamHub::start_with_bus_capacity(&bus, policies, settings, 4);
        let mut sub = hub
            .subscribe("u", vec!["*".into()], None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The hub task cannot run until we await: its bus queue of 4 overflows.
        for seq in 1..=10 {
            bus.publish(event(seq));
        }
        let mut got = Vec::new();
        for _ in 0..5 {
            let f = tokio::time::timeout(Duration::from_secs(20), sub.rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed"))?;
            got.push(f);
        }
        assert!(
            got[..4]
                .iter()
                .all(|f| text(f).contains("event: MESSAGE_CREATE"))
        );
        assert!(text(&got[4]).contains("event: reset"), "{}", text(&got[4]));
        assert!(text(&got[4]).contains("hub_lag"));
        assert!(got[4].to_all);
        bus.publish(event(11));
        let next = tokio::time::timeout(Duration::from_secs(20), sub.rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(next.id.seq, got[4].id.seq + 1);
        assert!(text(&next).contains("\"upstreamSeq\":11"));
        Ok(())
    }
}
