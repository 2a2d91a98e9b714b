//! The fake's Gateway v10 side: Hello, heartbeats and their ACKs, Identify → Ready,
//! Resume → replay + Resumed (or op 9 when the session is gone), and on command from
//! [`crate::Control`]: dispatches, op 7, op 9, close codes and zombie silence.
//!
//! `?compress=zlib-stream` makes every server payload part of one zlib stream per
//! connection, each message ending in a sync flush (`00 00 ff ff`), as Discord does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::{Compress, Compression, FlushCompress};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::state::{ConnCommand, Control, Session};

/// `/gateway` (announced by `GET /gateway/bot`) and `/resume-gateway` (the Ready's
/// `resume_gateway_url`).
pub fn router(control: Control) -> Router {
    Router::new()
        .route(
            "/gateway",
            get(
                |ws: WebSocketUpgrade, q: Query<HashMap<String, String>>, s: State<Control>| {
                    upgrade(ws, q, s, false)
                },
            ),
        )
        .route(
            "/resume-gateway",
            get(
                |ws: WebSocketUpgrade, q: Query<HashMap<String, String>>, s: State<Control>| {
                    upgrade(ws, q, s, true)
                },
            ),
        )
        .with_state(control)
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Query(query): Query<HashMap<String, String>>,
    State(control): State<Control>,
    resume_url: bool,
) -> Response {
    let compress = query.get("compress").is_some_and(|c| c == "zlib-stream");
    if control
        .inner
        .gateway_refused
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    ws.on_upgrade(move |socket| async move {
        Connection::new(socket, control, compress, resume_url)
            .run()
            .await
    })
}

struct Connection {
    socket: WebSocket,
    control: Control,
    zlib: Option<Compress>,
    resume_url: bool,
    id: u64,
    zombie: bool,
    tx: mpsc::UnboundedSender<ConnCommand>,
    rx: mpsc::UnboundedReceiver<ConnCommand>,
}

