//! The four slots together, with typed calls that apply each slot's failure policy.
//!
//! Callers get an answer from every call: the component's verdict, or when the component
//! failed, its answer was over a bound (see [`super::bounds`]), the slot's breaker is open,
//! or an async caller's deadline passed, the slot's failure policy (fail-open,
//! fail-closed, or fail-previous: the slot's previous version answers, else fail-closed),
//! flagged as a fallback. The rate limiter's buckets live here, beside the slots, not in
//! any component version.
//!
//! Each slot's starting component is chosen here too ([`Policies::start`]): the components
//! directory's `<slot>.wasm` when there is one, else the embedded default, with the
//! configuration [`resolve_config`] gives it.
//!
//! Async callers use the `*_async` methods and [`Policies::route_events`]: they never wait
//! on a call thread longer than [`RuntimeLimits::caller_deadline`] for the calls involved,
//! then the failure policy answers (counted in
//! `gateway_component_caller_timeouts_total{slot}`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::Store;

use super::bindings::types::{
    Command, Event, EventMeta, FieldError, LimitVerdict, RateRequest, Route, VoiceVerdict,
};
use super::bounds::OutputBound;
use super::breaker::BreakerSettings;
use super::buckets::{BucketLimits, BucketStore};
use super::component_config::{ComponentConfig, ConfigSource, resolve_config};
use super::defaults::default_component;
use super::executor::{ExecutorStopped, PolicyExecutor, RunError};
use super::limits::RuntimeLimits;
use super::runtime::PolicyRuntime;
use super::slot::{PolicySlot, SlotInfo, SlotSettings};
use super::slot_kind::{FailurePolicy, SlotKind};
use super::store_data::StoreData;
use super::version::{CallFailure, ComponentVersion, LoadError, WorldInstance};
use super::watch::{ReadError, read_component_file};

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
    /// `Some(reason)` when the live component failed and the failure policy answered.
    pub fallback: Option<CallFailure>,
    /// The answer came from the slot's previous version (`fail-previous`).
    pub by_previous: bool,
}

impl<T> Verdict<T> {
    fn component(value: T) -> Verdict<T> {
        Verdict {
            value,
            fallback: None,
            by_previous: false,
        }
    }

    fn fallback(value: T, failure: CallFailure) -> Verdict<T> {
        Verdict {
            value,
            fallback: Some(failure),
            by_previous: false,
        }
    }

    fn previous(value: T, failure: CallFailure) -> Verdict<T> {
        Verdict {
            value,
            fallback: Some(failure),
            by_previous: true,
        }
    }

    /// How the fallback was answered, for logs and metrics: `component` (no fallback),
    /// `previous`, or the failure policy's own answer.
    pub fn answered_by(&self) -> &'static str {
        match (self.fallback, self.by_previous) {
            (None, _) => "component",
            (Some(_), true) => "previous",
            (Some(_), false) => "failure-policy",
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

/// A slot's first component: its bytes, where they came from, and its configuration.
struct StartingComponent {
    bytes: Vec<u8>,
    source: String,
    config: ComponentConfig,
}

fn resolve_source(keys: &[(String, String)]) -> ConfigSource {
    if keys.is_empty() {
        ConfigSource::Default
    } else {
        ConfigSource::ConfigFile
    }
}

/// A slot's initial component failed to load. Displayed without its source (shown by
/// `{:#}` as the next link of the chain): `component file <path>: refused for slot <slot>`
/// for a components-directory file, `initial <slot> component (default)` otherwise.
#[derive(Debug, thiserror::Error)]
pub struct StartError {
    pub slot: SlotKind,
    /// Where it came from (`default` or `file:<path>`).
    pub origin: String,
    #[source]
    pub source: LoadError,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.origin.strip_prefix("file:") {
            Some(path) => write!(f, "component file {path}: refused for slot {}", self.slot),
            None => write!(f, "initial {} component ({})", self.slot, self.origin),
        }
    }
}

impl Policies {
    /// Start the runtime and load the embedded default component into every slot, each
    /// with its config file keys.
    pub fn with_defaults(settings: PolicySettings) -> anyhow::Result<Policies> {
        Self::start(settings, None, 0)
    }

