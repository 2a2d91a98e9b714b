//! The `[cluster]` table of the configuration file and `GATEWAY_NATS_URL`.
//!
//! Cluster mode is on when a NATS URL is given (the variable wins over the file); every
//! other key has the default of [`ClusterSettings::new`]. All hosts of one cluster must
//! use the same lease TTL and stream settings (the lease bucket refuses another TTL).

use std::time::Duration;

use serde::Deserialize;

use super::config::ClusterSettings;

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterFile {
    /// `nats://host:port` (`GATEWAY_NATS_URL` wins). Set: cluster mode.
    pub nats_url: Option<String>,
    /// This host's name in the lease and logs (`GATEWAY_CLUSTER_HOST_ID` wins); default:
    /// `<hostname>-<pid>-<random>`. Must be unique per running host.
    pub host_id: Option<String>,
    pub lease_ttl_ms: Option<u64>,
    pub renew_every_ms: Option<u64>,
    pub acquire_every_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub stream_name: Option<String>,
    pub stream_max_msgs: Option<i64>,
    pub stream_max_mib: Option<i64>,
    pub stream_max_age_s: Option<u64>,
    pub duplicate_window_s: Option<u64>,
    pub command_status_every_ms: Option<u64>,
    pub components_bucket: Option<String>,
    pub slots_bucket: Option<String>,
}

impl ClusterFile {
    /// The cluster settings, or `None` (single-host mode) when no NATS URL is set.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<ClusterSettings>> {
        let Some(url) = env("GATEWAY_NATS_URL").or_else(|| self.nats_url.clone()) else {
            return Ok(None);
        };
        let url = url.trim().to_string();
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            // The value may carry credentials (`user:password@host`): name its scheme only.
            let got = match url.split_once("://") {
                Some((scheme, _))
                    if !scheme.is_empty()
                        && scheme.len() <= 16
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
                {
                    format!("the scheme {scheme:?}")
                }
                _ => "no scheme".to_string(),
            };
            anyhow::bail!(
                "GATEWAY_NATS_URL / [cluster] nats-url must look like nats://host:port (got {got})"
            );
        }
        let mut s = ClusterSettings::new(url);
        if let Some(id) = env("GATEWAY_CLUSTER_HOST_ID").or_else(|| self.host_id.clone()) {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if !ok {
                anyhow::bail!(
                    "the cluster host id must be 1-64 letters, digits, '-' or '_' (got {id:?})"
                );
            }
            s.holder_id = id;
        }
        let ms = Duration::from_millis;
        if let Some(v) = self.lease_ttl_ms {
            s.lease_ttl = ms(v);
        }
        if let Some(v) = self.renew_every_ms {
            s.renew_every = ms(v);
        } else if self.lease_ttl_ms.is_some() {
            s.renew_every = s.lease_ttl / 3;
        }
        if let Some(v) = self.acquire_every_ms {
            s.acquire_every = ms(v);
        }
        if let Some(v) = self.request_timeout_ms {
            s.request_timeout = ms(v);
        }
        if let Some(v) = &self.stream_name {
            s.stream_name = v.clone();
        }
        if let Some(v) = self.stream_max_msgs {
            s.stream_max_msgs = v;
        }
        if let Some(v) = self.stream_max_mib {
            s.stream_max_bytes = v.saturating_mul(1024 * 1024);
        }
        if let Some(v) = self.stream_max_age_s {
            s.stream_max_age = Duration::from_secs(v);
        }
        if let Some(v) = &self.components_bucket {
            s.components_bucket = v.clone();
        }
        if let Some(v) = &self.slots_bucket {
            s.slots_bucket = v.clone();
        }
        if let Some(v) = self.command_status_every_ms {
            s.command_status_every = ms(v);
        }
        if let Some(v) = self.duplicate_window_s {
            s.duplicate_window = Duration::from_secs(v);
        }
        s.validate()?;
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_is_single_host_mode_and_the_variable_wins() -> anyhow::Result<()> {
        let file = ClusterFile {
            nats_url: Some("nats://file:4222".into()),
            lease_ttl_ms: Some(1500),
            ..Default::default()
        };
        assert!(ClusterFile::default().resolve(|_| None)?.is_none());
        let s = file
            .resolve(|k| (k == "GATEWAY_NATS_URL").then(|| "nats://env:4222".to_string()))?
            .ok_or_else(|| anyhow::anyhow!("cluster mode"))?;
        assert_eq!(s.nats_url, "nats://env:4222");
        assert_eq!(s.lease_ttl, Duration::from_millis(1500));
        assert_eq!(s.renew_every, Duration::from_millis(500));
        Ok(())
    }

    #[test]
    fn bad_urls_ids_and_timings_are_refused() {
        let env =
            |url: &'static str| move |k: &str| (k == "GATEWAY_NATS_URL").then(|| url.to_string());
        assert!(ClusterFile::default().resolve(env("http://x")).is_err());
        // A URL without a scheme may start with credentials: none of it is echoed.
        let err = ClusterFile::default()
            .resolve(env("alice:hunter2@10.0.0.5:4222"))
            .expect_err("no scheme");
        let text = format!("{err:#}");
        assert!(text.contains("no scheme"), "{text}");
        assert!(
            !text.contains("alice") && !text.contains("hunter"),
            "{text}"
        );
        let err = ClusterFile::default()
            .resolve(env("http://bob:pw@x"))
            .expect_err("http");
        let text = format!("{err:#}");
        assert!(text.contains("\"http\"") && !text.contains("bob"), "{text}");
        let bad_id = ClusterFile {
            host_id: Some("a b".into()),
            ..Default::default()
        };
        assert!(bad_id.resolve(env("nats://x:1")).is_err());
        let bad_ttl = ClusterFile {
            lease_ttl_ms: Some(100),
            ..Default::default()
        };
        assert!(bad_ttl.resolve(env("nats://x:1")).is_err());
    }
}
