//! [`CommandQueue`]: accepted commands waiting for the dispatcher, FIFO and bounded.
//!
//! The bound counts every command accepted and not yet finished (waiting here *and* in
//! flight at the dispatcher), so the pipeline as a whole never holds more than
//! `queue-capacity` commands, whatever the link does. A full pipeline answers 503 at the
//! door instead of growing. Handlers push synchronously under a short lock; the
//! dispatcher is woken through a [`Notify`] (which keeps a permit, so no wake-up is lost).
//!
//! Fairness: the same count is also kept per owner (the token's `sub`), capped at
//! `max-per-user`, so one user cannot fill the shared capacity (e.g. rotating channel ids
//! to get a fresh rate-limit bucket each time while the link is down) and starve the rest.
//! The per-owner map only holds owners with commands outstanding, so it is bounded by the
//! queue capacity.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use gateway_protocol::{Command, CommandBody, CommandKind};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::outcomes::Finished;

/// One accepted command and its delivery bookkeeping.
#[derive(Debug)]
pub struct Envelope {
    /// Idempotency key on the link; the same on every re-send.
    pub request_id: String,
    /// Correlates the HTTP request, logs, the link frame and the follow-up event.
    pub trace_id: String,
    /// The token's `sub`; only it may read the outcome.
    pub owner: String,
    /// The normalised command.
    pub body: CommandBody,
    /// Ordering key: commands of one channel are delivered in acceptance order.
    pub channel_id: String,
    /// When the command was accepted (monotonic).
    pub enqueued_at: Instant,
    /// When the command was accepted, ms since the Unix epoch (for logs).
    pub enqueued_at_ms: u64,
    /// Times written to the link so far.
    pub attempts: u32,
    /// Not to be sent before this instant (retry backoff).
    pub next_attempt_at: Instant,
    /// The span every log record about this command is written in.
    pub span: tracing::Span,
    /// The `POST` handler waiting for the outcome, if it still waits.
    pub waiter: Option<oneshot::Sender<Finished>>,
}

impl Envelope {
    /// A fresh envelope accepted now.
    pub fn new(request_id: String, trace_id: String, owner: String, body: CommandBody) -> Self {
        let channel_id = channel_of(&body).to_string();
        let span = tracing::info_span!("command", trace_id = %trace_id, request_id = %request_id, kind = body.kind().as_str());
        let now = Instant::now();
        Envelope {
            request_id,
            trace_id,
            owner,
            body,
            channel_id,
            enqueued_at: now,
            enqueued_at_ms: crate::policy::version::unix_ms(),
            attempts: 0,
            next_attempt_at: now,
            span,
            waiter: None,
        }
    }

    pub fn kind(&self) -> CommandKind {
        self.body.kind()
    }

    /// The link frame's command.
    pub fn wire(&self) -> Command {
        Command {
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            body: self.body.clone(),
        }
    }

    /// The instant this command expires.
    pub fn expires_at(&self, expiry: Duration) -> Instant {
        self.enqueued_at + expiry
    }
}

fn channel_of(body: &CommandBody) -> &str {
    match body {
        CommandBody::SendMessage(m) => &m.channel_id,
        CommandBody::AddReaction(r) => &r.channel_id,
        CommandBody::TypingStart(t) => &t.channel_id,
    }
}

/// Why a command was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    /// The pipeline as a whole is at capacity.
    #[error("the command queue is full")]
    Full,
    /// This owner already has `limit` commands accepted and not finished.
    #[error("too many commands pending for this user (limit {limit})")]
    OwnerLimit { limit: usize },
    /// The host is shutting down and accepts no new commands.
    #[error("the host is shutting down")]
    ShuttingDown,
}

struct Inner {
    waiting: VecDeque<Envelope>,
    /// Accepted and not finished: waiting + in flight.
    outstanding: usize,
    /// The same, per owner (only owners with at least one).
    per_owner: HashMap<String, usize>,
    /// Set once shutdown began: nothing new is accepted.
    closed: bool,
}

/// The FIFO of accepted commands not yet handed to the dispatcher.
pub struct CommandQueue {
    inner: Mutex<Inner>,
    wake: Notify,
    capacity: usize,
    per_owner_limit: usize,
}

impl CommandQueue {
    /// A queue holding at most `capacity` commands, at most `per_owner_limit` per owner.
    pub fn new(capacity: usize, per_owner_limit: usize) -> CommandQueue {
        CommandQueue {
            inner: Mutex::new(Inner {
                waiting: VecDeque::new(),
                outstanding: 0,
                per_owner: HashMap::new(),
                closed: false,
            }),
            wake: Notify::new(),
            capacity,
            per_owner_limit,
        }
    }

    /// Accepts `envelope` unless the queue is closed, or the pipeline already holds
    /// `capacity` commands, or its owner `per_owner_limit` (checked in that order).
    pub fn push(&self, envelope: Envelope) -> Result<(), QueueFull> {
        let depth = {
            let mut inner = self.inner.lock();
            if inner.closed {
                return Err(QueueFull::ShuttingDown);
            }
            if inner.outstanding >= self.capacity {
                return Err(QueueFull::Full);
            }
            let mine = inner.per_owner.get(&envelope.owner).copied().unwrap_or(0);
            if mine >= self.per_owner_limit {
                return Err(QueueFull::OwnerLimit {
                    limit: self.per_owner_limit,
                });
            }
            inner.outstanding += 1;
            *inner.per_owner.entry(envelope.owner.clone()).or_insert(0) += 1;
            inner.waiting.push_back(envelope);
            inner.outstanding
        };
        metrics::gauge!("gateway_command_queue_depth").set(depth as f64);
        self.wake.notify_one();
        Ok(())
    }

