//! The command server: on the link holder, takes the commands every host relays over NATS,
//! hands them to the real upstream link, and sends the acks back to the host that sent
//! each one; it also answers rate requests, so every user's bucket has one owner.
//!
//! Why on the holder only: the holder is the one host that can deliver, and the one place
//! where a user's commands all pass, so its limiter slot sees a user's whole rate however
//! many hosts the user's requests land on. While `held` is `Some(link)` the server:
//!
//! * takes `gateway.commands` in the queue group `gateway-holder` (two hosts that briefly
//!   both serve take each command once), decodes the command frame, remembers requestId →
//!   reply subject (bounded, expiring) and `send_command`s it; a link that refuses (down,
//!   full) answers a retryable `unavailable` ack at once, so the sender backs off and
//!   re-sends instead of waiting for `resend-after`;
//! * forwards each ack of its link to the remembered reply subject;
//! * answers `gateway.limit` with its limiter slot (`Policies::check_rate_async`);
//! * publishes its link's status on `gateway.link.status` every `command_status_every` and
//!   on every state change (the relays derive their state and generation from it).
//!
//! When `held` becomes `None` (the lease was lost) the subscriptions end at once, a last
//! status says `serving: false`, and the heartbeats stop. Commands in flight then are
//! re-sent by their hosts, with the same requestId, to the next holder; the upstream
//! de-duplicates by requestId, so each is delivered once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::{Client, Message};
use futures_util::StreamExt;
use gateway_protocol::{Ack, ErrorCode, HostFrame, UpstreamFrame};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::Nats;
use super::command_wire::{
    BUSY_ANSWER, COMMANDS_SUBJECT, HOLDER_QUEUE, LIMIT_SUBJECT, LimitAnswer, LimitRequest,
    LinkStatus, STATUS_SUBJECT,
};
use super::config::ClusterSettings;
use super::relay_link::METRIC_RELAYED;
use crate::link::LinkHandle;
use crate::policy::types::{CommandKind, RateRequest};
use crate::policy::{LimitOutcome, Policies};

/// Reply subjects remembered at most (oldest forgotten first).
const MAX_REPLIES: usize = 100_000;
/// Rate requests answered at once at most; beyond, a request is answered "busy" at once
/// (its host answers `503 limiter_unavailable`) instead of queueing without bound.
const MAX_CHECKS: usize = 1_024;
/// How long a reply subject is remembered without an ack.
const REPLY_TTL: Duration = Duration::from_secs(600);
/// Pause before serving again after a NATS failure while still holding the link.
const RETRY: Duration = Duration::from_millis(250);

/// The running server; its task ends when this is dropped.
pub struct CommandServer {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl CommandServer {
    /// Stops serving: the subscriptions end and, if this host was serving, a last status
    /// says `serving: false` (relays stop sending here at once instead of waiting for the
    /// status to go stale). Bounded by `within`.
    pub async fn shutdown(mut self, within: Duration) {
        self.stop.send_replace(true);
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            warn!("the cluster command server did not stop in time");
        }
    }
}

impl Drop for CommandServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the command server: it serves while `held` is `Some(link)`. Needs a tokio runtime.
pub fn spawn_command_server(
    nats: &Nats,
    settings: &ClusterSettings,
    held: watch::Receiver<Option<LinkHandle>>,
    policies: Arc<Policies>,
) -> CommandServer {
    let server = Server {
        client: nats.client.clone(),
        holder: settings.holder_id.clone(),
        every: settings.command_status_every.max(Duration::from_millis(1)),
        policies,
    };
    let (stop, stopped) = watch::channel(false);
    CommandServer {
        task: tokio::spawn(server.run(held, stopped)),
        stop,
    }
}

struct Server {
    client: Client,
    holder: String,
    every: Duration,
    policies: Arc<Policies>,
}

