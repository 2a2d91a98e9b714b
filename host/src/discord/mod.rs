//! Direct Discord mode: the host itself holds the Discord Gateway v10 session and sends
//! commands over Discord's REST API (see `docs/discord.md`).
//!
//! It sits behind the same seam as `link/`: [`spawn`] returns a [`LinkHandle`], so the
//! bus, SSE, replay, voice bridge, `/readyz`, metrics and the command dispatcher work
//! unchanged. Dispatches are published to the bus by the gateway task; the handle's
//! outbound command channel is served by the REST worker, whose results come back as acks.
//!
//! * [`config`]: token (redacted), intents, shard, base URLs, timing knobs.
//! * [`gateway`]: the session task (Hello, heartbeats, Identify/Resume, op 7/9, close codes).
//! * [`compression`]: the `zlib-stream` transport compression.
//! * [`rate`]: gateway send limit and identify pacing.
//! * [`rest`]: the REST client with per-route buckets and the global limit.
//! * [`commands`]: command frames → REST calls → acks.
//! * [`state_file`]: the session kept across host restarts (`DISCORD_STATE_FILE`).

pub mod commands;
pub mod compression;
pub mod config;
pub mod gateway;
pub mod rate;
pub mod rest;
pub mod state_file;

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};

pub use config::{BotToken, DiscordConfig, DiscordConfigError, DiscordFile};

use crate::bus::Bus;
use crate::link::LinkHandle;
use crate::link::handle::Shared;
use crate::link::state::LinkState;

/// Acks buffered for slow readers (as the link).
const ACK_CAPACITY: usize = 1024;
/// Commands buffered between the dispatcher and the REST worker.
const OUTBOUND_CAPACITY: usize = 1024;

/// Starts the gateway session and the REST worker. Needs a tokio runtime.
pub fn spawn(config: DiscordConfig, bus: Bus) -> anyhow::Result<LinkHandle> {
    // One TLS provider for both rustls users (tokio-tungstenite and reqwest).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rest = rest::RestClient::new(&config)?;
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let shared = Arc::new(Shared {
        state_tx: watch::channel(LinkState::Idle).0,
        outbound: Mutex::new(Some(tx)),
        acks: broadcast::channel(ACK_CAPACITY).0,
        stats: Default::default(),
        shutdown: watch::channel(false).0,
        task: Mutex::new(None),
        stopped: Mutex::new(None),
        independent_commands: true,
        resume_url: Mutex::new(None),
    });
    let worker = tokio::spawn(commands::run(rx, rest.clone(), shared.acks.clone()));
    let session = gateway::run(config, bus, shared.clone(), rest);
    let task = tokio::spawn(async move {
        session.await;
        worker.abort();
    });
    *shared.task.lock() = Some(task);
    Ok(LinkHandle { shared })
}

#[cfg(test)]
mod tests {
    use crate::server::Upstream;

    fn lookup(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + Copy {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_mode_follows_link_url_and_discord_bot_token() {
        let discord = Upstream::from_lookup(lookup(&[("DISCORD_BOT_TOKEN", "t")]));
        assert!(matches!(discord, Ok(Upstream::Discord(_))));
        let link = Upstream::from_lookup(lookup(&[("LINK_TOKEN", "l")]));
        assert!(matches!(link, Ok(Upstream::Link(_))));
        let both = Upstream::from_lookup(lookup(&[
            ("DISCORD_BOT_TOKEN", "t"),
            ("LINK_URL", "ws://127.0.0.1:1/link"),
            ("LINK_TOKEN", "l"),
        ]));
        let err = both.expect_err("both set is refused").to_string();
        assert!(
            err.contains("LINK_URL") && err.contains("DISCORD_BOT_TOKEN"),
            "{err}"
        );
    }
}
