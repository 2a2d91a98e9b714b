//! Policy components cluster-wide (issue 12): a component loaded or rolled back through
//! one host's admin API is live on every host of the cluster within a few seconds.
//!
//! Why NATS holds it: every host already talks to NATS in cluster mode, and a host that
//! starts (or reconnects) later must find the cluster's versions without asking a peer.
//!
//! * The wasm bytes go into a JetStream **object store** (`gateway_components`), named by
//!   their sha256: chunked, so an 18 MB Python component is fine (a KV value is not).
//! * A **KV bucket** (`gateway_slots`) holds one key per slot (`event-router`, …) whose value
//!   is a [`SlotRecord`]: the cluster's current version (sha256 + the configuration it was
//!   loaded with + who loaded it, when) and the one it replaced. Writes are revision-checked
//!   (a concurrent writer makes the loser re-read and retry), so no update is lost.
//! * The admin handler loads locally first (the candidate's compile, checks and `init` run
//!   on the host that received it), then publishes ([`ClusterComponents::publish_load`],
//!   [`ClusterComponents::publish_rollback`]).
//! * A **watcher** on every host (a KV watch that first delivers each key's last value, so a
//!   host joining later converges) compares each slot's record with the local live version:
//!   equal → nothing; the record's current is the local previous → a local rollback (the
//!   previous comes back with its own configuration); otherwise it fetches the bytes,
//!   verifies their sha256 and loads them with the recorded configuration. The watcher
//!   loads through [`Policies::load`] directly, never through the admin path, so what it
//!   applies is never published again (no loops). A failure (object missing, sha mismatch,
//!   load refused) is logged, counted in [`METRIC_SYNC_FAILURES`] and retried with backoff;
//!   the host keeps serving its current version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{kv, object_store, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Nats;
use super::config::ClusterSettings;
use crate::policy::component_config::{ComponentConfig, ConfigSource};
use crate::policy::defaults::default_component;
use crate::policy::version::{ComponentVersion, sha256_hex, unix_ms};
use crate::policy::{Policies, SlotKind};

/// Failed attempts to apply the cluster's version of a slot on this host (label `slot`).
pub const METRIC_SYNC_FAILURES: &str = "gateway_cluster_component_sync_failures_total";

/// Largest component fetched from the object store (a sanity bound, far above any real one).
const MAX_FETCH_BYTES: u64 = 512 << 20;
/// Bound on fetching one component's bytes.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// First retry delay after a failed apply; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Attempts at a revision-checked slot update before giving up (each conflict re-reads).
const UPDATE_ATTEMPTS: usize = 20;

/// One version as the cluster records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterVersion {
    /// sha256 of the wasm bytes: the object's name in the object store.
    pub sha256: String,
    /// The ordered configuration pairs its `init` accepted.
    pub config: Vec<(String, String)>,
    pub config_source: ConfigSource,
    /// Holder id of the host whose admin API loaded it.
    pub loaded_by: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl ClusterVersion {
    /// Is `version` this one (same bytes, same configuration)?
    fn matches(&self, version: &ComponentVersion) -> bool {
        version.sha256() == self.sha256 && version.config().pairs == self.config
    }

    fn config(&self) -> ComponentConfig {
        ComponentConfig::new(self.config.clone(), self.config_source)
    }
}

/// The value of a slot's key in the slots bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub current: ClusterVersion,
    /// The version `current` replaced (what a rollback brings back).
    #[serde(default)]
    pub previous: Option<ClusterVersion>,
}

/// One slot's cluster state as this host sees it (`cluster` in `GET /admin/components`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotSync {
    pub slot: SlotKind,
    /// The cluster's record (`None`: nothing was ever loaded through an admin API).
    pub current: Option<ClusterVersion>,
    pub previous: Option<ClusterVersion>,
    /// KV revision of the record.
    pub revision: Option<u64>,
    /// sha256 of this host's live version.
    pub local_sha256: String,
    /// This host runs the cluster's current version (true when there is none).
    pub in_sync: bool,
    /// Failed attempts to apply the current record on this host.
    pub failures: u64,
    /// Why the last attempt failed (cleared by a success).
    pub last_error: Option<String>,
}

