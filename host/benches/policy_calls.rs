//! One call per default slot through the real host runtime (warm instance, epoch deadline,
//! memory limit, failure-policy wrapper), plus the hop async callers pay to reach a call
//! thread. Run with `just bench`; results go to `bench/RESULTS.md`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_host::policy::types::{
    Command, CommandKind, Event, EventMeta, RateRequest, SendMessage,
};
use gateway_host::policy::{Policies, PolicySettings};

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

criterion_group!(benches, calls);
criterion_main!(benches);
