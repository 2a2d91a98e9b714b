//! A restarted `gateway-host serve` process in direct Discord mode resumes its Discord
//! session from `DISCORD_STATE_FILE`: SIGTERM saves the final seq and closes the gateway
//! with a resumable code; the next process sends RESUME (not IDENTIFY), and the events
//! the fake Discord dispatched while no host ran reach it, none repeated, no gap.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_discord::{FakeDiscord, FakeOptions};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const TOKEN: &str = "state-file-discord-bot-token";
const JWT_SECRET: &str = "state-file-jwt-secret-0123456789abcdef012345";
const CHANNEL: &str = "1110000000000000001";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = agent.get(url).call().ok()?;
    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
}

/// Sum of the series of `name` in a Prometheus text.
fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Host {
    child: Child,
    http: u16,
}

impl Host {
    fn start(api_base: &str, state_file: &std::path::Path) -> Host {
        let (http, admin) = (free_port(), free_port());
        let child = Command::new(BIN)
            .arg("serve")
            .env_remove("LINK_URL")
            .env("DISCORD_BOT_TOKEN", TOKEN)
            .env("DISCORD_API_BASE", api_base)
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("GATEWAY_JWT_SECRET", JWT_SECRET)
            .env("DISCORD_STATE_FILE", state_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gateway-host");
        let host = Host { child, http };
        wait(Duration::from_secs(30), "the host to become ready", || {
            matches!(host.get("/readyz"), Some((200, _)))
        });
        host
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        get(&format!("http://127.0.0.1:{}{path}", self.http))
    }

    fn events_in(&self) -> f64 {
        self.get("/metrics")
            .map(|(_, m)| total(&m, "gateway_events_in_total"))
            .unwrap_or(0.0)
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "host exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "host did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_host_resumes_its_discord_session() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeDiscord::start(FakeOptions::new(TOKEN)))
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("discord-state.json");

    let first = Host::start(&fake.api_base(), &state);
    for i in 0..5 {
        fake.control()
            .message_create(CHANNEL, &format!("first {i}"));
    }
    wait(
        Duration::from_secs(10),
        "READY + 5 events in the first host",
        || first.events_in() >= 6.0,
    );
    first.stop();
    let saved = std::fs::read_to_string(&state).expect("state file written");
    let (session, _) = fake.control().session().expect("a session");
    assert!(
        saved.contains(&session) && saved.contains("\"lastSeq\":6"),
        "{saved}"
    );

    for i in 0..3 {
        fake.control()
            .message_create(CHANNEL, &format!("missed {i}"));
    }

    let second = Host::start(&fake.api_base(), &state);
    wait(
        Duration::from_secs(10),
        "the 3 missed events and RESUMED in the second host",
        || second.events_in() >= 4.0,
    );
    assert_eq!(fake.control().identifies(), 1, "RESUME, not IDENTIFY");
    assert_eq!(fake.control().resumes(), 1);
    let (_, metrics) = second.get("/metrics").expect("metrics");
    assert_eq!(total(&metrics, "gateway_events_in_total"), 4.0, "no repeat");
    assert_eq!(
        total(&metrics, "gateway_link_replay_gaps_total"),
        0.0,
        "no gap"
    );
    second.stop();
    runtime.block_on(fake.shutdown());
}
