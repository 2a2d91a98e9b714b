//! One call per default slot through the real host runtime (warm instance, epoch deadline,
//! memory limit, failure-policy wrapper), plus the hop async callers pay to reach a call
//! thread. Run with `just bench`; results go to `bench/RESULTS.md`.
//!
//! Components built in other languages are measured on the same path when their files are
//! given: `GATEWAY_BENCH_PY_ROUTER=<python-router.wasm>` (an `event-router`) and
//! `GATEWAY_BENCH_JS_VALIDATOR=<js-validator.wasm>` (a `command-validator`), as built by
//! `just py-component` / `just js-component`. Their load time (compile, world check,
//! instantiate, `init`: what `component check` does) is printed once.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_host::policy::types::{
    Command, CommandKind, Event, EventMeta, RateRequest, SendMessage,
};
use gateway_host::policy::{Policies, PolicySettings, SlotKind};

fn message_event() -> Event {
    Event {
        meta: EventMeta {
            name: "MESSAGE_CREATE".into(),
            seq: 1,
            guild_id: Some("1100000000000000001".into()),
            channel_id: Some("1200000000000000001".into()),
            user_id: Some("1300000000000000001".into()),
            message_id: Some("1400000000000000001".into()),
        },
        payload: r#"{"id":"1400000000000000001","content":"hello world","author":{"id":"1300000000000000001","username":"ada"}}"#.into(),
    }
}

fn calls(c: &mut Criterion) {
    let policies =
        Arc::new(Policies::with_defaults(PolicySettings::default()).expect("defaults load"));
    let event = message_event();
    let command = Command::SendMessage(SendMessage {
        channel_id: "1200000000000000001".into(),
        content: "hello world".into(),
        nonce: None,
    });

    c.bench_function("event-router route", |b| {
        b.iter(|| black_box(policies.route(black_box(&event))))
    });
    let mut n = 0u64;
    c.bench_function("rate-limiter check (key + check + bucket store)", |b| {
        b.iter(|| {
            n += 1;
            let request = RateRequest {
                user_id: (n % 10_000).to_string(),
                channel_id: "1200000000000000001".into(),
                kind: CommandKind::SendMessage,
            };
            black_box(policies.check_rate_at(&request, n))
        })
    });
    c.bench_function("command-validator validate", |b| {
        b.iter(|| black_box(policies.validate("1300000000000000001", black_box(&command))))
    });
    c.bench_function("voice-filter filter", |b| {
        b.iter(|| black_box(policies.filter_voice(black_box(&event))))
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    c.bench_function("event-router route from async code (executor hop)", |b| {
        b.to_async(&runtime).iter(|| {
            let (policies, event) = (policies.clone(), event.clone());
            async move { black_box(policies.run(move |p| p.route(&event)).await) }
        })
    });
}

/// `Policies` with the component at `$var` live in `kind`'s slot, or `None` when unset.
fn with_foreign(var: &str, kind: SlotKind) -> Option<Policies> {
    let path = std::env::var_os(var)?;
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{var}={}: {e}", path.to_string_lossy()));
    let policies = Policies::with_defaults(PolicySettings::default()).expect("defaults load");
    let started = Instant::now();
    policies
        .slot(kind)
        .load(
            &bytes,
            "bench",
            gateway_host::policy::ComponentConfig::none(),
        )
        .unwrap_or_else(|e| panic!("{var}: refused: {e}"));
    eprintln!(
        "{var}: {} bytes, loaded (compile + checks + instantiate + init) in {:.2?}",
        bytes.len(),
        started.elapsed()
    );
    Some(policies)
}

fn foreign_calls(c: &mut Criterion) {
    let event = message_event();
    // The same message with an e-mail address: the Python router rewrites the payload.
    let mut redacted = message_event();
    redacted.payload = redacted
        .payload
        .replace("hello world", "mail ada@example.com");
    if let Some(policies) = with_foreign("GATEWAY_BENCH_PY_ROUTER", SlotKind::EventRouter) {
        for (name, event) in [
            ("event-router route (Python, componentize-py)", &event),
            (
                "event-router route (Python, redacting an address)",
                &redacted,
            ),
        ] {
            c.bench_function(name, |b| {
                b.iter(|| {
                    let v = policies.route(black_box(event));
                    assert!(v.fallback.is_none(), "the Python router failed: {v:?}");
                    black_box(v)
                })
            });
        }
    }
    let command = Command::SendMessage(SendMessage {
        channel_id: "1200000000000000001".into(),
        content: "hello world".into(),
        nonce: None,
    });
    if let Some(policies) = with_foreign("GATEWAY_BENCH_JS_VALIDATOR", SlotKind::CommandValidator) {
        c.bench_function(
            "command-validator validate (JavaScript, componentize-js)",
            |b| {
                b.iter(|| {
                    let v = policies.validate("1300000000000000001", black_box(&command));
                    assert!(
                        v.fallback.is_none(),
                        "the JavaScript validator failed: {v:?}"
                    );
                    black_box(v)
                })
            },
        );
    }
}

criterion_group!(benches, calls, foreign_calls);
criterion_main!(benches);
