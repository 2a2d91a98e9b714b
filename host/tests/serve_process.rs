//! `gateway-host serve` as a real process against the real simulator: refuses to start
//! without LINK_TOKEN, becomes ready once the link is up, serves a stream to a token
//! minted by `gateway-host token`, and on SIGTERM tells open streams and exits 0 — also
//! with 200 half-sent requests open, within the shutdown deadline.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_sim::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");

#[test]
fn serve_without_link_token_exits_naming_it() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_remove("LINK_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LINK_TOKEN"), "{stderr}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().ok()?;
    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
}

#[test]
fn serve_becomes_ready_and_stops_on_sigterm() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new("serve-test-token")))
        .expect("sim starts");
    let (http, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("LINK_URL", sim.url())
        .env("LINK_TOKEN", "serve-test-token")
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("GATEWAY_ADMIN_TOKEN", "admin")
        .env(
            "GATEWAY_JWT_SECRET",
            "serve-test-jwt-secret-of-32-bytes-or-more",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some((200, body)) = get(&format!("http://127.0.0.1:{http}/readyz")) {
            break body;
        }
        assert!(Instant::now() < deadline, "host never became ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.contains("\"link\":\"connected\""), "{ready}");
    let (status, metrics) = get(&format!("http://127.0.0.1:{http}/metrics")).expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("gateway_link_state"), "{metrics}");

    // An open stream, authenticated with a token from `gateway-host token`.
    let out = Command::new(BIN)
        .args(["token", "--sub", "42", "--topics", "guild:*"])
        .env(
            "GATEWAY_JWT_SECRET",
            "serve-test-jwt-secret-of-32-bytes-or-more",
        )
        .output()
        .expect("token");
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("retry:") {
        let n = stream.read(&mut buf).expect("stream opens");
        assert!(n > 0, "stream closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");

    // SIGTERM: streams are told, listeners drain, exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "host did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.contains("event: shutdown"),
        "open streams are told about the shutdown: {seen}"
    );
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit status {status}: {stderr}");
    assert!(
        !stderr.contains("serve-test-token"),
        "the link token was logged"
    );
    runtime.block_on(sim.shutdown());
}

#[test]
fn sigterm_with_half_sent_requests_open_exits_0_within_the_deadline() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new("serve-test-token")))
        .expect("sim starts");
    let (http, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    // The header timeout is far longer than the shutdown deadline: only the deadline can
    // end these connections in time.
    std::fs::write(
        &config,
        "[server]\nshutdown-timeout-ms = 2000\n[listener]\nheader-read-timeout-ms = 120000\n",
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LINK_URL", sim.url())
        .env("LINK_TOKEN", "serve-test-token")
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("GATEWAY_ADMIN_TOKEN", "admin")
        .env("GATEWAY_JWT_SECRET", "a-jwt-secret-of-at-least-32-bytes!!")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://127.0.0.1:{http}/readyz")).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "host never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut half_sent = Vec::new();
    for _ in 0..200 {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("send");
        half_sent.push(tcp);
    }
    // One more, already answered: the host has read the 200 before it.
    assert_eq!(
        get(&format!("http://127.0.0.1:{http}/healthz")).map(|r| r.0),
        Some(200)
    );

    let signalled = Instant::now();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    // The deadline is 2 s; allow generous slack for a loaded machine, far below the
    // 120 s header timeout that would otherwise hold the connections.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("host still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit status {status}: {stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr.contains("shutdown deadline passed") || took < Duration::from_secs(2),
        "{stderr}"
    );
    drop(half_sent);
    runtime.block_on(sim.shutdown());
}
