//! The operator paths over real sockets: the admin API (list, hot load, rejection,
//! rollback, auth) and `gateway-host component check|load` as a real process.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use gateway_host::config::Secret;
use gateway_host::policy::defaults::default_component;
use gateway_host::policy::{Policies, PolicySettings, SlotKind};
use serde_json::Value;

const TOKEN: &str = "test-admin-token";
const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");

struct Admin {
    addr: SocketAddr,
    policies: Arc<Policies>,
    _runtime: tokio::runtime::Runtime,
}

fn start_admin() -> Admin {
    let policies =
        Arc::new(Policies::with_defaults(PolicySettings::default()).expect("defaults load"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app =
        gateway_host::admin::router(policies.clone(), Some(Secret::new(TOKEN)), 16 * 1024 * 1024);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    runtime.spawn(async move { axum::serve(listener, app).await });
    Admin {
        addr,
        policies,
        _runtime: runtime,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn call(method: &str, url: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut response = match method {
        "GET" => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "PUT" | "POST" => {
            let mut r = if method == "PUT" {
                agent.put(url)
            } else {
                agent.post(url)
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body)
        }
        other => panic!("unsupported method {other}"),
    }
    .expect("request reaches the admin listener");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn limiter_wasm_path() -> &'static str {
    env!("GATEWAY_DEFAULT_RATE_LIMITER_WASM")
}

#[test]
fn admin_api_lists_loads_refuses_and_rolls_back() {
    let admin = start_admin();
    let base = format!("http://{}/admin/components", admin.addr);

    let (status, body) = call("GET", &base, None, b"");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(body["version"], "1.0");
    assert!(body["traceId"].is_string());
    assert_eq!(call("GET", &base, Some("wrong"), b"").0, 403);

    let (status, body) = call("GET", &base, Some(TOKEN), b"");
    assert_eq!(status, 200);
    let slots = body["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 4);
    for slot in slots {
        assert_eq!(slot["current"]["sha256"].as_str().map(str::len), Some(64));
        assert!(slot["current"]["loadedAtMs"].as_u64().is_some());
        assert!(slot["current"]["calls"].is_u64() && slot["current"]["failures"].is_u64());
    }
    let default_sha = slots[1]["current"]["sha256"].clone();
    assert_eq!(slots[1]["slot"], "rate-limiter");

    // Garbage and a component for another world are refused with the failing step.
    let (status, body) = call(
        "PUT",
        &format!("{base}/rate-limiter"),
        Some(TOKEN),
        b"not wasm at all",
    );
    assert_eq!(
        (status, body["error"]["step"].as_str()),
        (422, Some("compile"))
    );
    let voice = default_component(SlotKind::VoiceFilter);
    let (status, body) = call("PUT", &format!("{base}/rate-limiter"), Some(TOKEN), voice);
    assert_eq!(
        (status, body["error"]["step"].as_str()),
        (422, Some("world")),
        "{body}"
    );
    let (_, body) = call("GET", &format!("{base}/rate-limiter"), Some(TOKEN), b"");
    assert_eq!(
        body["current"]["sha256"], default_sha,
        "refused candidates never go live"
    );
    assert!(
        body["lastRejection"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rate-limiter"))
    );

    // A good candidate goes live; rollback brings back the previous one.
    let router = default_component(SlotKind::EventRouter);
    let (status, body) = call("PUT", &format!("{base}/event-router"), Some(TOKEN), router);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loaded"]["source"], "admin");
    assert_eq!(admin.policies.slot(SlotKind::EventRouter).info().swaps, 1);
    let (status, body) = call(
        "POST",
        &format!("{base}/event-router/rollback"),
        Some(TOKEN),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current"]["source"], "default");
    let (status, body) = call(
        "POST",
        &format!("{base}/voice-filter/rollback"),
        Some(TOKEN),
        b"",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("no_previous_version"))
    );
    assert_eq!(
        call("GET", &format!("{base}/no-such-slot"), Some(TOKEN), b"").0,
        404
    );
}

#[test]
fn admin_api_without_a_token_is_disabled() {
    let policies =
        Arc::new(Policies::with_defaults(PolicySettings::default()).expect("defaults load"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = gateway_host::admin::router(policies, None, 1024);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move { axum::serve(listener, app).await });
    let (status, body) = call(
        "GET",
        &format!("http://{addr}/admin/components"),
        Some("anything"),
        b"",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("admin_disabled"))
    );
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run gateway-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn component_check_exit_codes() {
    let (code, stdout, _) = run(
        &[
            "component",
            "check",
            "--slot",
            "rate-limiter",
            limiter_wasm_path(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with("ok:") && stdout.lines().count() == 1,
        "{stdout}"
    );

    let voice = env!("GATEWAY_DEFAULT_VOICE_FILTER_WASM");
    let (code, stdout, _) = run(
        &["component", "check", "--slot", "rate-limiter", voice],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("does not implement world gateway:policy/rate-limiter"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\x00\x01garbage").expect("write");
    let (code, stdout, _) = run(
        &[
            "component",
            "check",
            "--slot",
            "rate-limiter",
            garbage.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("not a valid component"), "{stdout}");

    let (code, _, stderr) = run(
        &["component", "check", "--slot", "nope", limiter_wasm_path()],
        &[],
    );
    assert_eq!(code, 2, "clap usage error");
    assert!(stderr.contains("unknown slot"), "{stderr}");
}

#[test]
fn component_load_goes_through_the_admin_api() {
    let admin = start_admin();
    let addr = admin.addr.to_string();
    let env = [
        ("GATEWAY_ADMIN_ADDR", addr.as_str()),
        ("GATEWAY_ADMIN_TOKEN", TOKEN),
    ];
    let (code, stdout, stderr) = run(
        &[
            "component",
            "load",
            "--slot",
            "rate-limiter",
            limiter_wasm_path(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(admin.policies.slot(SlotKind::RateLimiter).info().swaps, 1);

    let voice = env!("GATEWAY_DEFAULT_VOICE_FILTER_WASM");
    let (code, stdout, _) = run(
        &["component", "load", "--slot", "rate-limiter", voice],
        &env,
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("component_rejected"), "{stdout}");

    let bad_token = [
        ("GATEWAY_ADMIN_ADDR", addr.as_str()),
        ("GATEWAY_ADMIN_TOKEN", "wrong"),
    ];
    let (code, _, _) = run(
        &[
            "component",
            "load",
            "--slot",
            "rate-limiter",
            limiter_wasm_path(),
        ],
        &bad_token,
    );
    assert_eq!(code, 1);
    assert_eq!(admin.policies.slot(SlotKind::RateLimiter).info().swaps, 1);
}

#[test]
fn component_load_sends_the_components_config() {
    let admin = start_admin();
    let addr = admin.addr.to_string();
    let env = [
        ("GATEWAY_ADMIN_ADDR", addr.as_str()),
        ("GATEWAY_ADMIN_TOKEN", TOKEN),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("limiter.toml");
    std::fs::write(&good, "burst = 2\nkey = \"user\"\n").expect("write");
    let (code, stdout, stderr) = run(
        &[
            "component",
            "load",
            "--slot",
            "rate-limiter",
            limiter_wasm_path(),
            "--component-config",
            good.to_str().expect("utf8"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let body: Value = serde_json::from_str(&stdout).expect("JSON answer");
    assert_eq!(body["loaded"]["configSource"], "admin");
    assert_eq!(
        body["loaded"]["config"],
        serde_json::json!({"burst": "2", "key": "user"})
    );
    let live = admin.policies.slot(SlotKind::RateLimiter).current();
    assert_eq!(
        live.config().pairs,
        vec![
            ("burst".to_string(), "2".to_string()),
            ("key".to_string(), "user".to_string())
        ]
    );

    // init refuses: nothing is swapped, and the answer names the step and the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus = 1\n").expect("write");
    let (code, stdout, _) = run(
        &[
            "component",
            "load",
            "--slot",
            "rate-limiter",
            limiter_wasm_path(),
            "--component-config",
            bad.to_str().expect("utf8"),
        ],
        &env,
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("\"step\":\"init\"") && stdout.contains("bogus"),
        "{stdout}"
    );
    assert_eq!(admin.policies.slot(SlotKind::RateLimiter).info().swaps, 1);
}

#[test]
fn version_names_the_wit_package() {
    let (code, stdout, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!(
            "gateway-host {} (gateway:policy@1.0.0)",
            env!("CARGO_PKG_VERSION")
        )
    );
}
