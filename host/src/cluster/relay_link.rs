//! The relay link: a [`LinkHandle`] whose commands travel over NATS to whichever host holds
//! the upstream link (cluster mode, issue 12).
//!
//! Why a `LinkHandle`: the command pipeline (queue, dispatcher, outcomes, re-sends) then
//! runs unchanged on every host, the holder included, and its delivery rules carry over:
//!
//! * Each command frame the dispatcher writes is published to `gateway.commands` with the
//!   reply subject `gateway.acks.<this host's id>`; the holder's command server hands it to
//!   the real link and sends the upstream's ack back there, into this handle's acks.
//! * The handle is `Connected` while a fresh holder status (younger than three heartbeat
//!   periods) says the holder's link accepts commands; else `Connecting` (never connected)
//!   or `Reconnecting`, and `send_command` answers `NotConnected` so commands wait queued.
//! * `stats().connects` (the command generation) moves on every (re)entry into
//!   `Connected` and whenever the holder or its link's generation changes, so the
//!   dispatcher re-sends in-flight commands with the same requestId after a holder change
//!   or a holder reconnect; the upstream de-duplicates by requestId, so each acts once.
//! * A holder whose upstream stopped for good (direct Discord mode, e.g. close 4004) says
//!   so; the handle mirrors it in `stopped_reason`, so commands end `rejected` as on a
//!   single host.
//!
//! The handle's state is the state of the *command path* to the holder's upstream; it does
//! not touch the `gateway_link_state` gauge (that is the real link's).

use std::time::{Duration, Instant};

use async_nats::Client;
use futures_util::StreamExt;
use gateway_protocol::UpstreamFrame;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Nats;
use super::command_wire::{COMMANDS_SUBJECT, LinkStatus, STATUS_SUBJECT, acks_subject};
use super::config::ClusterSettings;
use crate::link::handle::Shared;
use crate::link::state::LinkStats;
use crate::link::{LinkHandle, LinkState};

/// Commands of relayed frames, by direction: `sent` (a host to the holder), `received`
/// (the holder handed it to its link), `acked` (the holder sent the ack back).
pub const METRIC_RELAYED: &str = "gateway_cluster_commands_relayed_total";

/// Frames buffered between the dispatcher and the NATS publisher.
const OUTBOUND_CAPACITY: usize = 1024;
/// Delay between attempts to subscribe while NATS is unreachable.
const SUBSCRIBE_RETRY: Duration = Duration::from_millis(250);

/// Starts the relay on `nats`. Needs a tokio runtime.
pub fn relay_link(nats: &Nats, settings: &ClusterSettings) -> LinkHandle {
    let shared = crate::link::new_shared(false);
    shared.state_tx.send_replace(LinkState::Connecting);
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let relay = Relay {
        client: nats.client.clone(),
        acks_subject: acks_subject(&settings.holder_id),
        stale_after: settings.command_status_every * 3,
        tick: settings.command_status_every / 2,
        shared: shared.clone(),
        tx,
        current: None,
        key: None,
        connected: false,
    };
    let task = tokio::spawn(relay.run(rx));
    *shared.task.lock() = Some(task);
    LinkHandle { shared }
}

struct Relay {
    client: Client,
    acks_subject: String,
    stale_after: Duration,
    tick: Duration,
    shared: std::sync::Arc<Shared>,
    tx: mpsc::Sender<String>,
    /// The last status of a serving holder, and when it came.
    current: Option<(LinkStatus, Instant)>,
    /// (holder, its generation) of the current `Connected` period.
    key: Option<(String, u64)>,
    connected: bool,
}

