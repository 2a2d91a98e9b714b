//! One accepted link: the `resume`/`hello` handshake, then events, acks and pongs.
//!
//! A single task owns the socket and multiplexes four sources with `select!`: fault
//! signals, inbound frames, delayed acks, and "the session has new events". Events are
//! read from the session's replay buffer through this link's cursor, so replay after a
//! resume and the live stream are the same code.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use gateway_protocol::{Ack, Command, CommandBody, Hello, HostFrame, Pong, Resume, UpstreamFrame};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::commands::Decision;
use crate::payloads::{now_ms, typing};
use crate::session::TooOld;
use crate::state::{LinkSignal, Shared, lock};

/// How long a new link may take to send its `resume`.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Events written per batch before flushing the socket.
const BATCH: usize = 256;
/// Close code for a protocol violation (first frame not a `resume`).
const CLOSE_PROTOCOL: u16 = 4000;
/// How long a close frame we sent may wait for the host's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why a link ended (for the log).
enum End {
    Dropped,
    PeerClosed,
    SocketError(axum::Error),
    FellBehind,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Dropped => f.write_str("dropped by the simulator"),
            End::PeerClosed => f.write_str("closed by the host"),
            End::SocketError(e) => write!(f, "socket error: {e}"),
            End::FellBehind => f.write_str("the link fell behind the replay buffer"),
        }
    }
}

/// Serves one upgraded link until it ends.
pub(crate) async fn serve_link(shared: Arc<Shared>, mut ws: WebSocket) {
    let signals = shared.signals.subscribe();
    let Some(resume) = read_resume(&mut ws).await else {
        return;
    };
    let point = shared.resume_point(resume.session_id.as_deref(), resume.last_seq);
    let hello = UpstreamFrame::Hello(Hello {
        session_id: point.session_id.clone(),
        resumed: point.resumed,
        seq: point.last_seq,
    });
    if ws.send(Message::text(hello.encode())).await.is_err() {
        return;
    }
    info!(session = %point.session_id, resumed = point.resumed, from = point.next_seq, "link up");
    shared.links_accepted.fetch_add(1, Ordering::Relaxed);
    shared.links_live.fetch_add(1, Ordering::Relaxed);
    let (out_tx, out_rx) = mpsc::channel(1024);
    let mut link = Link {
        seq_rx: shared.seq_tx.subscribe(),
        shared: shared.clone(),
        ws,
        cursor: point.next_seq,
        stalled: false,
        out_tx,
        out_rx,
    };
    let end = link.run(signals).await;
    shared.links_live.fetch_sub(1, Ordering::Relaxed);
    info!(%end, "link down");
}

/// Waits for the mandatory first frame; closes the link on anything else.
async fn read_resume(ws: &mut WebSocket) -> Option<Resume> {
    let first = tokio::time::timeout(RESUME_TIMEOUT, ws.recv()).await;
    if let Ok(Some(Ok(Message::Text(text)))) = first
        && let Ok(HostFrame::Resume(resume)) = HostFrame::decode(text.as_str())
    {
        return Some(resume);
    }
    warn!("link did not start with a resume frame; closing");
    let close = axum::extract::ws::CloseFrame {
        code: CLOSE_PROTOCOL,
        reason: "first frame must be resume".into(),
    };
    let _ = ws.send(Message::Close(Some(close))).await;
    None
}

struct Link {
    shared: Arc<Shared>,
    ws: WebSocket,
    seq_rx: watch::Receiver<u64>,
    cursor: u64,
    stalled: bool,
    out_tx: mpsc::Sender<Utf8Bytes>,
    out_rx: mpsc::Receiver<Utf8Bytes>,
}

