//! Fault injection, in process ([`Control`]) and over HTTP (`--control ADDR`).
//!
//! Tests call [`Control`] directly so they need no HTTP client; operators and scripts
//! use the small HTTP API, which maps one route to one method:
//!
//! | route | effect |
//! |---|---|
//! | `POST /drop` | drop every live link (TCP closed, no close frame) |
//! | `POST /stall` | live links stop sending (no events, acks, pongs); TCP stays open |
//! | `POST /refuse-auth?on=true\|false` | answer 401 even to the right token |
//! | `POST /ack-delay?ms=N` | delay every ack (and its follow-up event) by N ms |
//! | `POST /fail-acks?mode=off\|retryable\|fatal` | fail new commands |
//! | `POST /malformed?count=N` | send N malformed frames on every live link |
//! | `POST /malformed-every?n=N` | after every N-th event, a malformed frame (0 = off) |
//! | `POST /unknown?count=N` | send N frames with an unknown op |
//! | `POST /replay-overlap?n=N` | re-send N already-delivered events on every resume |
//! | `POST /restart?keep-session=false\|true` | start a new session (seq from 1; a new sessionId, or the same one with `keep-session=true`), drop links |
//! | `POST /seq-jump?by=N` | the session's numbering skips N seqs |
//! | `POST /stray?ahead=N` | send one event frame N seqs past the edge (not buffered) |
//! | `POST /claim-resumed?on=true\|false` | answer `resumed: true` to any resume of the current session |
//! | `POST /close?code=N` | close every live link with a close frame (waits for the host's answer) |
//! | `POST /oversize?bytes=N` | send one N-byte frame on every live link |
//! | `POST /emit?count=N` | emit N random events now |
//! | `GET /state` | session, seq, links, command and attempt counts (JSON) |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::{FailMode, ReceivedCommand};
use crate::state::{Attempt, LinkSignal, Shared, lock};

/// In-process handle on the simulator's faults and records. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

impl Control {
    /// Drops every live link abruptly (no close frame), like a network cut.
    pub fn drop_links(&self) {
        let _ = self.shared.signals.send(LinkSignal::Drop);
    }

    /// Live links stop sending anything (events, acks, pongs) but keep TCP open.
    /// Links made afterwards are healthy.
    pub fn stall_links(&self) {
        let _ = self.shared.signals.send(LinkSignal::Stall);
    }

    /// While on, every upgrade is answered 401, even with the right token.
    pub fn set_refuse_auth(&self, on: bool) {
        self.shared.faults.refuse_auth.store(on, Ordering::Relaxed);
    }

    /// Delays every ack (and the follow-up event) by `delay`.
    pub fn set_ack_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.faults.ack_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Fails every new command (`None` = normal service).
    pub fn set_fail_acks(&self, mode: Option<FailMode>) {
        self.shared.faults.set_fail_mode(mode);
    }

    /// Sends `n` malformed frames on every live link.
    pub fn send_malformed(&self, n: u32) {
        let _ = self.shared.signals.send(LinkSignal::Malformed(n));
    }

    /// After every `n`-th event, also send a malformed frame (0 = off).
    pub fn set_malformed_every(&self, n: u64) {
        self.shared
            .faults
            .malformed_every
            .store(n, Ordering::Relaxed);
    }

    /// On every successful resume, re-send `n` events the link already had (an
    /// at-least-once upstream); the host must skip them.
    pub fn set_replay_overlap(&self, n: u64) {
        self.shared
            .faults
            .replay_overlap
            .store(n, Ordering::Relaxed);
    }

    /// Sends `n` well-formed frames with an op v1 does not define.
    pub fn send_unknown(&self, n: u32) {
        let _ = self.shared.signals.send(LinkSignal::Unknown(n));
    }

    /// Simulates an upstream restart: new session id, seq from 1, links dropped.
    /// Returns the new session id.
    pub fn restart_session(&self) -> String {
        self.shared.restart_session(false)
    }

    /// Simulates an upstream that restarts and *keeps* its session id (its buffer is
    /// lost, seq starts again at 1 under the same id); links dropped.
    pub fn restart_keeping_session_id(&self) -> String {
        self.shared.restart_session(true)
    }