    /// Start the runtime with `initial(kind)` as each slot's first component, configured
    /// with the slot's config file keys.
    pub fn with_components(
        settings: PolicySettings,
        initial: impl Fn(SlotKind) -> Vec<u8>,
    ) -> anyhow::Result<Policies> {
        Self::with_starting(settings, |kind, keys| {
            Ok(StartingComponent {
                bytes: initial(kind),
                source: "default".into(),
                config: ComponentConfig::new(keys.to_vec(), resolve_source(keys)),
            })
        })
    }

    /// Start the runtime with each slot's starting component: `<slot>.wasm` from
    /// `components_dir` when present (with its `<slot>.toml`, else the slot's config file
    /// keys; see [`resolve_config`]), else the embedded default with the config file keys.
    /// So the config file's keys go to the component they were written for, and what runs
    /// after a start is what the directory says. A refused file is an error naming it.
    pub fn start(
        settings: PolicySettings,
        components_dir: Option<&Path>,
        max_bytes: usize,
    ) -> anyhow::Result<Policies> {
        Self::with_starting(settings, |kind, keys| {
            if let Some(dir) = components_dir {
                let wasm = dir.join(format!("{kind}.wasm"));
                match read_component_file(&wasm, max_bytes) {
                    Ok(bytes) => {
                        let config = resolve_config(Some(&wasm), None, keys).map_err(|e| {
                            anyhow::anyhow!("component file {}: {e}", wasm.display())
                        })?;
                        return Ok(StartingComponent {
                            bytes,
                            source: format!("file:{}", wasm.display()),
                            config,
                        });
                    }
                    Err(ReadError::Gone) => {}
                    Err(ReadError::Refused(reason)) => {
                        anyhow::bail!("component file {}: {reason}", wasm.display())
                    }
                }
            }
            let config = resolve_config(None, None, keys).map_err(anyhow::Error::msg)?;
            Ok(StartingComponent {
                bytes: default_component(kind).to_vec(),
                source: "default".into(),
                config,
            })
        })
    }

    fn with_starting(
        settings: PolicySettings,
        initial: impl Fn(SlotKind, &[(String, String)]) -> anyhow::Result<StartingComponent>,
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
            let start = initial(kind, &slot_settings.config)?;
            let origin = start.source.clone();
            let version =
                ComponentVersion::load(&runtime, kind, &start.bytes, start.config, start.source)
                    .map_err(|source| StartError {
                        slot: kind,
                        origin,
                        source,
                    })?;
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
        let call = self.route_call(event);
        match self.slot(SlotKind::EventRouter).call(&call) {
            Ok(route) => Verdict::component(route_decision(route)),
            Err(failure) => match self.ask_previous(SlotKind::EventRouter, failure, &call) {
                Some(route) => Verdict::previous(route_decision(route), failure),
                None => self.route_fallback(&event.meta, failure),
            },
        }
    }

