//! Policy components written in Python (componentize-py) and JavaScript (componentize-js),
//! used as an author would ship them: built by their own toolchains (`just py-component`,
//! `just js-component`, which `just test` runs first), checked by the real `gateway-host
//! component check` process, hot-loaded through the real admin API into a running host, and
//! observed where clients see them: the SSE stream (the Python router redacts e-mail
//! addresses) and the command API (the JavaScript validator refuses `@everyone`). Their case
//! files (`examples/*/cases.jsonl`) are run against them too.
//!
//! A component that was not built fails these tests with the recipe to run: a skipped
//! language is not a working one.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use gateway_host::config::Config;
use gateway_host::policy::types::{Command, Event, EventMeta, FieldError, SendMessage};
use gateway_host::policy::{
    FailurePolicy, Policies, RouteDecision, SlotKind, SlotSettings, Validation,
};
use gateway_tests::admin::AdminServer;
use gateway_tests::foreign::{ADMIN_TIMEOUT, Foreign, JS_VALIDATOR, PYTHON_ROUTER, run_host};
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::policy::relaxed_settings;
use gateway_tests::sse_client::{SseResponse, get};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

/// `gateway-host component check --slot SLOT FILE [--config CONFIG]`: exit code and stdout.
fn check(slot: &str, component: &Foreign, config: Option<&Path>) -> anyhow::Result<(i32, String)> {
    component.bytes()?;
    let path = component.path();
    let mut args = vec![
        "component".to_string(),
        "check".into(),
        "--slot".into(),
        slot.into(),
        path.to_string_lossy().into_owned(),
    ];
    if let Some(c) = config {
        args.push("--config".into());
        args.push(c.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_host(&args)?;
    eprintln!("component check {slot} took {:?}", run.took);
    Ok((run.code, format!("{}{}", run.stdout, run.stderr)))
}

/// A host config file giving `slot`'s component `config` (TOML inline-table body).
fn host_toml(dir: &Path, slot: &str, config: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!("[policy.slots.{slot}]\nconfig = {{ {config} }}\n"),
    )?;
    Ok(path)
}

#[test]
fn python_router_passes_component_check_and_its_init_refuses_a_bad_pattern() -> anyhow::Result<()> {
    let (code, out) = check("event-router", &PYTHON_ROUTER, None)?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok:") && out.contains("implements event-router"),
        "{out}"
    );
    // Its `init` validates its own configuration: a regex that does not compile is refused.
    let dir = tempfile::tempdir()?;
    let config = host_toml(
        dir.path(),
        "event-router",
        r#"redact-pattern = "(unclosed""#,
    )?;
    let (code, out) = check("event-router", &PYTHON_ROUTER, Some(&config))?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("redact-pattern: not a valid regular expression"),
        "{out}"
    );
    Ok(())
}

#[test]
fn js_validator_passes_component_check_and_its_init_refuses_a_bad_value() -> anyhow::Result<()> {
    let (code, out) = check("command-validator", &JS_VALIDATOR, None)?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok:") && out.contains("implements command-validator"),
        "{out}"
    );
    let dir = tempfile::tempdir()?;
    let config = host_toml(
        dir.path(),
        "command-validator",
        r#"allow-mass-mentions = "maybe""#,
    )?;
    let (code, out) = check("command-validator", &JS_VALIDATOR, Some(&config))?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("allow-mass-mentions: expected true or false"),
        "{out}"
    );
    let config = host_toml(dir.path(), "command-validator", r#"colour = "blue""#)?;
    let (code, out) = check("command-validator", &JS_VALIDATOR, Some(&config))?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"unknown configuration key "colour""#),
        "{out}"
    );
    Ok(())
}

/// A generous call deadline (a loaded 2-core machine must not turn a slow call into a
/// failure) and the redacting-safe failure policy for the router.
fn host_config(c: &mut Config) {
    c.policy.limits = relaxed_settings().limits;
    let mut router = SlotSettings::defaults(SlotKind::EventRouter);
    router.failure = FailurePolicy::FailClosed;
    c.policy.slots.insert(SlotKind::EventRouter, router);
}

