//! State shared by the listeners, the connections and the control surface.
//!
//! One `Shared` per simulator; connections hold an `Arc` to it. Locks are std mutexes
//! held for microseconds (never across an await), which keeps the simulator simple and
//! its timing predictable for tests.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use gateway_protocol::{Event, RawValue, UpstreamFrame};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::commands::{CommandLog, FailMode};
use crate::payloads::{User, World, now_ms};
use crate::session::{ResumePoint, Session};

/// Locks a mutex, ignoring poisoning: the data stays consistent because no code panics
/// while holding these locks, and a simulator must keep serving regardless.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An order sent to every live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkSignal {
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Keep the TCP connection open but send nothing more (no events, acks or pongs).
    Stall,
    /// Send this many malformed frames.
    Malformed(u32),
    /// Send this many well-formed frames with an unknown op.
    Unknown(u32),
    /// Send one event frame this far ahead of the session's last seq (not buffered).
    Stray(u64),
    /// Send a close frame with this code and wait (bounded) for the host's answer.
    Close(u16),
    /// Send one (unknown-op) text frame of this many bytes.
    Oversize(usize),
}

/// The result of one upgrade attempt on `/link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Token accepted, WebSocket upgraded.
    Accepted,
    /// Missing or wrong token: answered 401.
    Unauthorized,
    /// Right token, but the refuse-auth fault answered 401.
    Refused,
}

/// One upgrade attempt, for tests that check reconnect spacing.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// When the request arrived.
    pub at: Instant,
    /// How it was answered.
    pub outcome: AttemptOutcome,
}

/// Fault switches read on the hot path.
#[derive(Default)]
pub(crate) struct Faults {
    pub refuse_auth: AtomicBool,
    pub ack_delay_ms: AtomicU64,
    /// 0 off, 1 retryable, 2 fatal.
    pub fail_acks: AtomicU8,
    pub malformed_every: AtomicU64,
    /// Already-delivered events re-sent on a successful resume (at-least-once replay).
    pub replay_overlap: AtomicU64,
    /// Answer `resumed: true` to any resume naming the current session id, even one it
    /// cannot serve (a faulty upstream).
    pub claim_resumed: AtomicBool,
}

impl Faults {
    pub fn fail_mode(&self) -> Option<FailMode> {
        match self.fail_acks.load(Ordering::Relaxed) {
            1 => Some(FailMode::Retryable),
            2 => Some(FailMode::Fatal),
            _ => None,
        }
    }

    pub fn set_fail_mode(&self, mode: Option<FailMode>) {
        let v = match mode {
            None => 0,
            Some(FailMode::Retryable) => 1,
            Some(FailMode::Fatal) => 2,
        };
        self.fail_acks.store(v, Ordering::Relaxed);
    }

    pub fn ack_delay(&self) -> Duration {
        Duration::from_millis(self.ack_delay_ms.load(Ordering::Relaxed))
    }
}

/// Everything the simulator knows.
pub(crate) struct Shared {
    pub token: String,
    pub replay_capacity: usize,
    pub session: Mutex<Session>,
    /// Bumped after every change of the session (new events, restart): wakes connections.
    pub seq_tx: watch::Sender<u64>,
    pub world: Mutex<World>,
    pub bot: User,
    pub faults: Faults,
    pub signals: broadcast::Sender<LinkSignal>,
    pub commands: Mutex<CommandLog>,
    pub attempts: Mutex<Vec<Attempt>>,
    pub links_live: AtomicUsize,
    pub links_accepted: AtomicU64,
    /// Close frames we sent that the host answered (close handshake completed).
    pub close_replies: AtomicU64,
}

/// Attempts are kept for inspection up to this many.
const ATTEMPTS_CAPACITY: usize = 10_000;

impl Shared {
    pub fn new(token: String, replay_capacity: usize, seed: u64) -> Self {
        let mut world = World::new(seed);
        let session = Session::new(session_id(), replay_capacity);
        let bot = User {
            id: world.next_id(),
            username: "gateway-bot".into(),
        };
        Self {
            token,
            replay_capacity,
            session: Mutex::new(session),
            seq_tx: watch::channel(0).0,
            world: Mutex::new(world),
            bot,
            faults: Faults::default(),
            signals: broadcast::channel(64).0,
            commands: Mutex::new(CommandLog::default()),
            attempts: Mutex::new(Vec::new()),
            links_live: AtomicUsize::new(0),
            links_accepted: AtomicU64::new(0),
            close_replies: AtomicU64::new(0),
        }
    }