    fn route_call<'a>(
        &'a self,
        event: &'a Event,
    ) -> impl Fn(&mut Store<StoreData>, &WorldInstance) -> wasmtime::Result<Route> + 'a {
        let limits = &self.limits;
        move |store, instance| match instance {
            WorldInstance::Router(r) => {
                let route = r.call_route(store, event)?;
                limits.check_route(&route)?;
                // A replacement that is not JSON is a failed call (the failure policy
                // answers), never a reason to send the original payload.
                if let Route::Deliver(d) = &route
                    && let Some(payload) = &d.payload
                    && serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err()
                {
                    return Err(wasmtime::format_err!(
                        "the router's replacement payload is not JSON"
                    ));
                }
                Ok(route)
            }
            _ => Err(wasmtime::format_err!(
                "slot holds a component of another world"
            )),
        }
    }

    /// The failure policy's own answer (`fail-previous` falls back to fail-closed here:
    /// the previous version was asked already, or could not be).
    fn route_fallback(&self, meta: &EventMeta, failure: CallFailure) -> Verdict<RouteDecision> {
        let policy = self.slot(SlotKind::EventRouter).failure_policy();
        let value = match policy {
            FailurePolicy::FailOpen => RouteDecision::Deliver {
                topics: default_topics(meta),
                payload: None,
            },
            FailurePolicy::FailClosed | FailurePolicy::FailPrevious => RouteDecision::Drop,
        };
        count_fallback(SlotKind::EventRouter, policy, failure);
        Verdict::fallback(value, failure)
    }

    /// Under `fail-previous`, ask the slot's previous version to answer a call the live
    /// version failed (no breaker: the previous version is not the one that tripped it).
    /// `None` when the policy is another, there is no previous version, or it failed too.
    fn ask_previous<R>(
        &self,
        kind: SlotKind,
        failure: CallFailure,
        call: &impl Fn(&mut Store<StoreData>, &WorldInstance) -> wasmtime::Result<R>,
    ) -> Option<R> {
        let slot = self.slot(kind);
        if slot.failure_policy() != FailurePolicy::FailPrevious {
            return None;
        }
        let Some(previous) = slot.previous() else {
            tracing::debug!(slot = %kind, reason = failure.as_str(), "fail-previous: no previous version; failing closed");
            return None;
        };
        match previous.call(call) {
            Ok(answer) => {
                metrics::counter!("gateway_component_fallback_answers_total", "slot" => kind.as_str(), "answer" => "previous", "reason" => failure.as_str())
                    .increment(1);
                tracing::debug!(slot = %kind, reason = failure.as_str(), previous = %&previous.sha256()[..12], "fail-previous: the previous version answered");
                Some(answer)
            }
            Err(again) => {
                tracing::warn!(slot = %kind, reason = failure.as_str(), previous_reason = again.as_str(), previous = %&previous.sha256()[..12], "fail-previous: the previous version failed too; failing closed");
                None
            }
        }
    }

    /// From async code, after the caller gave up on the live version: ask the previous
    /// version on a call thread, within one more caller deadline.
    async fn ask_previous_async<R: Send + 'static>(
        self: &Arc<Self>,
        kind: SlotKind,
        calls: u64,
        ask: impl FnOnce(&Policies) -> Option<R> + Send + 'static,
    ) -> Option<R> {
        let slot = self.slot(kind);
        if slot.failure_policy() != FailurePolicy::FailPrevious || slot.previous().is_none() {
            return None;
        }
        let policies = self.clone();
        self.executor
            .run_within(self.limits.caller_deadline(calls), move || ask(&policies))
            .await
            .ok()
            .flatten()
    }

    /// Rate-limit one command now.
    pub fn check_rate(&self, request: &RateRequest) -> Verdict<LimitOutcome> {
        self.check_rate_at(request, self.now_ms())
    }

    /// Rate-limit one command at host time `now_ms` (tests drive time through this).
    pub fn check_rate_at(&self, request: &RateRequest, now_ms: u64) -> Verdict<LimitOutcome> {
        let call = self.rate_call(request, now_ms);
        match self.slot(SlotKind::RateLimiter).call(&call) {
            Ok(verdict) => Verdict::component(limit_outcome(verdict)),
            Err(failure) => match self.ask_previous(SlotKind::RateLimiter, failure, &call) {
                Some(verdict) => Verdict::previous(limit_outcome(verdict), failure),
                None => self.rate_fallback(failure),
            },
        }
    }

    fn rate_call<'a>(
        &'a self,
        request: &'a RateRequest,
        now_ms: u64,
    ) -> impl Fn(&mut Store<StoreData>, &WorldInstance) -> wasmtime::Result<LimitVerdict> + 'a {
        move |store, instance| {
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
        }
    }

    fn rate_fallback(&self, failure: CallFailure) -> Verdict<LimitOutcome> {
        let policy = self.slot(SlotKind::RateLimiter).failure_policy();
        let value = match policy {
            FailurePolicy::FailOpen => LimitOutcome::Allow { remaining: 0 },
            FailurePolicy::FailClosed | FailurePolicy::FailPrevious => LimitOutcome::Deny {
                retry_after_ms: FAIL_CLOSED_RETRY_MS,
            },
        };
        count_fallback(SlotKind::RateLimiter, policy, failure);
        Verdict::fallback(value, failure)
    }

    /// Validate one command sent by `user_id`.
    pub fn validate(&self, user_id: &str, command: &Command) -> Verdict<Validation> {
        let call = self.validate_call(user_id, command);
        match self.slot(SlotKind::CommandValidator).call(&call) {
            Ok(verdict) => Verdict::component(validation(verdict)),
            Err(failure) => match self.ask_previous(SlotKind::CommandValidator, failure, &call) {
                Some(verdict) => Verdict::previous(validation(verdict), failure),
                None => self.validate_fallback(command, failure),
            },
        }
    }

    #[allow(clippy::type_complexity)]
    fn validate_call<'a>(
        &'a self,
        user_id: &'a str,
        command: &'a Command,
    ) -> impl Fn(
        &mut Store<StoreData>,
        &WorldInstance,
    ) -> wasmtime::Result<Result<Command, Vec<FieldError>>>
    + 'a {
        let limits = &self.limits;
        move |store, instance| match instance {
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
        }
    }

    fn validate_fallback(&self, command: &Command, failure: CallFailure) -> Verdict<Validation> {
        let policy = self.slot(SlotKind::CommandValidator).failure_policy();
        let value = match policy {
            FailurePolicy::FailOpen => Validation::Valid(command.clone()),
            FailurePolicy::FailClosed | FailurePolicy::FailPrevious => Validation::Unavailable,
        };
        count_fallback(SlotKind::CommandValidator, policy, failure);
        Verdict::fallback(value, failure)
    }

    /// Decide whether the legacy voice clients get `event`.
    pub fn filter_voice(&self, event: &Event) -> Verdict<VoiceDecision> {
        let call = self.voice_call(event);
        match self.slot(SlotKind::VoiceFilter).call(&call) {
            Ok(verdict) => Verdict::component(voice_decision(verdict)),
            Err(failure) => match self.ask_previous(SlotKind::VoiceFilter, failure, &call) {
                Some(verdict) => Verdict::previous(voice_decision(verdict), failure),
                None => self.voice_fallback(event, failure),
            },
        }
    }

    fn voice_call<'a>(
        &'a self,
        event: &'a Event,
    ) -> impl Fn(&mut Store<StoreData>, &WorldInstance) -> wasmtime::Result<VoiceVerdict> + 'a {
        let limits = &self.limits;
        move |store, instance| match instance {
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
        }
    }

    fn voice_fallback(&self, event: &Event, failure: CallFailure) -> Verdict<VoiceDecision> {
        let policy = self.slot(SlotKind::VoiceFilter).failure_policy();
        let value = match (policy, &event.meta.guild_id) {
            (FailurePolicy::FailOpen, Some(guild)) => VoiceDecision::Relay(guild.clone()),
            _ => VoiceDecision::Reject,
        };
        count_fallback(SlotKind::VoiceFilter, policy, failure);
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
        for index in from + decided.len()..upto {
            let thread_events = events.clone();
            let answer = self
                .ask_previous_async(SlotKind::EventRouter, 1, move |p| {
                    let event = &thread_events[index];
                    p.ask_previous(SlotKind::EventRouter, failure, &p.route_call(event))
                })
                .await;
            decided.push(match answer {
                Some(route) => Verdict::previous(route_decision(route), failure),
                None => self.route_fallback(&events[index].meta, failure),
            });
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
        let user_for_previous = user_id.clone();
        let run = self
            .executor
            .run_within(self.limits.caller_deadline(1), move || {
                policies.validate(&user_id, &sent)
            })
            .await;
        let e = match run {
            Ok(verdict) => return verdict,
            Err(e) => e,
        };
        self.note_run_error(SlotKind::CommandValidator, e);
        let failure = CallFailure::Abandoned;
        let (user, sent) = (user_for_previous, command.clone());
        let answer = self
            .ask_previous_async(SlotKind::CommandValidator, 1, move |p| {
                p.ask_previous(
                    SlotKind::CommandValidator,
                    failure,
                    &p.validate_call(&user, &sent),
                )
            })
            .await;
        match answer {
            Some(verdict) => Verdict::previous(validation(verdict), failure),
            None => self.validate_fallback(&command, failure),
        }
    }

    /// Rate-limit one command from async code (two calls: `bucket-key` and `check`).
    pub async fn check_rate_async(self: &Arc<Self>, request: RateRequest) -> Verdict<LimitOutcome> {
        let policies = self.clone();
        let sent = request.clone();
        let run = self
            .executor
            .run_within(self.limits.caller_deadline(2), move || {
                policies.check_rate(&sent)
            })
            .await;
        let e = match run {
            Ok(verdict) => return verdict,
            Err(e) => e,
        };
        self.note_run_error(SlotKind::RateLimiter, e);
        let failure = CallFailure::Abandoned;
        let answer = self
            .ask_previous_async(SlotKind::RateLimiter, 2, move |p| {
                let call = p.rate_call(&request, p.now_ms());
                p.ask_previous(SlotKind::RateLimiter, failure, &call)
            })
            .await;
        match answer {
            Some(verdict) => Verdict::previous(limit_outcome(verdict), failure),
            None => self.rate_fallback(failure),
        }
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
        let e = match run {
            Ok(verdict) => return verdict,
            Err(e) => e,
        };
        self.note_run_error(SlotKind::VoiceFilter, e);
        let failure = CallFailure::Abandoned;
        let sent = event.clone();
        let answer = self
            .ask_previous_async(SlotKind::VoiceFilter, 1, move |p| {
                p.ask_previous(SlotKind::VoiceFilter, failure, &p.voice_call(&sent))
            })
            .await;
        match answer {
            Some(verdict) => Verdict::previous(voice_decision(verdict), failure),
            None => self.voice_fallback(&event, failure),
        }
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

    /// Load `bytes` with `config` into `kind` off the async runtime (compilation takes a
    /// while); `init` checks the configuration before anything is swapped.
    pub async fn load(
        self: &Arc<Self>,
        kind: SlotKind,
        bytes: Vec<u8>,
        source: String,
        config: ComponentConfig,
    ) -> Result<super::VersionInfo, LoadError> {
        let policies = self.clone();
        tokio::task::spawn_blocking(move || policies.slot(kind).load(&bytes, &source, config))
            .await
            .unwrap_or_else(|e| Err(LoadError::Instantiate(format!("load task failed: {e}"))))
    }
}

fn route_decision(route: Route) -> RouteDecision {
    match route {
        Route::Drop => RouteDecision::Drop,
        Route::Deliver(d) => RouteDecision::Deliver {
            topics: d.topics,
            payload: d.payload,
        },
    }
}

fn limit_outcome(verdict: LimitVerdict) -> LimitOutcome {
    match verdict {
        LimitVerdict::Allow(remaining) => LimitOutcome::Allow { remaining },
        LimitVerdict::Deny(ms) => LimitOutcome::Deny { retry_after_ms: ms },
    }
}

fn validation(verdict: Result<Command, Vec<FieldError>>) -> Validation {
    match verdict {
        Ok(normalized) => Validation::Valid(normalized),
        Err(errors) => Validation::Invalid(errors),
    }
}

fn voice_decision(verdict: VoiceVerdict) -> VoiceDecision {
    match verdict {
        VoiceVerdict::Reject => VoiceDecision::Reject,
        VoiceVerdict::Relay(guild) => VoiceDecision::Relay(guild),
    }
}

/// Count a failure policy's own answer (`answer` is the policy that gave it; a
/// `fail-previous` slot that got here failed closed).
fn count_fallback(kind: SlotKind, policy: FailurePolicy, failure: CallFailure) {
    let answer = match policy {
        FailurePolicy::FailOpen => "fail-open",
        FailurePolicy::FailClosed | FailurePolicy::FailPrevious => "fail-closed",
    };
    metrics::counter!("gateway_component_fallback_answers_total", "slot" => kind.as_str(), "answer" => answer, "reason" => failure.as_str())
        .increment(1);
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
