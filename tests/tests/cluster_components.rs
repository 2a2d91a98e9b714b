//! Cluster mode (issue 12): policy components cluster-wide. Three hosts — each its own
//! `Policies`, its own NATS connection, its own `ClusterComponents` and its own admin API on
//! a loopback socket — against a real `nats-server -js`, with real compiled components:
//! a load through one host's admin API is live on all three; a rollback through another
//! reverts all three; a host started later converges; a multipart load's configuration
//! travels with it; a corrupt object is refused, counted and retried while the host keeps
//! its version.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_host::cluster::components::{ClusterComponents, METRIC_SYNC_FAILURES, SlotSync};
use gateway_host::cluster::config::ClusterSettings;
use gateway_host::cluster::{self, Nats};
use gateway_host::policy::types::Event;
use gateway_host::policy::version::sha256_hex;
use gateway_host::policy::{LimitOutcome, Policies, RouteDecision, SlotKind};
use gateway_tests::admin::AdminServer;
use gateway_tests::nats::NatsServer;
use gateway_tests::policy::{
    HOSTILE_LIMITER, KEYED_LIMITER, REDACTING_ROUTER, event, rate_request, relaxed_settings,
};
use gateway_tests::{bounded, wait_until};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Bound on one whole test.
const TEST: Duration = Duration::from_secs(120);
/// "Within a few seconds": how long a change may take to reach every host.
const CONVERGE: Duration = Duration::from_secs(5);

/// One host of the cluster.
struct Host {
    policies: Arc<Policies>,
    components: ClusterComponents,
    admin: AdminServer,
    nats: Nats,
}

impl Host {
    async fn start(server: &NatsServer, name: &str) -> anyhow::Result<Host> {
        Host::start_bounded(server, name, Duration::from_secs(5)).await
    }

    /// A host whose NATS requests are bounded by `request_timeout`.
    async fn start_bounded(
        server: &NatsServer,
        name: &str,
        request_timeout: Duration,
    ) -> anyhow::Result<Host> {
        let policies = Arc::new(Policies::with_defaults(relaxed_settings())?);
        let nats = cluster::connect(&server.url(), request_timeout).await?;
        let mut settings = ClusterSettings::new(server.url());
        settings.holder_id = name.into();
        let components = ClusterComponents::start(&nats, &settings, policies.clone()).await?;
        let admin = AdminServer::start_with(policies.clone(), Some(components.clone())).await?;
        Ok(Host {
            policies,
            components,
            admin,
            nats,
        })
    }

    fn sha(&self, kind: SlotKind) -> String {
        self.policies.slot(kind).current().sha256().to_string()
    }

    fn sync(&self, kind: SlotKind) -> SlotSync {
        self.components
            .sync_status()
            .into_iter()
            .find(|s| s.slot == kind)
            .expect("every slot has a sync status")
    }

    /// The payload this host's router gives a MESSAGE_CREATE (`None`: passed unchanged).
    async fn routed_payload(&self) -> anyhow::Result<Option<Value>> {
        let mut ev: Event = event("MESSAGE_CREATE", Some("1"), Some("2"));
        ev.payload = r#"{"content":"secret"}"#.into();
        let verdict = self.policies.run(move |p| p.route(&ev)).await?;
        anyhow::ensure!(verdict.fallback.is_none(), "routed by the component");
        match verdict.value {
            RouteDecision::Deliver { payload, .. } => Ok(payload
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .context("payload is JSON")?),
            RouteDecision::Drop => anyhow::bail!("the router dropped the event"),
        }
    }

    async fn rate(&self, key: &str) -> anyhow::Result<LimitOutcome> {
        let request = rate_request(key, "1");
        Ok(self
            .policies
            .run(move |p| p.check_rate(&request))
            .await?
            .value)
    }
}