    /// Checks the upgrade request's bearer token (and the refuse-auth fault).
    pub fn authorize(&self, headers: &HeaderMap) -> AttemptOutcome {
        let expected = format!("Bearer {}", self.token);
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let outcome = match given {
            Some(g) if g == expected => {
                if self.faults.refuse_auth.load(Ordering::Relaxed) {
                    AttemptOutcome::Refused
                } else {
                    AttemptOutcome::Accepted
                }
            }
            _ => AttemptOutcome::Unauthorized,
        };
        let mut attempts = lock(&self.attempts);
        if attempts.len() < ATTEMPTS_CAPACITY {
            attempts.push(Attempt {
                at: Instant::now(),
                outcome,
            });
        }
        outcome
    }

    /// Where a connection that sent `resume` starts.
    pub fn resume_point(&self, session_id: Option<&str>, last_seq: u64) -> ResumePoint {
        let overlap = self.faults.replay_overlap.load(Ordering::Relaxed);
        let session = lock(&self.session);
        let mut point = session.resume_point(session_id, last_seq, overlap);
        if self.faults.claim_resumed.load(Ordering::Relaxed)
            && session_id == Some(session.id())
            && !point.resumed
        {
            // The faulty upstream of the issue: "resumed", from its live edge.
            point.resumed = true;
            point.next_seq = session.last_seq() + 1;
        }
        point
    }

    /// An event frame `ahead` seqs past the session's edge, not buffered.
    pub fn stray_frame(&self, ahead: u64) -> String {
        let seq = lock(&self.session).last_seq().saturating_add(ahead);
        let trace_id = lock(&self.world).hex_id();
        event_frame(seq, trace_id, "MESSAGE_CREATE", &serde_json::json!({}))
    }

    /// Emits `n` random events; returns the last seq.
    pub fn emit_random(&self, n: usize) -> u64 {
        let mut world = lock(&self.world);
        let mut session = lock(&self.session);
        let mut last = session.last_seq();
        for _ in 0..n {
            let (t, d) = world.random_event();
            let trace_id = world.hex_id();
            last = session.push(|seq| event_frame(seq, trace_id, t, &d));
        }
        drop(session);
        self.seq_tx.send_replace(last);
        last
    }

    /// Emits one given event; returns its seq.
    pub fn emit(&self, t: &str, d: &Value, trace_id: String) -> u64 {
        let seq = lock(&self.session).push(|seq| event_frame(seq, trace_id, t, d));
        self.seq_tx.send_replace(seq);
        seq
    }

    /// Emits one event whose `d` is `raw` JSON text, kept byte for byte (e.g.
    /// pretty-printed); returns its seq, or `None` if `raw` is not JSON.
    pub fn emit_raw(&self, t: &str, raw: &str, trace_id: String) -> Option<u64> {
        let d = RawValue::from_string(raw.to_owned()).ok()?;
        let frame = |seq| {
            UpstreamFrame::Event(Event {
                seq,
                trace_id,
                t: t.to_owned(),
                d,
                ts: now_ms(),
            })
            .encode()
        };
        let seq = lock(&self.session).push(frame);
        self.seq_tx.send_replace(seq);
        Some(seq)
    }

    /// Starts a new session (as an upstream restart would) and drops every link. With
    /// `keep_id`, the new session reuses the old id (an upstream that restarts and keeps
    /// its session id, losing its buffer): seq starts again at 1 under the same id.
    pub fn restart_session(&self, keep_id: bool) -> String {
        let mut session = lock(&self.session);
        let id = if keep_id {
            session.id().to_owned()
        } else {
            session_id()
        };
        *session = Session::new(id.clone(), self.replay_capacity);
        drop(session);
        self.seq_tx.send_replace(0);
        let _ = self.signals.send(LinkSignal::Drop);
        id
    }

    /// Makes the session's numbering skip `by` seqs (the next event is `last + by + 1`).
    pub fn jump_seq(&self, by: u64) {
        lock(&self.session).jump(by);
    }
}

/// A session id unique to this process start (never derived from the seed: two
/// simulator runs with the same seed are two different sessions).
fn session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Serialises an event frame; `ts` is the emission time.
fn event_frame(seq: u64, trace_id: String, t: &str, d: &Value) -> String {
    let d: Box<RawValue> =
        serde_json::value::to_raw_value(d).expect("a serde_json::Value always serialises");
    UpstreamFrame::Event(Event {
        seq,
        trace_id,
        t: t.to_owned(),
        d,
        ts: now_ms(),
    })
    .encode()
}
