//! `gateway-host serve` as a real process: what it refuses at start, and what it has done
//! before its listener answers.
//!
//! * A JWT secret shorter than 32 bytes: exit non-zero naming `GATEWAY_JWT_SECRET`
//!   (`gateway-host token` refuses it too).
//! * CORS: `*` alone starts and answers any origin (without credentials); `*` mixed with
//!   origins, or an unparsable origin, is a clean start error naming it (never exit 101).
//! * Components directory: a symlink (`-> /dev/zero`), a FIFO, an oversize file or a file
//!   that is not a component, named `rate-limiter.wasm`: exit non-zero naming the file and
//!   the reason. A valid file is live before the listener answers: the very first `/readyz`
//!   shows its hash.
//! * Cluster mode: an unreachable NATS, a URL that is not `nats://`, a bad host id, an
//!   unsafe lease TTL: exit non-zero naming the setting, never the URL's credentials.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gateway_host::policy::SlotKind;
use gateway_host::policy::defaults::default_component;
use gateway_host::policy::version::sha256_hex;

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const SECRET: &str = "serve-start-checks-secret-0123456789abcdef";
/// Bound on a process that is expected to exit by itself.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `serve` with a closed upstream (the link just keeps retrying), free ports, `extra` env.
fn serve(extra: &[(&str, &str)]) -> (Command, u16) {
    let (http, admin) = (free_port(), free_port());
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("LINK_URL", format!("ws://127.0.0.1:{}/link", free_port()))
        .env("LINK_TOKEN", "start-checks-link-token")
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("GATEWAY_JWT_SECRET", SECRET)
        .env_remove("GATEWAY_COMPONENTS_DIR")
        .env_remove("GATEWAY_CORS_ORIGINS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    (cmd, http)
}

/// Runs a process expected to stop on its own, within [`EXIT_WITHIN`].
fn run_to_exit(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + EXIT_WITHIN;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {EXIT_WITHIN:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts a clean refusal: exit code 1 (not a panic's 101), stderr containing `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

/// Status, body and headers of an answer.
type Answer = (u16, String, Vec<(String, String)>);

/// A GET with a 2 s timeout; `None` while nothing answers.
fn get(url: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut request = agent.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut r = request.call().ok()?;
    let head = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    Some((
        r.status().as_u16(),
        r.body_mut().read_to_string().ok()?,
        head,
    ))
}

/// Stops a `serve` child when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `url` until something answers (within 30 s) and returns the first answer.
fn first_answer(url: &str, headers: &[(&str, &str)], child: &mut Running) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = get(url, headers) {
            return answer;
        }
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("serve exited with {status} before answering");
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn short_jwt_secret_is_refused_by_serve_and_token() {
    let (mut cmd, _) = serve(&[]);
    cmd.env("GATEWAY_JWT_SECRET", "k");
    assert_refused(&run_to_exit(cmd), &["GATEWAY_JWT_SECRET", "32"]);

    let mut token = Command::new(BIN);
    token
        .args(["token", "--sub", "42"])
        .env("GATEWAY_JWT_SECRET", "short-secret");
    let out = token.output().expect("token");
    assert_refused(&out, &["GATEWAY_JWT_SECRET"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("short-secret"),
        "the secret itself is never printed"
    );
    let out = Command::new(BIN)
        .args(["token", "--sub", "42"])
        .env("GATEWAY_JWT_SECRET", SECRET)
        .output()
        .expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
}

#[test]
fn cors_star_works_and_bad_origins_are_clean_start_errors() {
    let (cmd, http) = serve(&[("GATEWAY_CORS_ORIGINS", "*")]);
    let mut cmd = cmd;
    let mut child = Running(cmd.spawn().expect("spawn"));
    let (status, _, headers) = first_answer(
        &format!("http://127.0.0.1:{http}/healthz"),
        &[("Origin", "https://any.example")],
        &mut child,
    );
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(header("access-control-allow-credentials"), None);
    drop(child);

    let (cmd, _) = serve(&[("GATEWAY_CORS_ORIGINS", "*,https://app.example")]);
    assert_refused(&run_to_exit(cmd), &["`*`"]);
    let (cmd, _) = serve(&[("GATEWAY_CORS_ORIGINS", "https://app.example,app.example/x")]);
    assert_refused(&run_to_exit(cmd), &["\"app.example/x\""]);
}

/// `serve` with `dir` as its components directory and a 1 MiB component cap.
fn serve_with_dir(dir: &Path) -> (Command, u16) {
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "max-component-mib = 1\n").expect("config");
    let (mut cmd, http) = serve(&[("GATEWAY_COMPONENTS_DIR", dir.to_str().expect("utf8"))]);
    cmd.arg("--config").arg(&config);
    (cmd, http)
}

#[test]
fn refused_component_files_stop_the_start_naming_them() {
    // (what, how to make rate-limiter.wasm, the reason expected on stderr)
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
    let cases: [Case; 4] = [
        (
            "symlink",
            &|p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink"),
            "symbolic link",
        ),
        (
            "fifo",
            &|p| {
                let ok = Command::new("mkfifo").arg(p).status().expect("mkfifo");
                assert!(ok.success());
            },
            "not a regular file",
        ),
        (
            "oversize",
            &|p| std::fs::write(p, vec![0u8; (1 << 20) + 1]).expect("write"),
            "limit",
        ),
        (
            "garbage",
            &|p| std::fs::write(p, b"not a component").expect("write"),
            "refused for slot rate-limiter",
        ),
    ];
    for (what, make, reason) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rate-limiter.wasm");
        make(&file);
        let (cmd, _) = serve_with_dir(dir.path());
        let out = run_to_exit(cmd);
        let name = file.display().to_string();
        eprintln!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
        assert_refused(&out, &[&name, reason]);
    }
}

/// A valid component whose bytes (and hash) differ from the embedded default: the
/// default limiter with a custom section appended.
fn distinct_limiter() -> Vec<u8> {
    let mut bytes = default_component(SlotKind::RateLimiter).to_vec();
    let name = b"serve-start-checks";
    let payload = b"distinct";
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8); // section size (< 128: one LEB byte)
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn directory_components_are_live_before_the_listener_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = distinct_limiter();
    let hash = sha256_hex(&bytes);
    assert_ne!(hash, sha256_hex(default_component(SlotKind::RateLimiter)));
    std::fs::write(dir.path().join("rate-limiter.wasm"), &bytes).expect("write");
    std::fs::write(dir.path().join("README.txt"), b"other names are ignored").expect("write");
    let (mut cmd, http) = serve_with_dir(dir.path());
    let mut child = Running(cmd.spawn().expect("spawn"));
    let (_, body, _) = first_answer(&format!("http://127.0.0.1:{http}/readyz"), &[], &mut child);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("readyz JSON");
    let limiter = doc["components"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["slot"] == "rate-limiter"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(limiter["sha256"], hash.as_str(), "first /readyz: {doc}");
}

#[test]
fn bad_cluster_settings_are_clean_start_errors() {
    // Nothing listens on this port: no NATS within the request timeout.
    let unreachable = format!("nats://user:hunter2@127.0.0.1:{}", free_port());
    let (cmd, _) = serve(&[("GATEWAY_NATS_URL", unreachable.as_str())]);
    let out = run_to_exit(cmd);
    assert_refused(&out, &["connecting to NATS at nats://…@127.0.0.1"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("hunter2"),
        "credentials never reach the output"
    );
    let (cmd, _) = serve(&[("GATEWAY_NATS_URL", "http://127.0.0.1:4222")]);
    assert_refused(&run_to_exit(cmd), &["GATEWAY_NATS_URL", "nats://host:port"]);
    let (cmd, _) = serve(&[
        ("GATEWAY_NATS_URL", "nats://127.0.0.1:4222"),
        ("GATEWAY_CLUSTER_HOST_ID", "no spaces allowed"),
    ]);
    assert_refused(&run_to_exit(cmd), &["cluster host id"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        "[cluster]\nnats-url = \"nats://127.0.0.1:4222\"\nlease-ttl-ms = 100\n",
    )
    .expect("write config");
    let (mut cmd, _) = serve(&[]);
    cmd.arg("--config").arg(&config);
    assert_refused(&run_to_exit(cmd), &["lease TTL must be at least 500ms"]);
}
