//! Cluster mode: several hosts share one upstream link through NATS JetStream
//! (DESIGN §11, issue 12).
//!
//! One host is one point of failure, and one machine's file limit caps its streams. In
//! cluster mode N hosts run behind any load balancer on an existing distributed engine
//! (NATS with JetStream, Debian's `nats-server -js`) rather than a home-made one:
//!
//! * [`lease`]: the link-holder lease in a JetStream KV bucket — exactly one host holds the
//!   upstream link at a time; another takes over within the lease TTL when it dies.
//! * [`stream`]: routed SSE frames published to a JetStream stream (de-duplicated by upstream
//!   session + seq, so a new leader re-publishing an event stores it once) and read back in
//!   order from any stream sequence, with gaps reported (for SSE `reset`).
//! * [`components`]: policy components cluster-wide — an admin load or rollback on one host
//!   is stored in NATS (bytes in an object store, per-slot versions in a KV bucket) and
//!   applied by every host's watcher.
//! * [`config`]: the settings all of them use.
//!
//! **Status**: these building blocks are built and tested against a real `nats-server`
//! (tests in `tests/tests/cluster_*.rs`), but nothing in `serve` uses them yet: single-host
//! mode with the in-process bus is unchanged. `docs/cluster.md` says what comes next.

pub mod components;
pub mod config;
pub mod lease;
pub mod stream;

pub use async_nats;

use std::time::Duration;

use anyhow::Context as _;

/// A connection to NATS and its JetStream context.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
}

/// Connects to `url` (`nats://host:port`), bounding the first connection by `timeout`;
/// later disconnections are retried by the client in the background.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Nats> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let mut jetstream = async_nats::jetstream::new(client.clone());
    jetstream.set_timeout(timeout);
    Ok(Nats { client, jetstream })
}