/// What the watcher knows about one slot.
#[derive(Default)]
struct Known {
    record: Option<(SlotRecord, u64)>,
    failures: u64,
    last_error: Option<String>,
    /// Apply again at this instant (`None`: nothing to retry).
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

struct Inner {
    policies: Arc<Policies>,
    holder_id: String,
    slots: kv::Store,
    objects: object_store::ObjectStore,
    known: Mutex<HashMap<SlotKind, Known>>,
}

/// Aborts the watcher when the last [`ClusterComponents`] clone is dropped.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// This host's side of the cluster's components: publishes admin loads and rollbacks, and
/// applies everyone's. Cheap to clone; the watcher stops when the last clone is dropped.
#[derive(Clone)]
pub struct ClusterComponents {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

impl ClusterComponents {
    /// Opens (creating if needed) the object store and the slots bucket, subscribes to the
    /// slots and starts the watcher, which first applies each slot's current record.
    pub async fn start(
        nats: &Nats,
        settings: &ClusterSettings,
        policies: Arc<Policies>,
    ) -> anyhow::Result<ClusterComponents> {
        let slots = open_slots_bucket(&nats.jetstream, &settings.slots_bucket).await?;
        let objects = open_object_store(&nats.jetstream, &settings.components_bucket).await?;
        let watch = slots
            .watch_with_history(">")
            .await
            .context("watching the cluster's component slots")?;
        let inner = Arc::new(Inner {
            policies,
            holder_id: settings.holder_id.clone(),
            slots,
            objects,
            known: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(watcher(inner.clone(), watch));
        Ok(ClusterComponents {
            inner,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// Makes `bytes` with `config` the cluster's current version of `kind`: the version it
    /// replaced in the cluster becomes its previous. Call it after the local load succeeded
    /// (`replaced` = this host's version before the load); the other hosts' watchers then
    /// load it.
    ///
    /// The first admin load of a slot has no cluster version to replace: `replaced` becomes
    /// the cluster's previous (what a rollback brings back), and its bytes are stored too
    /// when this host has them (the embedded default). Hosts whose own previous is that
    /// version roll back without fetching anything.
    pub async fn publish_load(
        &self,
        kind: SlotKind,
        bytes: &[u8],
        config: &ComponentConfig,
        replaced: &ComponentVersion,
    ) -> anyhow::Result<SlotRecord> {
        let sha256 = sha256_hex(bytes);
        self.inner.store_bytes(&sha256, bytes).await?;
        let default = default_component(kind);
        if replaced.sha256() == sha256_hex(default) {
            self.inner.store_bytes(replaced.sha256(), default).await?;
        }
        let version = ClusterVersion {
            sha256,
            config: config.pairs.clone(),
            config_source: config.source,
            loaded_by: self.inner.holder_id.clone(),
            at_ms: unix_ms(),
        };
        let replaced = ClusterVersion {
            sha256: replaced.sha256().to_string(),
            config: replaced.config().pairs.clone(),
            config_source: replaced.config().source,
            loaded_by: self.inner.holder_id.clone(),
            at_ms: replaced.info().loaded_at_ms,
        };
        self.inner
            .update_slot(kind, |old| {
                Ok(SlotRecord {
                    current: version.clone(),
                    previous: Some(old.map_or_else(|| replaced.clone(), |r| r.current)),
                })
            })
            .await
    }

    /// Makes the cluster's previous version of `kind` its current one (and the current one
    /// its previous). Call it after the local rollback succeeded. Fails when the cluster has
    /// no previous version of the slot.
    pub async fn publish_rollback(&self, kind: SlotKind) -> anyhow::Result<SlotRecord> {
        self.inner
            .update_slot(kind, |old| match old {
                Some(SlotRecord {
                    current,
                    previous: Some(previous),
                }) => Ok(SlotRecord {
                    current: previous,
                    previous: Some(current),
                }),
                _ => anyhow::bail!("the cluster has no previous version of {kind}"),
            })
            .await
    }

    /// Each slot: the cluster's versions and whether this host runs the current one.
    pub fn sync_status(&self) -> Vec<SlotSync> {
        let known = self.inner.known.lock();
        SlotKind::ALL
            .iter()
            .map(|&kind| {
                let live = self.inner.policies.slot(kind).current();
                let k = known.get(&kind);
                let record = k.and_then(|k| k.record.as_ref());
                SlotSync {
                    slot: kind,
                    current: record.map(|(r, _)| r.current.clone()),
                    previous: record.and_then(|(r, _)| r.previous.clone()),
                    revision: record.map(|(_, rev)| *rev),
                    local_sha256: live.sha256().to_string(),
                    in_sync: record.is_none_or(|(r, _)| r.current.matches(&live)),
                    failures: k.map_or(0, |k| k.failures),
                    last_error: k.and_then(|k| k.last_error.clone()),
                }
            })
            .collect()
    }

    /// Does every slot run the cluster's current version here?
    pub fn in_sync(&self) -> bool {
        self.sync_status().iter().all(|s| s.in_sync)
    }
}

impl Inner {
    /// Stores `bytes` as object `sha256` unless an intact copy is already there.
    async fn store_bytes(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
        if let Ok(info) = self.objects.info(sha256).await
            && !info.deleted
            && info.size == bytes.len()
        {
            return Ok(());
        }
        let mut reader = bytes;
        self.objects
            .put(sha256, &mut reader)
            .await
            .with_context(|| format!("storing component {} in the object store", &sha256[..12]))?;
        Ok(())
    }

    /// The bytes of object `sha256`, checked against their name.
    async fn fetch(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let read = async {
            let object = self
                .objects
                .get(sha256)
                .await
                .context("reading it from the object store")?;
            let mut bytes = Vec::new();
            object
                .take(MAX_FETCH_BYTES)
                .read_to_end(&mut bytes)
                .await
                .context("reading its chunks")?;
            anyhow::Ok(bytes)
        };
        let bytes = tokio::time::timeout(FETCH_TIMEOUT, read)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {FETCH_TIMEOUT:?}"))??;
        let got = sha256_hex(&bytes);
        if got != sha256 {
            anyhow::bail!(
                "the stored bytes have sha256 {got}, not the {sha256} they are named by: refused"
            );
        }
        Ok(bytes)
    }

    /// Revision-checked read-modify-write of `kind`'s record.
    async fn update_slot(
        &self,
        kind: SlotKind,
        change: impl Fn(Option<SlotRecord>) -> anyhow::Result<SlotRecord>,
    ) -> anyhow::Result<SlotRecord> {
        let key = kind.as_str();
        for _ in 0..UPDATE_ATTEMPTS {
            let entry = self
                .slots
                .entry(key)
                .await
                .with_context(|| format!("reading the cluster's {kind} record"))?;
            let (old, revision) = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (Some(parse_record(&e.value)?), Some(e.revision))
                }
                Some(e) => (None, Some(e.revision)),
                None => (None, None),
            };
            let record = change(old)?;
            let value = serde_json::to_vec(&record)?.into();
            let written = match revision {
                Some(rev) => match self.slots.update(key, value, rev).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => {
                        return Err(e).context(format!("writing the cluster's {kind} record"));
                    }
                },
                None => match self.slots.create(key, value).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => {
                        return Err(e).context(format!("writing the cluster's {kind} record"));
                    }
                },
            };
            if written {
                return Ok(record);
            }
        }
        anyhow::bail!("the cluster's {kind} record kept changing: {UPDATE_ATTEMPTS} attempts lost")
    }

    /// Makes this host run `record.current` in `kind`.
    async fn apply(&self, kind: SlotKind, record: &SlotRecord) -> anyhow::Result<bool> {
        let want = &record.current;
        let slot = self.policies.slot(kind);
        if want.matches(&slot.current()) {
            return Ok(false);
        }
        if slot.previous().is_some_and(|p| want.matches(&p)) {
            slot.rollback()?;
            tracing::info!(slot = %kind, component = %&want.sha256[..12.min(want.sha256.len())], "cluster: rolled back to the cluster's current version");
            return Ok(true);
        }
        let bytes = self
            .fetch(&want.sha256)
            .await
            .with_context(|| format!("fetching component {}", want.sha256))?;
        self.policies
            .load(
                kind,
                bytes,
                format!("cluster (loaded by {})", want.loaded_by),
                want.config(),
            )
            .await
            .context("loading it")?;
        tracing::info!(slot = %kind, component = %&want.sha256[..12], loaded_by = %want.loaded_by, "cluster: loaded the cluster's current version");
        Ok(true)
    }

    /// Apply `kind`'s known record, recording the outcome and scheduling a retry on failure.
    async fn reconcile(&self, kind: SlotKind) {
        let record = {
            let mut known = self.known.lock();
            let k = known.entry(kind).or_default();
            k.retry_at = None;
            match &k.record {
                Some((r, _)) => r.clone(),
                None => return,
            }
        };
        let outcome = self.apply(kind, &record).await;
        let mut known = self.known.lock();
        let k = known.entry(kind).or_default();
        if k.record.as_ref().map(|(r, _)| r) != Some(&record) {
            return; // a newer record arrived meanwhile; it gets its own attempt
        }
        match outcome {
            Ok(_) => {
                k.last_error = None;
                k.retry_delay = Duration::ZERO;
            }
            Err(e) => {
                k.failures += 1;
                k.retry_delay = if k.retry_delay.is_zero() {
                    RETRY_FIRST
                } else {
                    (k.retry_delay * 2).min(RETRY_MAX)
                };
                k.retry_at = Some(Instant::now() + k.retry_delay);
                k.last_error = Some(format!("{e:#}"));
                tracing::warn!(slot = %kind, component = %record.current.sha256, error = %format!("{e:#}"), retry_in_ms = k.retry_delay.as_millis() as u64, "cluster: could not apply the cluster's component version; this host keeps its current one");
                metrics::counter!(METRIC_SYNC_FAILURES, "slot" => kind.as_str()).increment(1);
            }
        }
    }

    /// A new value of a slot key: remember it and apply it.
    async fn on_entry(&self, entry: kv::Entry) {
        let Ok(kind) = entry.key.parse::<SlotKind>() else {
            tracing::warn!(key = %entry.key, "cluster: ignoring an unknown key in the slots bucket");
            return;
        };
        if entry.operation != kv::Operation::Put {
            return;
        }
        let record = match parse_record(&entry.value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(slot = %kind, error = %format!("{e:#}"), "cluster: ignoring an unreadable slot record");
                metrics::counter!(METRIC_SYNC_FAILURES, "slot" => kind.as_str()).increment(1);
                return;
            }
        };
        {
            let mut known = self.known.lock();
            let k = known.entry(kind).or_default();
            k.record = Some((record, entry.revision));
            k.retry_delay = Duration::ZERO;
        }
        self.reconcile(kind).await;
    }