impl Connection {
    fn new(socket: WebSocket, control: Control, compress: bool, resume_url: bool) -> Self {
        let counters = &control.inner.counters;
        let id = counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if compress {
            counters
                .compressed_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Connection {
            socket,
            control,
            zlib: compress.then(|| Compress::new(Compression::default(), true)),
            resume_url,
            id,
            zombie: false,
            tx,
            rx,
        }
    }

    async fn run(mut self) {
        let interval = self.control.inner.options.heartbeat_interval.as_millis() as u64;
        if self
            .send(&json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null}))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                msg = self.socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if !self.on_payload(text.as_str()).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // Discord: a client close with 1000 or 1001 invalidates the session.
                        if frame.is_some_and(|f| f.code == 1000 || f.code == 1001)
                            && self.is_live()
                            && let Some(s) = self.control.inner.session.lock().as_mut()
                        {
                            s.valid = false;
                        }
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                Some(cmd) = self.rx.recv() => {
                    if !self.on_command(cmd).await {
                        break;
                    }
                }
            }
        }
        self.unlive();
    }

    fn is_live(&self) -> bool {
        self.control
            .inner
            .live
            .lock()
            .as_ref()
            .is_some_and(|(id, _)| *id == self.id)
    }

    fn unlive(&self) {
        let mut live = self.control.inner.live.lock();
        if live.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *live = None;
        }
    }

    /// False when the connection must end.
    async fn on_command(&mut self, cmd: ConnCommand) -> bool {
        if self.zombie {
            return true;
        }
        let sent = match cmd {
            ConnCommand::Dispatch { seq, t, d } => {
                self.send(&json!({"op": 0, "s": seq, "t": t, "d": d})).await
            }
            ConnCommand::Reconnect => self.send(&json!({"op": 7, "d": null})).await,
            ConnCommand::InvalidSession(resumable) => {
                if !resumable {
                    self.unlive();
                }
                self.send(&json!({"op": 9, "d": resumable})).await
            }
            ConnCommand::Close(code) => {
                self.close(code, "closed by the fake").await;
                return false;
            }
            ConnCommand::Zombie => {
                self.zombie = true;
                self.unlive();
                Ok(())
            }
        };
        sent.is_ok()
    }

    /// False when the connection must end.
    async fn on_payload(&mut self, text: &str) -> bool {
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            self.close(4002, "Decode error").await;
            return false;
        };
        let d = &payload["d"];
        match payload["op"].as_u64() {
            Some(1) => {
                self.control
                    .inner
                    .counters
                    .heartbeats
                    .fetch_add(1, Ordering::Relaxed);
                if self.zombie {
                    return true;
                }
                self.send(&json!({"op": 11})).await.is_ok()
            }
            Some(2) => self.identify(d).await,
            Some(6) => self.resume(d).await,
            _ => {
                self.close(4001, "Unknown opcode").await;
                false
            }
        }
    }

    fn token_ok(&self, d: &Value) -> bool {
        d["token"].as_str() == Some(self.control.inner.options.token.as_str())
    }

    async fn identify(&mut self, d: &Value) -> bool {
        if !self.token_ok(d) {
            self.close(4004, "Authentication failed.").await;
            return false;
        }
        if self.is_live() {
            self.close(4005, "Already authenticated.").await;
            return false;
        }
        let Some(intents) = d["intents"].as_u64() else {
            self.close(4013, "Invalid intent(s).").await;
            return false;
        };
        if intents >= 1 << 26 {
            self.close(4013, "Invalid intent(s).").await;
            return false;
        }
        if let Some(shard) = d.get("shard").filter(|s| !s.is_null()) {
            let (id, count) = (shard[0].as_u64(), shard[1].as_u64());
            if !matches!((id, count), (Some(i), Some(c)) if i < c) {
                self.close(4010, "Invalid shard.").await;
                return false;
            }
        }
        let inner = &self.control.inner;
        inner.counters.identifies.fetch_add(1, Ordering::Relaxed);
        self.control.take_start();
        let mut recorded = d.clone();
        recorded["token"] = json!("<checked>");
        *inner.last_identify.lock() = Some(recorded);
        let session_id = format!("{:032x}", rand::random::<u128>());
        let ready = json!({
            "v": 10,
            "user": {"id": "1000000000000000001", "username": "fake-bot", "discriminator": "0", "bot": true},
            "guilds": [{"id": "1100000000000000001", "unavailable": true}],
            "session_id": session_id,
            "resume_gateway_url": format!("ws://{}/resume-gateway", inner.addr),
            "shard": d.get("shard").cloned().unwrap_or(Value::Null),
            "application": {"id": "1000000000000000001", "flags": 0},
        });
        let mut session = inner.session.lock();
        *session = Some(Session {
            id: session_id,
            seq: 1,
            events: vec![(1, "READY".into(), ready.clone())],
            valid: true,
        });
        *inner.live.lock() = Some((self.id, self.tx.clone()));
        let _ = self.tx.send(ConnCommand::Dispatch {
            seq: 1,
            t: "READY".into(),
            d: ready,
        });
        true
    }

    async fn resume(&mut self, d: &Value) -> bool {
        if !self.token_ok(d) {
            self.close(4004, "Authentication failed.").await;
            return false;
        }
        let inner = &self.control.inner;
        let (Some(session_id), Some(seq)) = (d["session_id"].as_str(), d["seq"].as_u64()) else {
            self.close(4002, "Decode error").await;
            return false;
        };
        let replay = {
            let mut session = inner.session.lock();
            match session
                .as_mut()
                .filter(|s| s.valid && s.id == session_id && seq <= s.seq)
            {
                Some(s) => {
                    inner.counters.resumes.fetch_add(1, Ordering::Relaxed);
                    if self.resume_url {
                        inner
                            .counters
                            .resumes_on_resume_url
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    for (s, t, d) in s.events.iter().filter(|(s, _, _)| *s > seq) {
                        let _ = self.tx.send(ConnCommand::Dispatch {
                            seq: *s,
                            t: t.clone(),
                            d: d.clone(),
                        });
                    }
                    s.seq += 1;
                    s.events.push((s.seq, "RESUMED".into(), json!({})));
                    let _ = self.tx.send(ConnCommand::Dispatch {
                        seq: s.seq,
                        t: "RESUMED".into(),
                        d: json!({}),
                    });
                    *inner.live.lock() = Some((self.id, self.tx.clone()));
                    true
                }
                None => false,
            }
        };
        if !replay {
            inner
                .counters
                .resumes_refused
                .fetch_add(1, Ordering::Relaxed);
            return self.send(&json!({"op": 9, "d": false})).await.is_ok();
        }
        true
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    async fn send(&mut self, payload: &Value) -> Result<(), axum::Error> {
        let text = payload.to_string();
        let message = match &mut self.zlib {
            None => Message::Text(text.into()),
            Some(z) => Message::Binary(deflate_sync(z, text.as_bytes()).into()),
        };
        self.socket.send(message).await
    }
}

/// Compresses `input` as the next part of the stream, ending with a sync flush.
fn deflate_sync(z: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = z.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let consumed = (z.total_in() - start) as usize;
        if z.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .is_err()
        {
            return out;
        }
        let done = (z.total_in() - start) as usize == input.len();
        if done && out.len() < out.capacity() {
            return out;
        }
    }
}
