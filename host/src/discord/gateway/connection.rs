//! One gateway WebSocket, from connect to close: Hello, heartbeats, Identify or Resume,
//! dispatches, and the ops and close codes that end it (see the module above).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tracing::{debug, info, warn};

use super::payload::{self, CloseAction, Hello, Ready, Received, op};
use super::session::{Resumable, Verdict};
use super::{Ended, Session};
use crate::discord::compression::Inflater;
use crate::discord::rate::SendLimiter;
use crate::link::LinkState;
use crate::link::state::LinkStats;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The close code used to drop a connection while keeping the session resumable
/// (anything but 1000/1001, which would invalidate it).
pub(super) const RESUMABLE_CLOSE: u16 = 4000;

/// `url` with the documented query: `v=10`, `encoding=json`, optional `compress`.
fn with_query(url: &str, compress: bool) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let has_path = base
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    let mut url = format!(
        "{base}{}?v=10&encoding=json",
        if has_path { "" } else { "/" }
    );
    if compress {
        url.push_str("&compress=zlib-stream");
    }
    url
}

fn reconnect() -> Ended {
    Ended::Reconnect {
        resume: true,
        wait: None,
    }
}

struct Conn<'a> {
    session: &'a mut Session,
    ws: Ws,
    inflater: Option<Inflater>,
    limiter: SendLimiter,
    /// When the un-ACKed heartbeat was sent.
    awaiting_ack: Option<Instant>,
}

pub(crate) async fn run(session: &mut Session, base: &str) -> Ended {
    let url = with_query(base, session.config.compress);
    let limits = WebSocketConfig::default()
        .max_frame_size(Some(session.config.max_message_bytes))
        .max_message_size(Some(session.config.max_message_bytes));
    let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(limits), true);
    let ws = match timeout(session.config.connect_timeout, connecting).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            warn!(url = %url, error = %e, "cannot connect to the Discord gateway");
            return reconnect();
        }
        Err(_) => {
            warn!(url = %url, "connecting to the Discord gateway timed out");
            return reconnect();
        }
    };
    debug!(url = %url, "gateway connected");
    let inflater = session
        .config
        .compress
        .then(|| Inflater::new(session.config.max_message_bytes));
    let limiter = SendLimiter::new(session.config.send_limit, session.config.send_window);
    let mut conn = Conn {
        session,
        ws,
        inflater,
        limiter,
        awaiting_ack: None,
    };
    conn.run().await
}