    /// The earliest scheduled retry, if any.
    fn next_retry(&self) -> Option<(SlotKind, Instant)> {
        self.known
            .lock()
            .iter()
            .filter_map(|(kind, k)| k.retry_at.map(|at| (*kind, at)))
            .min_by_key(|(_, at)| *at)
    }
}

fn parse_record(value: &[u8]) -> anyhow::Result<SlotRecord> {
    serde_json::from_slice(value).context("the slot record is not a component record")
}

/// Applies every slot record as it arrives (each key's last value first), retries failed
/// ones, and re-subscribes when the watch ends (NATS went away).
async fn watcher(inner: Arc<Inner>, mut watch: kv::Watch) {
    loop {
        let retry = inner.next_retry();
        let retry_sleep = async {
            match retry {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = watch.next() => match next {
                Some(Ok(entry)) => inner.on_entry(entry).await,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cluster: the component slots watch failed; re-subscribing");
                    watch = resubscribe(&inner).await;
                }
                None => {
                    tracing::warn!("cluster: the component slots watch ended; re-subscribing");
                    watch = resubscribe(&inner).await;
                }
            },
            () = retry_sleep => {
                if let Some((kind, _)) = retry {
                    inner.reconcile(kind).await;
                }
            }
        }
    }
}

/// A new watch (delivering each key's last value again), retried every second.
async fn resubscribe(inner: &Inner) -> kv::Watch {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match inner.slots.watch_with_history(">").await {
            Ok(w) => return w,
            Err(e) => tracing::warn!(error = %e, "cluster: re-subscribing to the component slots"),
        }
    }
}

/// The slots bucket (history 10 per slot: the last loads stay readable with `nats kv`).
///
/// Created as a stream in KV layout, as [`super::lease::open_bucket`] does: async-nats'
/// `create_key_value` cannot parse nats-server 2.9's account info reply.
async fn open_slots_bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
) -> anyhow::Result<kv::Store> {
    let config = super::kv_stream_config(
        bucket,
        "gateway-host policy components per slot",
        10,
        Duration::ZERO,
    );
    if let Err(e) = js.create_stream(config).await {
        // Exists already (perhaps created with other settings): use it as it is.
        tracing::debug!(error = %e, bucket, "cluster: slots bucket not created; opening it");
    }
    js.get_key_value(bucket)
        .await
        .with_context(|| format!("opening the component slots bucket {bucket}"))
}

/// The object store of component bytes.
async fn open_object_store(
    js: &async_nats::jetstream::Context,
    bucket: &str,
) -> anyhow::Result<object_store::ObjectStore> {
    let config = object_store::Config {
        bucket: bucket.to_string(),
        description: Some("gateway-host policy components by sha256".into()),
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(create_err) => js.get_object_store(bucket).await.with_context(|| {
            format!("creating the component object store {bucket}: {create_err:#}")
        }),
    }
}
