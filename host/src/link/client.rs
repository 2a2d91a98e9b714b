//! The link task: connect, handshake, serve, back off, repeat.
//!
//! Every wait in here is bounded (connect, hello, pong, send, close) so that a dead or
//! hostile upstream can cost a delay, never a hang, and every failure ends in the same
//! place: the backoff sleep before the next attempt. A sequence anomaly or an oversize
//! frame also ends the connection on purpose: the next one resumes from the last
//! contiguous seq (see [`super::session`]), so nothing is dropped silently.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use futures_util::{SinkExt, StreamExt};
use gateway_protocol::{DecodeError, Event, HostFrame, Ping, UpstreamFrame};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::config::LinkConfig;
use super::handle::Shared;
use super::heartbeat::Heartbeat;
use super::session::{Anomaly, HelloOutcome, OversizeAction, SeqCheck, SessionTracker, reason};
use super::state::{LinkState, LinkStats};
use super::state_file::StateFile;
use crate::bus::{Bus, BusEvent};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code the host sends when it drops a connection to resynchronise (4000–4999 is
/// the private range; see `docs/link-protocol.md`).
const CLOSE_RESYNC: u16 = 4002;
/// Longest wait for our close frame (or the answer to the upstream's) to be written.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("the upstream refused LINK_TOKEN (HTTP 401)")]
    Unauthorized,
    #[error("the upstream answered HTTP {0} to the upgrade")]
    Rejected(StatusCode),
    #[error("connect timed out")]
    Timeout,
    #[error("invalid link request: {0}")]
    Request(String),
    #[error("{0}")]
    WebSocket(#[from] tungstenite::Error),
}

/// Why an established connection ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("shutdown requested")]
    Shutdown,
    #[error("no pong within the zombie bound")]
    Zombie,
    #[error("the upstream closed the link (close frame: {0})")]
    Closed(String),
    #[error("the connection ended without a close frame")]
    Eof,
    #[error("sequence anomaly ({0:?}): resuming from the last contiguous seq")]
    Resync(Anomaly),
    #[error("inbound frame over the size limit: {0}")]
    Oversize(String),
    #[error("no hello within the handshake timeout")]
    NoHello,
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("socket error: {0}")]
    Socket(#[from] tungstenite::Error),
    #[error("send timed out")]
    SendTimeout,
}

struct Client {
    config: LinkConfig,
    bus: Bus,
    shared: Arc<Shared>,
    session: SessionTracker,
    backoff: Backoff,
    shutdown: watch::Receiver<bool>,
    state_file: Option<StateFile>,
}

/// Runs the link until shutdown.
pub(super) async fn run(config: LinkConfig, bus: Bus, shared: Arc<Shared>) {
    let state_file = config
        .state_file
        .clone()
        .map(|path| StateFile::new(path, config.state_interval));
    let session = match (
        &config.resume,
        state_file.as_ref().and_then(StateFile::load),
    ) {
        (Some((session, seq)), _) => SessionTracker::restored(session, *seq),
        (None, Some(saved)) => SessionTracker::restored(&saved.session_id, saved.last_seq),
        (None, None) => SessionTracker::default(),
    };
    let mut client = Client {
        backoff: Backoff::new(config.backoff_base, config.backoff_cap),
        shutdown: shared.shutdown.subscribe(),
        config,
        bus,
        shared,
        session,
        state_file,
    };
    client.run().await;
    client.save_state_now().await;
    client.shared.set_state(LinkState::Idle);
}

impl Client {
    async fn run(&mut self) {
        self.shared.set_state(LinkState::Connecting);
        info!(url = %self.config.url, "link starting");
        while !*self.shutdown.borrow() {
            let quick = self.attempt().await;
            if *self.shutdown.borrow() {
                return;
            }
            // A deliberate resync reconnects after the base delay, without growing it.
            let delay = if quick {
                self.backoff.base_delay()
            } else {
                self.backoff.next_delay()
            };
            debug!(?delay, "link backing off");
            tokio::select! {
                _ = sleep(delay) => {}
                _ = self.shutdown.changed() => return,
            }
        }
    }