impl Conn<'_> {
    async fn run(&mut self) -> Ended {
        let mut shutdown = self.session.shared.shutdown.subscribe();
        let hello_within = self.session.config.connect_timeout;
        let interval = match timeout(hello_within, self.next_payload()).await {
            Ok(Ok(Some(p))) if p.op == op::HELLO => {
                match serde_json::from_value::<Hello>(p.d_value()) {
                    Ok(h) => Duration::from_millis(h.heartbeat_interval.max(1)),
                    Err(e) => {
                        warn!(error = %e, "malformed Hello");
                        return reconnect();
                    }
                }
            }
            Ok(Ok(other)) => {
                warn!(op = ?other.map(|p| p.op), "expected Hello first");
                return reconnect();
            }
            Ok(Err(end)) => return end,
            Err(_) => {
                warn!("no Hello from the Discord gateway in time");
                return reconnect();
            }
        };
        // The first beat at interval × jitter, as documented, so that many clients
        // reconnecting at once do not beat in step.
        let mut next_beat = Instant::now() + interval.mul_f64(rand::random::<f64>());
        if let Err(end) = self.hello_reply(&mut shutdown).await {
            return end;
        }
        loop {
            tokio::select! {
                payload = self.next_payload() => match payload {
                    Ok(Some(p)) => {
                        if let Some(end) = self.on_payload(p).await {
                            return end;
                        }
                    }
                    Ok(None) => {}
                    Err(end) => return end,
                },
                _ = sleep_until(next_beat) => {
                    if self.awaiting_ack.is_some() {
                        LinkStats::bump(&self.session.shared.stats.zombies);
                        metrics::counter!("gateway_discord_zombies_total").increment(1);
                        warn!("no heartbeat ACK since the last beat: zombie connection; reconnecting to resume");
                        self.close(RESUMABLE_CLOSE).await;
                        return Ended::Reconnect { resume: true, wait: Some(Duration::ZERO) };
                    }
                    if let Err(end) = self.beat().await {
                        return end;
                    }
                    next_beat += interval;
                }
                _ = super::stopping(&mut shutdown) => {
                    self.close(self.session.shutdown_close_code()).await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// Identify (paced by the identify gate) or Resume.
    async fn hello_reply(
        &mut self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Ended> {
        let token = self.session.config.token.clone();
        let frame = match (&self.session.resumable, self.session.sequence.last()) {
            (Some(r), Some(seq)) => {
                info!(session = %r.session_id, seq, "resuming the Discord session");
                metrics::counter!("gateway_discord_resumes_total").increment(1);
                payload::resume(token.expose(), &r.session_id, seq)
            }
            _ => {
                tokio::select! {
                    _ = self.session.identify.acquire() => {}
                    _ = super::stopping(shutdown) => return Err(Ended::Shutdown),
                }
                info!(intents = self.session.config.intents, shard = ?self.session.config.shard, "identifying");
                metrics::counter!("gateway_discord_identifies_total").increment(1);
                payload::identify(
                    token.expose(),
                    self.session.config.intents,
                    self.session.config.shard,
                )
            }
        };
        self.send(frame).await
    }

    async fn beat(&mut self) -> Result<(), Ended> {
        let frame = payload::heartbeat(self.session.sequence.last());
        self.send(frame).await?;
        self.awaiting_ack = Some(Instant::now());
        Ok(())
    }

    /// Sends within the gateway's send limit. Never logs the frame (Identify and Resume
    /// carry the token).
    async fn send(&mut self, frame: String) -> Result<(), Ended> {
        self.limiter.acquire().await;
        match timeout(
            self.session.config.connect_timeout,
            self.ws.send(Message::text(frame)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                warn!(error = %e, "gateway send failed");
                Err(reconnect())
            }
            Err(_) => {
                warn!("gateway send timed out");
                Err(reconnect())
            }
        }
    }

    /// Best effort: a close frame with `code`, bounded in time (the socket may be dead).
    async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = timeout(Duration::from_secs(1), self.ws.close(Some(frame))).await;
    }

    /// The next whole payload; `Ok(None)` for messages that carry none (pings, partial
    /// compressed data); `Err` when the connection ended.
    async fn next_payload(&mut self) -> Result<Option<Received>, Ended> {
        let bytes = match self.ws.next().await {
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => match &mut self.inflater {
                Some(inflater) => match inflater.push(&b) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        warn!(error = %e, "cannot decompress the gateway stream; reconnecting");
                        return Err(reconnect());
                    }
                },
                None => b.to_vec(),
            },
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                metrics::counter!("gateway_discord_gateway_closes_total", "code" => code.to_string()).increment(1);
                return Err(match payload::close_action(code) {
                    CloseAction::Resume => {
                        info!(code, "the Discord gateway closed the connection; resuming");
                        reconnect()
                    }
                    CloseAction::Identify => {
                        info!(
                            code,
                            "the Discord gateway closed the session; identifying afresh"
                        );
                        Ended::Reconnect {
                            resume: false,
                            wait: None,
                        }
                    }
                    CloseAction::Fatal(reason) => Ended::Fatal(reason),
                });
            }
            Some(Ok(_)) => return Ok(None),
            Some(Err(e)) => {
                warn!(error = %e, "gateway connection failed");
                return Err(reconnect());
            }
            None => return Err(reconnect()),
        };
        match Received::decode(&bytes) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                LinkStats::bump(&self.session.shared.stats.malformed);
                metrics::counter!("gateway_link_frames_malformed_total").increment(1);
                warn!(error = %e, "undecodable gateway payload skipped");
                Ok(None)
            }
        }
    }

    /// Handles one payload; `Some` ends the connection.
    async fn on_payload(&mut self, p: Received) -> Option<Ended> {
        match p.op {
            op::DISPATCH => {
                self.on_dispatch(p);
                None
            }
            op::HEARTBEAT => self.beat().await.err(),
            op::HEARTBEAT_ACK => {
                if let Some(at) = self.awaiting_ack.take() {
                    self.session.shared.stats.record_rtt(at.elapsed());
                }
                None
            }
            op::RECONNECT => {
                info!("Discord asked for a reconnect (op 7); resuming");
                self.close(RESUMABLE_CLOSE).await;
                Some(Ended::Reconnect {
                    resume: true,
                    wait: Some(Duration::ZERO),
                })
            }
            op::INVALID_SESSION => {
                let resumable = p.d_value().as_bool().unwrap_or(false);
                let wait = self.session.invalid_session_wait();
                warn!(
                    resumable,
                    wait_ms = wait.as_millis() as u64,
                    "Discord invalidated the session (op 9)"
                );
                self.close(RESUMABLE_CLOSE).await;
                Some(Ended::Reconnect {
                    resume: resumable,
                    wait: Some(wait),
                })
            }
            other => {
                LinkStats::bump(&self.session.shared.stats.unknown);
                debug!(op = other, "gateway op ignored");
                None
            }
        }
    }

    fn on_dispatch(&mut self, p: Received) {
        let (Some(seq), Some(t)) = (p.s, p.t) else {
            LinkStats::bump(&self.session.shared.stats.malformed);
            warn!("dispatch without s or t skipped");
            return;
        };
        let d = match p.d {
            Some(d) => d,
            None => match gateway_protocol::RawValue::from_string("null".into()) {
                Ok(d) => d,
                Err(_) => return,
            },
        };
        let shared = self.session.shared.clone();
        match t.as_str() {
            "READY" => match serde_json::from_str::<Ready>(d.get()) {
                Ok(ready) => {
                    info!(session = %ready.session_id, "Discord session ready");
                    self.session.sequence.new_session(&ready.session_id);
                    *shared.resume_url.lock() = Some(ready.resume_gateway_url.clone());
                    self.session.resumable = Some(Resumable {
                        session_id: ready.session_id,
                        resume_url: ready.resume_gateway_url,
                    });
                    connected(&shared);
                }
                Err(e) => warn!(error = %e, "READY without session_id/resume_gateway_url"),
            },
            "RESUMED" => {
                info!("Discord session resumed");
                connected(&shared);
            }
            _ => {}
        }
        match self.session.sequence.dispatch(seq, t, d) {
            Verdict::Publish(event) => {
                if let Some(why) = event.loss_before {
                    LinkStats::bump(&shared.stats.gaps);
                    metrics::counter!("gateway_link_replay_gaps_total").increment(1);
                    warn!(seq, reason = why, "events were lost before this one");
                }
                metrics::counter!("gateway_events_in_total", "type" => crate::link::client::event_type_label(&event.t)).increment(1);
                LinkStats::bump(&shared.stats.events);
                debug!(event = "event.received", trace_id = %event.trace_id, seq, t = %event.t, "event received");
                self.session.bus.publish(event);
                self.session.persist();
            }
            Verdict::Duplicate => {
                LinkStats::bump(&shared.stats.duplicates);
                debug!(seq, "replayed dispatch skipped");
            }
        }
    }
}

fn connected(shared: &Arc<crate::link::handle::Shared>) {
    LinkStats::bump(&shared.stats.connects);
    shared.set_state(LinkState::Connected);
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn the_query_names_version_encoding_and_compression() {
        assert_eq!(
            with_query("wss://gateway.discord.gg", true),
            "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
        );
        assert_eq!(
            with_query("ws://127.0.0.1:1/resume-gateway?x=1", false),
            "ws://127.0.0.1:1/resume-gateway?v=10&encoding=json"
        );
    }
}
