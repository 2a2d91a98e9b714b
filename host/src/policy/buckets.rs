//! Rate-limit bucket state, kept by the host so it survives limiter swaps and instance loss.
//!
//! The limiter component picks the key and encodes the state; the host only stores opaque
//! bytes with an expiry. Memory stays bounded three ways: a cap on key and value sizes, a
//! time-to-live after which an idle bucket is evicted (a full bucket carries no
//! information), and a cap on the number of buckets (when full, expired buckets are swept
//! and, failing that, the one closest to expiry is evicted).
//!
//! Entries are sharded by key hash; a shard's lock is held across the component's
//! read-modify-write of one bucket so two concurrent commands cannot both spend its last
//! token.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Limits of the bucket store.
#[derive(Debug, Clone, Copy)]
pub struct BucketLimits {
    /// Most buckets kept at once (across all shards).
    pub max_buckets: usize,
    /// Longest key accepted; longer keys are refused (the call fails closed/open).
    pub max_key_bytes: usize,
    /// Largest state accepted.
    pub max_value_bytes: usize,
    /// Longest time-to-live honoured, whatever the component asks.
    pub max_ttl_ms: u64,
}

impl Default for BucketLimits {
    fn default() -> Self {
        BucketLimits {
            max_buckets: 100_000,
            max_key_bytes: 256,
            max_value_bytes: 256,
            max_ttl_ms: 3_600_000,
        }
    }
}

struct Entry {
    state: Vec<u8>,
    expires_at_ms: u64,
}

/// The shard holding one key, locked for a read-modify-write.
pub struct BucketGuard<'a> {
    shard: MutexGuard<'a, HashMap<String, Entry>>,
    key: String,
    limits: BucketLimits,
    per_shard_cap: usize,
}

impl BucketGuard<'_> {
    /// The stored state, unless absent or expired at `now_ms`.
    pub fn get(&self, now_ms: u64) -> Option<&[u8]> {
        self.shard
            .get(&self.key)
            .filter(|e| e.expires_at_ms > now_ms)
            .map(|e| e.state.as_slice())
    }

    /// Store `state` for `ttl_ms` (capped). Oversized state is refused (returns false).
    pub fn set(mut self, state: Vec<u8>, ttl_ms: u64, now_ms: u64) -> bool {
        if state.len() > self.limits.max_value_bytes {
            return false;
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms.min(self.limits.max_ttl_ms));
        if !self.shard.contains_key(&self.key) && self.shard.len() >= self.per_shard_cap {
            make_room(&mut self.shard, now_ms);
        }
        self.shard.insert(
            std::mem::take(&mut self.key),
            Entry {
                state,
                expires_at_ms,
            },
        );
        true
    }
}

fn make_room(shard: &mut HashMap<String, Entry>, now_ms: u64) {
    let before = shard.len();
    shard.retain(|_, e| e.expires_at_ms > now_ms);
    if shard.len() < before {
        return;
    }
    if let Some(key) = shard
        .iter()
        .min_by_key(|(_, e)| e.expires_at_ms)
        .map(|(k, _)| k.clone())
    {
        shard.remove(&key);
        metrics::counter!("gateway_rate_buckets_evicted_total").increment(1);
    }
}

/// Bucket state for the rate limiter.
pub struct BucketStore {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: RandomState,
    limits: BucketLimits,
}

/// A key over the size limit.
#[derive(Debug, thiserror::Error)]
#[error("bucket key of {0} bytes exceeds the limit")]
pub struct KeyTooLong(pub usize);

impl BucketStore {
    /// An empty store.
    pub fn new(limits: BucketLimits) -> BucketStore {
        BucketStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            limits,
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &BucketLimits {
        &self.limits
    }

    /// Lock the shard of `key` for one read-modify-write.
    pub fn lock(&self, key: String) -> Result<BucketGuard<'_>, KeyTooLong> {
        if key.len() > self.limits.max_key_bytes {
            return Err(KeyTooLong(key.len()));
        }
        let shard = &self.shards[self.hasher.hash_one(&key) as usize % SHARDS];
        Ok(BucketGuard {
            shard: shard.lock(),
            key,
            limits: self.limits,
            per_shard_cap: self.limits.max_buckets.div_ceil(SHARDS),
        })
    }

    /// Drop every expired bucket (called periodically).
    pub fn sweep(&self, now_ms: u64) {
        for shard in &self.shards {
            shard.lock().retain(|_, e| e.expires_at_ms > now_ms);
        }
    }
}