    /// One connection attempt, served until it ends. True when it ended on purpose to
    /// resynchronise (reconnect soon).
    async fn attempt(&mut self) -> bool {
        let ws = match self.connect().await {
            Ok(ws) => ws,
            Err(ConnectError::Unauthorized) => {
                LinkStats::bump(&self.shared.stats.auth_failures);
                error!(url = %self.config.url, "upstream refused LINK_TOKEN (HTTP 401): check LINK_TOKEN; backing off");
                return false;
            }
            Err(e) => {
                warn!(url = %self.config.url, error = %e, "link connect failed; backing off");
                return false;
            }
        };
        let up_since = StdInstant::now();
        let end = self.serve(ws).await;
        *self.shared.outbound.lock() = None;
        if matches!(end, End::Shutdown) {
            return false;
        }
        let quick = self.after_end(&end);
        if self.shared.state_tx.borrow().eq(&LinkState::Connected) {
            LinkStats::bump(&self.shared.stats.reconnects);
            metrics::counter!("gateway_link_reconnects_total").increment(1);
        }
        if up_since.elapsed() >= self.config.stable_after {
            self.backoff.reset();
        }
        warn!(error = %end, session = ?self.session.session(), last_seq = self.session.last_seq(), "link lost; reconnecting");
        self.shared.set_state(LinkState::Reconnecting);
        quick
    }

    /// Counts a deliberate end (resync, oversize frame); true when it was one.
    fn after_end(&mut self, end: &End) -> bool {
        match end {
            End::Resync(anomaly) => {
                self.count_resync(anomaly.label());
                warn!(?anomaly, session = ?self.session.session(), last_seq = self.session.last_seq(), "upstream seq anomaly: reconnecting to resume from the last contiguous seq");
                true
            }
            End::Oversize(detail) => {
                LinkStats::bump(&self.shared.stats.oversize);
                metrics::counter!("gateway_link_frames_oversize_total").increment(1);
                let action = self.session.on_oversize();
                if action == OversizeAction::SkipOne {
                    self.record_gap();
                }
                warn!(%detail, limit = self.config.max_frame_bytes, ?action, last_seq = self.session.last_seq(), "skipping an inbound frame over the size limit (the connection had to be dropped)");
                true
            }
            _ => false,
        }
    }

    fn count_resync(&self, label: &'static str) {
        LinkStats::bump(&self.shared.stats.resyncs);
        metrics::counter!("gateway_link_seq_resyncs_total", "reason" => label).increment(1);
    }

