//! The dispatcher: the one task that writes queued commands to the link and turns acks,
//! timeouts and link drops into retries or terminal outcomes.
//!
//! Why one task: ordering and "exactly one outcome" are then properties of a single loop
//! instead of a protocol between tasks. The rules:
//!
//! * At most one command per channel is in flight, so a retry can never let a later
//!   command of the same channel overtake it; across channels up to `max-in-flight`.
//! * An in-flight command is re-sent with the same requestId when the link came back on
//!   a new connection (its frame may have died in the old socket's buffer) or when no ack
//!   came within `resend-after` on a live link. The upstream de-duplicates by requestId.
//!   In-flight commands are re-sent before new ones are taken, in acceptance order.
//! * A retryable ack error backs off (doubling, capped, jittered) and sends again.
//! * A command that is not finished `expiry` after acceptance ends `expired`; a late ack
//!   for it is logged and ignored. Every command leaves through [`Dispatcher::finish`].
//! * Shutdown ([`Drain`]): the queue takes nothing new; the loop goes on delivering what it
//!   holds until nothing is left or the drain deadline passes, then ends every command
//!   still waiting or in flight `shutdown` (logged, answered to a caller still waiting,
//!   recorded in the outcome store), and stops.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_protocol::Ack;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::outcomes::{Finished, Outcome, OutcomeStore};
use super::queue::{CommandQueue, Envelope};
use super::settings::CommandSettings;
use crate::link::backoff::Backoff;
use crate::link::{LinkHandle, SendError};

/// Delay before trying again when the link refused a command (buffer full, or the
/// connection just went away and the state has not caught up yet).
const BUSY_RETRY: Duration = Duration::from_millis(5);
/// Longest sleep when nothing is scheduled.
const IDLE: Duration = Duration::from_secs(3600);

/// Where an in-flight command stands.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// To be sent at `next_attempt_at` once the link is connected.
    Ready,
    /// Written to connection number `generation` at `at`; awaiting the ack.
    Sent { generation: u64, at: Instant },
}

struct Flight {
    envelope: Envelope,
    stage: Stage,
    backoff: Backoff,
}

/// The dispatcher's side of a shutdown: the drain deadline once shutdown began, and the
/// signal that the loop has stopped.
pub(crate) struct Drain {
    pub deadline: watch::Receiver<Option<Instant>>,
    pub stopped: watch::Sender<bool>,
}

/// The task's state.
pub(crate) struct Dispatcher {
    queue: Arc<CommandQueue>,
    outcomes: Arc<OutcomeStore>,
    link: LinkHandle,
    settings: CommandSettings,
    flights: Vec<Flight>,
    drain: Drain,
}

impl Dispatcher {
    pub fn new(
        queue: Arc<CommandQueue>,
        outcomes: Arc<OutcomeStore>,
        link: LinkHandle,
        settings: CommandSettings,
        drain: Drain,
    ) -> Dispatcher {
        Dispatcher {
            queue,
            outcomes,
            link,
            settings,
            flights: Vec::new(),
            drain,
        }
    }

    /// Runs until the link's ack channel closes or a drain has finished.
    pub async fn run(mut self) {
        self.serve().await;
        self.drain.stopped.send_replace(true);
    }

