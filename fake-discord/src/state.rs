//! The fake's state: the gateway session(s), the live connection, recorded REST requests,
//! injected faults and counters, behind one [`Control`] handle that tests drive.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The bot token it accepts (`Authorization: Bot <token>`, Identify `token`).
    pub token: String,
    /// `heartbeat_interval` sent in Hello.
    pub heartbeat_interval: Duration,
    /// Per-route bucket size: requests per `bucket_window` per (route, major parameter).
    pub bucket_limit: u32,
    /// Per-route bucket window.
    pub bucket_window: Duration,
    /// `session_start_limit.max_concurrency` announced by `GET /gateway/bot`.
    pub max_concurrency: u32,
    /// Emit a few realistic dispatches per second on the live session (the demo), 0 = none.
    pub events_per_second: u32,
}

impl FakeOptions {
    /// Options for `token` with test-friendly timing (heartbeat 250 ms, buckets 5 per 1 s).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            heartbeat_interval: Duration::from_millis(250),
            bucket_limit: 5,
            bucket_window: Duration::from_secs(1),
            max_concurrency: 1,
            events_per_second: 0,
        }
    }
}

/// A REST fault applied to the next request (whose path contains `path_contains`, if set).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `429` for this route's bucket, or the global limit, with `retry_after` seconds.
    RateLimited { retry_after: f64, global: bool },
    /// A plain status with no effect (e.g. 500, 502).
    Status(u16),
    /// A Discord JSON error (`{"code", "message"}`) with an HTTP status.
    Error {
        status: u16,
        code: u32,
        message: String,
    },
    /// Perform the request (create the message), then answer 500 as if the response was
    /// lost: a retry must not create a second message.
    CommitThen500,
}

/// One REST request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw (still percent-encoded) path.
    pub path: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
}

impl RecordedRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the control side asks the live gateway connection to do.
#[derive(Debug, Clone)]
pub enum ConnCommand {
    /// Send this dispatch (already recorded in the session).
    Dispatch { seq: u64, t: String, d: Value },
    /// Send op 7 Reconnect.
    Reconnect,
    /// Send op 9 Invalid Session.
    InvalidSession(bool),
    /// Close with this code.
    Close(u16),
    /// Go silent: no more acks, no more dispatches (a zombie connection).
    Zombie,
}

/// One gateway session: its id and every dispatch sent in it (for resume).
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub seq: u64,
    pub events: Vec<(u64, String, Value)>,
    pub valid: bool,
}

#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub compressed_connections: AtomicU64,
    pub identifies: AtomicU64,
    pub resumes: AtomicU64,
    pub resumes_on_resume_url: AtomicU64,
    pub resumes_refused: AtomicU64,
    pub heartbeats: AtomicU64,
    /// REST requests that arrived while their bucket was known (by headers) to be empty.
    pub bucket_violations: AtomicU64,
    /// REST requests that arrived during a global pause.
    pub global_violations: AtomicU64,
    /// Identifies that arrived with no session start left.
    pub start_limit_violations: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Buckets {
    /// (bucket, major) → (window start, count)
    pub windows: HashMap<(String, String), (Instant, u32)>,
    /// Requests must not arrive before this (after a global 429).
    pub global_until: Option<Instant>,
    /// (bucket, major) → not before (after a route 429).
    pub route_until: HashMap<(String, String), Instant>,
}

pub struct Inner {
    pub options: FakeOptions,
    pub addr: SocketAddr,
    pub session: Mutex<Option<Session>>,
    pub live: Mutex<Option<(u64, mpsc::UnboundedSender<ConnCommand>)>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub faults: Mutex<VecDeque<(Option<String>, Fault)>>,
    pub messages: Mutex<Vec<Value>>,
    pub nonces: Mutex<HashMap<(String, String), Value>>,
    pub(crate) buckets: Mutex<Buckets>,
    pub last_identify: Mutex<Option<Value>>,
    pub counters: Counters,
    pub next_id: AtomicU64,
    /// While set, gateway upgrades are refused with 503 (the gateway is down; REST is not).
    pub gateway_refused: std::sync::atomic::AtomicBool,
    /// `session_start_limit`: starts remaining, and when they reset (to 1000).
    pub start_limit: Mutex<(u64, Instant)>,
}

/// The handle tests use to drive and observe the fake. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub(crate) inner: Arc<Inner>,
}

impl Control {
    pub(crate) fn new(options: FakeOptions, addr: SocketAddr) -> Control {
        Control {
            inner: Arc::new(Inner {
                options,
                addr,
                session: Mutex::new(None),
                live: Mutex::new(None),
                requests: Mutex::new(Vec::new()),
                faults: Mutex::new(VecDeque::new()),
                messages: Mutex::new(Vec::new()),
                nonces: Mutex::new(HashMap::new()),
                buckets: Mutex::new(Buckets::default()),
                last_identify: Mutex::new(None),
                counters: Counters::default(),
                next_id: AtomicU64::new(1),
                gateway_refused: Default::default(),
                start_limit: Mutex::new((1000, Instant::now() + Duration::from_secs(86_400))),
            }),
        }
    }

