//! Terminal outcomes, and the bounded store behind `GET /api/commands/{requestId}`.
//!
//! Why a store: `POST` waits for the ack only so long; past that the caller holds a
//! requestId and must still learn how the command ended. Every accepted command is
//! recorded here as `pending` when queued and gets exactly one terminal outcome
//! (`delivered`, `rejected`, `expired`, or `shutdown` when the host stopped first). Memory stays bounded: pending entries are bounded
//! by the queue capacity, finished ones by a count and a time to live.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_protocol::CommandKind;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The upstream acked it; `result` is what it returned.
    Delivered { result: Option<Value> },
    /// The upstream refused it for good (`invalid-command`, `not-found`, `forbidden`, …).
    Rejected { code: String, message: String },
    /// Not finished within the expiry. With `attempts > 0` the upstream may have acted.
    Expired,
    /// Not finished when the host shut down (within its shutdown deadline). With
    /// `attempts > 0` the upstream may have acted.
    Shutdown,
}

impl Outcome {
    /// The label used in JSON and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Expired => "expired",
            Outcome::Shutdown => "shutdown",
        }
    }
}

/// A finished command.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub request_id: String,
    pub trace_id: String,
    pub kind: CommandKind,
    pub outcome: Outcome,
    /// Times the command was written to the link.
    pub attempts: u32,
    /// From acceptance to the outcome.
    pub latency: Duration,
}

impl Finished {
    /// The outcome document shared by `POST` and `GET`.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "version": "1.0",
            "requestId": self.request_id,
            "traceId": self.trace_id,
            "kind": self.kind.as_str(),
            "outcome": self.outcome.as_str(),
            "attempts": self.attempts,
            "latencyMs": latency_ms(self.latency),
        });
        match &self.outcome {
            Outcome::Delivered { result: Some(r) } => doc["result"] = r.clone(),
            Outcome::Rejected { code, message } => {
                doc["rejection"] = json!({ "code": code, "message": message });
            }
            _ => {}
        }
        doc
    }
}

/// Milliseconds with microsecond precision.
pub fn latency_ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The document for a command still in the pipeline.
pub fn pending_json(request_id: &str, trace_id: &str, kind: CommandKind) -> Value {
    json!({
        "version": "1.0",
        "requestId": request_id,
        "traceId": trace_id,
        "kind": kind.as_str(),
        "outcome": "pending",
    })
}

enum State {
    Pending { trace_id: String, kind: CommandKind },
    Done(Finished),
}

struct Entry {
    owner: String,
    state: State,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Finished requestIds, oldest first, with their completion time.
    finished: VecDeque<(Instant, String)>,
}

/// Pending and finished commands by requestId, bounded by count and age.
pub struct OutcomeStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_finished: usize,
}

impl OutcomeStore {
    pub fn new(ttl: Duration, max_finished: usize) -> OutcomeStore {
        OutcomeStore {
            inner: Mutex::default(),
            ttl,
            max_finished,
        }
    }

    /// Records an accepted command owned by `owner`.
    pub fn pending(&self, request_id: &str, trace_id: &str, kind: CommandKind, owner: &str) {
        let entry = Entry {
            owner: owner.to_string(),
            state: State::Pending {
                trace_id: trace_id.to_string(),
                kind,
            },
        };
        self.inner
            .lock()
            .entries
            .insert(request_id.to_string(), entry);
    }

    /// Records the terminal outcome (once; a second call for the same id is ignored).
    pub fn finish(&self, finished: Finished) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let Some(entry) = inner.entries.get_mut(&finished.request_id) else {
            return;
        };
        if matches!(entry.state, State::Done(_)) {
            return;
        }
        let id = finished.request_id.clone();
        entry.state = State::Done(finished);
        inner.finished.push_back((now, id));
        self.evict(&mut inner, now);
    }

    /// Drops a pending entry whose command was refused after all (queue full).
    pub fn forget(&self, request_id: &str) {
        let mut inner = self.inner.lock();
        if matches!(
            inner.entries.get(request_id).map(|e| &e.state),
            Some(State::Pending { .. })
        ) {
            inner.entries.remove(request_id);
        }
    }

    /// The document for `request_id` if `owner` sent it (others get `None`, like unknown ids).
    pub fn get(&self, request_id: &str, owner: &str) -> Option<Value> {
        let mut inner = self.inner.lock();
        self.evict(&mut inner, Instant::now());
        let entry = inner.entries.get(request_id).filter(|e| e.owner == owner)?;
        Some(match &entry.state {
            State::Pending { trace_id, kind } => pending_json(request_id, trace_id, *kind),
            State::Done(f) => f.to_json(),
        })
    }

    /// Entries held (pending + finished).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.finished.front() {
            let too_many = inner.finished.len() > self.max_finished;
            if !too_many && now.duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, id)) = inner.finished.pop_front() {
                inner.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: &str) -> Finished {
        Finished {
            request_id: id.into(),
            trace_id: "t".into(),
            kind: CommandKind::TypingStart,
            outcome: Outcome::Expired,
            attempts: 0,
            latency: Duration::from_millis(1),
        }
    }

    #[test]
    fn owner_sees_pending_then_final() {
        let store = OutcomeStore::new(Duration::from_secs(60), 10);
        store.pending("a", "t", CommandKind::TypingStart, "u1");
        assert_eq!(store.get("a", "u1").unwrap()["outcome"], "pending");
        assert!(store.get("a", "u2").is_none());
        store.finish(done("a"));
        assert_eq!(store.get("a", "u1").unwrap()["outcome"], "expired");
    }

    #[test]
    fn finished_entries_are_bounded_by_count_and_age() {
        let store = OutcomeStore::new(Duration::from_secs(60), 2);
        for id in ["a", "b", "c"] {
            store.pending(id, "t", CommandKind::TypingStart, "u");
            store.finish(done(id));
        }
        assert!(store.get("a", "u").is_none());
        assert_eq!(store.len(), 2);
        let short = OutcomeStore::new(Duration::ZERO, 10);
        short.pending("x", "t", CommandKind::TypingStart, "u");
        short.finish(done("x"));
        assert!(short.get("x", "u").is_none() && short.is_empty());
    }
}
