//! Running case files against a loaded component, the way the host calls it.
//!
//! Each case goes through [`ComponentVersion::call`] (the host's warm instances, call
//! deadline and memory limit) and the host's bounds on answers. The rate limiter's cases get
//! a fresh [`BucketStore`] each, and every request goes `bucket-key` → stored state →
//! `check` → store, exactly as `Policies::check_rate_at` does, so a limiter that passes its
//! cases here behaves the same once loaded. A call that fails (trap, deadline, memory, an
//! answer over a bound) fails its case; no failure policy answers in its place.

use std::collections::BTreeSet;

use serde_json::Value;

use super::cases::{
    Case, CaseBody, ExpectLimit, ExpectRoute, ExpectValidation, ExpectVoice, command_json,
};
use crate::policy::bounds::OutputBound;
use crate::policy::buckets::{BucketLimits, BucketStore};
use crate::policy::types::{Command, Event, LimitVerdict, RateRequest, Route, VoiceVerdict};
use crate::policy::version::WorldInstance;
use crate::policy::{CallFailure, ComponentVersion, RuntimeLimits};

/// The result of one case: `Ok(())` or what went wrong (`expected …, got …`).
pub type Outcome = Result<(), String>;

/// Run `case` against `version`.
pub fn run_case(version: &ComponentVersion, limits: &RuntimeLimits, case: &Case) -> Outcome {
    match &case.body {
        CaseBody::Router { event, expect } => route(version, limits, event, expect),
        CaseBody::Voice { event, expect } => voice(version, limits, event, expect),
        CaseBody::Validator {
            user_id,
            command,
            expect,
        } => validate(version, limits, user_id, command, expect),
        CaseBody::Limiter { requests, expect } => limit(version, requests, expect),
    }
}

/// What a failed call means, for a case line. A deadline names the budget and the setting
/// that raises it: an author whose component is slow under load should not have to guess.
fn failed(version: &ComponentVersion, failure: CallFailure) -> String {
    match failure {
        CallFailure::Deadline => format!(
            "the call failed (deadline: no answer within {} ms; [policy.limits] call-timeout-ms in --config raises it)",
            version.call_timeout_ms()
        ),
        other => format!("the call failed ({})", other.as_str()),
    }
}

fn wrong_world() -> wasmtime::Error {
    wasmtime::format_err!("component of another world")
}

