//! The Discord Gateway v10 session: one task owns the WebSocket.
//!
//! The cycle, as Discord documents it: connect (URL from `GET /gateway/bot`, or the
//! Ready's `resume_gateway_url` when resuming) → Hello → heartbeats every
//! `heartbeat_interval` (the first one after `interval × random(0..1)`) → Identify (paced
//! by the identify gate) or Resume → dispatches with `s`, published to the bus. A beat
//! that finds the previous one un-ACKed is a zombie connection: it is dropped with a
//! non-1000 close and resumed. Op 7 → resume; op 9 → wait 1–5 s, then resume (`true`) or
//! identify afresh (`false`, which also marks lost events); a fatal close code (4004,
//! 4010–4014) stops the session with a clear error, shown by `/readyz`.
//!
//! * [`payload`]: opcodes, payload shapes, close codes.
//! * [`session`]: sequence rules → bus events.
//! * `connection`: one WebSocket's life.

mod connection;
pub mod payload;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tracing::{debug, error, info, warn};

use super::config::DiscordConfig;
use super::rate::IdentifyGate;
use super::rest::{RestClient, RestError};
use super::state_file::{Saved, StateFile};
use crate::bus::Bus;
use crate::link::LinkState;
use crate::link::backoff::Backoff;
use crate::link::handle::Shared;
use session::{Resumable, Sequence};

/// How one connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Reconnect after `wait` (none: the usual backoff); `resume` keeps the session.
    Reconnect {
        resume: bool,
        wait: Option<Duration>,
    },
    /// Stop for good with this reason.
    Fatal(String),
    /// The host is shutting down.
    Shutdown,
}

/// State kept across connections.
pub(crate) struct Session {
    pub config: DiscordConfig,
    pub bus: Bus,
    pub shared: Arc<Shared>,
    pub sequence: Sequence,
    pub resumable: Option<Resumable>,
    pub identify: IdentifyGate,
    /// The session kept across host restarts, when configured.
    pub state_file: Option<StateFile>,
}

impl Session {
    /// What the state file should hold now, if anything.
    fn saved(&self) -> Option<Saved> {
        let r = self.resumable.as_ref()?;
        let last_seq = self.sequence.last()?;
        (self.sequence.session_id() == Some(r.session_id.as_str())).then(|| Saved {
            v: 1,
            session_id: r.session_id.clone(),
            resume_url: r.resume_url.clone(),
            last_seq,
        })
    }

    /// Saves the position soon (at most once per interval; off the task).
    pub fn persist(&mut self) {
        if let Some(saved) = self.saved()
            && let Some(file) = self.state_file.as_mut()
        {
            file.save_soon(saved);
        }
    }

    /// Saves the final position (clean shutdown).
    async fn persist_now(&mut self) {
        if let Some(saved) = self.saved()
            && let Some(file) = self.state_file.as_mut()
        {
            file.save_now(saved).await;
        }
    }

    /// The close code for a clean shutdown: 1000 ends the Discord session; with a state
    /// file the session must stay resumable for the next run.
    pub fn shutdown_close_code(&self) -> u16 {
        if self.state_file.is_some() || self.config.keep_session_on_close {
            connection::RESUMABLE_CLOSE
        } else {
            1000
        }
    }

    /// A wait drawn from the documented op 9 range.
    pub fn invalid_session_wait(&self) -> Duration {
        let (lo, hi) = self.config.invalid_session_wait;
        if hi <= lo {
            return lo;
        }
        rand::rng().random_range(lo..=hi)
    }
}

