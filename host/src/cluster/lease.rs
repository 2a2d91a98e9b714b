//! The link-holder lease: exactly one host of a cluster holds the upstream link.
//!
//! The lease is one key in a JetStream KV bucket whose `max_age` is the lease TTL (history 1),
//! so an entry nobody renews disappears by itself on the server:
//!
//! * **acquire** = `create` (create-if-absent: succeeds only when the key is absent, expired
//!   or deleted; the server decides, so two contenders cannot both win);
//! * **renew** = `update` with the revision of the holder's last write (revision-checked: it
//!   fails if anyone else wrote the key since);
//! * **release** (graceful shutdown) = delete with that revision, so a contender takes over
//!   at its next attempt instead of after the TTL.
//!
//! Safety: a holder considers itself leader only until `start of its last successful write +
//! TTL - margin`; the server keeps that write for at least the TTL after receiving it, so no
//! contender can acquire while the holder still believes it holds the lease. A renewal that
//! fails (revision moved, NATS unreachable, no answer before that deadline) ends leadership
//! at once. Contenders (and a former holder) retry `create` every `acquire_every`.
//!
//! The lease value names the holder and carries the last upstream position the holder
//! reported ([`LeaseHandle::set_resume`]), written at each renewal: observability, and the
//! resume point after a graceful handover. The authoritative resume point after a crash is
//! the stream's newest frames ([`super::stream::FrameStream::resume`]), which survive
//! the lease's expiry.

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::ClusterSettings;

/// Leadership changes of this process (gained or lost).
pub const METRIC_CHANGES: &str = "gateway_cluster_leadership_changes_total";
/// 1 while this process holds the link lease, else 0.
pub const METRIC_LEADER: &str = "gateway_cluster_leader";

/// An upstream position: the session and the last seq published to the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub session: String,
    pub seq: u64,
    /// Where the session can be resumed (direct Discord mode: `resume_gateway_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_url: Option<String>,
}

/// What the lease key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The holder's id.
    pub holder: String,
    /// The last upstream position the holder reported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumePoint>,
}

/// Opens (creating if needed) the lease bucket: history 1, `max_age` = lease TTL.
///
/// Every host creates it with the same settings; creating an identical bucket is a no-op on
/// the server. A bucket that exists with another TTL is an error naming both.
pub async fn open_bucket(
    js: &async_nats::jetstream::Context,
    settings: &ClusterSettings,
) -> anyhow::Result<kv::Store> {
    let bucket = &settings.lease_bucket;
    let config = super::kv_stream_config(
        bucket,
        "gateway-host link-holder lease",
        1,
        settings.lease_ttl,
    );
    let created = match js.create_stream(config).await {
        Ok(_) => js
            .get_key_value(bucket.clone())
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    match created {
        Ok(store) => Ok(store),
        Err(create_err) => {
            // Exists with other settings? Say which.
            let store = js
                .get_key_value(settings.lease_bucket.clone())
                .await
                .with_context(|| {
                    format!(
                        "creating the lease bucket {}: {create_err:#}",
                        settings.lease_bucket
                    )
                })?;
            let ttl = store.stream.cached_info().config.max_age;
            if ttl != settings.lease_ttl {
                anyhow::bail!(
                    "lease bucket {} exists with TTL {ttl:?}, this host is configured with {:?}",
                    settings.lease_bucket,
                    settings.lease_ttl
                );
            }
            Ok(store)
        }
    }
}

/// Reads the lease: its value and revision, `None` when nobody holds it.
pub async fn read(store: &kv::Store, key: &str) -> anyhow::Result<Option<(LeaseValue, u64)>> {
    let entry = store.entry(key).await.context("reading the lease")?;
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            let value: LeaseValue =
                serde_json::from_slice(&e.value).context("lease value is not a lease")?;
            Ok(Some((value, e.revision)))
        }
        _ => Ok(None),
    }
}

/// A running contender for the lease. Dropping it stops the contender *without* releasing
/// the lease (as a crash would: it expires after the TTL); [`LeaseHandle::release`] is the
/// graceful way out.
pub struct LeaseHandle {
    holder_id: String,
    leader: watch::Receiver<bool>,
    resume: Arc<Mutex<Option<ResumePoint>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaseHandle {
    /// This contender's holder id.
    pub fn holder_id(&self) -> &str {
        &self.holder_id
    }

    /// Does this process hold the lease right now?
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// "Am I leader", changing as the lease is gained and lost.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Records the last upstream position; written into the lease at the next renewal.
    pub fn set_resume(&self, point: ResumePoint) {
        *self.resume.lock() = Some(point);
    }

    /// A setter of the resume point that can move to another task.
    pub fn resume_setter(&self) -> impl Fn(ResumePoint) + Send + Sync + 'static {
        let resume = self.resume.clone();
        move |point| *resume.lock() = Some(point)
    }

