//! The whole author path, from a fresh directory, with the real binary: `component new` →
//! `cargo build --target wasm32-wasip2 --release` → `component check` → `component test
//! --cases cases.jsonl` → hot-load into a running `gateway-host serve` through the admin API,
//! then the new behaviour is seen from outside: the template router's `user:<id>` topic
//! reaches an SSE client, the template limiter's burst of 5 per user turns the 6th command
//! into a 429, the template validator's trimming reaches the upstream, and the template
//! voice filter stops relaying channel-status updates to a legacy voice client.
//!
//! The generated crates build offline (and pass clippy `-D warnings` and `cargo fmt
//! --check`) into one shared target directory under this test's target dir, so wit-bindgen
//! is compiled once, not per run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway_host::policy::version::sha256_hex;
use gateway_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const LINK_TOKEN: &str = "template-test-link-token";
const JWT_SECRET: &str = "template-test-jwt-secret-of-32-bytes-or-more";
const ADMIN_TOKEN: &str = "template-test-admin";

/// Run the binary; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("run gateway-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `<target>/component-template`: shared by every run of this test.
fn template_target_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in <target>/<profile>/")
        .join("component-template")
}

/// `component new` in a fresh directory, build, check and test; returns the `.wasm`.
fn author(slot: &str, dir: &Path) -> PathBuf {
    let name = format!("kit-{slot}");
    let (code, stdout, stderr) = run(&[
        "component",
        "new",
        "--slot",
        slot,
        &name,
        "--dir",
        dir.to_str().expect("utf8 temp dir"),
    ]);
    assert_eq!(code, 0, "component new: {stdout}{stderr}");
    let root = dir.join(&name);
    assert!(
        stdout.contains("cargo build --target wasm32-wasip2 --release"),
        "{stdout}"
    );

    // Built as an author would; also kept clippy- and rustfmt-clean like the host's own.
    cargo(
        &root,
        &[
            "build",
            "--offline",
            "--target",
            "wasm32-wasip2",
            "--release",
        ],
    );
    cargo(
        &root,
        &[
            "clippy",
            "--offline",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    );
    cargo(&root, &["fmt", "--check"]);
    let wasm = template_target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let wasm_arg = wasm.to_str().expect("utf8 path");

    let (code, stdout, stderr) = run(&["component", "check", "--slot", slot, wasm_arg]);
    assert_eq!(code, 0, "component check: {stdout}{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");

    let cases = root.join("cases.jsonl");
    let (code, stdout, stderr) = run(&[
        "component",
        "test",
        "--slot",
        slot,
        wasm_arg,
        "--cases",
        cases.to_str().expect("utf8 path"),
    ]);
    assert_eq!(code, 0, "component test: {stdout}{stderr}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    wasm
}

/// Run cargo in the generated crate `root`, sharing the template target dir; asserts success.
fn cargo(root: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(args)
        .env("CARGO_TARGET_DIR", template_target_dir());
    // The outer build's settings are not the author's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    let out = command.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {} in the generated crate {}:\n{}{}",
        args.join(" "),
        root.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// A `gateway-host serve` process linked to an in-process simulator; killed on drop.
struct Serve {
    child: Child,
    http: u16,
    admin: u16,
    sim: SimHandle,
    _config: tempfile::NamedTempFile,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start() -> Serve {
        Serve::start_with(&[])
    }

    /// Start with extra environment variables.
    fn start_with(envs: &[(&str, &str)]) -> Serve {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let sim = runtime
            .block_on(Simulator::start(SimConfig::new(LINK_TOKEN)))
            .expect("sim starts");
        let (http, admin) = (free_port(), free_port());
        // Generous call deadlines: two cores run many tests at once, and a missed deadline
        // (the failure policy answering) is not what these tests are about.
        let config = tempfile::NamedTempFile::new().expect("config file");
        std::fs::write(
            config.path(),
            "[policy.limits]\ncall-timeout-ms = 2000\ncaller-margin-ms = 2000\n",
        )
        .expect("write config");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config.path())
            .env("LINK_URL", sim.url())
            .env("LINK_TOKEN", LINK_TOKEN)
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("GATEWAY_JWT_SECRET", JWT_SECRET)
            .env_remove("GATEWAY_COMPONENTS_DIR")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let serve = Serve {
            child,
            http,
            admin,
            sim,
            _config: config,
            _runtime: runtime,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = agent()
                .get(&format!("http://127.0.0.1:{http}/readyz"))
                .call()
                .ok()
                .is_some_and(|r| r.status() == 200);
            if ready {
                break serve;
            }
            assert!(Instant::now() < deadline, "host never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin_url(&self, slot: &str) -> String {
        format!("http://127.0.0.1:{}/admin/components/{slot}", self.admin)
    }

    /// The slot as `GET /admin/components/{slot}` shows it.
    fn slot(&self, slot: &str) -> Value {
        let mut r = agent()
            .get(&self.admin_url(slot))
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .expect("admin listener answers");
        assert_eq!(r.status(), 200);
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
    }

    /// Hot-load `wasm` into `slot` through the admin API; asserts the swap happened.
    fn hot_load(&self, slot: &str, wasm: &Path) {
        let bytes = std::fs::read(wasm).expect("read wasm");
        let before = self.slot(slot)["current"]["sha256"].clone();
        let mut r = agent()
            .put(&self.admin_url(slot))
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .header("Content-Type", "application/wasm")
            .send(&bytes[..])
            .expect("admin listener answers");
        let body = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(r.status(), 200, "hot-load of {slot}: {body}");
        let after = self.slot(slot);
        assert_ne!(after["current"]["sha256"], before, "{after}");
        assert_eq!(
            after["current"]["sha256"],
            Value::String(sha256_hex(&bytes)),
            "{after}"
        );
    }

    fn token(&self, sub: &str, topics: &str) -> String {
        let (code, stdout, stderr) = run(&["token", "--sub", sub, "--topics", topics]);
        assert_eq!(code, 0, "{stderr}");
        stdout.trim().to_string()
    }
}

/// An SSE stream read by a thread; text arrives on the channel as it comes.
fn open_stream(port: u16, token: &str) -> mpsc::Receiver<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Read from `rx` until `seen` contains `marker`; returns everything read so far.
fn read_until(rx: &mpsc::Receiver<String>, seen: &mut String, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(marker) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(_) => panic!("no {marker:?} on the stream within 20 s; got:\n{seen}"),
        }
    }
}

#[test]
fn router_template_from_new_to_hot_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = author("event-router", dir.path());
    let serve = Serve::start();

    // Subscribed to user 3's topic, plus a marker channel.
    let token = serve.token("100000000000000001", "user:3,channel:500");
    let rx = open_stream(serve.http, &token);
    let mut seen = String::new();
    read_until(&rx, &mut seen, "retry:");
    let emit = |content: &str, channel: &str| {
        let d = format!(
            r#"{{"id":"77","guild_id":"1","channel_id":"{channel}","author":{{"id":"3"}},"content":"{content}"}}"#
        );
        serve
            .sim
            .control()
            .emit_raw("MESSAGE_CREATE", &d)
            .expect("valid JSON");
    };

    // The default router has no user topics: the message is not delivered, the marker is.
    emit("before-swap", "2");
    emit("marker-1", "500");
    read_until(&rx, &mut seen, "marker-1");
    assert!(!seen.contains("before-swap"), "{seen}");

    serve.hot_load("event-router", &wasm);
    emit("after-swap", "2");
    read_until(&rx, &mut seen, "after-swap");
}

#[test]
fn limiter_template_from_new_to_hot_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = author("rate-limiter", dir.path());
    let serve = Serve::start();

    let typing = |user: &str| -> Vec<u16> {
        let token = serve.token(user, "*");
        (0..6)
            .map(|_| {
                agent()
                    .post(&format!(
                        "http://127.0.0.1:{}/api/commands/typing-start",
                        serve.http
                    ))
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(r#"{"channelId":"2"}"#)
                    .expect("public listener answers")
                    .status()
                    .as_u16()
            })
            .collect()
    };

    // The default limiter allows a burst of 10.
    let before = typing("100000000000000011");
    assert!(before.iter().all(|s| (200..300).contains(s)), "{before:?}");

    // The template's bucket holds 5 per user: the 6th command is refused.
    serve.hot_load("rate-limiter", &wasm);
    let after = typing("100000000000000012");
    assert!(
        after[..5].iter().all(|s| (200..300).contains(s)),
        "{after:?}"
    );
    assert_eq!(after[5], 429, "{after:?}");
}

#[test]
fn validator_template_from_new_to_hot_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = author("command-validator", dir.path());
    let serve = Serve::start();
    let token = serve.token("100000000000000021", "*");
    let send = |content: &str| {
        let body = serde_json::json!({"channelId": "2", "content": content}).to_string();
        let status = agent()
            .post(&format!(
                "http://127.0.0.1:{}/api/commands/send-message",
                serve.http
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .expect("public listener answers")
            .status()
            .as_u16();
        assert!((200..300).contains(&status), "{content:?}: {status}");
    };
    // What the upstream received, in order: each send-message's content.
    let received = || -> Vec<String> {
        serve
            .sim
            .control()
            .received_commands()
            .iter()
            .filter_map(|c| {
                let v = serde_json::to_value(&c.command).ok()?;
                v["body"]["content"].as_str().map(String::from)
            })
            .collect()
    };

    // The default validator sends the content as written; the template trims it.
    send("  before  ");
    serve.hot_load("command-validator", &wasm);
    send("  after  ");
    let deadline = Instant::now() + Duration::from_secs(20);
    while received().len() < 2 {
        assert!(Instant::now() < deadline, "upstream got {:?}", received());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        received(),
        vec!["  before  ".to_string(), "after".to_string()]
    );
}

#[test]
fn voice_template_from_new_to_hot_load() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = author("voice-filter", dir.path());
    let serve = Serve::start_with(&[("GATEWAY_LEGACY_WS", "1")]);
    let token = serve.token("100000000000000031", "*");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut request = format!("ws://127.0.0.1:{}/api/ws", serve.http)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = runtime
        .block_on(tokio_tungstenite::connect_async(request))
        .expect("legacy bridge accepts");
    ws_read_until(&runtime, &mut ws, "\"hello\"");
    runtime
        .block_on(ws.send(Message::text(r#"{"v":1,"op":"join","guildId":"1"}"#)))
        .expect("join");
    ws_read_until(&runtime, &mut ws, "\"joined\"");
    let status = |text: &str| {
        serve
            .sim
            .control()
            .emit_raw(
                "VOICE_CHANNEL_STATUS_UPDATE",
                &format!(r#"{{"guild_id":"1","id":"7","status":"{text}"}}"#),
            )
            .expect("valid JSON");
    };

    // The default filter relays channel-status updates; the template relays only voice
    // state and server updates.
    status("before-swap");
    ws_read_until(&runtime, &mut ws, "before-swap");
    serve.hot_load("voice-filter", &wasm);
    status("after-swap");
    serve
        .sim
        .control()
        .emit_raw(
            "VOICE_STATE_UPDATE",
            r#"{"guild_id":"1","channel_id":"7","user_id":"3","session_id":"marker-session"}"#,
        )
        .expect("valid JSON");
    let seen = ws_read_until(&runtime, &mut ws, "marker-session");
    assert!(!seen.contains("after-swap"), "{seen}");
}

/// Read text frames from a legacy bridge socket until one contains `marker`; returns all
/// the text read.
fn ws_read_until<S>(runtime: &tokio::runtime::Runtime, ws: &mut S, marker: &str) -> String
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    runtime.block_on(async {
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(marker) {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => seen.push_str(t.as_str()),
                Ok(Some(Ok(_))) => {}
                other => panic!("no {marker:?} from the bridge ({other:?}); got:\n{seen}"),
            }
        }
        seen
    })
}