/// The session task: runs until shutdown or a fatal error.
pub(crate) async fn run(config: DiscordConfig, bus: Bus, shared: Arc<Shared>, rest: RestClient) {
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
    let mut shutdown = shared.shutdown.subscribe();
    let mut session = Session {
        identify: IdentifyGate::new(config.identify_interval),
        config,
        bus,
        shared: shared.clone(),
        sequence: Sequence::default(),
        resumable: None,
        state_file: None,
    };
    if let Some(path) = session.config.state_file.clone() {
        let mut file = StateFile::new(path, session.config.state_interval);
        if let Some(saved) = file.load() {
            session.sequence.restore(&saved.session_id, saved.last_seq);
            session.resumable = Some(Resumable {
                session_id: saved.session_id,
                resume_url: saved.resume_url,
            });
        }
        session.state_file = Some(file);
    }
    if let Some(saved) = session.config.resume.clone() {
        session.sequence.restore(&saved.session_id, saved.last_seq);
        *shared.resume_url.lock() = Some(saved.resume_url.clone());
        session.resumable = Some(Resumable {
            session_id: saved.session_id,
            resume_url: saved.resume_url,
        });
    }
    shared.set_state(LinkState::Connecting);
    let mut ever_connected = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let url = match &session.resumable {
            Some(r) => r.resume_url.clone(),
            // An Identify follows: ask for the session-start limit first, every time.
            None => match rest.gateway_bot().await {
                Ok(bot) => {
                    info!(
                        shards = bot.shards,
                        max_concurrency = bot.max_concurrency,
                        remaining = bot.remaining,
                        reset_after_ms = bot.reset_after_ms,
                        "GET /gateway/bot"
                    );
                    if bot.remaining == 0 {
                        metrics::counter!("gateway_discord_start_limit_waits_total").increment(1);
                        warn!(
                            wait_ms = bot.reset_after_ms,
                            "no session starts left (session_start_limit.remaining = 0); \
                             waiting reset_after before identifying"
                        );
                        let wait = Duration::from_millis(bot.reset_after_ms.max(1));
                        if sleep_or_shutdown(wait, &mut shutdown).await {
                            break;
                        }
                        continue; // ask again: the limit must have reset
                    }
                    // Identify buckets are `shard_id % max_concurrency`, one Identify
                    // per 5 s each; this process runs one shard, so one bucket: the
                    // identify gate's interval is exactly that bucket's pace.
                    let shard = session.config.shard.map_or(0, |[id, _]| u64::from(id));
                    debug!(
                        identify_bucket = shard % bot.max_concurrency.max(1),
                        "identify rate-limit bucket"
                    );
                    session.config.gateway_url.clone().unwrap_or(bot.url)
                }
                Err(RestError::Rejected { status: 401, .. }) => {
                    fatal(
                        &shared,
                        "Discord refused DISCORD_BOT_TOKEN (GET /gateway/bot answered 401)".into(),
                    );
                    return;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "GET /gateway/bot failed");
                    if sleep_or_shutdown(wait, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let started = tokio::time::Instant::now();
        let ended = connection::run(&mut session, &url).await;
        let was_connected = session.shared.state_tx.borrow().eq(&LinkState::Connected);
        if was_connected {
            ever_connected = true;
            crate::link::state::LinkStats::bump(&shared.stats.reconnects);
            metrics::counter!("gateway_link_reconnects_total").increment(1);
        }
        match ended {
            Ended::Shutdown => break,
            Ended::Fatal(reason) => {
                fatal(&shared, reason);
                return;
            }
            Ended::Reconnect { resume, wait } => {
                shared.set_state(if ever_connected {
                    LinkState::Reconnecting
                } else {
                    LinkState::Connecting
                });
                if !resume && session.resumable.take().is_some() {
                    session.sequence.session_lost();
                }
                if started.elapsed() >= Duration::from_secs(10) {
                    backoff.reset();
                }
                let wait = wait.unwrap_or_else(|| backoff.next_delay());
                if sleep_or_shutdown(wait, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    session.persist_now().await;
    shared.set_state(LinkState::Idle);
}

/// True when shutdown was asked for during the sleep.
async fn sleep_or_shutdown(
    wait: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stopping(shutdown) => return true,
    }
    *shutdown.borrow()
}

/// Resolves once shutdown is asked for (the `watch::Ref` is not held across awaits).
pub(crate) async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn fatal(shared: &Shared, reason: String) {
    error!(reason = %reason, "the Discord gateway session stopped and will not reconnect");
    *shared.stopped.lock() = Some(reason);
    shared.set_state(LinkState::Idle);
}
