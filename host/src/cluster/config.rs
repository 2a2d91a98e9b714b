//! Cluster settings (issue 12).
//!
//! A plain struct: the `[cluster]` table and `GATEWAY_NATS_URL` fill it
//! ([`super::settings_file`]); tests construct it directly.

use std::time::Duration;

/// Everything the lease and the stream need to know. (`Debug` hides the URL's credentials.)
#[derive(Clone)]
pub struct ClusterSettings {
    /// `nats://host:port`.
    pub nats_url: String,
    /// This host's name in the lease (unique per process).
    pub holder_id: String,
    /// KV bucket of the link-holder lease; its `max_age` is the lease TTL.
    pub lease_bucket: String,
    /// Key of the lease in the bucket.
    pub lease_key: String,
    /// A holder that has not renewed for this long loses the lease.
    pub lease_ttl: Duration,
    /// How often the holder renews (well below the TTL).
    pub renew_every: Duration,
    /// How often a contender tries to take the lease.
    pub acquire_every: Duration,
    /// Bound on one NATS request (connect, publish ack, KV operation).
    pub request_timeout: Duration,
    /// JetStream stream of routed frames.
    pub stream_name: String,
    /// Subject the frames are published on.
    pub stream_subject: String,
    /// Stream limits: frames beyond them are discarded oldest first, and a client resuming
    /// from before the oldest retained frame gets a `reset`.
    pub stream_max_msgs: i64,
    pub stream_max_bytes: i64,
    pub stream_max_age: Duration,
    /// De-duplication window of the stream: a frame re-published with the same upstream
    /// session + seq within it is stored once. Must cover a failover.
    pub duplicate_window: Duration,
    /// How often the link holder publishes its link status for the command relays; a
    /// relay whose last status is older than three periods holds commands back.
    pub command_status_every: Duration,
    /// JetStream object store holding component bytes, named by their sha256.
    pub components_bucket: String,
    /// KV bucket with one key per slot: the cluster's current and previous component.
    pub slots_bucket: String,
}

impl ClusterSettings {
    /// Defaults for a cluster at `nats_url`, with a fresh holder id.
    pub fn new(nats_url: impl Into<String>) -> ClusterSettings {
        ClusterSettings {
            nats_url: nats_url.into(),
            holder_id: default_holder_id(),
            lease_bucket: "gateway_lease".into(),
            lease_key: "link".into(),
            lease_ttl: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            acquire_every: Duration::from_millis(250),
            request_timeout: Duration::from_secs(2),
            stream_name: "GATEWAY_EVENTS".into(),
            stream_subject: "gateway.events".into(),
            stream_max_msgs: 1_000_000,
            stream_max_bytes: 1 << 30,
            stream_max_age: Duration::from_secs(24 * 3600),
            duplicate_window: Duration::from_secs(120),
            command_status_every: Duration::from_millis(250),
            components_bucket: "gateway_components".into(),
            slots_bucket: "gateway_slots".into(),
        }
    }

    /// Refuses settings under which the lease could not be safe or live.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.lease_ttl < Duration::from_millis(500) {
            anyhow::bail!("cluster lease TTL must be at least 500ms");
        }
        if self.renew_every.is_zero() || self.renew_every * 2 > self.lease_ttl {
            anyhow::bail!("cluster lease renewal must be positive and at most half the lease TTL");
        }
        if self.acquire_every.is_zero() {
            anyhow::bail!("cluster lease acquire interval must be positive");
        }
        if self.command_status_every.is_zero() {
            anyhow::bail!("cluster command status interval must be positive");
        }
        if self.duplicate_window.is_zero() {
            anyhow::bail!("cluster stream duplicate window must be positive");
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("nats_url", &super::redacted_url(&self.nats_url))
            .field("holder_id", &self.holder_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("renew_every", &self.renew_every)
            .field("acquire_every", &self.acquire_every)
            .field("stream_name", &self.stream_name)
            .finish_non_exhaustive()
    }
}

/// `<hostname or "host">-<pid>-<random>`: unique per process, readable in the lease.
fn default_holder_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_holder_ids_differ() {
        let a = ClusterSettings::new("nats://127.0.0.1:4222");
        let b = ClusterSettings::new("nats://127.0.0.1:4222");
        a.validate().expect("defaults valid");
        assert_ne!(a.holder_id, b.holder_id);
    }

    #[test]
    fn renewal_slower_than_half_the_ttl_is_refused() {
        let mut s = ClusterSettings::new("nats://x");
        s.renew_every = s.lease_ttl;
        assert!(s.validate().is_err());
        s.renew_every = Duration::ZERO;
        assert!(s.validate().is_err());
    }
}
