//! The link holder: the upstream link runs on this host only while it holds the lease.
//!
//! Why a separate task: leadership comes and goes (a lost NATS connection, a slow
//! renewal), and every time it comes the link must start *resuming from the stream's last
//! frame* — not from this host's own memory, which may be stale by a whole other holder's
//! term. So on each gain the task reads the stream's last upstream position, starts a
//! fresh link resuming from it, and runs the [`super::publisher`]; on each loss (or a
//! publish failure, or shutdown) it stops publishing at once and closes the link.
//!
//! Other parts of the host (commands, readiness) see the link through
//! [`LinkHolder::held`]: `Some(link)` while this host holds it, `None` otherwise.
//!
//! Direct Discord mode: the holder stores Ready's `resume_gateway_url` with each frame
//! (header `Gateway-Resume-Url`) and closes the session with a resumable code, so the
//! next holder resumes the Discord session instead of identifying.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lease::ResumePoint;
use super::stream::{FrameStream, Resume};
use crate::bus::Bus;
use crate::link::{self, LinkHandle};
use crate::policy::Policies;
use crate::server::Upstream;

/// Bus queue between the link and the publisher.
const BUS_CAPACITY: usize = 65_536;
/// Pause before trying again after a failed term (cannot read the stream, publish failed).
const RETRY: Duration = Duration::from_millis(250);
/// Bound on closing the link at the end of a term.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// Metric: 1 while this host holds the upstream link.
pub const METRIC_LINK_HELD: &str = "gateway_cluster_link_held";

/// The running link-holder task.
pub struct LinkHolder {
    held: watch::Receiver<Option<LinkHandle>>,
    stop: watch::Sender<bool>,
    task: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl LinkHolder {
    /// `Some(link)` while this host holds the upstream link.
    pub fn held(&self) -> watch::Receiver<Option<LinkHandle>> {
        self.held.clone()
    }

    /// Whether this host holds the upstream link now.
    pub fn holds_link(&self) -> bool {
        self.held.borrow().is_some()
    }

    /// Stops publishing, closes the link, and waits for the task.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for LinkHolder {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// Starts the task: it holds `upstream` while `leader` is true.
pub fn spawn(
    upstream: Upstream,
    leader: watch::Receiver<bool>,
    set_resume: impl Fn(ResumePoint) + Send + Sync + 'static,
    stream: FrameStream,
    policies: Arc<Policies>,
) -> LinkHolder {
    let (held_tx, held) = watch::channel(None);
    let (stop, stop_rx) = watch::channel(false);
    let term = Term {
        upstream,
        stream,
        policies,
        held: held_tx,
    };
    let task = tokio::spawn(term.run(leader, stop_rx, set_resume));
    LinkHolder {
        held,
        stop,
        task: parking_lot::Mutex::new(Some(task)),
    }
}

struct Term {
    upstream: Upstream,
    stream: FrameStream,
    policies: Arc<Policies>,
    held: watch::Sender<Option<LinkHandle>>,
}

impl Term {
    async fn run(
        self,
        mut leader: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
        set_resume: impl Fn(ResumePoint) + Send + Sync + 'static,
    ) {
        metrics::gauge!(METRIC_LINK_HELD).set(0.0);
        loop {
            tokio::select! {
                gained = leader.wait_for(|l| *l) => if gained.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            let ended = self.hold(&mut leader, &mut stop, &set_resume).await;
            self.held.send_replace(None);
            metrics::gauge!(METRIC_LINK_HELD).set(0.0);
            match ended {
                End::Stop => return,
                End::Lost => {}
                End::Failed => tokio::time::sleep(RETRY).await,
            }
        }
    }

    /// One term: start the link resuming from the stream, publish until it ends.
    async fn hold(
        &self,
        leader: &mut watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
        set_resume: &(impl Fn(ResumePoint) + Send + Sync),
    ) -> End {
        // Where to resume, read before the link starts; leadership may end meanwhile.
        let resume = tokio::select! {
            read = self.resume_position() => match read {
                Ok(resume) => resume,
                Err(e) => {
                    tracing::warn!(error = %e, "holding the lease but cannot read the stream's last frame; not starting the link");
                    return End::Failed;
                }
            },
            _ = leader.wait_for(|l| !*l) => return End::Lost,
            _ = stop.wait_for(|s| *s) => return End::Stop,
        };
        let position = resume.point.clone();
        let bus = Bus::new();
        let sub = bus.subscribe(BUS_CAPACITY);
        let link = match self.start_link(bus, position.clone()) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the upstream link");
                return End::Failed;
            }
        };
        tracing::info!(resume = ?position, "this host holds the upstream link");
        metrics::gauge!(METRIC_LINK_HELD).set(1.0);
        self.held.send_replace(Some(link.clone()));
        let resume_url = {
            let link = link.clone();
            move || link.resume_url()
        };
        let publisher = super::publisher::run(
            sub,
            self.policies.clone(),
            self.stream.clone(),
            set_resume,
            resume,
            resume_url,
        );
        let ended = tokio::select! {
            _ = leader.wait_for(|l| !*l) => {
                tracing::warn!("lost the link-holder lease: closing the upstream link");
                End::Lost
            }
            stopped = publisher => {
                tracing::error!(error = %stopped, "stopped publishing: closing the upstream link");
                End::Failed
            }
            _ = stop.wait_for(|s| *s) => End::Stop,
        };
        self.held.send_replace(None);
        if tokio::time::timeout(CLOSE_BOUND, link.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the upstream link did not close in time");
        }
        ended
    }

    /// The stream (created again if NATS lost it) and the upstream position to resume.
    async fn resume_position(&self) -> anyhow::Result<Resume> {
        self.stream.ensure().await?;
        self.stream.resume().await
    }

    fn start_link(&self, bus: Bus, position: Option<ResumePoint>) -> anyhow::Result<LinkHandle> {
        match &self.upstream {
            Upstream::Link(config) => {
                let mut config = config.clone();
                // The stream's last frame is the cluster's position, not a host's file.
                config.state_file = None;
                config.resume = position.map(|p| (p.session, p.seq));
                Ok(link::spawn(config, bus))
            }
            Upstream::Discord(config) => {
                let mut config = config.clone();
                config.state_file = None;
                // The next holder resumes this session: never end it on close.
                config.keep_session_on_close = true;
                config.resume = position.and_then(|p| {
                    Some(crate::discord::state_file::Saved {
                        v: 1,
                        resume_url: p.resume_url?,
                        session_id: p.session,
                        last_seq: p.seq,
                    })
                });
                crate::discord::spawn(config, bus)
            }
        }
    }
}

enum End {
    Stop,
    Lost,
    Failed,
}