impl Server {
    async fn run(
        self,
        mut held: watch::Receiver<Option<LinkHandle>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let link = held.borrow_and_update().clone();
            let Some(link) = link else {
                tokio::select! {
                    changed = held.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            };
            info!("holding the link: serving cluster commands");
            // Boxed, so dropping it below really ends the subscriptions before the goodbye.
            let mut serving = Box::pin(self.serve(&link));
            let gone = loop {
                tokio::select! {
                    ended = &mut serving => {
                        if let Err(e) = ended {
                            warn!(error = %format!("{e:#}"), "cluster command server failed; serving again");
                        }
                        break false;
                    }
                    _ = stop.wait_for(|s| *s) => break true,
                    changed = held.changed() => {
                        if changed.is_err() {
                            break true;
                        }
                        let same = held
                            .borrow()
                            .as_ref()
                            .is_some_and(|l| Arc::ptr_eq(&l.shared, &link.shared));
                        if !same {
                            break false;
                        }
                    }
                }
            };
            drop(serving); // unsubscribes at once
            info!("no longer serving cluster commands");
            self.publish_status(&link, false).await;
            if gone {
                return;
            }
            if held.borrow().is_some() {
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Serves until a subscription or the link's ack channel ends.
    async fn serve(&self, link: &LinkHandle) -> anyhow::Result<()> {
        let mut commands = self
            .client
            .queue_subscribe(COMMANDS_SUBJECT, HOLDER_QUEUE.to_string())
            .await
            .context("subscribing to relayed commands")?;
        let mut limits = self
            .client
            .queue_subscribe(LIMIT_SUBJECT, HOLDER_QUEUE.to_string())
            .await
            .context("subscribing to rate requests")?;
        let mut acks = link.acks();
        let mut state = link.watch_state();
        let mut beat = tokio::time::interval(self.every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut replies = Replies::default();
        let mut checks = JoinSet::new();
        loop {
            tokio::select! {
                message = commands.next() => {
                    let message = message.context("the command subscription ended")?;
                    self.on_command(link, message, &mut replies).await;
                }
                message = limits.next() => {
                    let message = message.context("the rate request subscription ended")?;
                    if checks.len() >= MAX_CHECKS {
                        answer_busy(&self.client, message).await;
                    } else {
                        checks.spawn(answer_limit(self.client.clone(), self.policies.clone(), message));
                    }
                }
                ack = acks.recv() => match ack {
                    Ok(ack) => self.forward(&ack, &mut replies).await,
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "command server missed acks; their commands will be re-sent");
                    }
                    Err(RecvError::Closed) => anyhow::bail!("the link's ack channel closed"),
                },
                _ = state.changed() => self.publish_status(link, true).await,
                _ = beat.tick() => {
                    self.publish_status(link, true).await;
                    replies.sweep(Instant::now());
                }
                Some(_) = checks.join_next(), if !checks.is_empty() => {}
            }
        }
    }

    async fn on_command(&self, link: &LinkHandle, message: Message, replies: &mut Replies) {
        let Some(reply) = message.reply else {
            warn!("a relayed command without a reply subject; dropped");
            return;
        };
        let command = match std::str::from_utf8(&message.payload)
            .map_err(|e| e.to_string())
            .and_then(|t| HostFrame::decode(t).map_err(|e| e.to_string()))
        {
            Ok(HostFrame::Command(command)) => command,
            Ok(_) => {
                warn!("a relayed frame that is not a command; dropped");
                return;
            }
            Err(e) => {
                warn!(error = %e, "an undecodable relayed command; dropped");
                return;
            }
        };
        let request_id = command.request_id.clone();
        replies.remember(request_id.clone(), reply.to_string(), Instant::now());
        match link.send_command(command) {
            Ok(()) => {
                metrics::counter!(METRIC_RELAYED, "direction" => "received").increment(1);
                debug!(%request_id, "relayed command handed to the link");
            }
            Err(e) => {
                // Retryable: the sender backs off and sends again (same requestId).
                let ack = Ack::failure(&request_id, ErrorCode::Unavailable, e.to_string());
                self.forward(&ack, replies).await;
            }
        }
    }

    /// Sends `ack` to the host that relayed its command, if known.
    async fn forward(&self, ack: &Ack, replies: &mut Replies) {
        let Some(reply) = replies.take(&ack.request_id) else {
            return; // a local command of a single host, a repeat, or forgotten
        };
        let frame = UpstreamFrame::Ack(ack.clone()).encode();
        match self.client.publish(reply, frame.into()).await {
            Ok(()) => metrics::counter!(METRIC_RELAYED, "direction" => "acked").increment(1),
            Err(e) => warn!(error = %e, request_id = %ack.request_id, "could not send an ack back"),
        }
    }

    async fn publish_status(&self, link: &LinkHandle, serving: bool) {
        let status = LinkStatus {
            holder: self.holder.clone(),
            serving,
            accepts: serving && link.accepts_commands(),
            generation: link.command_generation(),
            state: link.state().as_str().to_string(),
            stopped: link.stopped_reason(),
        };
        let Ok(payload) = serde_json::to_vec(&status) else {
            return;
        };
        if let Err(e) = self.client.publish(STATUS_SUBJECT, payload.into()).await {
            warn!(error = %e, "could not publish the link status");
        }
    }
}

/// Answers a rate request "busy": [`MAX_CHECKS`] are being answered already.
async fn answer_busy(client: &Client, message: Message) {
    let Some(reply) = message.reply else {
        return;
    };
    warn!(
        in_flight = MAX_CHECKS,
        "too many rate requests at once; answered busy"
    );
    if let Err(e) = client.publish(reply, BUSY_ANSWER.into()).await {
        warn!(error = %e, "could not answer a rate request");
    }
}

/// Answers one rate request with this host's limiter slot.
async fn answer_limit(client: Client, policies: Arc<Policies>, message: Message) {
    let Some(reply) = message.reply else {
        return;
    };
    let request: LimitRequest = match serde_json::from_slice(&message.payload) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "an undecodable rate request; not answered");
            return;
        }
    };
    let kind = match request.kind.as_str() {
        "send-message" => CommandKind::SendMessage,
        "add-reaction" => CommandKind::AddReaction,
        "typing-start" => CommandKind::TypingStart,
        other => {
            warn!(
                kind = other,
                "a rate request of an unknown kind; not answered"
            );
            return;
        }
    };
    let verdict = policies
        .check_rate_async(RateRequest {
            user_id: request.user_id,
            channel_id: request.channel_id,
            kind,
        })
        .await;
    if let Some(failure) = &verdict.fallback {
        warn!(
            ?failure,
            answered_by = verdict.answered_by(),
            "rate limiter failed; failure policy applied"
        );
    }
    let answer = match verdict.value {
        LimitOutcome::Allow { remaining } => LimitAnswer::Allow { remaining },
        LimitOutcome::Deny { retry_after_ms } => LimitAnswer::Deny { retry_after_ms },
    };
    let Ok(payload) = serde_json::to_vec(&answer) else {
        return;
    };
    if let Err(e) = client.publish(reply, payload.into()).await {
        warn!(error = %e, "could not answer a rate request");
    }
}

