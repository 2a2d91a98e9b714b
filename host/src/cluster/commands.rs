//! Cluster-mode commands in one call: the relay link, the command pipeline on it with the
//! remote limiter, and the command server — what `serve` starts on every host.
//!
//! Why a function of its own: the three pieces only give the cluster guarantees together
//! (a pipeline on the relay without the remote limiter would let a user multiply their
//! rate by N hosts; without a command server nobody would deliver), so they are started
//! together.

use std::sync::Arc;

use tokio::sync::watch;

use super::Nats;
use super::command_server::{CommandServer, spawn_command_server};
use super::config::ClusterSettings;
use super::relay_link::relay_link;
use super::remote_limiter::RemoteLimiter;
use crate::commands::{CommandPipeline, CommandSettings};
use crate::link::LinkHandle;
use crate::policy::Policies;

/// The running cluster-mode command path of one host.
pub struct ClusterCommands {
    /// For `commands::router` (and the shutdown drain), as in single-host mode.
    pub pipeline: CommandPipeline,
    /// The relay link the pipeline runs on (state: the command path to the holder).
    pub relay: LinkHandle,
    /// Serves relayed commands and rate requests while `held` is `Some`; keep it alive for
    /// the life of the host (dropping it stops it).
    pub server: CommandServer,
}

/// Starts this host's cluster-mode command path. `held` is `Some(real upstream link)` while
/// this host holds the link lease. Needs a tokio runtime.
pub fn start_commands(
    nats: &Nats,
    settings: &ClusterSettings,
    commands: CommandSettings,
    held: watch::Receiver<Option<LinkHandle>>,
    policies: Arc<Policies>,
) -> ClusterCommands {
    let relay = relay_link(nats, settings);
    let pipeline = CommandPipeline::start_with_limiter(
        commands,
        relay.clone(),
        Some(RemoteLimiter::new(nats, settings)),
    );
    let server = spawn_command_server(nats, settings, held, policies);
    ClusterCommands {
        pipeline,
        relay,
        server,
    }
}