    async fn connect(&self) -> Result<Socket, ConnectError> {
        let mut request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Request(e.to_string()))?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.config.token.expose()))
            .map_err(|_| {
            ConnectError::Request("LINK_TOKEN is not a valid header value".into())
        })?;
        bearer.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, bearer);
        let limits = WebSocketConfig::default()
            .max_frame_size(Some(self.config.max_frame_bytes))
            .max_message_size(Some(self.config.max_frame_bytes));
        let connecting = connect_async_with_config(request, Some(limits), true);
        match timeout(self.config.connect_timeout, connecting).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(Ok((ws, _response))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(resp)))
                if resp.status() == StatusCode::UNAUTHORIZED =>
            {
                Err(ConnectError::Unauthorized)
            }
            Ok(Err(tungstenite::Error::Http(resp))) => Err(ConnectError::Rejected(resp.status())),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Handshake, then the connected loop.
    async fn serve(&mut self, mut ws: Socket) -> End {
        let resume = HostFrame::Resume(self.session.resume_frame()).encode();
        if let Err(end) = self.send(&mut ws, resume).await {
            return end;
        }
        if let Err(end) = self.handshake(&mut ws).await {
            self.close(&mut ws, &end).await;
            return end;
        }
        let (tx, rx) = mpsc::channel(self.config.command_capacity.max(1));
        *self.shared.outbound.lock() = Some(tx);
        LinkStats::bump(&self.shared.stats.connects);
        self.shared.set_state(LinkState::Connected);
        let end = self.connected(&mut ws, rx).await;
        self.close(&mut ws, &end).await;
        end
    }

    /// Ends the WebSocket properly where the socket still works: answers the upstream's
    /// close frame (completing the close handshake), or sends ours with a code.
    async fn close(&self, ws: &mut Socket, end: &End) {
        let frame = |code: CloseCode, why: &'static str| {
            Some(CloseFrame {
                code,
                reason: why.into(),
            })
        };
        let wait = CLOSE_WAIT.min(self.config.pong_timeout);
        let ours = match end {
            // tungstenite queued the reply when it read the close: reading on writes it,
            // then waits for the upstream to close TCP (the server's job, RFC 6455).
            End::Closed(_) => {
                let _ = timeout(wait, async { while let Some(Ok(_)) = ws.next().await {} }).await;
                return;
            }
            End::Shutdown => frame(CloseCode::Normal, "host shutting down"),
            End::Resync(_) => frame(CloseCode::from(CLOSE_RESYNC), "resync"),
            End::Oversize(_) => frame(CloseCode::Size, "frame over the size limit"),
            End::Protocol(_) => frame(CloseCode::Protocol, "protocol violation"),
            End::Zombie | End::NoHello | End::Eof | End::Socket(_) | End::SendTimeout => return,
        };
        let _ = timeout(wait, ws.close(ours)).await;
    }

    /// Waits for `hello`, skipping (and counting) junk before it.
    async fn handshake(&mut self, ws: &mut Socket) -> Result<(), End> {
        let deadline = Instant::now() + self.config.hello_timeout;
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                _ = sleep_until(deadline) => return Err(End::NoHello),
                _ = self.shutdown.changed() => return Err(End::Shutdown),
            };
            match classify(msg)? {
                Inbound::Text(text) => match UpstreamFrame::decode(text.as_str()) {
                    Ok(UpstreamFrame::Hello(hello)) => {
                        let outcome = self.session.on_hello(&hello);
                        self.report_hello(&hello.session_id, hello.resumed, &outcome);
                        self.save_state();
                        return Ok(());
                    }
                    Ok(_) => return Err(End::Protocol("frame before hello")),
                    Err(e) => self.count_bad_frame(&e),
                },
                Inbound::Control => {}
                Inbound::Binary => self.count_binary(),
            }
        }
    }

    fn report_hello(&self, session_id: &str, resumed: bool, outcome: &HelloOutcome) {
        match outcome {
            HelloOutcome::Fresh | HelloOutcome::Resumed => {
                info!(session = session_id, resumed, "link connected");
            }
            HelloOutcome::NewSession { previous, last_seq } => {
                self.record_gap();
                warn!(session = session_id, previous = %previous, last_seq, "upstream started a new session: events after the last seq of the previous session could not be replayed");
            }
            HelloOutcome::ReplayUnavailable { last_seq } => {
                self.record_gap();
                warn!(
                    session = session_id,
                    last_seq,
                    "upstream could not replay from our last seq: gap in the event stream"
                );
            }
            HelloOutcome::Renumbered {
                last_seq,
                upstream_seq,
            } => {
                self.record_gap();
                self.count_resync("renumbered");
                warn!(
                    session = session_id,
                    last_seq,
                    upstream_seq,
                    resumed,
                    "upstream reused its session id with a lower seq (it restarted or lost its buffer): adopting its numbering; events after our last seq may be lost"
                );
            }
        }
    }

    fn record_gap(&self) {
        LinkStats::bump(&self.shared.stats.gaps);
        metrics::counter!("gateway_link_replay_gaps_total").increment(1);
    }

    /// The connected loop: frames in, commands out, pings, zombie deadline.
    ///
    /// The `select!` is biased towards everything *but* inbound frames: a busy inbound
    /// stream is always ready, so polled first it would starve commands and pings (and
    /// with them RTT samples and zombie detection). Outbound work is bounded (the command
    /// queue, one ping per interval), so inbound cannot starve either.
    async fn connected(&mut self, ws: &mut Socket, mut commands: mpsc::Receiver<String>) -> End {
        let mut heartbeat = Heartbeat::new(self.config.pong_timeout);
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut persist = tokio::time::interval(self.config.state_interval);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let persisting = self.state_file.is_some();
        loop {
            let far = Instant::now() + self.config.zombie_bound() * 4;
            let zombie_at = heartbeat.deadline().unwrap_or(far);
            let step = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Err(End::Shutdown),
                _ = sleep_until(zombie_at) => Err(End::Zombie),
                Some(frame) = commands.recv() => self.send(ws, frame).await,
                _ = ping.tick() => {
                    let trace_id = heartbeat.ping(Instant::now());
                    self.send(ws, HostFrame::Ping(Ping { trace_id }).encode()).await
                }
                _ = persist.tick(), if persisting => {
                    self.save_state();
                    Ok(())
                }
                msg = ws.next() => self.on_message(msg, &mut heartbeat),
            };
            if let Err(end) = step {
                if matches!(end, End::Zombie) {
                    LinkStats::bump(&self.shared.stats.zombies);
                }
                return end;
            }
        }
    }

    async fn send(&self, ws: &mut Socket, text: String) -> Result<(), End> {
        match timeout(self.config.pong_timeout, ws.send(Message::text(text))).await {
            Ok(result) => result.map_err(End::from),
            Err(_) => Err(End::SendTimeout),
        }
    }

    fn on_message(
        &mut self,
        msg: Option<Result<Message, tungstenite::Error>>,
        hb: &mut Heartbeat,
    ) -> Result<(), End> {
        let text = match classify(msg)? {
            Inbound::Text(text) => text,
            Inbound::Control => return Ok(()),
            Inbound::Binary => {
                self.count_binary();
                return Ok(());
            }
        };
        match UpstreamFrame::decode(text.as_str()) {
            Ok(UpstreamFrame::Event(event)) => return self.on_event(event),
            Ok(UpstreamFrame::Ack(ack)) => {
                let _ = self.shared.acks.send(Arc::new(ack));
            }
            Ok(UpstreamFrame::Pong(pong)) => match hb.pong(&pong.trace_id, Instant::now()) {
                Some(rtt) => self.shared.stats.record_rtt(rtt),
                None => debug!(trace_id = %pong.trace_id, "pong for no outstanding ping"),
            },
            Ok(UpstreamFrame::Hello(_)) => warn!("ignoring a second hello on a live link"),
            Err(e) => self.count_bad_frame(&e),
        }
        Ok(())
    }

    fn count_binary(&self) {
        warn!("skipping a binary frame (protocol v1 is text only)");
        LinkStats::bump(&self.shared.stats.malformed);
        metrics::counter!("gateway_link_frames_malformed_total").increment(1);
    }

    fn count_bad_frame(&self, e: &DecodeError) {
        if e.is_unknown_op() {
            warn!(error = %e, "skipping a frame with an unknown op");
            LinkStats::bump(&self.shared.stats.unknown);
            metrics::counter!("gateway_link_frames_unknown_total").increment(1);
        } else {
            warn!(error = %e, "skipping a malformed frame");
            LinkStats::bump(&self.shared.stats.malformed);
            metrics::counter!("gateway_link_frames_malformed_total").increment(1);
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), End> {
        let loss_before = match self.session.check(event.seq) {
            SeqCheck::Duplicate => {
                debug!(seq = event.seq, trace_id = %event.trace_id, "skipping an already seen event (replay overlap)");
                LinkStats::bump(&self.shared.stats.duplicates);
                return Ok(());
            }
            SeqCheck::Resync(anomaly) => return Err(End::Resync(anomaly)),
            SeqCheck::Take { loss_before } => loss_before,
        };
        if loss_before == Some(reason::SEQ_GAP) {
            self.record_gap();
            warn!(
                seq = event.seq,
                session = ?self.session.session(),
                "the upstream could not fill a seq hole on resume: events before this one are lost"
            );
        }
        let Some(session_id) = self.session.session().cloned() else {
            return Ok(());
        };
        metrics::counter!("gateway_events_in_total", "type" => event_type_label(&event.t))
            .increment(1);
        LinkStats::bump(&self.shared.stats.events);
        debug!(event = "event.received", trace_id = %event.trace_id, seq = event.seq, t = %event.t, "event received");
        self.bus.publish(Arc::new(BusEvent {
            session_id,
            seq: event.seq,
            trace_id: event.trace_id,
            t: event.t,
            ts: event.ts,
            d: event.d,
            received_at: StdInstant::now(),
            loss_before,
        }));
        Ok(())
    }

    /// Saves the position to the state file soon (rate-limited), if there is one.
    fn save_state(&mut self) {
        if let (Some(file), Some(session)) = (self.state_file.as_mut(), self.session.session()) {
            file.save_soon(session, self.session.last_seq());
        }
    }

    /// Saves the final position and waits for the write (clean shutdown).
    async fn save_state_now(&mut self) {
        if let (Some(file), Some(session)) = (self.state_file.as_mut(), self.session.session()) {
            file.save_now(session, self.session.last_seq()).await;
        }
    }
}

