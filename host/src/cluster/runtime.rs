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
use crate::policy::Policies;
use crate::server::Upstream;

/// The running cluster parts of one host.
pub struct ClusterRuntime {
    pub nats: Nats,
    pub settings: ClusterSettings,
    pub stream: FrameStream,
    pub holder: LinkHolder,
    lease: Mutex<Option<LeaseHandle>>,
}

impl ClusterRuntime {
    /// Connects to NATS, opens (or creates) the stream, and starts contending for the
    /// link. Fails when NATS cannot be reached within the request timeout.
    pub async fn start(
        settings: ClusterSettings,
        upstream: Upstream,
        policies: Arc<Policies>,
    ) -> anyhow::Result<ClusterRuntime> {
        settings.validate()?;
        let nats = connect(&settings.nats_url, settings.request_timeout).await?;
        let stream = FrameStream::open(&nats.jetstream, &settings).await?;
        let lease = lease::spawn(nats.jetstream.clone(), settings.clone());
        let holder = holder::spawn(
            upstream,
            lease.watch(),
            lease.resume_setter(),
            stream.clone(),
            policies,
        );
        tracing::info!(host_id = %settings.holder_id, stream = %settings.stream_name, "cluster mode: connected to NATS");
        Ok(ClusterRuntime {
            nats,
            settings,
            stream,
            holder,
            lease: Mutex::new(Some(lease)),
        })
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.settings.holder_id
    }

    /// Whether the NATS connection is up.
    pub fn nats_connected(&self) -> bool {
        self.nats.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Graceful exit: stop publishing and close the link, then release the lease.
    pub async fn shutdown(&self) {
        self.holder.shutdown().await;
        let lease = self.lease.lock().take();
        if let Some(lease) = lease {
            lease.release().await;
        }
    }
}
