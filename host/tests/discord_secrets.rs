//! The bot token reaches no log, even at `RUST_LOG=trace`: `gateway-host serve` runs as a
//! real process in direct Discord mode against the fake Discord, identifies (the token is
//! in the Identify payload), sends a message over REST (the token is in the
//! Authorization header), and its whole output must not contain the token.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::TracedHost;

use fake_discord::{FakeDiscord, FakeOptions};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const BOT_TOKEN: &str = "MTAwMDAw.bot-token.4e1d9b7c22a64f03";
const JWT_SECRET: &str = "jwt-secret-5b0e8d2f41c97a36aa0e8d2f41c97a36";

#[test]
fn the_bot_token_is_not_logged_at_trace_level() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut options = FakeOptions::new(BOT_TOKEN);
    options.heartbeat_interval = Duration::from_millis(200);
    let fake = runtime
        .block_on(FakeDiscord::start(options))
        .expect("fake starts");
    let api_base = fake.api_base();
    let host = TracedHost::start(&[
        ("DISCORD_BOT_TOKEN", BOT_TOKEN),
        ("DISCORD_API_BASE", api_base.as_str()),
        ("GATEWAY_JWT_SECRET", JWT_SECRET),
    ]);
    let http = host.http;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let caller = Command::new(BIN)
        .args(["token", "--sub", "42"])
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("token");
    let caller = String::from_utf8_lossy(&caller.stdout).trim().to_string();
    let status = agent
        .post(&format!(
            "http://127.0.0.1:{http}/api/commands/send-message"
        ))
        .header("Authorization", &format!("Bearer {caller}"))
        .header("Content-Type", "application/json")
        .send(r#"{"channelId":"1110000000000000001","content":"over REST"}"#)
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200 | 202)), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.control().messages().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the message never reached the fake"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A few heartbeats at trace level too.
    std::thread::sleep(Duration::from_millis(500));

    let logs = host.stop();
    assert!(
        logs.contains("TRACE"),
        "the host really logged at trace level"
    );
    assert!(
        logs.contains("Discord session ready"),
        "the session came up"
    );
    assert!(fake.control().identifies() >= 1);
    assert!(
        !logs.contains(BOT_TOKEN),
        "DISCORD_BOT_TOKEN appears in the trace logs"
    );
    assert!(
        !logs.contains("4e1d9b7c22a64f03"),
        "part of the token appears in the logs"
    );
    runtime.block_on(fake.shutdown());
}