    /// Stops contending; if leader, steps down first and deletes the lease (revision-checked)
    /// so another host takes it at its next attempt. Waits for the contender to end.
    pub async fn release(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts contending for the lease described by `settings`.
pub fn spawn(js: async_nats::jetstream::Context, settings: ClusterSettings) -> LeaseHandle {
    let (leader_tx, leader) = watch::channel(false);
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let resume = Arc::new(Mutex::new(None));
    let holder_id = settings.holder_id.clone();
    let contender = Contender {
        js,
        settings,
        leader: leader_tx,
        resume: resume.clone(),
    };
    let task = tokio::spawn(contender.run(shutdown_rx));
    LeaseHandle {
        holder_id,
        leader,
        resume,
        shutdown: Some(shutdown_tx),
        task: Some(task),
    }
}

struct Contender {
    js: async_nats::jetstream::Context,
    settings: ClusterSettings,
    leader: watch::Sender<bool>,
    resume: Arc<Mutex<Option<ResumePoint>>>,
}

/// The lease as its holder knows it.
struct Held {
    revision: u64,
    /// Leadership ends here unless a renewal succeeds first.
    valid_until: Instant,
}

impl Contender {
    async fn run(self, mut shutdown: oneshot::Receiver<()>) {
        let mut store: Option<kv::Store> = None;
        // Warn once per outage, not at every attempt.
        let mut warned = false;
        loop {
            // Follower: try to take the lease.
            let held = match &store {
                None => {
                    match tokio::time::timeout(
                        self.settings.request_timeout,
                        open_bucket(&self.js, &self.settings),
                    )
                    .await
                    {
                        Ok(Ok(s)) => {
                            store = Some(s);
                            warned = false;
                            continue;
                        }
                        Ok(Err(e)) if !warned => {
                            tracing::warn!(error = %format!("{e:#}"), "cluster lease bucket unavailable");
                            warned = true;
                        }
                        Err(_) if !warned => {
                            tracing::warn!("cluster lease bucket: NATS did not answer");
                            warned = true;
                        }
                        _ => {}
                    }
                    None
                }
                Some(s) => match self.try_acquire(s).await {
                    Ok(held) => held,
                    Err(()) => {
                        // The bucket may be gone (a NATS server that lost its store):
                        // open, and so re-create, it at the next attempt.
                        store = None;
                        None
                    }
                },
            };
            let Some(mut held) = held else {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(self.settings.acquire_every) => continue,
                }
            };
            let Some(s) = store.as_ref() else { continue };
            self.set_leader(true);
            tracing::info!(holder = %self.settings.holder_id, "cluster: this host holds the link lease");
            // Leader: renew until a renewal fails or we are asked to stop.
            loop {
                let next = (Instant::now() + self.settings.renew_every).min(held.valid_until);
                tokio::select! {
                    _ = &mut shutdown => {
                        self.set_leader(false);
                        self.release(s, held.revision).await;
                        return;
                    }
                    _ = tokio::time::sleep_until(next) => {}
                }
                match self.renew(s, &held).await {
                    Ok(next_held) => held = next_held,
                    Err(why) => {
                        self.set_leader(false);
                        tracing::warn!(holder = %self.settings.holder_id, %why, "cluster: lost the link lease");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.settings.acquire_every) => {}
            }
        }
    }

    fn value(&self) -> bytes::Bytes {
        let value = LeaseValue {
            holder: self.settings.holder_id.clone(),
            resume: self.resume.lock().clone(),
        };
        // A struct of strings and integers always serializes.
        bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }

    fn validity(&self, started: Instant) -> Instant {
        started + self.settings.lease_ttl - self.settings.lease_ttl / 10
    }

    /// `Ok(None)`: someone else holds the lease; `Err(())`: NATS or the bucket failed.
    async fn try_acquire(&self, store: &kv::Store) -> Result<Option<Held>, ()> {
        let started = Instant::now();
        let created = tokio::time::timeout(
            self.settings.request_timeout,
            store.create(&self.settings.lease_key, self.value()),
        )
        .await;
        match created {
            Ok(Ok(revision)) => Ok(Some(Held {
                revision,
                valid_until: self.validity(started),
            })),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cluster lease: acquire failed");
                Err(())
            }
            Err(_) => Err(()),
        }
    }

    async fn renew(&self, store: &kv::Store, held: &Held) -> Result<Held, String> {
        let started = Instant::now();
        let Some(left) = held.valid_until.checked_duration_since(started) else {
            return Err("lease validity ran out before the renewal".into());
        };
        let update = store.update(&self.settings.lease_key, self.value(), held.revision);
        match tokio::time::timeout(left.min(self.settings.request_timeout), update).await {
            Ok(Ok(revision)) => Ok(Held {
                revision,
                valid_until: self.validity(started),
            }),
            Ok(Err(e)) => Err(format!("renewal refused: {e}")),
            Err(_) => Err("renewal not answered in time".into()),
        }
    }

    async fn release(&self, store: &kv::Store, revision: u64) {
        let delete = store.delete_expect_revision(&self.settings.lease_key, Some(revision));
        match tokio::time::timeout(self.settings.request_timeout, delete).await {
            Ok(Ok(())) => {
                tracing::info!(holder = %self.settings.holder_id, "cluster: released the link lease")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: releasing the link lease failed"),
            Err(_) => tracing::warn!("cluster: releasing the link lease timed out"),
        }
    }

    fn set_leader(&self, leader: bool) {
        let changed = self.leader.send_replace(leader) != leader;
        if changed {
            metrics::counter!(METRIC_CHANGES).increment(1);
            metrics::gauge!(METRIC_LEADER).set(if leader { 1.0 } else { 0.0 });
        }
    }
}
