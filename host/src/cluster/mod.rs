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
//! * [`config`]: the settings they all use.
//! * [`holder`] / [`publisher`]: the upstream link runs on the lease holder only, resuming
//!   from the stream's last upstream position; each event is routed once and stored.
//! * [`commands`]: the command parts started together ([`start_commands`]):
//!   [`mod@relay_link`] (a `LinkHandle` whose commands travel over NATS to the link holder —
//!   every host's command pipeline runs on it), [`command_server`] (on the holder: hands
//!   relayed commands to the real link, sends the acks back, answers rate requests,
//!   publishes the link status), [`remote_limiter`] (a host's rate requests to the holder's
//!   limiter slot) and [`command_wire`] (their subjects and messages).
//! * [`runtime`]: the parts started together by `serve` (`[cluster]`, `GATEWAY_NATS_URL`);
//!   [`settings_file`] reads that table.
//! * [`components`]: policy components cluster-wide — an admin load or rollback on one host
//!   is stored in NATS (bytes in an object store, per-slot versions in a KV bucket) and
//!   applied by every host's watcher.
//!
//! Every host serves SSE from the stream (`crate::sse::catch_up`). See `docs/cluster.md`.

pub mod command_server;
pub mod command_wire;
pub mod commands;
pub mod components;
pub mod config;
pub mod holder;
pub mod lease;
pub mod publisher;
pub mod relay_link;
pub mod remote_limiter;
pub mod runtime;
pub mod settings_file;
pub mod stream;

pub use command_server::{CommandServer, spawn_command_server};
pub use commands::{ClusterCommands, start_commands};
pub use relay_link::relay_link;
pub use remote_limiter::{LimiterUnavailable, RemoteLimiter};

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
        .with_context(|| format!("connecting to NATS at {}", redacted_url(url)))?;
    let mut jetstream = async_nats::jetstream::new(client.clone());
    jetstream.set_timeout(timeout);
    Ok(Nats { client, jetstream })
}

/// The stream behind a KV bucket (`KV_<bucket>`, subjects `$KV.<bucket>.>`, rollups
/// allowed, deletes denied, direct get), keeping `history` values per key, each at most
/// `max_age` old (zero: no limit).
///
/// KV buckets are created as streams in this layout and then opened with
/// `get_key_value`: async-nats' `create_key_value` first queries the account info, whose
/// reply from nats-server 2.9 this client version cannot parse.
pub fn kv_stream_config(
    bucket: &str,
    description: &str,
    history: i64,
    max_age: Duration,
) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_age,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// `url` without credentials (`nats://user:secret@host` → `nats://…@host`), for messages.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}…{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            super::redacted_url("nats://u:hunter2@10.0.0.1:4222"),
            "nats://…@10.0.0.1:4222"
        );
        assert_eq!(
            super::redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
