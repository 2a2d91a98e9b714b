//! `gateway-host demo --discord-fake` runs with no token and no set-up: the host, in
//! direct Discord mode, identifies against the embedded fake Discord, becomes ready, and
//! publishes the fake's messages (seen in the metrics). `/demo/info` says which mode runs,
//! and the page's voice control makes the fake Discord dispatch a VOICE_STATE_UPDATE.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn get(url: &str) -> Option<(u16, String)> {
    let mut r = agent().get(url).call().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().unwrap_or_default()))
}

fn post(url: &str) -> Option<(u16, String)> {
    let mut r = agent().post(url).send_empty().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().unwrap_or_default()))
}

#[test]
fn demo_discord_fake_identifies_and_publishes() {
    let (http, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args(["demo", "--discord-fake"])
        .env_remove("LINK_URL")
        .env_remove("DISCORD_BOT_TOKEN")
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ok = false;
    while Instant::now() < deadline {
        let ready = get(&format!("http://127.0.0.1:{http}/readyz")).map(|r| r.0);
        let metrics = get(&format!("http://127.0.0.1:{http}/metrics"))
            .map(|r| r.1)
            .unwrap_or_default();
        if ready == Some(200)
            && metrics.contains("gateway_discord_identifies_total 1")
            && metrics.contains("gateway_events_in_total{type=\"MESSAGE_CREATE\"}")
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = get(&format!("http://127.0.0.1:{http}/demo/info"));
    let voice = post(&format!(
        "http://127.0.0.1:{http}/demo/voice?action=join&guild=0&user=1"
    ));
    let mut voice_seen = false;
    while ok && Instant::now() < deadline {
        let metrics = get(&format!("http://127.0.0.1:{http}/metrics"))
            .map(|r| r.1)
            .unwrap_or_default();
        if metrics.contains("gateway_events_in_total{type=\"VOICE_STATE_UPDATE\"} 1") {
            voice_seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "the demo never became ready with Discord events flowing"
    );
    let (status, body) = info.expect("/demo/info answered");
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["mode"], "discord-fake", "{info}");
    let (status, body) = voice.expect("/demo/voice answered");
    assert_eq!(status, 200, "{body}");
    assert!(
        voice_seen,
        "the voice control's dispatch never reached the host"
    );
}