    async fn serve(&mut self) {
        let mut acks = self.link.acks();
        let mut state = self.link.watch_state();
        let mut deadline = self.drain.deadline.clone();
        let queue = self.queue.clone();
        loop {
            self.step(Instant::now());
            if self.drained(Instant::now()) {
                return;
            }
            let wake_at = self.next_wake(Instant::now());
            tokio::select! {
                changed = deadline.changed() => if changed.is_err() {
                    return; // the pipeline is gone
                },
                ack = acks.recv() => match ack {
                    Ok(ack) => {
                        self.on_ack(&ack);
                        while let Ok(more) = acks.try_recv() {
                            self.on_ack(&more);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "command dispatcher missed acks; unacked commands will be re-sent");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = state.changed() => {}
                _ = queue.pushed() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// Expire, re-send, and take new commands, in that order.
    fn step(&mut self, now: Instant) {
        self.expire(now);
        if let Some(reason) = self.link.stopped_reason() {
            self.reject_all(&reason);
            return;
        }
        if !self.link.accepts_commands() {
            return;
        }
        let generation = self.link.command_generation();
        for i in 0..self.flights.len() {
            self.maybe_send(i, now, generation);
        }
        let room = self
            .settings
            .max_in_flight
            .saturating_sub(self.flights.len());
        let mut busy: HashSet<String> = self
            .flights
            .iter()
            .map(|f| f.envelope.channel_id.clone())
            .collect();
        for envelope in self.queue.take_ready(room, &mut busy) {
            self.flights.push(Flight {
                envelope,
                stage: Stage::Ready,
                backoff: Backoff::new(self.settings.retry_base(), self.settings.retry_cap()),
            });
            let last = self.flights.len() - 1;
            self.maybe_send(last, now, generation);
        }
    }

    /// Sends flight `i` if it is due: ready and past its backoff, or sent on an older
    /// connection, or sent too long ago without an ack.
    fn maybe_send(&mut self, i: usize, now: Instant, generation: u64) {
        let resend_after = self.settings.resend_after();
        let flight = &mut self.flights[i];
        let due = match flight.stage {
            Stage::Ready => flight.envelope.next_attempt_at <= now,
            Stage::Sent { generation: g, .. } if g != generation => {
                info!(parent: &flight.envelope.span, "re-sending after reconnect");
                true
            }
            Stage::Sent { at, .. } => {
                let late = now.duration_since(at) >= resend_after;
                if late {
                    warn!(parent: &flight.envelope.span, after_ms = resend_after.as_millis() as u64, "no ack; re-sending");
                }
                late
            }
        };
        if due {
            send(&self.link, flight, now, generation);
        }
    }

    fn on_ack(&mut self, ack: &Ack) {
        let Some(i) = self
            .flights
            .iter()
            .position(|f| f.envelope.request_id == ack.request_id)
        else {
            debug!(request_id = %ack.request_id, "ack for no command in flight (late, or a repeat)");
            return;
        };
        if ack.ok {
            let outcome = Outcome::Delivered {
                result: ack.result.clone(),
            };
            self.finish_flight(i, outcome);
            return;
        }
        match &ack.error {
            Some(e) if e.retryable => {
                let flight = &mut self.flights[i];
                let delay = flight.backoff.next_delay();
                flight.envelope.next_attempt_at = Instant::now() + delay;
                flight.stage = Stage::Ready;
                warn!(parent: &flight.envelope.span, code = ?e.code, retry_in_ms = delay.as_millis() as u64, "retryable failure; backing off");
            }
            error => {
                let (code, message) = match error {
                    Some(e) => (wire_code(e.code), e.message.clone()),
                    None => ("unknown".to_string(), "failed ack without an error".into()),
                };
                self.finish_flight(i, Outcome::Rejected { code, message });
            }
        }
    }

    /// While draining: true once nothing is left, or (past the deadline) after ending
    /// what is left `shutdown`.
    fn drained(&mut self, now: Instant) -> bool {
        let Some(deadline) = *self.drain.deadline.borrow() else {
            return false;
        };
        if self.flights.is_empty() && self.queue.waiting() == 0 {
            info!("command queue drained: every command reached its outcome");
            return true;
        }
        if now < deadline {
            return false;
        }
        let left: Vec<Envelope> = self
            .queue
            .take_all()
            .into_iter()
            .chain(self.flights.drain(..).map(|f| f.envelope))
            .collect();
        warn!(
            commands = left.len(),
            "shutdown deadline reached: commands not delivered end \"shutdown\""
        );
        for envelope in left {
            self.finish(envelope, Outcome::Shutdown);
        }
        true
    }

    /// The upstream stopped for good (a fatal Discord close code such as 4004): every
    /// command, waiting or in flight, ends `rejected` with the reason instead of waiting
    /// for its expiry.
    fn reject_all(&mut self, reason: &str) {
        let left: Vec<Envelope> = self
            .queue
            .take_all()
            .into_iter()
            .chain(self.flights.drain(..).map(|f| f.envelope))
            .collect();
        for envelope in left {
            let message = format!("the upstream stopped and will not reconnect: {reason}");
            let code = "unavailable".to_string();
            self.finish(envelope, Outcome::Rejected { code, message });
        }
    }

    /// Ends every command, waiting or in flight, older than the expiry.
    fn expire(&mut self, now: Instant) {
        let expiry = self.settings.expiry();
        for envelope in self.queue.take_expired(now, expiry) {
            self.finish(envelope, Outcome::Expired);
        }
        while let Some(i) = self
            .flights
            .iter()
            .position(|f| f.envelope.expires_at(expiry) <= now)
        {
            self.finish_flight(i, Outcome::Expired);
        }
    }

    /// The next instant something is due (expiry, backoff, resend), or an hour away.
    fn next_wake(&self, now: Instant) -> Instant {
        let expiry = self.settings.expiry();
        let connected = self.link.accepts_commands();
        let resend_after = self.settings.resend_after();
        let flights = self.flights.iter().flat_map(|f| {
            let timer = match f.stage {
                _ if !connected => None,
                Stage::Ready => Some(f.envelope.next_attempt_at),
                Stage::Sent { at, .. } => Some(at + resend_after),
            };
            [Some(f.envelope.expires_at(expiry)), timer]
        });
        let drain_deadline = *self.drain.deadline.borrow();
        flights
            .chain([self.queue.next_expiry(expiry), drain_deadline])
            .flatten()
            .min()
            .unwrap_or(now + IDLE)
            .max(now)
    }

    fn finish_flight(&mut self, i: usize, outcome: Outcome) {
        let flight = self.flights.remove(i);
        self.finish(flight.envelope, outcome);
    }

    /// The one exit of every command: metrics, log, outcome store, waiting handler.
    fn finish(&self, mut envelope: Envelope, outcome: Outcome) {
        let latency = envelope.enqueued_at.elapsed();
        let kind = envelope.kind();
        metrics::counter!("gateway_commands_total", "kind" => kind.as_str(), "outcome" => outcome.as_str())
            .increment(1);
        if !matches!(outcome, Outcome::Expired | Outcome::Shutdown) {
            metrics::histogram!("gateway_command_dispatch_seconds").record(latency.as_secs_f64());
        }
        let span = envelope.span.clone();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        match &outcome {
            Outcome::Delivered { .. } => {
                info!(parent: &span, event = "command.delivered", attempts = envelope.attempts, latency_ms, "command delivered");
            }
            Outcome::Rejected { code, message } => {
                info!(parent: &span, event = "command.rejected", attempts = envelope.attempts, latency_ms, code = %code, message = %message, "command rejected by the upstream");
            }
            Outcome::Expired => {
                warn!(parent: &span, event = "command.expired", attempts = envelope.attempts, latency_ms, enqueued_at_ms = envelope.enqueued_at_ms, "command expired before an ack");
            }
            Outcome::Shutdown => {
                warn!(parent: &span, event = "command.shutdown", attempts = envelope.attempts, latency_ms, enqueued_at_ms = envelope.enqueued_at_ms, "command not delivered before shutdown");
            }
        }
        let finished = Finished {
            request_id: std::mem::take(&mut envelope.request_id),
            trace_id: std::mem::take(&mut envelope.trace_id),
            kind,
            outcome,
            attempts: envelope.attempts,
            latency,
        };
        if let Some(waiter) = envelope.waiter.take() {
            let _ = waiter.send(finished.clone());
        }
        self.outcomes.finish(finished);
        self.queue.finished(&envelope.owner);
    }
}

/// Writes `flight` to the link; on refusal it stays ready (the attempt does not count).
fn send(link: &LinkHandle, flight: &mut Flight, now: Instant, generation: u64) {
    let envelope = &mut flight.envelope;
    match link.send_command(envelope.wire()) {
        Ok(()) => {
            envelope.attempts += 1;
            flight.stage = Stage::Sent {
                generation,
                at: now,
            };
            debug!(parent: &envelope.span, event = "command.sent", attempt = envelope.attempts, "sent on the link");
        }
        Err(SendError::NotConnected | SendError::Busy) => {
            envelope.next_attempt_at = now + BUSY_RETRY;
            flight.stage = Stage::Ready;
        }
    }
}

/// The kebab-case wire name of an ack error code.
fn wire_code(code: gateway_protocol::ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
