//! Commands from browsers back to the gateway: `POST /api/commands/{send-message,
//! add-reaction,typing-start}` and `GET /api/commands/{requestId}`.
//!
//! Each step of the pipeline has its own answer, so a client can tell what to fix:
//! auth (401/403) → the user's invalid-command budget (429) → body (413/415/400) →
//! validator slot (400 with field errors) → limiter slot (429) → [`CommandQueue`] (429
//! over the user's share, 503 when full) → the [`dispatcher`] writes it to the
//! link and waits for the ack → 200 with the outcome, or 202 with the requestId when the
//! ack takes longer than `ack-wait-ms`. Every accepted command reaches exactly one
//! terminal outcome, readable afterwards from the [`OutcomeStore`]. See `docs/commands.md`.
//!
//! * [`settings`]: the knobs (`[commands]` in the config file).
//! * [`body`]: JSON bodies and their field checks.
//! * [`queue`]: the bounded FIFO (with a per-user share) and the command envelope.
//! * [`invalid_budget`]: per-user budget of invalid commands, checked before any component.
//! * [`dispatcher`]: the task between the queue and the link.
//! * [`outcomes`]: terminal outcomes and their bounded store.
//! * [`http`]: the handlers.

pub mod body;
pub mod dispatcher;
pub mod http;
pub mod invalid_budget;
pub mod outcomes;
pub mod queue;
pub mod settings;

use std::sync::Arc;

use std::time::{Duration, Instant};

use gateway_protocol::CommandBody;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use http::router;
pub use invalid_budget::InvalidBudget;
pub use outcomes::{Finished, Outcome, OutcomeStore};
pub use queue::{CommandQueue, Envelope, QueueFull};
pub use settings::CommandSettings;

use crate::cluster::RemoteLimiter;
use crate::link::LinkHandle;

/// Aborts the dispatcher when the last pipeline handle goes.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A command accepted into the pipeline.
#[derive(Debug)]
pub struct Accepted {
    pub request_id: String,
    /// Resolves with the outcome (dropping it does not affect delivery).
    pub outcome: oneshot::Receiver<Finished>,
}

/// The queue, the outcome store and the dispatcher task. Cheap to clone.
#[derive(Clone)]
pub struct CommandPipeline {
    queue: Arc<CommandQueue>,
    outcomes: Arc<OutcomeStore>,
    settings: Arc<CommandSettings>,
    invalid: Arc<InvalidBudget>,
    /// The drain deadline, set once shutdown begins.
    drain: Arc<watch::Sender<Option<Instant>>>,
    /// Becomes true when the dispatcher has stopped.
    stopped: watch::Receiver<bool>,
    /// Cluster mode: the link holder's limiter slot answers rate requests.
    limiter: Option<RemoteLimiter>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for CommandPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandPipeline")
            .field("outstanding", &self.queue.outstanding())
            .finish()
    }
}

impl CommandPipeline {
    /// Starts the dispatcher on `link`. Needs a tokio runtime.
    pub fn start(settings: CommandSettings, link: LinkHandle) -> CommandPipeline {
        Self::start_with_limiter(settings, link, None)
    }

    /// Like [`CommandPipeline::start`]; with `Some(limiter)` (cluster mode: `link` is the
    /// relay link) rate requests go to the link holder's limiter slot instead of this
    /// host's.
    pub fn start_with_limiter(
        settings: CommandSettings,
        link: LinkHandle,
        limiter: Option<RemoteLimiter>,
    ) -> CommandPipeline {
        let queue = Arc::new(CommandQueue::new(
            settings.queue_capacity,
            settings.max_per_user,
        ));
        let invalid = Arc::new(InvalidBudget::new(
            settings.invalid_burst,
            settings.invalid_refill(),
            settings.max_tracked_users,
        ));
        let outcomes = Arc::new(OutcomeStore::new(
            settings.outcome_ttl(),
            settings.max_outcomes,
        ));
        let (drain, deadline) = watch::channel(None);
        let (stopped_tx, stopped) = watch::channel(false);
        let dispatcher = dispatcher::Dispatcher::new(
            queue.clone(),
            outcomes.clone(),
            link,
            settings.clone(),
            dispatcher::Drain {
                deadline,
                stopped: stopped_tx,
            },
        );
        let task = tokio::spawn(dispatcher.run());
        CommandPipeline {
            queue,
            outcomes,
            settings: Arc::new(settings),
            invalid,
            drain: Arc::new(drain),
            stopped,
            limiter,
            _task: Arc::new(TaskGuard(task)),
        }
    }

    /// Accepts a validated, rate-checked command from `owner`, or refuses it when full
    /// (as a whole, or `owner`'s share), or shutting down.
    pub fn submit(
        &self,
        owner: &str,
        trace_id: &str,
        body: CommandBody,
    ) -> Result<Accepted, QueueFull> {
        let request_id = new_request_id();
        let kind = body.kind();
        let mut envelope = Envelope::new(
            request_id.clone(),
            trace_id.to_string(),
            owner.to_string(),
            body,
        );
        let (tx, rx) = oneshot::channel();
        envelope.waiter = Some(tx);
        // Recorded before the push so the dispatcher's outcome always finds the entry.
        self.outcomes.pending(&request_id, trace_id, kind, owner);
        if let Err(full) = self.queue.push(envelope) {
            self.outcomes.forget(&request_id);
            return Err(full);
        }
        Ok(Accepted {
            request_id,
            outcome: rx,
        })
    }

    /// The status document of `request_id`, if `owner` sent it and it is still known.
    pub fn status(&self, request_id: &str, owner: &str) -> Option<serde_json::Value> {
        self.outcomes.get(request_id, owner)
    }

    /// Commands accepted and not finished.
    pub fn outstanding(&self) -> usize {
        self.queue.outstanding()
    }

    /// Commands of `owner` accepted and not finished.
    pub fn outstanding_for(&self, owner: &str) -> usize {
        self.queue.outstanding_for(owner)
    }

    /// The per-user budget of invalid commands.
    pub fn invalid_budget(&self) -> &InvalidBudget {
        &self.invalid
    }

    /// Shutdown: accept nothing new, keep delivering for up to `within`, then end every
    /// command still waiting or in flight with the outcome `shutdown`. Resolves when every
    /// command has its outcome (at the latest shortly after `within`).
    pub async fn drain(&self, within: Duration) {
        let outstanding = self.queue.outstanding();
        tracing::info!(
            outstanding,
            within_ms = within.as_millis() as u64,
            "draining the command queue"
        );
        self.queue.close();
        self.drain.send_replace(Some(Instant::now() + within));
        let mut stopped = self.stopped.clone();
        // The dispatcher ends everything at the deadline; the margin only guards against
        // a dispatcher that is no longer running.
        let bound = within + Duration::from_secs(1);
        if tokio::time::timeout(bound, stopped.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::error!("the command dispatcher did not stop after the drain deadline");
        }
    }

    /// The remote limiter, in cluster mode.
    pub fn remote_limiter(&self) -> Option<&RemoteLimiter> {
        self.limiter.as_ref()
    }

    /// The settings in force.
    pub fn settings(&self) -> &CommandSettings {
        &self.settings
    }
}

/// A fresh request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
