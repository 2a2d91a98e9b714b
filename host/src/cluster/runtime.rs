//! A host's cluster parts, started together: the NATS connection, the frame stream, the
//! lease contender and the link holder.
//!
//! Why one struct: `serve` needs one thing to start before the listeners, to ask for
//! readiness, and to stop in order at shutdown (stop publishing and close the link, then
//! release the lease so another host takes over at once instead of after the TTL).

use std::sync::Arc;

use parking_lot::Mutex;

use super::config::ClusterSettings;
use super::holder::{self, LinkHolder};
use super::lease::{self, LeaseHandle};
use super::stream::FrameStream;
use super::{Nats, connect};
use crate::bus::BusEvent;
use crate::internal_events::{AppEventSink, StoreAppEvent};
use crate::policy::Policies;
use crate::server::Upstream;

/// Metric: frames in the stream this host has not served yet.
pub const METRIC_STREAM_LAG: &str = "gateway_cluster_stream_lag";

/// The running cluster parts of one host.
pub struct ClusterRuntime {
    pub nats: Nats,
    pub settings: ClusterSettings,
    pub stream: FrameStream,
    pub holder: LinkHolder,
    /// The session app events (`POST /api/internal/events`) of this process are numbered
    /// in: unique per process, so two hosts' app events never de-duplicate each other.
    pub app_session: String,
    lease: Mutex<Option<LeaseHandle>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Serves relayed commands while this host holds the link (kept until shutdown).
    command_server: Mutex<Option<super::CommandServer>>,
    /// Admin loads and rollbacks, cluster-wide.
    pub components: super::components::ClusterComponents,
}

impl ClusterRuntime {
    /// Connects to NATS, opens (or creates) the stream, starts following the cluster's
    /// components (the policies converge to the cluster's versions), and starts contending
    /// for the link. Fails when NATS cannot be reached within the request timeout.
    pub async fn start(
        settings: ClusterSettings,
        upstream: Upstream,
        policies: Arc<Policies>,
    ) -> anyhow::Result<ClusterRuntime> {
        settings.validate()?;
        let nats = connect(&settings.nats_url, settings.request_timeout).await?;
        let stream = FrameStream::open(&nats.jetstream, &settings).await?;
        let components =
            super::components::ClusterComponents::start(&nats, &settings, policies.clone()).await?;
        let lease = lease::spawn(nats.jetstream.clone(), settings.clone());
        let holder = holder::spawn(
            upstream,
            lease.watch(),
            lease.resume_setter(),
            stream.clone(),
            policies,
        );
        tracing::info!(host_id = %settings.holder_id, stream = %settings.stream_name, "cluster mode: connected to NATS");
        let app_session = format!("app-{}-{:08x}", settings.holder_id, rand::random::<u32>());
        Ok(ClusterRuntime {
            nats,
            settings,
            stream,
            holder,
            app_session,
            lease: Mutex::new(Some(lease)),
            tasks: Mutex::new(Vec::new()),
            command_server: Mutex::new(None),
            components,
        })
    }

    /// Starts this host's command path (`docs/cluster.md`, commands): a pipeline on a relay
    /// link to whichever host holds the upstream link, with the rate limiter evaluated
    /// there, and this host's command server (serving while it holds the link). Returns
    /// the pipeline and the relay link.
    pub fn start_commands(
        &self,
        commands: crate::commands::CommandSettings,
        policies: Arc<Policies>,
    ) -> (crate::commands::CommandPipeline, crate::link::LinkHandle) {
        let parts = super::start_commands(
            &self.nats,
            &self.settings,
            commands,
            self.holder.held(),
            policies,
        );
        *self.command_server.lock() = Some(parts.server);
        (parts.pipeline, parts.relay)
    }

    /// Where the app events this host accepts go: routed by this host's router slot and
    /// stored in the stream before `POST /api/internal/events` answers (any host publishes
    /// its own app events; they carry no upstream position).
    pub fn app_events(&self, policies: Arc<Policies>) -> AppEventSink {
        AppEventSink::Store {
            store: Arc::new(StreamAppEvents {
                policies,
                stream: self.stream.clone(),
                timeout: self.settings.request_timeout,
            }),
            session: self.app_session.as_str().into(),
        }
    }

    /// Keeps `gateway_cluster_stream_lag` (frames in the stream this host has not served
    /// yet) up to date, once a second.
    pub fn measure_lag(&self, hub: crate::sse::StreamHub) {
        let stream = self.stream.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok((_, last)) = stream.bounds().await {
                    let served = hub.last_id().map(|id| id.seq).unwrap_or(0);
                    metrics::gauge!(METRIC_STREAM_LAG).set(last.saturating_sub(served) as f64);
                }
            }
        });
        self.tasks.lock().push(task);
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.settings.holder_id
    }

    /// Whether the NATS connection is up.
    pub fn nats_connected(&self) -> bool {
        self.nats.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Graceful exit (after the command drain): stop serving relayed commands, stop
    /// publishing and close the link, then release the lease.
    pub async fn shutdown(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let server = self.command_server.lock().take();
        if let Some(server) = server {
            server.shutdown(self.settings.request_timeout).await;
        }
        self.holder.shutdown().await;
        let lease = self.lease.lock().take();
        if let Some(lease) = lease {
            lease.release().await;
        }
    }
}

/// App events stored in the cluster's stream, each acknowledged within `timeout`.
struct StreamAppEvents {
    policies: Arc<Policies>,
    stream: FrameStream,
    timeout: std::time::Duration,
}

impl StoreAppEvent for StreamAppEvents {
    fn store(
        &self,
        event: Arc<BusEvent>,
    ) -> futures_util::future::BoxFuture<'static, anyhow::Result<()>> {
        let (policies, stream, timeout) =
            (self.policies.clone(), self.stream.clone(), self.timeout);
        Box::pin(async move {
            tokio::time::timeout(
                timeout,
                super::publisher::publish_app_event(&policies, &stream, event),
            )
            .await
            .map_err(|_| anyhow::anyhow!("no acknowledgement within {timeout:?}"))?
        })
    }
}