async fn start_hosts(server: &NatsServer, names: &[&str]) -> anyhow::Result<Vec<Host>> {
    let mut hosts = Vec::new();
    for name in names {
        hosts.push(Host::start(server, name).await?);
    }
    Ok(hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_through_one_host_is_live_on_all_three_and_a_rollback_through_another_reverts_all()
-> anyhow::Result<()> {
    bounded(TEST, "the test", async {
        let server = NatsServer::start()?;
        let hosts = start_hosts(&server, &["host-a", "host-b", "host-c"]).await?;
        let kind = SlotKind::EventRouter;
        let default_sha = hosts[0].sha(kind);
        for h in &hosts {
            assert_eq!(h.routed_payload().await?, None, "the default router");
        }

        let new_sha = sha256_hex(REDACTING_ROUTER);
        let started = Instant::now();
        let (status, body) = hosts[0]
            .admin
            .put_with_config(
                "event-router",
                REDACTING_ROUTER,
                "trap-every = 0\ntag = \"cluster\"\n",
            )
            .await?;
        let answered = started.elapsed();
        anyhow::ensure!(status == 200, "{body}");
        assert_eq!(body["cluster"]["current"]["sha256"], json!(new_sha));
        assert_eq!(body["cluster"]["current"]["loadedBy"], json!("host-a"));
        // The first admin load of the slot: the version it replaced on A is the previous.
        assert_eq!(body["cluster"]["previous"]["sha256"], json!(default_sha));

        wait_until(CONVERGE, "the new router on all three hosts", || {
            hosts.iter().all(|h| h.sha(kind) == new_sha)
        })
        .await?;
        let live_everywhere = started.elapsed();
        eprintln!(
            "load: PUT on host A answered in {answered:?}; live on all three hosts {live_everywhere:?} after the PUT was sent"
        );
        for h in &hosts {
            let payload = h.routed_payload().await?.context("redacted payload")?;
            assert_eq!(payload["redactedBy"], json!("cluster"), "its config came along");
            assert_eq!(payload["content"], json!("[redacted]"));
        }

        // Any host's listing shows the cluster's versions and that it is in sync.
        let (status, list) = hosts[2].admin.get(None).await?;
        anyhow::ensure!(status == 200, "{list}");
        let router = list["slots"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["slot"] == json!("event-router")))
            .context("event-router in the listing")?;
        assert_eq!(router["cluster"]["current"]["sha256"], json!(new_sha));
        assert_eq!(router["cluster"]["inSync"], json!(true));
        assert_eq!(router["cluster"]["localSha256"], json!(new_sha));
        assert_eq!(router["current"]["source"], json!("cluster (loaded by host-a)"));

        // Rollback through B: all three run the default router again.
        let started = Instant::now();
        let (status, body) = hosts[1].admin.rollback("event-router").await?;
        anyhow::ensure!(status == 200, "{body}");
        assert_eq!(body["current"]["sha256"], json!(default_sha));
        assert_eq!(body["cluster"]["previous"]["sha256"], json!(new_sha));
        wait_until(CONVERGE, "the default router on all three hosts", || {
            hosts.iter().all(|h| h.sha(kind) == default_sha)
        })
        .await?;
        eprintln!(
            "rollback: reverted on all three hosts {:?} after the POST was sent",
            started.elapsed()
        );
        for h in &hosts {
            assert_eq!(h.routed_payload().await?, None, "the default router again");
            assert!(h.sync(kind).in_sync);
            assert_eq!(h.sync(kind).failures, 0);
        }
        // Exactly two writes to the slots bucket (the load, the rollback): what the
        // watchers applied was not published again.
        let mut stream = hosts[0].nats.jetstream.get_stream("KV_gateway_slots").await?;
        assert_eq!(stream.info().await?.state.messages, 2);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_started_after_a_multipart_load_converges_with_its_config() -> anyhow::Result<()> {
    bounded(TEST, "the test", async {
        let server = NatsServer::start()?;
        let a = Host::start(&server, "host-a").await?;
        let kind = SlotKind::RateLimiter;
        let (status, body) = a
            .admin
            .put_with_config(
                "rate-limiter",
                KEYED_LIMITER,
                "burst = 2\nrefill-ms = 600000\n",
            )
            .await?;
        anyhow::ensure!(status == 200, "{body}");
        assert_eq!(
            body["cluster"]["current"]["config"],
            json!([["burst", "2"], ["refill-ms", "600000"]])
        );
        assert_eq!(
            a.rate("a1").await?,
            LimitOutcome::Allow { remaining: 1 },
            "burst 2 on A"
        );

        // D joins after the load: it converges at start, with the configuration.
        let started = Instant::now();
        let d = Host::start(&server, "host-d").await?;
        let keyed_sha = sha256_hex(KEYED_LIMITER);
        wait_until(CONVERGE, "the keyed limiter on the late host", || {
            d.sha(kind) == keyed_sha
        })
        .await?;
        eprintln!(
            "late host: converged {:?} after it started",
            started.elapsed()
        );
        let live = d.policies.slot(kind).info().current;
        assert_eq!(
            serde_json::to_value(&live.config)?,
            json!({"burst": "2", "refill-ms": "600000"})
        );
        assert_eq!(serde_json::to_value(live.config_source)?, json!("admin"));
        assert_eq!(
            d.rate("d1").await?,
            LimitOutcome::Allow { remaining: 1 },
            "burst 2 on D: the config travelled with the component"
        );
        assert!(d.sync(kind).in_sync);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_is_refused_counted_and_retried_while_the_host_keeps_its_version()
-> anyhow::Result<()> {
    gateway_host::metrics::install();
    bounded(TEST, "the test", async {
        let server = NatsServer::start()?;
        let a = Host::start(&server, "host-a").await?;
        let kind = SlotKind::RateLimiter;
        let default_sha = a.sha(kind);
        let keyed_sha = sha256_hex(KEYED_LIMITER);

        // Someone with NATS access stores other bytes under the keyed limiter's name and
        // points the slot at it.
        let nats = cluster::connect(&server.url(), Duration::from_secs(5)).await?;
        let objects = nats
            .jetstream
            .get_object_store("gateway_components")
            .await?;
        objects
            .put(keyed_sha.as_str(), &mut &HOSTILE_LIMITER[..])
            .await?;
        let slots = nats.jetstream.get_key_value("gateway_slots").await?;
        let record = json!({
            "current": {"sha256": keyed_sha, "config": [], "configSource": "none",
                        "loadedBy": "intruder", "atMs": 1},
            "previous": null,
        });
        slots
            .put("rate-limiter", serde_json::to_vec(&record)?.into())
            .await?;

        wait_until(CONVERGE, "two failed attempts (one retry)", || {
            a.sync(kind).failures >= 2
        })
        .await?;
        let sync = a.sync(kind);
        assert!(!sync.in_sync);
        let error = sync.last_error.context("the failure is kept")?;
        assert!(error.contains("sha256"), "{error}");
        assert_eq!(a.sha(kind), default_sha, "the host keeps its version");
        assert_eq!(a.rate("k1").await?, LimitOutcome::Allow { remaining: 9 });
        let (_, list) = a.admin.get(Some("rate-limiter")).await?;
        assert_eq!(list["cluster"]["inSync"], json!(false));
        assert!(list["cluster"]["failures"].as_u64() >= Some(2), "{list}");
        let counted = sync_failures_metric("rate-limiter").context("the failure counter")?;
        assert!(counted >= 2.0, "{METRIC_SYNC_FAILURES} = {counted}");

        // The right bytes under that name: the next retry applies them.
        objects
            .put(keyed_sha.as_str(), &mut &KEYED_LIMITER[..])
            .await?;
        wait_until(
            Duration::from_secs(30),
            "the retry to apply the repaired object",
            || {
                // The version goes live a moment before the attempt's outcome is recorded.
                let sync = a.sync(kind);
                a.sha(kind) == keyed_sha && sync.last_error.is_none()
            },
        )
        .await?;
        assert!(a.sync(kind).in_sync);
        Ok(())
    })
    .await
}

/// The value of `gateway_cluster_component_sync_failures_total{slot}` in `/metrics`.
fn sync_failures_metric(slot: &str) -> Option<f64> {
    let prefix = format!("{METRIC_SYNC_FAILURES}{{slot=\"{slot}\"}} ");
    gateway_host::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_the_cluster_cannot_take_is_live_here_and_answers_502() -> anyhow::Result<()> {
    bounded(TEST, "the test", async {
        let mut server = NatsServer::start()?;
        // Short NATS request bound: the publish with NATS gone fails fast.
        let a = Host::start_bounded(&server, "host-a", Duration::from_secs(1)).await?;
        let kind = SlotKind::RateLimiter;
        let default_sha = a.sha(kind);
        // A local load that never went through the admin API (as the components directory
        // does): the cluster has no record of the slot, so it has no previous either.
        a.policies
            .load(
                kind,
                KEYED_LIMITER.to_vec(),
                "dir".into(),
                Default::default(),
            )
            .await?;
        let (status, body) = a.admin.rollback("rate-limiter").await?;
        assert_eq!(status, 502, "{body}");
        assert_eq!(
            body["error"]["code"],
            json!("cluster_publish_failed"),
            "{body}"
        );
        assert_eq!(a.sha(kind), default_sha, "rolled back on this host");

        // NATS gone: a load is live here, and the answer says it is not cluster-wide.
        server.kill();
        let (status, body) = a.admin.put_raw("rate-limiter", HOSTILE_LIMITER).await?;
        assert_eq!(status, 502, "{body}");
        assert_eq!(
            body["error"]["code"],
            json!("cluster_publish_failed"),
            "{body}"
        );
        let hostile_sha = sha256_hex(HOSTILE_LIMITER);
        assert_eq!(
            body["error"]["loaded"]["sha256"],
            json!(hostile_sha),
            "{body}"
        );
        assert_eq!(a.sha(kind), hostile_sha, "live on this host");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_of_python_size_travels_through_the_object_store() -> anyhow::Result<()> {
    bounded(TEST, "the test", async {
        let server = NatsServer::start()?;
        let hosts = start_hosts(&server, &["host-a", "host-b"]).await?;
        let kind = SlotKind::RateLimiter;
        // 20 MiB (a componentize-py component is about 18 MB): not a component, so B's load
        // refuses it — but only after B fetched every chunk and checked the sha256.
        let mut big = vec![0u8; 20 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in big.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let started = Instant::now();
        let replaced = hosts[0].policies.slot(kind).current();
        hosts[0]
            .components
            .publish_load(kind, &big, &Default::default(), &replaced)
            .await?;
        let published = started.elapsed();
        wait_until(Duration::from_secs(60), "B's attempt at the large component", || {
            hosts[1].sync(kind).failures >= 1
        })
        .await?;
        eprintln!(
            "20 MiB: published in {published:?}; fetched, checked and refused by B {:?} after the publish started",
            started.elapsed()
        );
        let error = hosts[1].sync(kind).last_error.context("the failure")?;
        assert!(error.contains("loading it"), "fetched and checked: {error}");
        assert!(!error.contains("sha256"), "{error}");
        assert_eq!(hosts[1].sha(kind), replaced.sha256(), "B keeps its version");
        Ok(())
    })
    .await
}