    /// The session's numbering skips `by` seqs: the next event is `last + by + 1`
    /// (also in the replay buffer, as a faulty upstream would have it).
    pub fn jump_seq(&self, by: u64) {
        self.shared.jump_seq(by);
    }

    /// Every live link gets one event frame `ahead` seqs past the session's edge, not
    /// in the replay buffer (a stray, bogus seq).
    pub fn send_stray_event(&self, ahead: u64) {
        let _ = self.shared.signals.send(LinkSignal::Stray(ahead));
    }

    /// While on, a resume naming the current session is answered `resumed: true` from
    /// the live edge even when it cannot be served (the faulty upstream of issue 8).
    pub fn set_claim_resumed(&self, on: bool) {
        self.shared
            .faults
            .claim_resumed
            .store(on, Ordering::Relaxed);
    }

    /// Every live link is closed with a close frame of `code`; the simulator waits for
    /// the host's answer (see [`Control::close_replies`]).
    pub fn close_links(&self, code: u16) {
        let _ = self.shared.signals.send(LinkSignal::Close(code));
    }

    /// Close frames sent by [`Control::close_links`] that the host answered.
    pub fn close_replies(&self) -> u64 {
        self.shared.close_replies.load(Ordering::Relaxed)
    }

    /// Every live link gets one (unknown-op) frame of about `bytes` bytes, not buffered.
    pub fn send_oversize(&self, bytes: usize) {
        let _ = self.shared.signals.send(LinkSignal::Oversize(bytes));
    }

    /// Emits one MESSAGE_CREATE whose content is `bytes` long (buffered, replayed like
    /// any event); returns its seq.
    pub fn emit_padded(&self, bytes: usize) -> u64 {
        let d = json!({"content": "x".repeat(bytes)});
        let trace_id = lock(&self.shared.world).hex_id();
        self.shared.emit("MESSAGE_CREATE", &d, trace_id)
    }

    /// Emits `n` random events now; returns the last seq.
    pub fn emit(&self, n: usize) -> u64 {
        self.shared.emit_random(n)
    }

    /// Emits the VOICE_STATE_UPDATE of member `user` of guild `guild` (indexes into the
    /// simulated world, wrapped) doing `action`; a dropout rejoins by itself a few events
    /// later. Returns the seq and the payload sent.
    pub fn voice(
        &self,
        guild: usize,
        user: usize,
        action: crate::voice::VoiceAction,
    ) -> (u64, serde_json::Value) {
        let (t, d, trace_id) = {
            let mut world = lock(&self.shared.world);
            let (t, d) = world.voice_event(guild, user, action);
            (t, d, world.hex_id())
        };
        (self.shared.emit(t, &d, trace_id), d)
    }

    /// Emits one event of type `t` whose `d` is `raw` JSON text sent byte for byte (a
    /// pretty-printed payload, say); returns its seq, or `None` if `raw` is not JSON.
    pub fn emit_raw(&self, t: &str, raw: &str) -> Option<u64> {
        let trace_id = lock(&self.shared.world).hex_id();
        self.shared.emit_raw(t, raw, trace_id)
    }

    /// The current session id and its last seq.
    pub fn session(&self) -> (String, u64) {
        let s = lock(&self.shared.session);
        (s.id().to_owned(), s.last_seq())
    }