impl Link {
    async fn run(&mut self, mut signals: broadcast::Receiver<LinkSignal>) -> End {
        // Replay whatever the resume point left behind before waiting for news.
        self.seq_rx.mark_changed();
        loop {
            let step = tokio::select! {
                signal = signals.recv() => self.on_signal(signal).await,
                msg = self.ws.recv() => self.on_message(msg).await,
                Some(text) = self.out_rx.recv(), if !self.stalled => self.send(text).await,
                changed = self.seq_rx.changed(), if !self.stalled => match changed {
                    Ok(()) => self.flush().await,
                    Err(_) => Err(End::Dropped),
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_signal(
        &mut self,
        signal: Result<LinkSignal, broadcast::error::RecvError>,
    ) -> Result<(), End> {
        match signal {
            Ok(LinkSignal::Drop) | Err(broadcast::error::RecvError::Closed) => Err(End::Dropped),
            Ok(LinkSignal::Stall) => {
                info!("link stalled by fault injection");
                self.stalled = true;
                Ok(())
            }
            Ok(LinkSignal::Malformed(n)) => self.send_junk(n, malformed_frame).await,
            Ok(LinkSignal::Unknown(n)) => self.send_junk(n, unknown_frame).await,
            Ok(LinkSignal::Stray(ahead)) if !self.stalled => {
                let frame = self.shared.stray_frame(ahead);
                self.send(frame.into()).await
            }
            Ok(LinkSignal::Oversize(bytes)) if !self.stalled => {
                self.send(oversize_frame(bytes).into()).await
            }
            Ok(LinkSignal::Close(code)) => self.close_and_wait(code).await,
            Ok(LinkSignal::Stray(_) | LinkSignal::Oversize(_)) => Ok(()),
            Err(broadcast::error::RecvError::Lagged(_)) => Ok(()),
        }
    }

    async fn on_message(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        let text = match msg {
            None | Some(Ok(Message::Close(_))) => return Err(End::PeerClosed),
            Some(Err(e)) => return Err(End::SocketError(e)),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => return Ok(()),
        };
        if self.stalled {
            return Ok(());
        }
        match HostFrame::decode(text.as_str()) {
            Ok(HostFrame::Ping(ping)) => {
                let pong = UpstreamFrame::Pong(Pong {
                    trace_id: ping.trace_id,
                    ts: now_ms(),
                });
                self.send(pong.encode().into()).await
            }
            Ok(HostFrame::Command(cmd)) => self.on_command(cmd).await,
            Ok(HostFrame::Resume(_)) => {
                debug!("ignoring a second resume on a live link");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "skipping a frame from the host");
                Ok(())
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Result<(), End> {
        let fail = self.shared.faults.fail_mode();
        let decision = lock(&self.shared.commands).decide(&cmd, fail);
        let delay = self.shared.faults.ack_delay();
        match decision {
            Decision::Repeat(ack) | Decision::Fail(ack) => self.answer(ack, None, delay).await,
            Decision::Execute => {
                let (ack, event) = execute(&self.shared, &cmd);
                lock(&self.shared.commands).remember(ack.clone());
                self.answer(ack, Some(event), delay).await
            }
        }
    }

    /// Sends the ack (now or after `delay`), then emits the follow-up event.
    async fn answer(
        &mut self,
        ack: Ack,
        event: Option<FollowUp>,
        delay: Duration,
    ) -> Result<(), End> {
        let text: Utf8Bytes = UpstreamFrame::Ack(ack).encode().into();
        if delay.is_zero() {
            self.send(text).await?;
            if let Some(ev) = event {
                ev.emit(&self.shared);
            }
            return Ok(());
        }
        let (tx, shared) = (self.out_tx.clone(), self.shared.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if tx.send(text).await.is_ok()
                && let Some(ev) = event
            {
                ev.emit(&shared);
            }
        });
        Ok(())
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.ws
            .send(Message::Text(text))
            .await
            .map_err(End::SocketError)
    }

    /// Sends one batch of events from the cursor towards the session's edge; when more
    /// remain, comes back through the `select!` (so pings and commands of a host that is
    /// catching up on a long backlog are answered between batches, not after it).
    async fn flush(&mut self) -> Result<(), End> {
        let every = self.shared.faults.malformed_every.load(Ordering::Relaxed);
        {
            let batch = match lock(&self.shared.session).read_from(self.cursor, BATCH) {
                Ok(batch) => batch,
                Err(TooOld) => return Err(End::FellBehind),
            };
            if batch.len() == BATCH {
                self.seq_rx.mark_changed();
            }
            for (seq, frame) in batch {
                self.ws
                    .feed(Message::Text(frame))
                    .await
                    .map_err(End::SocketError)?;
                if every > 0 && seq.is_multiple_of(every) {
                    let junk = malformed_frame(seq as u32);
                    self.ws
                        .feed(Message::text(junk))
                        .await
                        .map_err(End::SocketError)?;
                }
                self.cursor = seq + 1;
            }
        }
        self.ws.flush().await.map_err(End::SocketError)
    }

    /// Sends a close frame, then waits (bounded) for the host's close frame in answer.
    async fn close_and_wait(&mut self, code: u16) -> Result<(), End> {
        let close = axum::extract::ws::CloseFrame {
            code,
            reason: "closed by fault injection".into(),
        };
        self.ws
            .send(Message::Close(Some(close)))
            .await
            .map_err(End::SocketError)?;
        let answered = tokio::time::timeout(CLOSE_WAIT, async {
            loop {
                match self.ws.recv().await {
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if answered {
            self.shared.close_replies.fetch_add(1, Ordering::Relaxed);
        }
        info!(code, answered, "link closed by the simulator");
        Err(End::Dropped)
    }

    async fn send_junk(&mut self, n: u32, make: fn(u32) -> String) -> Result<(), End> {
        if self.stalled {
            return Ok(());
        }
        for i in 0..n {
            self.ws
                .feed(Message::text(make(i)))
                .await
                .map_err(End::SocketError)?;
        }
        self.ws.flush().await.map_err(End::SocketError)
    }
}

/// A malformed frame; rotates through the ways a frame can be broken.
fn malformed_frame(i: u32) -> String {
    match i % 4 {
        0 => "{not json".to_owned(),
        1 => r#"{"v":1,"op":"event","traceId":"junk","t":"MESSAGE_CREATE"}"#.to_owned(),
        2 => r#"["v",1,"op","event"]"#.to_owned(),
        _ => r#"{"v":1,"op":"event","seq":"seven","traceId":"junk","t":"X","d":{},"ts":0}"#
            .to_owned(),
    }
}

/// A well-formed frame (unknown op) of about `bytes` bytes.
fn oversize_frame(bytes: usize) -> String {
    format!(r#"{{"v":1,"op":"padding","pad":"{}"}}"#, "x".repeat(bytes))
}

/// A well-formed frame of an op v1 does not define.
fn unknown_frame(i: u32) -> String {
    format!(r#"{{"v":1,"op":"gossip","n":{i}}}"#)
}

/// The event Discord would dispatch after an accepted command.
struct FollowUp {
    t: &'static str,
    d: serde_json::Value,
    trace_id: String,
}

impl FollowUp {
    fn emit(self, shared: &Shared) {
        shared.emit(self.t, &self.d, self.trace_id);
    }
}

/// Carries out an accepted command: its ack and its follow-up event.
fn execute(shared: &Shared, cmd: &Command) -> (Ack, FollowUp) {
    let mut world = lock(&shared.world);
    let (result, t, d) = match &cmd.body {
        CommandBody::SendMessage(m) => {
            let guild = world
                .guild_of(&m.channel_id)
                .map(|g| g.id.clone())
                .unwrap_or_default();
            let d = world.message(
                &guild,
                &m.channel_id,
                &shared.bot,
                &m.content,
                m.nonce.as_deref(),
            );
            let id = d.get("id").cloned().unwrap_or_default();
            (json!({"messageId": id}), "MESSAGE_CREATE", d)
        }
        CommandBody::AddReaction(r) => {
            let d = world.reaction_add(&r.channel_id, &r.message_id, &r.emoji, &shared.bot);
            (json!({}), "MESSAGE_REACTION_ADD", d)
        }
        CommandBody::TypingStart(ty) => {
            let guild = world
                .guild_of(&ty.channel_id)
                .map(|g| g.id.clone())
                .unwrap_or_default();
            (
                json!({}),
                "TYPING_START",
                typing(&guild, &ty.channel_id, &shared.bot),
            )
        }
    };
    let ack = Ack::success(&cmd.request_id, result);
    let follow = FollowUp {
        t,
        d,
        trace_id: cmd.trace_id.clone(),
    };
    (ack, follow)
}