async fn open(h: &TestHost, query: &str, topics: &[&str]) -> anyhow::Result<SseResponse> {
    let auth = h.bearer(topics);
    let r = get(
        &h.addr,
        &format!("/api/stream{query}"),
        &[("Authorization", auth.as_str())],
    )
    .await?;
    ensure!(r.status == 200, "stream answered {}", r.status);
    Ok(r)
}

/// The next event's host sequence number (from its `epoch-seq` id) and its `data`.
async fn next(r: &mut SseResponse) -> anyhow::Result<(u64, Value)> {
    let (id, _, data) = r.next_event(T).await?.context("stream ended")?;
    let seq = id
        .as_deref()
        .and_then(|i| i.split_once('-'))
        .and_then(|(_, s)| s.parse().ok())
        .context("event id is epoch-seq")?;
    Ok((seq, data["data"].clone()))
}

fn message(n: u32, content: &str) -> String {
    json!({
        "id": format!("{}", 500 + n),
        "channel_id": "200",
        "guild_id": "100",
        "author": {"id": "300", "username": "ada"},
        "content": content,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_router_hot_loaded_through_the_admin_api_redacts_for_live_subscribers()
-> anyhow::Result<()> {
    let wasm = PYTHON_ROUTER.bytes()?;
    let h = start_host(host_config).await?;
    let admin = AdminServer::start(h.host().policies.clone())
        .await?
        .with_timeout(ADMIN_TIMEOUT);
    let mut everything = open(&h, "", &["*"]).await?;
    let mut guild = open(&h, "?topics=guild:100", &["guild:*"]).await?;
    let emit = |n: u32, content: &str| {
        h.sim
            .control()
            .emit_raw("MESSAGE_CREATE", &message(n, content))
            .context("sim takes the payload")
    };

    // The default (Rust) router delivers the content as sent.
    emit(1, "mail ada@example.com")?;
    let (first, d) = next(&mut everything).await?;
    assert_eq!(d["content"], "mail ada@example.com");
    assert_eq!(next(&mut guild).await?.1["content"], "mail ada@example.com");

    let (status, loaded) = admin.put_raw("event-router", &wasm).await?;
    assert_eq!(status, 200, "{loaded}");
    assert_eq!(loaded["loaded"]["sizeBytes"], wasm.len(), "{loaded}");
    assert_eq!(loaded["loaded"]["source"], "admin", "{loaded}");

    // Same connections, next events: the Python router rewrites the content.
    emit(2, "mail ada@example.com or bob@example.org")?;
    emit(3, "nothing to hide")?;
    let mut seqs = vec![first];
    for (n, expected) in [(2, "mail [redacted] or [redacted]"), (3, "nothing to hide")] {
        let (seq, d) = next(&mut everything).await?;
        assert_eq!(d["content"], expected, "event {n}: {d}");
        assert_eq!(d["id"], format!("{}", 500 + n), "{d}");
        seqs.push(seq);
        let (_, d) = next(&mut guild).await?;
        assert_eq!(d["content"], expected, "guild subscriber, event {n}: {d}");
    }
    assert_eq!(
        seqs,
        vec![first, first + 1, first + 2],
        "no event lost or repeated across the swap"
    );
    assert_eq!(
        h.host().hub.client_count(),
        2,
        "the swap dropped no subscriber"
    );
    let info = h.host().policies.slot(SlotKind::EventRouter).info();
    assert_eq!(info.current.failures, 0, "the Python router never failed");

    // Rollback through the admin API brings the Rust router (and the raw content) back.
    let (status, body) = admin.rollback("event-router").await?;
    assert_eq!(status, 200, "{body}");
    emit(4, "mail ada@example.com")?;
    assert_eq!(
        next(&mut everything).await?.1["content"],
        "mail ada@example.com"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_validator_hot_loaded_through_the_admin_api_refuses_mass_mentions() -> anyhow::Result<()>
{
    let wasm = JS_VALIDATOR.bytes()?;
    let h = start_host(host_config).await?;
    let admin = AdminServer::start(h.host().policies.clone())
        .await?
        .with_timeout(ADMIN_TIMEOUT);
    let mut stream = open(&h, "?topics=channel:700", &["*"]).await?;
    let server = h.server();
    let token = server.token("1001", &["send-message"]);
    let token = token.as_str();
    let send = |content: &str| {
        let body = json!({"channelId": "700", "content": content});
        async move { server.command("send-message", token, &body).await }
    };

    // The default (Rust) validator has no rule about mass mentions.
    let reply = send("@everyone before").await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(next(&mut stream).await?.1["content"], "@everyone before");

    let (status, body) = admin.put_raw("command-validator", &wasm).await?;
    assert_eq!(status, 200, "{body}");

    let reply = send("@everyone after").await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["error"]["code"], "validation_failed", "{doc}");
    let fields = &doc["error"]["fields"];
    assert_eq!(fields.as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(fields[0]["field"], "content", "{doc}");
    assert_eq!(fields[0]["code"], "mass_mention", "{doc}");

    // Its normalisation reaches the upstream: surrounding whitespace is trimmed.
    let reply = send("  trimmed by JavaScript \n").await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = h.sim.received_commands();
    let wire = serde_json::to_value(&sent.last().context("a command reached the sim")?.command)?;
    assert_eq!(wire["body"]["content"], "trimmed by JavaScript", "{wire}");
    assert_eq!(
        next(&mut stream).await?.1["content"],
        "trimmed by JavaScript"
    );
    assert_eq!(
        h.host().hub.client_count(),
        1,
        "the subscriber is still there"
    );
    let info = h.host().policies.slot(SlotKind::CommandValidator).info();
    assert_eq!(
        info.current.failures, 0,
        "the JavaScript validator never failed"
    );
    Ok(())
}

// --- Case files, run by the real `gateway-host component test --cases` ---

/// Runs `component test` on `component` with `cases`; asserts every case passed and the
/// summary counts every case of the file.
///
/// The host config gives each call 2 s of wall time, as every test that is not about
/// deadlines does ([`relaxed_settings`]): an interpreted component's slowest case (2,001
/// characters through the JavaScript validator) once missed the default 20 ms on a loaded
/// CI machine, and these tests are about the cases' answers, not the machine's load.
fn passes_its_cases(slot: &str, component: &Foreign, cases: &str) -> anyhow::Result<()> {
    component.bytes()?;
    let dir = tempfile::tempdir()?;
    let host_config = dir.path().join("gateway.toml");
    std::fs::write(
        &host_config,
        format!(
            "[policy.limits]\ncall-timeout-ms = {}\n",
            relaxed_settings().limits.call_timeout_ms
        ),
    )?;
    let path = component.path();
    let file = Path::new(env!("GATEWAY_TEST_WORKSPACE")).join(cases);
    let expected = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    ensure!(expected > 0, "{cases} has no cases");
    let run = run_host(&[
        "component",
        "test",
        "--slot",
        slot,
        &path.to_string_lossy(),
        "--cases",
        &file.to_string_lossy(),
        "--config",
        &host_config.to_string_lossy(),
    ])?;
    let out = format!("{}{}", run.stdout, run.stderr);
    ensure!(run.code == 0, "component test exited {}:\n{out}", run.code);
    ensure!(
        out.contains(&format!("{expected} passed, 0 failed")),
        "expected {expected} cases to pass:\n{out}"
    );
    ensure!(!out.contains("FAIL "), "{out}");
    Ok(())
}

#[test]
fn python_router_passes_its_cases() -> anyhow::Result<()> {
    passes_its_cases(
        "event-router",
        &PYTHON_ROUTER,
        "examples/python-router/cases.jsonl",
    )
}

#[test]
fn js_validator_passes_its_cases() -> anyhow::Result<()> {
    passes_its_cases(
        "command-validator",
        &JS_VALIDATOR,
        "examples/js-validator/cases.jsonl",
    )
}

/// A component live in `kind`'s slot of a fresh `Policies`, `init`-ed with `config`.
fn policies_with(
    kind: SlotKind,
    component: &Foreign,
    config: &[(&str, &str)],
) -> anyhow::Result<Policies> {
    let wasm = component.bytes()?;
    let policies = Policies::with_defaults(relaxed_settings())?;
    let slot = policies.slot(kind);
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    slot.install(slot.prepare_with_config(&wasm, "cases", config)?);
    Ok(policies)
}

fn field_codes(errors: &[FieldError]) -> BTreeSet<(String, String)> {
    errors
        .iter()
        .map(|e| (e.field.clone(), e.code.clone()))
        .collect()
}

#[test]
fn python_router_config_sets_its_own_pattern_and_events() -> anyhow::Result<()> {
    let policies = policies_with(
        SlotKind::EventRouter,
        &PYTHON_ROUTER,
        &[
            ("redact-pattern", r"\b(?:\d{4}[ -]?){3}\d{4}\b"),
            ("redact-replacement", "<card>"),
            ("redact-events", "MESSAGE_CREATE"),
            ("drop-events", "TYPING_START"),
        ],
    )?;
    let event = |name: &str, content: &str| Event {
        meta: EventMeta {
            name: name.into(),
            seq: 1,
            guild_id: Some("1".into()),
            channel_id: Some("2".into()),
            user_id: None,
            message_id: None,
        },
        payload: json!({"content": content}).to_string(),
    };
    let routed = |e: &Event| policies.route(e).value;
    let payload = match routed(&event(
        "MESSAGE_CREATE",
        "card 4111 1111 1111 1111, mail ada@example.com",
    )) {
        RouteDecision::Deliver { payload, .. } => payload,
        RouteDecision::Drop => bail!("a message is delivered"),
    };
    let payload: Value = serde_json::from_str(payload.as_deref().context("rewritten")?)?;
    assert_eq!(payload["content"], "card <card>, mail ada@example.com");
    // Only the configured events are rewritten; dropped events are dropped.
    match routed(&event("MESSAGE_UPDATE", "4111 1111 1111 1111")) {
        RouteDecision::Deliver { payload: None, .. } => {}
        other => bail!("MESSAGE_UPDATE is not redacted under this config, got {other:?}"),
    }
    assert_eq!(routed(&event("TYPING_START", "")), RouteDecision::Drop);
    Ok(())
}

#[test]
fn js_validator_config_blocks_listed_words_and_can_allow_mass_mentions() -> anyhow::Result<()> {
    let policies = policies_with(
        SlotKind::CommandValidator,
        &JS_VALIDATOR,
        &[
            ("blocked-words", "spam, Scam"),
            ("allow-mass-mentions", "true"),
            ("max-content-length", "20"),
        ],
    )?;
    let verdict = |content: &str| {
        let command = Command::SendMessage(SendMessage {
            channel_id: "2".into(),
            content: content.into(),
            nonce: None,
        });
        policies.validate("9", &command).value
    };
    let codes = |v: Validation| match v {
        Validation::Invalid(errors) => field_codes(&errors),
        other => panic!("expected invalid, got {other:?}"),
    };
    let one = |code: &str| BTreeSet::from([("content".to_string(), code.to_string())]);
    assert_eq!(codes(verdict("no SCAM here!")), one("blocked_word"));
    assert_eq!(codes(verdict("spam")), one("blocked_word"));
    assert!(
        matches!(verdict("spammer"), Validation::Valid(_)),
        "whole words only"
    );
    assert!(matches!(verdict("@everyone hi"), Validation::Valid(_)));
    assert_eq!(codes(verdict("twenty-one characters")), one("too_long"));
    Ok(())
}
