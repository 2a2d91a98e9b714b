//! The in-process event bus: upstream events, published once, shared by `Arc`.
//!
//! Why bounded per-subscriber queues instead of a broadcast ring: a ring that overwrites
//! old entries makes a slow reader lose events *silently*. Here `publish` is a
//! synchronous `try_send` to each subscriber's own bounded queue; a subscriber whose
//! queue is full is disconnected on the spot, counted, and told so (its
//! [`Subscription::recv`] ends with [`RecvError::Lagged`] after draining what it had), so
//! it can resume from its last position. A slow or panicking subscriber therefore never
//! blocks the link reader nor delays the others: subscriber code never runs inside
//! `publish`, and a subscriber task that panics just drops its receiver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use gateway_protocol::RawValue;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// One upstream event as the host received it. Shared, never copied per subscriber.
#[derive(Debug)]
pub struct BusEvent {
    /// The upstream session the seq belongs to.
    pub session_id: Arc<str>,
    /// Upstream seq within the session.
    pub seq: u64,
    /// Correlation id from the upstream.
    pub trace_id: String,
    /// Discord dispatch name (`MESSAGE_CREATE`, …).
    pub t: String,
    /// Upstream emission time, ms since the Unix epoch.
    pub ts: u64,
    /// Discord payload, raw JSON exactly as received.
    pub d: Box<RawValue>,
    /// When the host read the frame (for latency measurements).
    pub received_at: Instant,
    /// `Some(why)` when events may have been lost between the previous bus event and this
    /// one (an upstream seq hole, a new upstream session, a resume the upstream could not
    /// replay). Consumers that promise gap-free resumes must surface it (SSE: `reset`).
    pub loss_before: Option<&'static str>,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind (its queue was full) and was disconnected.
    #[error("subscriber lagged and was disconnected")]
    Lagged,
    /// The bus is gone.
    #[error("bus closed")]
    Closed,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<BusEvent>>,
    reason: Arc<OnceLock<RecvError>>,
}

#[derive(Default)]
struct Inner {
    slots: Mutex<Vec<Slot>>,
    next_id: AtomicU64,
    published: AtomicU64,
    lagged: AtomicU64,
}

/// The bus. Cheap to clone; all clones are the same bus.
#[derive(Clone, Default)]
pub struct Bus {
    inner: Arc<Inner>,
}

/// A subscriber's end of the bus.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Arc<BusEvent>>,
    reason: Arc<OnceLock<RecvError>>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes with a queue of `capacity` events (at least 1).
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let reason = Arc::new(OnceLock::new());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.slots.lock().push(Slot {
            id,
            tx,
            reason: reason.clone(),
        });
        Subscription { id, rx, reason }
    }

    /// Hands `event` to every subscriber without waiting; returns how many took it.
    /// Subscribers with a full queue are disconnected (lagged); gone ones are removed.
    pub fn publish(&self, event: Arc<BusEvent>) -> usize {
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let mut delivered = 0;
        let mut lagged = 0u64;
        self.inner
            .slots
            .lock()
            .retain(|slot| match slot.tx.try_send(event.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = slot.reason.set(RecvError::Lagged);
                    lagged += 1;
                    tracing::warn!(subscriber = slot.id, "bus subscriber lagged; disconnected");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        if lagged > 0 {
            self.inner.lagged.fetch_add(lagged, Ordering::Relaxed);
            metrics::counter!("gateway_bus_subscribers_lagged_total").increment(lagged);
        }
        delivered
    }

    /// Subscribers currently attached.
    pub fn subscriber_count(&self) -> usize {
        self.inner.slots.lock().len()
    }

    /// Subscribers disconnected for lagging since start.
    pub fn lagged_total(&self) -> u64 {
        self.inner.lagged.load(Ordering::Relaxed)
    }

    /// Events published since start.
    pub fn published_total(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }
}

impl Subscription {
    /// This subscriber's id (as used in logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event; after a disconnect, queued events are still returned first.
    pub async fn recv(&mut self) -> Result<Arc<BusEvent>, RecvError> {
        match self.rx.recv().await {
            Some(ev) => Ok(ev),
            None => Err(self.end_reason()),
        }
    }

    /// The next event if one is queued; `Ok(None)` when the queue is empty but open.
    pub fn try_recv(&mut self) -> Result<Option<Arc<BusEvent>>, RecvError> {
        match self.rx.try_recv() {
            Ok(ev) => Ok(Some(ev)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.end_reason()),
        }
    }

    fn end_reason(&self) -> RecvError {
        self.reason.get().copied().unwrap_or(RecvError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Arc<BusEvent> {
        Arc::new(BusEvent {
            session_id: "s".into(),
            seq,
            trace_id: format!("t{seq}"),
            t: "MESSAGE_CREATE".into(),
            ts: 0,
            d: RawValue::from_string("{}".into()).expect("valid json"),
            received_at: Instant::now(),
            loss_before: None,
        })
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_arc_in_order() {
        let bus = Bus::new();
        let mut a = bus.subscribe(8);
        let mut b = bus.subscribe(8);
        for seq in 1..=3 {
            assert_eq!(bus.publish(event(seq)), 2);
        }
        for seq in 1..=3 {
            let (x, y) = (a.recv().await, b.recv().await);
            let (x, y) = (x.expect("open"), y.expect("open"));
            assert_eq!(x.seq, seq);
            assert!(Arc::ptr_eq(&x, &y));
        }
    }

    #[tokio::test]
    async fn a_full_subscriber_is_disconnected_and_told_without_affecting_others() {
        let bus = Bus::new();
        let mut slow = bus.subscribe(2);
        let mut fast = bus.subscribe(16);
        for seq in 1..=5 {
            bus.publish(event(seq));
            assert_eq!(fast.recv().await.expect("open").seq, seq);
        }
        assert_eq!(slow.recv().await.expect("queued").seq, 1);
        assert_eq!(slow.recv().await.expect("queued").seq, 2);
        assert_eq!(slow.recv().await.unwrap_err(), RecvError::Lagged);
        assert_eq!(bus.lagged_total(), 1);
        assert_eq!(bus.subscriber_count(), 1);
    }

    #[tokio::test]
    async fn a_panicking_subscriber_is_removed() {
        let bus = Bus::new();
        let sub = bus.subscribe(4);
        let task = tokio::spawn(async move {
            let _sub = sub;
            panic!("subscriber bug");
        });
        assert!(task.await.is_err());
        let mut ok = bus.subscribe(4);
        assert_eq!(bus.publish(event(1)), 1);
        assert_eq!(ok.recv().await.expect("open").seq, 1);
        assert_eq!(bus.subscriber_count(), 1);
    }
}