fn route(
    version: &ComponentVersion,
    limits: &RuntimeLimits,
    event: &Event,
    expect: &ExpectRoute,
) -> Outcome {
    let got = version
        .call(|store, instance| match instance {
            WorldInstance::Router(r) => {
                let route = r.call_route(store, event)?;
                limits.check_route(&route)?;
                Ok(route)
            }
            _ => Err(wrong_world()),
        })
        .map_err(|f| {
            format!(
                "expected {}, got {}",
                describe_route(expect),
                failed(version, f)
            )
        })?;
    let original: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
    let ok = match (expect, &got) {
        (ExpectRoute::Drop, Route::Drop) => true,
        (ExpectRoute::Deliver { topics, payload }, Route::Deliver(d)) => {
            let got_topics: BTreeSet<String> = d.topics.iter().cloned().collect();
            let got_payload = match &d.payload {
                None => Some(original.clone()),
                Some(text) => serde_json::from_str::<Value>(text).ok(),
            };
            let want_payload = payload.clone().unwrap_or(original.clone());
            *topics == got_topics
                && d.topics.len() == got_topics.len()
                && got_payload.as_ref() == Some(&want_payload)
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let got = match got {
        Route::Drop => "drop".to_string(),
        Route::Deliver(d) => match d.payload {
            None => format!("deliver to {:?} (original payload)", d.topics),
            Some(p) if serde_json::from_str::<Value>(&p).is_err() => format!(
                "deliver to {:?} with a payload that is not JSON (the host would send the original): {p}",
                d.topics
            ),
            Some(p) => format!("deliver to {:?} with payload {p}", d.topics),
        },
    };
    Err(format!("expected {}, got {got}", describe_route(expect)))
}

fn describe_route(expect: &ExpectRoute) -> String {
    match expect {
        ExpectRoute::Drop => "drop".into(),
        ExpectRoute::Deliver {
            topics,
            payload: None,
        } => format!("deliver to {topics:?} (original payload)"),
        ExpectRoute::Deliver {
            topics,
            payload: Some(p),
        } => format!("deliver to {topics:?} with payload {p}"),
    }
}

fn voice(
    version: &ComponentVersion,
    limits: &RuntimeLimits,
    event: &Event,
    expect: &ExpectVoice,
) -> Outcome {
    let want = match expect {
        ExpectVoice::Reject => "reject".to_string(),
        ExpectVoice::Relay(g) => format!("relay to {g:?}"),
    };
    let got = version
        .call(|store, instance| match instance {
            WorldInstance::Voice(v) => {
                let verdict = v.call_filter(store, event)?;
                if let VoiceVerdict::Relay(guild) = &verdict {
                    limits.check_guild_id(guild)?;
                }
                Ok(verdict)
            }
            _ => Err(wrong_world()),
        })
        .map_err(|f| format!("expected {want}, got {}", failed(version, f)))?;
    match (expect, &got) {
        (ExpectVoice::Reject, VoiceVerdict::Reject) => Ok(()),
        (ExpectVoice::Relay(a), VoiceVerdict::Relay(b)) if a == b => Ok(()),
        (_, VoiceVerdict::Reject) => Err(format!("expected {want}, got reject")),
        (_, VoiceVerdict::Relay(g)) => Err(format!("expected {want}, got relay to {g:?}")),
    }
}

fn validate(
    version: &ComponentVersion,
    limits: &RuntimeLimits,
    user_id: &str,
    command: &Command,
    expect: &ExpectValidation,
) -> Outcome {
    let want = match expect {
        ExpectValidation::Valid(c) => format!("valid {}", command_json(c)),
        ExpectValidation::Invalid(errors) => format!("invalid {}", describe_errors(errors)),
    };
    let got = version
        .call(|store, instance| match instance {
            WorldInstance::Validator(v) => {
                let verdict = v.call_validate(store, user_id, command)?;
                if let Err(errors) = &verdict {
                    limits.check_field_errors(errors)?;
                }
                Ok(verdict)
            }
            _ => Err(wrong_world()),
        })
        .map_err(|f| format!("expected {want}, got {}", failed(version, f)))?;
    match (expect, got) {
        (ExpectValidation::Valid(c), Ok(normalised)) if *c == normalised => Ok(()),
        (ExpectValidation::Invalid(want_errors), Err(errors)) => {
            let got: Vec<(String, String)> =
                errors.into_iter().map(|e| (e.field, e.code)).collect();
            if sorted(want_errors.clone()) == sorted(got.clone()) {
                Ok(())
            } else {
                Err(format!(
                    "expected {want}, got invalid {}",
                    describe_errors(&got)
                ))
            }
        }
        (_, Ok(normalised)) => Err(format!(
            "expected {want}, got valid {}",
            command_json(&normalised)
        )),
        (_, Err(errors)) => {
            let got: Vec<(String, String)> =
                errors.into_iter().map(|e| (e.field, e.code)).collect();
            Err(format!(
                "expected {want}, got invalid {}",
                describe_errors(&got)
            ))
        }
    }
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn describe_errors(errors: &[(String, String)]) -> String {
    let parts: Vec<String> = errors.iter().map(|(f, c)| format!("{f}:{c}")).collect();
    format!("[{}]", parts.join(", "))
}

fn limit(
    version: &ComponentVersion,
    requests: &[(RateRequest, u64)],
    expect: &[ExpectLimit],
) -> Outcome {
    let buckets = BucketStore::new(BucketLimits::default());
    for (i, ((request, now_ms), want)) in requests.iter().zip(expect).enumerate() {
        let want_text = match want {
            ExpectLimit::Allow(None) => "allow".to_string(),
            ExpectLimit::Allow(Some(n)) => format!("allow ({n} left)"),
            ExpectLimit::Deny(None) => "deny".to_string(),
            ExpectLimit::Deny(Some(ms)) => format!("deny (retry after {ms} ms)"),
        };
        let got = check_rate(version, &buckets, request, *now_ms).map_err(|f| {
            format!(
                "request {} (nowMs {now_ms}): expected {want_text}, got {}",
                i + 1,
                failed(version, f)
            )
        })?;
        let ok = match (want, got) {
            (ExpectLimit::Allow(None), LimitVerdict::Allow(_)) => true,
            (ExpectLimit::Allow(Some(n)), LimitVerdict::Allow(m)) => *n == m,
            (ExpectLimit::Deny(None), LimitVerdict::Deny(_)) => true,
            (ExpectLimit::Deny(Some(a)), LimitVerdict::Deny(b)) => *a == b,
            _ => false,
        };
        if !ok {
            let got_text = match got {
                LimitVerdict::Allow(n) => format!("allow ({n} left)"),
                LimitVerdict::Deny(ms) => format!("deny (retry after {ms} ms)"),
            };
            return Err(format!(
                "request {} (nowMs {now_ms}): expected {want_text}, got {got_text}",
                i + 1
            ));
        }
    }
    Ok(())
}

/// One limiter request against `buckets`, as `Policies::check_rate_at` does it.
fn check_rate(
    version: &ComponentVersion,
    buckets: &BucketStore,
    request: &RateRequest,
    now_ms: u64,
) -> Result<LimitVerdict, CallFailure> {
    version.call(|store, instance| {
        let WorldInstance::Limiter(limiter) = instance else {
            return Err(wrong_world());
        };
        let key = limiter.call_bucket_key(&mut *store, request)?;
        let key_len = key.len();
        let bucket = buckets.lock(key).map_err(|_| OutputBound {
            what: "the bucket key's length",
            actual: key_len,
            limit: buckets.limits().max_key_bytes,
        })?;
        let decision = limiter.call_check(store, request, now_ms, bucket.get(now_ms))?;
        let state_len = decision.state.len();
        if !bucket.set(decision.state, decision.ttl_ms, now_ms) {
            return Err(OutputBound {
                what: "the bucket state's size",
                actual: state_len,
                limit: buckets.limits().max_value_bytes,
            }
            .into());
        }
        Ok(decision.verdict)
    })
}