    /// Commands accepted and not finished.
    pub fn outstanding(&self) -> usize {
        self.inner.lock().outstanding
    }

    /// Commands waiting to be sent for the first time.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    /// Commands of `owner` accepted and not finished.
    pub fn outstanding_for(&self, owner: &str) -> usize {
        self.inner.lock().per_owner.get(owner).copied().unwrap_or(0)
    }

    /// Refuses every later push (shutdown).
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
        self.wake.notify_one();
    }

    /// Removes every waiting command (shutdown: they will not be sent).
    pub(crate) fn take_all(&self) -> Vec<Envelope> {
        self.inner.lock().waiting.drain(..).collect()
    }

    /// One command of `owner` has reached its outcome.
    pub(crate) fn finished(&self, owner: &str) {
        let depth = {
            let mut inner = self.inner.lock();
            inner.outstanding = inner.outstanding.saturating_sub(1);
            if let Some(n) = inner.per_owner.get_mut(owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    inner.per_owner.remove(owner);
                }
            }
            inner.outstanding
        };
        metrics::gauge!("gateway_command_queue_depth").set(depth as f64);
    }

    /// Resolves when something was pushed since the last call.
    pub(crate) async fn pushed(&self) {
        self.wake.notified().await;
    }

    /// Removes the waiting commands that expired by `now` (they are the oldest).
    pub(crate) fn take_expired(&self, now: Instant, expiry: Duration) -> Vec<Envelope> {
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        while inner
            .waiting
            .front()
            .is_some_and(|e| e.expires_at(expiry) <= now)
        {
            out.extend(inner.waiting.pop_front());
        }
        out
    }

    /// When the oldest waiting command expires.
    pub(crate) fn next_expiry(&self, expiry: Duration) -> Option<Instant> {
        self.inner
            .lock()
            .waiting
            .front()
            .map(|e| e.expires_at(expiry))
    }

    /// Takes up to `max` commands in FIFO order, skipping any whose channel is in `busy`
    /// or has an older command still waiting (so per-channel order holds). Taken
    /// commands' channels are added to `busy`.
    pub(crate) fn take_ready(&self, max: usize, busy: &mut HashSet<String>) -> Vec<Envelope> {
        let mut inner = self.inner.lock();
        let mut taken = Vec::new();
        if max == 0 || inner.waiting.is_empty() {
            return taken;
        }
        let mut blocked: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::with_capacity(inner.waiting.len());
        for envelope in inner.waiting.drain(..) {
            let free = taken.len() < max
                && !busy.contains(&envelope.channel_id)
                && !blocked.contains(&envelope.channel_id);
            if free {
                busy.insert(envelope.channel_id.clone());
                taken.push(envelope);
            } else {
                blocked.insert(envelope.channel_id.clone());
                kept.push_back(envelope);
            }
        }
        inner.waiting = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_protocol::TypingStart;

    fn env(id: &str, channel: &str) -> Envelope {
        owned(id, channel, "u")
    }

    fn owned(id: &str, channel: &str, owner: &str) -> Envelope {
        Envelope::new(
            id.into(),
            "t".into(),
            owner.into(),
            CommandBody::TypingStart(TypingStart {
                channel_id: channel.into(),
            }),
        )
    }

    #[test]
    fn capacity_counts_outstanding_commands() {
        let q = CommandQueue::new(2, 10);
        q.push(env("a", "1")).unwrap();
        q.push(env("b", "2")).unwrap();
        assert_eq!(q.push(env("c", "3")), Err(QueueFull::Full));
        let mut busy = HashSet::new();
        assert_eq!(q.take_ready(10, &mut busy).len(), 2);
        assert_eq!(
            q.push(env("c", "3")),
            Err(QueueFull::Full),
            "in flight still counts"
        );
        q.finished("u");
        assert!(q.push(env("c", "3")).is_ok());
    }

    #[test]
    fn one_owner_cannot_take_the_whole_capacity() {
        let q = CommandQueue::new(10, 3);
        for i in 0..3 {
            q.push(owned(&format!("a{i}"), &i.to_string(), "alice"))
                .unwrap();
        }
        assert_eq!(
            q.push(owned("a3", "9", "alice")),
            Err(QueueFull::OwnerLimit { limit: 3 })
        );
        assert!(q.push(owned("b0", "1", "bob")).is_ok(), "others unaffected");
        assert_eq!(
            (q.outstanding_for("alice"), q.outstanding_for("bob")),
            (3, 1)
        );
        q.finished("alice");
        assert!(q.push(owned("a3", "9", "alice")).is_ok());
        q.finished("bob");
        assert_eq!(q.outstanding_for("bob"), 0);
        q.close();
        assert_eq!(
            q.push(owned("c", "1", "carol")),
            Err(QueueFull::ShuttingDown)
        );
        assert_eq!(
            q.take_all().len(),
            5,
            "finished() is for commands taken out"
        );
    }

    #[test]
    fn one_command_per_channel_in_fifo_order() {
        let q = CommandQueue::new(10, 10);
        for (id, ch) in [("a", "1"), ("b", "1"), ("c", "2"), ("d", "3")] {
            q.push(env(id, ch)).unwrap();
        }
        let mut busy = HashSet::from(["3".to_string()]);
        let ids: Vec<_> = q
            .take_ready(10, &mut busy)
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(q.waiting(), 2);
    }
}
