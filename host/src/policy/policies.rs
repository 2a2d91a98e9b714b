//! The four slots together, with typed calls that apply each slot's failure policy.
//!
//! Callers get an answer from every call: the component's verdict, or when the component
//! failed, its answer was over a bound (see [`super::bounds`]), the slot's breaker is open,
//! or an async caller's deadline passed, the slot's failure policy (fail-open or
//! fail-closed), flagged as a fallback. The rate limiter's buckets live here, beside the
//! slots, not in any component version.
//!
//! Async callers use the `*_async` methods and [`Policies::route_events`]: they never wait
//! on a call thread longer than [`RuntimeLimits::caller_deadline`] for the calls involved,
//! then the failure policy answers (counted in
//! `gateway_component_caller_timeouts_total{slot}`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::bindings::types::{
    Command, Event, EventMeta, FieldError, LimitVerdict, RateRequest, Route, VoiceVerdict,
};
use super::bounds::OutputBound;
use super::breaker::BreakerSettings;
use super::buckets::{BucketLimits, BucketStore};
use super::defaults::default_component;
use super::executor::{ExecutorStopped, PolicyExecutor, RunError};
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
    limits: RuntimeLimits,
    clock: Instant,
}

/// Settings for [`Policies::new`].
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {
    pub limits: RuntimeLimits,
    pub buckets: BucketLimits,
    /// Every slot's circuit breaker.
    pub breaker: BreakerSettings,
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
        let executor = PolicyExecutor::new(
            settings.limits.executor_threads,
            settings.limits.max_abandoned_threads,
        )?;
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
                PolicySlot::new(
                    runtime.clone(),
                    slot_settings,
                    settings.breaker.clone(),
                    version,
                ),
            );
        }
        Ok(Policies {
            slots,
            buckets: BucketStore::new(settings.buckets),
            executor,
            limits: settings.limits,
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

    /// Route one event (blocking; from async code use [`Policies::route_events`]).
    pub fn route(&self, event: &Event) -> Verdict<RouteDecision> {
        let slot = self.slot(SlotKind::EventRouter);
        let limits = &self.limits;
        let result = slot.call(|store, instance| match instance {
            WorldInstance::Router(r) => {
                let route = r.call_route(store, event)?;
                limits.check_route(&route)?;
                Ok(route)
            }
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
            Err(failure) => self.route_fallback(&event.meta, failure),
        }
    }

    fn route_fallback(&self, meta: &EventMeta, failure: CallFailure) -> Verdict<RouteDecision> {
        let value = match self.slot(SlotKind::EventRouter).failure_policy() {
            FailurePolicy::FailOpen => RouteDecision::Deliver {
                topics: default_topics(meta),
                payload: None,
            },
            FailurePolicy::FailClosed => RouteDecision::Drop,
        };
        Verdict::fallback(value, failure)
    }

    /// Rate-limit one command now.
    pub fn check_rate(&self, request: &RateRequest) -> Verdict<LimitOutcome> {
        self.check_rate_at(request, self.now_ms())
    }

    /// Rate-limit one command at host time `now_ms` (tests drive time through this).
    pub fn check_rate_at(&self, request: &RateRequest, now_ms: u64) -> Verdict<LimitOutcome> {
        let slot = self.slot(SlotKind::RateLimiter);
        let result = slot.call(|store, instance| {
            let WorldInstance::Limiter(limiter) = instance else {
                return Err(wasmtime::format_err!(
                    "slot holds a component of another world"
                ));
            };
            let key = limiter.call_bucket_key(&mut *store, request)?;
            let key_len = key.len();
            let bucket = self.buckets.lock(key).map_err(|_| OutputBound {
                what: "the bucket key's length",
                actual: key_len,
                limit: self.buckets.limits().max_key_bytes,
            })?;
            let decision = limiter.call_check(store, request, now_ms, bucket.get(now_ms))?;
            let state_len = decision.state.len();
            if !bucket.set(decision.state, decision.ttl_ms, now_ms) {
                return Err(OutputBound {
                    what: "the bucket state's size",
                    actual: state_len,
                    limit: self.buckets.limits().max_value_bytes,
                }
                .into());
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
            Err(failure) => self.rate_fallback(failure),
        }
    }

    fn rate_fallback(&self, failure: CallFailure) -> Verdict<LimitOutcome> {
        let value = match self.slot(SlotKind::RateLimiter).failure_policy() {
            FailurePolicy::FailOpen => LimitOutcome::Allow { remaining: 0 },
            FailurePolicy::FailClosed => LimitOutcome::Deny {
                retry_after_ms: FAIL_CLOSED_RETRY_MS,
            },
        };
        Verdict::fallback(value, failure)
    }

    /// Validate one command sent by `user_id`.
    pub fn validate(&self, user_id: &str, command: &Command) -> Verdict<Validation> {
        let slot = self.slot(SlotKind::CommandValidator);
        let limits = &self.limits;
        let result = slot.call(|store, instance| match instance {
            WorldInstance::Validator(v) => {
                let verdict = v.call_validate(store, user_id, command)?;
                if let Err(errors) = &verdict {
                    limits.check_field_errors(errors)?;
                }
                Ok(verdict)
            }
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        });
        match result {
            Ok(Ok(normalized)) => Verdict::component(Validation::Valid(normalized)),
            Ok(Err(errors)) => Verdict::component(Validation::Invalid(errors)),
            Err(failure) => self.validate_fallback(command, failure),
        }
    }

    fn validate_fallback(&self, command: &Command, failure: CallFailure) -> Verdict<Validation> {
        let value = match self.slot(SlotKind::CommandValidator).failure_policy() {
            FailurePolicy::FailOpen => Validation::Valid(command.clone()),
            FailurePolicy::FailClosed => Validation::Unavailable,
        };
        Verdict::fallback(value, failure)
    }

    /// Decide whether the legacy voice clients get `event`.
    pub fn filter_voice(&self, event: &Event) -> Verdict<VoiceDecision> {
        let slot = self.slot(SlotKind::VoiceFilter);
        let limits = &self.limits;
        let result = slot.call(|store, instance| match instance {
            WorldInstance::Voice(v) => {
                let verdict = v.call_filter(store, event)?;
                if let VoiceVerdict::Relay(guild) = &verdict {
                    limits.check_guild_id(guild)?;
                }
                Ok(verdict)
            }
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        });
        match result {
            Ok(VoiceVerdict::Reject) => Verdict::component(VoiceDecision::Reject),
            Ok(VoiceVerdict::Relay(guild)) => Verdict::component(VoiceDecision::Relay(guild)),
            Err(failure) => self.voice_fallback(event, failure),
        }
    }

    fn voice_fallback(&self, event: &Event, failure: CallFailure) -> Verdict<VoiceDecision> {
        let policy = self.slot(SlotKind::VoiceFilter).failure_policy();
        let value = match (policy, &event.meta.guild_id) {
            (FailurePolicy::FailOpen, Some(guild)) => VoiceDecision::Relay(guild.clone()),
            _ => VoiceDecision::Reject,
        };
        Verdict::fallback(value, failure)
    }

    /// Route `events[from..]` from async code, in order, in one hop to a call thread.
    ///
    /// Returns the verdicts of a non-empty prefix (when `from < events.len()`): the call
    /// thread stops after about one call deadline or after a failed call, so one hop
    /// never holds its caller much longer than one deadline; call again for the rest. The
    /// caller waits at most [`RuntimeLimits::caller_deadline`]`(1)` for each verdict (from
    /// the hop's start, then from the previous verdict); past that the event being routed
    /// gets the failure policy's answer (flagged [`CallFailure::Abandoned`]).
    pub async fn route_events(
        self: &Arc<Self>,
        events: Arc<Vec<Event>>,
        from: usize,
    ) -> Vec<Verdict<RouteDecision>> {
        if from >= events.len() {
            return Vec::new();
        }
        let started = Instant::now();
        let progress = Arc::new(Mutex::new(Progress {
            verdicts: Vec::new(),
            last: started,
            abandoned: false,
        }));
        let budget = Duration::from_millis(self.limits.call_timeout_ms);
        let per_verdict = self.limits.caller_deadline(1);
        let (policies, shared, thread_events) = (self.clone(), progress.clone(), events.clone());
        let run = self
            .executor
            .run_until(
                move || route_some(&policies, &thread_events[from..], budget, &shared),
                || progress.lock().last + per_verdict,
            )
            .await;
        let mut decided = {
            let mut p = progress.lock();
            p.abandoned = true;
            std::mem::take(&mut p.verdicts)
        };
        match run {
            Ok(()) if !decided.is_empty() => return decided,
            Err(RunError::TimedOut) => self.caller_gave_up(SlotKind::EventRouter),
            Ok(()) | Err(RunError::Stopped) => {}
        }
        let failure = CallFailure::Abandoned;
        // The event in progress gets the failure policy's answer; the rest go in the next hop.
        let upto = (from + decided.len() + 1).min(events.len());
        for event in &events[from + decided.len()..upto] {
            decided.push(self.route_fallback(&event.meta, failure));
        }
        decided
    }

    /// Validate one command from async code (bounded wait, see [`Policies::route_events`]).
    pub async fn validate_async(
        self: &Arc<Self>,
        user_id: String,
        command: Command,
    ) -> Verdict<Validation> {
        let policies = self.clone();
        let sent = command.clone();
        let run = self
            .executor
            .run_within(self.limits.caller_deadline(1), move || {
                policies.validate(&user_id, &sent)
            })
            .await;
        run.unwrap_or_else(|e| {
            self.note_run_error(SlotKind::CommandValidator, e);
            self.validate_fallback(&command, CallFailure::Abandoned)
        })
    }

    /// Rate-limit one command from async code (two calls: `bucket-key` and `check`).
    pub async fn check_rate_async(self: &Arc<Self>, request: RateRequest) -> Verdict<LimitOutcome> {
        let policies = self.clone();
        let run = self
            .executor
            .run_within(self.limits.caller_deadline(2), move || {
                policies.check_rate(&request)
            })
            .await;
        run.unwrap_or_else(|e| {
            self.note_run_error(SlotKind::RateLimiter, e);
            self.rate_fallback(CallFailure::Abandoned)
        })
    }

    /// Filter one event for the legacy voice clients from async code (bounded wait).
    pub async fn filter_voice_async(self: &Arc<Self>, event: Arc<Event>) -> Verdict<VoiceDecision> {
        let (policies, sent) = (self.clone(), event.clone());
        let run = self
            .executor
            .run_within(self.limits.caller_deadline(1), move || {
                policies.filter_voice(&sent)
            })
            .await;
        run.unwrap_or_else(|e| {
            self.note_run_error(SlotKind::VoiceFilter, e);
            self.voice_fallback(&event, CallFailure::Abandoned)
        })
    }

    fn note_run_error(&self, slot: SlotKind, e: RunError) {
        if e == RunError::TimedOut {
            self.caller_gave_up(slot);
        }
    }

    fn caller_gave_up(&self, slot: SlotKind) {
        tracing::warn!(%slot, deadline_ms = self.limits.call_timeout_ms, "a component call did not answer in time; the failure policy answers");
        metrics::counter!("gateway_component_caller_timeouts_total", "slot" => slot.as_str())
            .increment(1);
    }

    /// The runtime limits every call runs under.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Call threads abandoned while stuck and still running.
    pub fn abandoned_threads(&self) -> usize {
        self.executor.abandoned()
    }

    /// Run `f` with these policies on a call thread and wait for it however long it takes
    /// (benchmarks, tools). Request paths use the bounded `*_async` methods and
    /// [`Policies::route_events`] instead.
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

/// Verdicts a call thread has reached so far in one [`Policies::route_events`] hop.
struct Progress {
    verdicts: Vec<Verdict<RouteDecision>>,
    /// When the last verdict (or the hop) started.
    last: Instant,
    /// The caller stopped waiting: stop routing.
    abandoned: bool,
}

/// Route `events` in order until all are done, one call failed, or `budget` is spent.
fn route_some(policies: &Policies, events: &[Event], budget: Duration, progress: &Mutex<Progress>) {
    let started = Instant::now();
    for event in events {
        let verdict = policies.route(event);
        let failed = matches!(verdict.fallback, Some(f) if f != CallFailure::BreakerOpen);
        let now = Instant::now();
        {
            let mut p = progress.lock();
            if p.abandoned {
                return;
            }
            p.verdicts.push(verdict);
            p.last = now;
        }
        if failed || now.duration_since(started) >= budget {
            return;
        }
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