    /// The event frames (JSON text) still in the replay buffer, from `from_seq` on;
    /// empty when `from_seq` fell out of the buffer.
    pub fn event_frames(&self, from_seq: u64) -> Vec<String> {
        let session = lock(&self.shared.session);
        session
            .read_from(from_seq.max(1), usize::MAX)
            .map(|frames| frames.iter().map(|(_, f)| f.as_str().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Every command frame received, duplicates included, oldest first.
    pub fn received_commands(&self) -> Vec<ReceivedCommand> {
        lock(&self.shared.commands).received()
    }

    /// Every upgrade attempt on `/link`, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.shared.attempts).clone()
    }

    /// Links currently open.
    pub fn live_links(&self) -> usize {
        self.shared.links_live.load(Ordering::Relaxed)
    }

    /// Links accepted (handshake completed) since start.
    pub fn links_accepted(&self) -> u64 {
        self.shared.links_accepted.load(Ordering::Relaxed)
    }

    fn state_json(&self) -> Value {
        let (session, seq) = self.session();
        json!({
            "sessionId": session, "seq": seq,
            "liveLinks": self.live_links(), "linksAccepted": self.links_accepted(),
            "commandsReceived": lock(&self.shared.commands).received().len(),
            "attempts": lock(&self.shared.attempts).len(),
            "closeReplies": self.close_replies(),
        })
    }
}

#[derive(Deserialize)]
struct OnParam {
    on: bool,
}
#[derive(Deserialize)]
struct MsParam {
    ms: u64,
}
#[derive(Deserialize)]
struct CountParam {
    count: u32,
}
#[derive(Deserialize)]
struct EveryParam {
    n: u64,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RestartParam {
    #[serde(default)]
    keep_session: bool,
}
#[derive(Deserialize)]
struct ByParam {
    by: u64,
}
#[derive(Deserialize)]
struct AheadParam {
    ahead: u64,
}
#[derive(Deserialize)]
struct CodeParam {
    code: u16,
}
#[derive(Deserialize)]
struct BytesParam {
    bytes: usize,
}
#[derive(Deserialize)]
struct ModeParam {
    mode: String,
}

/// The HTTP control API.
pub(crate) fn router(control: Control) -> Router {
    Router::new()
        .route(
            "/drop",
            post(|State(c): State<Control>| async move {
                c.drop_links();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/stall",
            post(|State(c): State<Control>| async move {
                c.stall_links();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/refuse-auth",
            post(
                |State(c): State<Control>, Query(p): Query<OnParam>| async move {
                    c.set_refuse_auth(p.on);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/ack-delay",
            post(
                |State(c): State<Control>, Query(p): Query<MsParam>| async move {
                    c.set_ack_delay(Duration::from_millis(p.ms));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route("/fail-acks", post(fail_acks))
        .route(
            "/malformed",
            post(
                |State(c): State<Control>, Query(p): Query<CountParam>| async move {
                    c.send_malformed(p.count);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/malformed-every",
            post(
                |State(c): State<Control>, Query(p): Query<EveryParam>| async move {
                    c.set_malformed_every(p.n);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/unknown",
            post(
                |State(c): State<Control>, Query(p): Query<CountParam>| async move {
                    c.send_unknown(p.count);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/restart",
            post(
                |State(c): State<Control>, Query(p): Query<RestartParam>| async move {
                    let id = c.shared.restart_session(p.keep_session);
                    Json(json!({"sessionId": id}))
                },
            ),
        )
        .route(
            "/seq-jump",
            post(
                |State(c): State<Control>, Query(p): Query<ByParam>| async move {
                    c.jump_seq(p.by);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/stray",
            post(
                |State(c): State<Control>, Query(p): Query<AheadParam>| async move {
                    c.send_stray_event(p.ahead);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/claim-resumed",
            post(
                |State(c): State<Control>, Query(p): Query<OnParam>| async move {
                    c.set_claim_resumed(p.on);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/close",
            post(
                |State(c): State<Control>, Query(p): Query<CodeParam>| async move {
                    c.close_links(p.code);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/oversize",
            post(
                |State(c): State<Control>, Query(p): Query<BytesParam>| async move {
                    c.send_oversize(p.bytes);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/emit",
            post(
                |State(c): State<Control>, Query(p): Query<CountParam>| async move {
                    Json(json!({"seq": c.emit(p.count as usize)}))
                },
            ),
        )
        .route(
            "/state",
            get(|State(c): State<Control>| async move { Json(c.state_json()) }),
        )
        .with_state(control)
}

async fn fail_acks(
    State(c): State<Control>,
    Query(p): Query<ModeParam>,
) -> (StatusCode, &'static str) {
    match parse_fail_mode(&p.mode) {
        Ok(mode) => {
            c.set_fail_acks(mode);
            (StatusCode::NO_CONTENT, "")
        }
        Err(msg) => (StatusCode::BAD_REQUEST, msg),
    }
}

/// Parses `off`, `retryable` or `fatal`.
pub fn parse_fail_mode(s: &str) -> Result<Option<FailMode>, &'static str> {
    match s {
        "off" => Ok(None),
        "retryable" => Ok(Some(FailMode::Retryable)),
        "fatal" => Ok(Some(FailMode::Fatal)),
        _ => Err("mode must be off, retryable or fatal"),
    }
}