/// requestId → reply subject, bounded in size and age.
#[derive(Default)]
struct Replies {
    by_id: HashMap<String, (String, Instant)>,
    order: VecDeque<(String, Instant)>,
}

impl Replies {
    fn remember(&mut self, request_id: String, reply: String, now: Instant) {
        // `order` holds an entry per remembered id (and the taken ones until swept):
        // bounding it bounds both, even behind an old entry whose ack never comes.
        while self.order.len() >= MAX_REPLIES {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.by_id.get(&old).is_some_and(|(_, t)| *t == at) {
                self.by_id.remove(&old);
            }
        }
        self.order.push_back((request_id.clone(), now));
        self.by_id.insert(request_id, (reply, now));
    }

    fn take(&mut self, request_id: &str) -> Option<String> {
        self.by_id.remove(request_id).map(|(reply, _)| reply)
    }

    fn sweep(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            if now.duration_since(*at) < REPLY_TTL && self.by_id.contains_key(id) {
                break;
            }
            if self.by_id.get(id).is_some_and(|(_, t)| t == at) {
                self.by_id.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_taken_once_and_expire() {
        let mut r = Replies::default();
        let t0 = Instant::now();
        r.remember("a".into(), "gateway.acks.x".into(), t0);
        r.remember("b".into(), "gateway.acks.y".into(), t0);
        assert_eq!(r.take("a").as_deref(), Some("gateway.acks.x"));
        assert_eq!(r.take("a"), None);
        r.sweep(t0 + REPLY_TTL);
        assert_eq!(r.take("b"), None);
        assert!(r.order.is_empty());
    }

    #[test]
    fn replies_stay_bounded_behind_an_ack_that_never_comes() {
        let mut r = Replies::default();
        let t0 = Instant::now();
        r.remember("stuck".into(), "gateway.acks.x".into(), t0);
        for i in 0..(MAX_REPLIES * 2) {
            let id = format!("c{i}");
            r.remember(id.clone(), "gateway.acks.y".into(), t0);
            assert!(r.take(&id).is_some());
            // Young entries: the sweep cannot pass the stuck one.
            r.sweep(t0);
        }
        assert!(r.order.len() <= MAX_REPLIES, "{}", r.order.len());
        assert!(r.by_id.len() <= MAX_REPLIES);
        assert_eq!(r.take("stuck"), None, "the oldest was forgotten first");
    }
}