    /// A fresh snowflake-looking id.
    pub fn snowflake(&self) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}", 1_300_000_000_000_000_000u64 + n)
    }

    /// Records a dispatch in the current session and sends it on the live connection.
    /// Returns its seq, or `None` when no session exists yet.
    pub fn dispatch(&self, t: &str, d: Value) -> Option<u64> {
        let seq = {
            let mut session = self.inner.session.lock();
            let s = session.as_mut().filter(|s| s.valid)?;
            s.seq += 1;
            s.events.push((s.seq, t.to_string(), d.clone()));
            s.seq
        };
        self.send(ConnCommand::Dispatch {
            seq,
            t: t.to_string(),
            d,
        });
        Some(seq)
    }

    /// A realistic `MESSAGE_CREATE` in `channel` (guild 1).
    pub fn message_create(&self, channel: &str, content: &str) -> Option<u64> {
        let d = json!({
            "id": self.snowflake(), "channel_id": channel, "guild_id": "1100000000000000001",
            "content": content, "type": 0, "tts": false, "mentions": [], "attachments": [],
            "embeds": [], "pinned": false, "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "author": {"id": "1200000000000000001", "username": "fake-user", "discriminator": "0", "global_name": "Fake User"},
        });
        self.dispatch("MESSAGE_CREATE", d)
    }

    fn send(&self, cmd: ConnCommand) -> bool {
        match &*self.inner.live.lock() {
            Some((_, tx)) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    /// The live connection stops acking heartbeats and sending dispatches (events emitted
    /// meanwhile are kept for a resume).
    pub fn zombie(&self) -> bool {
        self.send(ConnCommand::Zombie)
    }

    /// Refuses (503) every gateway connection attempt while `down`; REST keeps working.
    pub fn refuse_gateway(&self, down: bool) {
        self.inner
            .gateway_refused
            .store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// What `GET /gateway/bot` announces as `session_start_limit.remaining` and
    /// `reset_after` (ms). Each Identify uses one start, as on Discord.
    pub fn set_start_limit(&self, remaining: u64, reset_after_ms: u64) {
        let reset_at = Instant::now() + Duration::from_millis(reset_after_ms);
        *self.inner.start_limit.lock() = (remaining, reset_at);
    }

    /// `(remaining, reset_after_ms)` now (a passed reset restores 1000 starts).
    pub fn start_limit(&self) -> (u64, u64) {
        let mut limit = self.inner.start_limit.lock();
        let now = Instant::now();
        if now >= limit.1 {
            *limit = (1000, now + Duration::from_secs(86_400));
        }
        (limit.0, limit.1.duration_since(now).as_millis() as u64)
    }

    /// Uses one session start; false (counted as a violation) when none was left.
    pub(crate) fn take_start(&self) -> bool {
        self.start_limit();
        let mut limit = self.inner.start_limit.lock();
        if limit.0 == 0 {
            self.inner
                .counters
                .start_limit_violations
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        limit.0 -= 1;
        true
    }

    /// Identifies sent while `session_start_limit.remaining` was 0.
    pub fn start_limit_violations(&self) -> u64 {
        self.inner
            .counters
            .start_limit_violations
            .load(Ordering::Relaxed)
    }

    /// Sends op 7 Reconnect.
    pub fn reconnect(&self) -> bool {
        self.send(ConnCommand::Reconnect)
    }

    /// Sends op 9 Invalid Session; `false` also ends the session (no resume possible).
    pub fn invalid_session(&self, resumable: bool) -> bool {
        if !resumable && let Some(s) = self.inner.session.lock().as_mut() {
            s.valid = false;
        }
        self.send(ConnCommand::InvalidSession(resumable))
    }

    /// Closes the live connection with `code`.
    pub fn close(&self, code: u16) -> bool {
        self.send(ConnCommand::Close(code))
    }

    pub(crate) fn close_all(&self) {
        self.close(1001);
    }

    /// Queues a REST fault for the next request (whose path contains `path_contains`).
    pub fn inject(&self, path_contains: Option<&str>, fault: Fault) {
        self.inner
            .faults
            .lock()
            .push_back((path_contains.map(str::to_string), fault));
    }

    /// Every REST request so far (`GET /gateway/bot` included).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.lock().clone()
    }

    /// Messages created through `POST /channels/{id}/messages`.
    pub fn messages(&self) -> Vec<Value> {
        self.inner.messages.lock().clone()
    }

    /// The last Identify payload's `d`, with the token replaced by `"<checked>"`.
    pub fn last_identify(&self) -> Option<Value> {
        self.inner.last_identify.lock().clone()
    }

    /// The current session id and last seq.
    pub fn session(&self) -> Option<(String, u64)> {
        self.inner
            .session
            .lock()
            .as_ref()
            .map(|s| (s.id.clone(), s.seq))
    }

    /// Whether a connection is live and identified/resumed.
    pub fn has_live_connection(&self) -> bool {
        self.inner.live.lock().is_some()
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn connections(&self) -> u64 {
        Self::get(&self.inner.counters.connections)
    }
    pub fn compressed_connections(&self) -> u64 {
        Self::get(&self.inner.counters.compressed_connections)
    }
    pub fn identifies(&self) -> u64 {
        Self::get(&self.inner.counters.identifies)
    }
    pub fn resumes(&self) -> u64 {
        Self::get(&self.inner.counters.resumes)
    }
    pub fn resumes_on_resume_url(&self) -> u64 {
        Self::get(&self.inner.counters.resumes_on_resume_url)
    }
    pub fn resumes_refused(&self) -> u64 {
        Self::get(&self.inner.counters.resumes_refused)
    }
    pub fn heartbeats(&self) -> u64 {
        Self::get(&self.inner.counters.heartbeats)
    }
    pub fn bucket_violations(&self) -> u64 {
        Self::get(&self.inner.counters.bucket_violations)
    }
    pub fn global_violations(&self) -> u64 {
        Self::get(&self.inner.counters.global_violations)
    }
}
