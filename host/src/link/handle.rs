//! [`LinkHandle`]: the outside world's view of the link task.
//!
//! The handle never touches the socket. It reads the state and counters, and hands
//! commands to whichever connection is live through a per-connection channel that the
//! link task installs on connect and removes on disconnect. So a command is either
//! accepted by a live connection or refused with [`SendError::NotConnected`]; retrying
//! and queueing are the command pipeline's business.

use std::sync::Arc;
use std::time::Duration;

use gateway_protocol::{Ack, Command, HostFrame};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::state::{LinkState, LinkStats, StatsSnapshot};

/// Why a command was not handed to the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No live connection right now.
    #[error("the upstream link is not connected")]
    NotConnected,
    /// The connection's outbound buffer is full.
    #[error("the upstream link is busy")]
    Busy,
}

/// State shared between the handle(s) and the link task.
pub(crate) struct Shared {
    pub state_tx: watch::Sender<LinkState>,
    pub outbound: Mutex<Option<mpsc::Sender<String>>>,
    pub acks: broadcast::Sender<Arc<Ack>>,
    pub stats: LinkStats,
    pub shutdown: watch::Sender<bool>,
    pub task: Mutex<Option<JoinHandle<()>>>,
    /// Why the upstream stopped for good (a fatal Discord close code), if it did.
    pub stopped: Mutex<Option<String>>,
    /// Commands travel independently of the event session (direct Discord mode: REST),
    /// so they flow while the session reconnects; link mode sends them on the link.
    pub independent_commands: bool,
    /// Where the session can be resumed from another process (direct Discord mode:
    /// Ready's `resume_gateway_url`); none in link mode.
    pub resume_url: Mutex<Option<String>>,
}

impl Shared {
    pub fn set_state(&self, state: LinkState) {
        metrics::gauge!("gateway_link_state").set(state.gauge_value());
        self.state_tx.send_replace(state);
    }
}

/// Handle on the running link. Cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LinkHandle {
    /// The current state.
    pub fn state(&self) -> LinkState {
        *self.shared.state_tx.borrow()
    }

    /// A receiver that sees every state change (for waiting on a transition).
    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.shared.state_tx.subscribe()
    }

    /// Whether commands can be handed over now: in link mode while connected; in direct
    /// Discord mode (commands over REST) whatever the gateway session's state, unless the
    /// upstream stopped for good or is shutting down.
    pub fn accepts_commands(&self) -> bool {
        if self.shared.independent_commands {
            self.shared.stopped.lock().is_none() && !*self.shared.shutdown.borrow()
        } else {
            self.state() == LinkState::Connected
        }
    }

    /// The connection generation commands were sent on: a command sent on an older one
    /// is re-sent. Constant when commands do not travel on the event session.
    pub fn command_generation(&self) -> u64 {
        if self.shared.independent_commands {
            0
        } else {
            self.stats().connects
        }
    }

    /// Hands a command to the live connection. `Ok` means "written to the link's
    /// buffer", not "delivered": only an ack (see [`LinkHandle::acks`]) confirms it.
    pub fn send_command(&self, command: Command) -> Result<(), SendError> {
        let frame = HostFrame::Command(command).encode();
        let guard = self.shared.outbound.lock();
        let tx = guard.as_ref().ok_or(SendError::NotConnected)?;
        tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Busy,
            mpsc::error::TrySendError::Closed(_) => SendError::NotConnected,
        })
    }

    /// Every ack received from now on (a receiver that falls behind gets
    /// `RecvError::Lagged` from tokio's broadcast, never a silent gap).
    pub fn acks(&self) -> broadcast::Receiver<Arc<Ack>> {
        self.shared.acks.subscribe()
    }

    /// The last ping round-trip time, once one was measured.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.stats().last_rtt
    }

    /// Why the upstream stopped for good and will not reconnect (direct Discord mode: a
    /// fatal close code such as 4004), if it did.
    pub fn stopped_reason(&self) -> Option<String> {
        self.shared.stopped.lock().clone()
    }

    /// Where another process can resume this upstream session (direct Discord mode).
    pub fn resume_url(&self) -> Option<String> {
        self.shared.resume_url.lock().clone()
    }

    /// The link's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Stops the link (closing the live connection) and waits for the task.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let task = self.shared.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