/// What one inbound WebSocket message is, for the protocol.
enum Inbound {
    /// A text frame: a protocol frame (maybe broken).
    Text(tungstenite::Utf8Bytes),
    /// A WebSocket-level ping/pong (answered by tungstenite itself).
    Control,
    /// A binary frame: not part of protocol v1.
    Binary,
}

/// Classifies a message; `Err` when the connection is over.
fn classify(msg: Option<Result<Message, tungstenite::Error>>) -> Result<Inbound, End> {
    match msg {
        None => Err(End::Eof),
        Some(Ok(Message::Close(frame))) => Err(End::Closed(match frame {
            Some(f) => format!("{} {:?}", u16::from(f.code), f.reason.as_str()),
            None => "no code".into(),
        })),
        Some(Err(tungstenite::Error::Capacity(e))) => Err(End::Oversize(e.to_string())),
        Some(Err(e)) => Err(End::Socket(e)),
        Some(Ok(Message::Text(text))) => Ok(Inbound::Text(text)),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(Inbound::Control),
        Some(Ok(Message::Binary(_))) => Ok(Inbound::Binary),
    }
}

/// Bounded label values for `gateway_events_in_total{type}` (an upstream cannot blow
/// up the metric's cardinality).
pub(crate) fn event_type_label(t: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
        "TYPING_START",
        "VOICE_STATE_UPDATE",
        "VOICE_SERVER_UPDATE",
        "GUILD_MEMBER_ADD",
        "PRESENCE_UPDATE",
    ];
    KNOWN.iter().find(|k| **k == t).copied().unwrap_or("OTHER")
}
