//! The four slots together, with typed calls that apply each slot's failure policy.
//!
//! Callers get an answer from every call: the component's verdict, or when the component
//! failed, the slot's failure policy (fail-open or fail-closed), flagged as a fallback.
//! The rate limiter's buckets live here, beside the slots, not in any component version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::bindings::types::{
    Command, Event, EventMeta, FieldError, LimitVerdict, RateRequest, Route, VoiceVerdict,
};
use super::buckets::{BucketLimits, BucketStore};
use super::defaults::default_component;
use super::executor::{ExecutorStopped, PolicyExecutor};
use super::limits::RuntimeLimits;
use super::runtime::PolicyRuntime;
use super::slot::{PolicySlot, SlotInfo, SlotSettings};
use super::slot_kind::{FailurePolicy, SlotKind};
use super::version::{CallFailure, ComponentVersion, LoadError, WorldInstance};

/// Retry-after reported when the limiter fails closed.
const FAIL_CLOSED_RETRY_MS: u64 = 1_000;

/// Where the router sent an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// Nobody gets it.
    Drop,
    /// These topics get it, with this payload replacement if any.
    Deliver {
        topics: Vec<String>,
        payload: Option<String>,
    },
}

/// The rate limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOutcome {
    /// Allowed; tokens left.
    Allow { remaining: u32 },
    /// Refused; retry after this many milliseconds.
    Deny { retry_after_ms: u64 },
}

/// The validator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The command to queue (possibly normalised).
    Valid(Command),
    /// Every rule the command broke.
    Invalid(Vec<FieldError>),
    /// The validator failed and the slot fails closed: the command cannot be checked now.
    Unavailable,
}

/// The voice filter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceDecision {
    /// Not for the legacy voice clients.
    Reject,
    /// Relay to this guild's legacy clients.
    Relay(String),
}

/// A verdict plus whether it came from the failure policy instead of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<T> {
    pub value: T,
    /// `Some(reason)` when the component failed and the failure policy answered.
    pub fallback: Option<CallFailure>,
}

impl<T> Verdict<T> {
    fn component(value: T) -> Verdict<T> {
        Verdict {
            value,
            fallback: None,
        }
    }

    fn fallback(value: T, failure: CallFailure) -> Verdict<T> {
        Verdict {
            value,
            fallback: Some(failure),
        }
    }
}

/// All four slots, the bucket store and the call threads.
pub struct Policies {
    slots: HashMap<SlotKind, PolicySlot>,
    buckets: BucketStore,
    executor: PolicyExecutor,
    clock: Instant,
}

/// Settings for [`Policies::new`].
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {
    pub limits: RuntimeLimits,
    pub buckets: BucketLimits,
    /// Per-slot settings; slots not listed get [`SlotSettings::defaults`].
    pub slots: HashMap<SlotKind, SlotSettings>,
}

/// A slot's initial component failed to load.
#[derive(Debug, thiserror::Error)]
#[error("initial {slot} component: {source}")]
pub struct StartError {
    pub slot: SlotKind,
    #[source]
    pub source: LoadError,
}

impl Policies {
    /// Start the runtime and load the embedded default component into every slot.
    pub fn with_defaults(settings: PolicySettings) -> anyhow::Result<Policies> {
        Self::with_components(settings, |kind| default_component(kind).to_vec())
    }

    /// Start the runtime with `initial(kind)` as each slot's first component.
    pub fn with_components(
        settings: PolicySettings,
        initial: impl Fn(SlotKind) -> Vec<u8>,
    ) -> anyhow::Result<Policies> {
        let runtime = PolicyRuntime::new(settings.limits.clone())?;
        let executor = PolicyExecutor::new(settings.limits.executor_threads)?;
        let mut slots = HashMap::new();
        for kind in SlotKind::ALL {
            let slot_settings = settings
                .slots
                .get(&kind)
                .cloned()
                .unwrap_or_else(|| SlotSettings::defaults(kind));
            let version = ComponentVersion::load(
                &runtime,
                kind,
                &initial(kind),
                slot_settings.config.clone(),
                "default",
            )
            .map_err(|source| StartError { slot: kind, source })?;
            slots.insert(
                kind,
                PolicySlot::new(runtime.clone(), slot_settings, version),
            );
        }
        Ok(Policies {
            slots,
            buckets: BucketStore::new(settings.buckets),
            executor,
            clock: Instant::now(),
        })
    }

    /// The slot `kind`.
    pub fn slot(&self, kind: SlotKind) -> &PolicySlot {
        // Every kind is inserted by the constructors.
        &self.slots[&kind]
    }

    /// Operators' view of every slot, in [`SlotKind::ALL`] order.
    pub fn infos(&self) -> Vec<SlotInfo> {
        SlotKind::ALL.iter().map(|k| self.slot(*k).info()).collect()
    }

    /// The host's monotonic clock handed to the limiter, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Evict expired buckets.
    pub fn sweep_buckets(&self) {
        self.buckets.sweep(self.now_ms());
    }

