//! The single upstream link (link protocol v1, see `docs/link-protocol.md`).
//!
//! Why one task owns the socket: "at most one live connection" then holds by
//! construction. [`spawn`] starts that task; it connects, sends `resume`, reads `hello`,
//! then multiplexes inbound frames, outbound commands, pings and the zombie deadline,
//! and on any loss backs off and starts over. Everything else talks to it through a
//! [`LinkHandle`].
//!
//! * [`config`]: URL, token (redacted), timing knobs.
//! * [`backoff`]: exponential reconnect delay with jitter.
//! * [`session`]: session id / seq tracking: the sequence rules (de-duplication,
//!   resync on anomalies, loss marking).
//! * [`heartbeat`]: ping traceIds, RTT, zombie deadline.
//! * [`redact`]: the log filter that keeps the token out of the client crates' traces.
//! * [`state`]: the state machine's states and the counters.
//! * [`state_file`]: session id and last seq kept across host restarts.
//! * [`handle`]: the public handle (state, commands, acks, stats).
//! * `client`: the task itself.

pub mod backoff;
pub(crate) mod client;
pub mod config;
pub mod handle;
pub mod heartbeat;
pub mod redact;
pub mod session;
pub mod state;
pub mod state_file;

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

pub use config::{ConfigError, LinkConfig, LinkToken};
pub use handle::{LinkHandle, SendError};
pub use state::{LinkState, StatsSnapshot};

use crate::bus::Bus;

/// Acks buffered for slow ack readers.
const ACK_CAPACITY: usize = 1024;

/// Starts the link task, publishing inbound events to `bus`. Needs a tokio runtime.
pub fn spawn(config: LinkConfig, bus: Bus) -> LinkHandle {
    let shared = new_shared(false);
    let task = tokio::spawn(client::run(config, bus, shared.clone()));
    *shared.task.lock() = Some(task);
    LinkHandle { shared }
}

/// The state of a fresh, idle handle; its owner installs the outbound channel, drives the
/// state and counters, and stores its task (the link task here, the cluster relay there).
pub(crate) fn new_shared(independent_commands: bool) -> Arc<handle::Shared> {
    Arc::new(handle::Shared {
        state_tx: watch::channel(LinkState::Idle).0,
        outbound: Mutex::new(None),
        acks: broadcast::channel(ACK_CAPACITY).0,
        stats: Default::default(),
        shutdown: watch::channel(false).0,
        task: Mutex::new(None),
        stopped: Mutex::new(None),
        independent_commands,
        resume_url: Mutex::new(None),
    })
}