impl Relay {
    async fn run(mut self, mut outbound: mpsc::Receiver<String>) {
        let mut shutdown = self.shared.shutdown.subscribe();
        let subscribed = tokio::select! {
            s = self.subscribe() => s,
            _ = shut_down(&mut shutdown) => None,
        };
        if let Some((mut acks, mut statuses)) = subscribed {
            let mut tick = tokio::time::interval(self.tick.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shut_down(&mut shutdown) => break,
                    Some(frame) = outbound.recv() => self.publish(frame).await,
                    message = acks.next() => match message {
                        Some(m) => self.on_ack(&m.payload),
                        None => { warn!("the relay's ack subscription ended"); break; }
                    },
                    message = statuses.next() => match message {
                        Some(m) => self.on_status(&m.payload),
                        None => { warn!("the relay's status subscription ended"); break; }
                    },
                    _ = tick.tick() => {}
                }
                self.evaluate(Instant::now());
            }
        }
        *self.shared.outbound.lock() = None;
        self.shared.state_tx.send_replace(LinkState::Idle);
    }

    /// Subscribes to this host's acks and to the holder status, retrying while NATS is away.
    async fn subscribe(&self) -> Option<(async_nats::Subscriber, async_nats::Subscriber)> {
        loop {
            let acks = self.client.subscribe(self.acks_subject.clone()).await;
            let statuses = self.client.subscribe(STATUS_SUBJECT).await;
            match (acks, statuses) {
                (Ok(a), Ok(s)) => return Some((a, s)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(error = %e, "cannot subscribe to the command relay subjects; retrying");
                    tokio::time::sleep(SUBSCRIBE_RETRY).await;
                }
            }
        }
    }

    async fn publish(&self, frame: String) {
        let sent = self
            .client
            .publish_with_reply(COMMANDS_SUBJECT, self.acks_subject.clone(), frame.into())
            .await;
        match sent {
            Ok(()) => metrics::counter!(METRIC_RELAYED, "direction" => "sent").increment(1),
            // The dispatcher re-sends after `resend-after` when no ack comes.
            Err(e) => warn!(error = %e, "could not relay a command to the link holder"),
        }
    }

    fn on_ack(&self, payload: &[u8]) {
        let decoded = std::str::from_utf8(payload)
            .map_err(|e| e.to_string())
            .and_then(|text| UpstreamFrame::decode(text).map_err(|e| e.to_string()));
        match decoded {
            Ok(UpstreamFrame::Ack(ack)) => {
                let _ = self.shared.acks.send(std::sync::Arc::new(ack));
            }
            Ok(_) => warn!("the link holder relayed a frame that is not an ack"),
            Err(e) => warn!(error = %e, "undecodable relayed ack"),
        }
    }

    fn on_status(&mut self, payload: &[u8]) {
        let status: LinkStatus = match serde_json::from_slice(payload) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "undecodable link holder status");
                return;
            }
        };
        if status.serving {
            self.current = Some((status, Instant::now()));
        } else if self
            .current
            .as_ref()
            .is_some_and(|(c, _)| c.holder == status.holder)
        {
            // Only the holder we follow can withdraw itself; a late goodbye from an
            // earlier holder must not hide the new one.
            debug!(holder = %status.holder, "the link holder stopped serving commands");
            self.current = None;
        }
    }

    /// Derives the handle's state, stop reason and generation from the freshest status.
    fn evaluate(&mut self, now: Instant) {
        let fresh = self
            .current
            .as_ref()
            .filter(|(_, at)| now.duration_since(*at) < self.stale_after)
            .map(|(s, _)| s.clone());
        *self.shared.stopped.lock() = fresh.as_ref().and_then(|s| s.stopped.clone());
        match fresh {
            Some(status) if status.accepts => {
                let key = (status.holder.clone(), status.generation);
                if self.connected && self.key.as_ref() == Some(&key) {
                    return;
                }
                info!(holder = %status.holder, generation = status.generation, "commands go to this link holder");
                self.key = Some(key);
                LinkStats::bump(&self.shared.stats.connects);
                *self.shared.outbound.lock() = Some(self.tx.clone());
                self.connected = true;
                self.shared.state_tx.send_replace(LinkState::Connected);
            }
            _ => {
                if !self.connected {
                    return;
                }
                info!("no link holder accepts commands now; commands wait");
                self.connected = false;
                *self.shared.outbound.lock() = None;
                LinkStats::bump(&self.shared.stats.reconnects);
                self.shared.state_tx.send_replace(LinkState::Reconnecting);
            }
        }
    }
}

/// Resolves once shutdown is asked (or the handle's state is gone).
async fn shut_down(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