    /// Route one event (blocking; from async code use [`Policies::run`]).
    pub fn route(&self, event: &Event) -> Verdict<RouteDecision> {
        let slot = self.slot(SlotKind::EventRouter);
        let result = slot.current().call(|store, instance| match instance {
            WorldInstance::Router(r) => r.call_route(store, event),
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        });
        match result {
            Ok(Route::Drop) => Verdict::component(RouteDecision::Drop),
            Ok(Route::Deliver(d)) => Verdict::component(RouteDecision::Deliver {
                topics: d.topics,
                payload: d.payload,
            }),
            Err(failure) => Verdict::fallback(
                match slot.failure_policy() {
                    FailurePolicy::FailOpen => RouteDecision::Deliver {
                        topics: default_topics(&event.meta),
                        payload: None,
                    },
                    FailurePolicy::FailClosed => RouteDecision::Drop,
                },
                failure,
            ),
        }
    }

    /// Rate-limit one command now.
    pub fn check_rate(&self, request: &RateRequest) -> Verdict<LimitOutcome> {
        self.check_rate_at(request, self.now_ms())
    }

    /// Rate-limit one command at host time `now_ms` (tests drive time through this).
    pub fn check_rate_at(&self, request: &RateRequest, now_ms: u64) -> Verdict<LimitOutcome> {
        let slot = self.slot(SlotKind::RateLimiter);
        let result = slot.current().call(|store, instance| {
            let WorldInstance::Limiter(limiter) = instance else {
                return Err(wasmtime::format_err!(
                    "slot holds a component of another world"
                ));
            };
            let key = limiter.call_bucket_key(&mut *store, request)?;
            let bucket = self
                .buckets
                .lock(key)
                .map_err(|e| wasmtime::format_err!("{e}"))?;
            let decision = limiter.call_check(store, request, now_ms, bucket.get(now_ms))?;
            if !bucket.set(decision.state, decision.ttl_ms, now_ms) {
                return Err(wasmtime::format_err!("bucket state exceeds the size limit"));
            }
            Ok(decision.verdict)
        });
        match result {
            Ok(LimitVerdict::Allow(remaining)) => {
                Verdict::component(LimitOutcome::Allow { remaining })
            }
            Ok(LimitVerdict::Deny(ms)) => {
                Verdict::component(LimitOutcome::Deny { retry_after_ms: ms })
            }
            Err(failure) => Verdict::fallback(
                match slot.failure_policy() {
                    FailurePolicy::FailOpen => LimitOutcome::Allow { remaining: 0 },
                    FailurePolicy::FailClosed => LimitOutcome::Deny {
                        retry_after_ms: FAIL_CLOSED_RETRY_MS,
                    },
                },
                failure,
            ),
        }
    }

    /// Validate one command sent by `user_id`.
    pub fn validate(&self, user_id: &str, command: &Command) -> Verdict<Validation> {
        let slot = self.slot(SlotKind::CommandValidator);
        let result = slot.current().call(|store, instance| match instance {
            WorldInstance::Validator(v) => v.call_validate(store, user_id, command),
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        });
        match result {
            Ok(Ok(normalized)) => Verdict::component(Validation::Valid(normalized)),
            Ok(Err(errors)) => Verdict::component(Validation::Invalid(errors)),
            Err(failure) => Verdict::fallback(
                match slot.failure_policy() {
                    FailurePolicy::FailOpen => Validation::Valid(command.clone()),
                    FailurePolicy::FailClosed => Validation::Unavailable,
                },
                failure,
            ),
        }
    }

    /// Decide whether the legacy voice clients get `event`.
    pub fn filter_voice(&self, event: &Event) -> Verdict<VoiceDecision> {
        let slot = self.slot(SlotKind::VoiceFilter);
        let result = slot.current().call(|store, instance| match instance {
            WorldInstance::Voice(v) => v.call_filter(store, event),
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        });
        match result {
            Ok(VoiceVerdict::Reject) => Verdict::component(VoiceDecision::Reject),
            Ok(VoiceVerdict::Relay(guild)) => Verdict::component(VoiceDecision::Relay(guild)),
            Err(failure) => Verdict::fallback(
                match (slot.failure_policy(), &event.meta.guild_id) {
                    (FailurePolicy::FailOpen, Some(guild)) => VoiceDecision::Relay(guild.clone()),
                    _ => VoiceDecision::Reject,
                },
                failure,
            ),
        }
    }

    /// Run `f` with these policies on a call thread (use this from async code).
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Policies) -> R + Send + 'static,
    ) -> Result<R, ExecutorStopped> {
        let policies = self.clone();
        self.executor.run(move || f(&policies)).await
    }

    /// Load `bytes` into `kind` off the async runtime (compilation takes a while).
    pub async fn load(
        self: &Arc<Self>,
        kind: SlotKind,
        bytes: Vec<u8>,
        source: String,
    ) -> Result<super::VersionInfo, LoadError> {
        let policies = self.clone();
        tokio::task::spawn_blocking(move || policies.slot(kind).load(&bytes, &source))
            .await
            .unwrap_or_else(|e| Err(LoadError::Instantiate(format!("load task failed: {e}"))))
    }
}

/// The router's failure-policy topics: the same rules as the default router.
pub fn default_topics(meta: &EventMeta) -> Vec<String> {
    let mut topics = Vec::with_capacity(3);
    if let Some(guild) = &meta.guild_id {
        topics.push(format!("guild:{guild}"));
    }
    if let Some(channel) = &meta.channel_id {
        topics.push(format!("channel:{channel}"));
    }
    if let Some(guild) = &meta.guild_id
        && matches!(
            meta.name.as_str(),
            "VOICE_STATE_UPDATE" | "VOICE_SERVER_UPDATE"
        )
    {
        topics.push(format!("voice:{guild}"));
    }
    if topics.is_empty() {
        topics.push("global".to_string());
    }
    topics
}
