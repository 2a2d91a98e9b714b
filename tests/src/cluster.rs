//! Cluster-mode hosts for tests (issue 12): whole hosts (`Host::start_async` +
//! `serve_host_on`) in this process, each with its own NATS connection, on loopback ports,
//! sharing one private `nats-server` ([`crate::nats`]) and one simulator.
//!
//! Lease timings are scaled down (TTL 2 s, renewal 500 ms, acquire every 50 ms).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_host::auth::Authenticator;
use gateway_host::cluster::config::ClusterSettings;
use gateway_host::cluster::runtime::ClusterRuntime;
use gateway_host::config::{Config, Secret};
use gateway_host::server::{Host, serve_host_on};
use gateway_host::sse::StreamHub;
use gateway_sim::SimHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::commands::test_config;
use crate::{TOKEN, fast_link_config, wait_until};

use crate::admin::ADMIN_TOKEN;

/// Cluster settings with test timings (a graceful handover releases the lease, so it does
/// not wait for the TTL; the TTL stays long enough that a loaded machine's late renewal
/// does not make the lease change hands in the middle of a test).
pub fn fast_cluster(nats_url: &str, host_id: &str) -> ClusterSettings {
    let mut s = ClusterSettings::new(nats_url);
    s.holder_id = host_id.to_string();
    s.lease_ttl = Duration::from_secs(2);
    s.renew_every = Duration::from_millis(500);
    s.acquire_every = Duration::from_millis(50);
    s.request_timeout = Duration::from_secs(2);
    s
}

/// A cluster-mode host serving on loopback.
pub struct ClusterHost {
    pub id: String,
    /// `127.0.0.1:port` of the public listener.
    pub addr: String,
    /// `127.0.0.1:port` of the admin listener.
    pub admin_addr: String,
    pub hub: StreamHub,
    /// The relay link commands go through (its state: the command path to the holder).
    pub link: gateway_host::link::LinkHandle,
    pub cluster: Arc<ClusterRuntime>,
    pub auth: Authenticator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ClusterHost {
    /// Starts host `id` in the cluster at `nats_url`, its upstream `sim`, `tweak` applied.
    pub async fn start(
        nats_url: &str,
        sim: &SimHandle,
        id: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<ClusterHost> {
        Self::start_upstream(nats_url, fast_link_config(&sim.url(), TOKEN), id, tweak).await
    }

    /// [`ClusterHost::start`] on any upstream (link or direct Discord).
    pub async fn start_upstream(
        nats_url: &str,
        upstream: impl Into<gateway_host::server::Upstream>,
        id: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<ClusterHost> {
        let config = test_config(|c| {
            c.cluster = Some(fast_cluster(nats_url, id));
            c.admin_token = Some(Secret::new(ADMIN_TOKEN));
            tweak(c);
        })?;
        let host = Host::start_async(&config, upstream)
            .await
            .with_context(|| format!("starting cluster host {id}"))?;
        let public = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
        let cluster = host
            .cluster
            .clone()
            .context("a cluster-mode host has cluster parts")?;
        let (hub, auth, link) = (host.hub.clone(), host.auth.clone(), host.link.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_host_on(host, &config, public, admin, async move {
                let _ = stopped.await;
            })
            .await
        });
        Ok(ClusterHost {
            id: id.to_string(),
            addr: addr.to_string(),
            admin_addr: admin_addr.to_string(),
            hub,
            link,
            cluster,
            auth,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A client of this host's admin API.
    pub fn admin(&self) -> anyhow::Result<crate::admin::AdminServer> {
        Ok(crate::admin::AdminServer::at(self.admin_addr.parse()?))
    }

    /// Whether this host holds the upstream link now.
    pub fn holds_link(&self) -> bool {
        self.cluster.holder.holds_link()
    }

    /// Waits until this host reads the cluster's stream (it can serve streams).
    pub async fn wait_reading(&self) -> anyhow::Result<()> {
        wait_until(
            Duration::from_secs(10),
            &format!("host {} to read the stream", self.id),
            || self.hub.stream_ok(),
        )
        .await
    }

    /// `GET /api/stream` on this host for a viewer of every topic, resuming after
    /// `last_event_id` if given; refused unless `200`.
    pub async fn open_stream(
        &self,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<crate::sse_client::SseResponse> {
        let auth = self.bearer("100000000000000001", &["*"]);
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let r = crate::sse_client::get(&self.addr, "/api/stream", &headers).await?;
        anyhow::ensure!(
            r.status == 200,
            "stream refused on {}: {}",
            self.id,
            r.status
        );
        Ok(r)
    }

    /// `Authorization` header value for `sub` granting `topics` and every command.
    pub fn bearer(&self, sub: &str, topics: &[&str]) -> String {
        format!("Bearer {}", crate::token_for(&self.auth, sub, topics))
    }

    /// Graceful shutdown (releases the lease); waits for the host to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("host did not stop within 30 s")???;
        }
        Ok(())
    }
}

impl Drop for ClusterHost {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The one host of `hosts` holding the link, once exactly one does.
pub async fn wait_one_holder(hosts: &[&ClusterHost]) -> anyhow::Result<usize> {
    wait_until(
        Duration::from_secs(15),
        "exactly one host to hold the link",
        || hosts.iter().filter(|h| h.holds_link()).count() == 1,
    )
    .await?;
    hosts
        .iter()
        .position(|h| h.holds_link())
        .context("the holder went away")
}
