//! A restarted `gateway-host serve` process in direct Discord mode resumes its Discord
//! session from `DISCORD_STATE_FILE`: SIGTERM saves the final seq and closes the gateway
//! with a resumable code; the next process sends RESUME (not IDENTIFY), and the events
//! the fake Discord dispatched while no host ran reach it, none repeated, no gap.

use std::time::Duration;

mod common;
use common::{Host, total, wait};

use fake_discord::{FakeDiscord, FakeOptions};

const TOKEN: &str = "state-file-discord-bot-token";
const CHANNEL: &str = "1110000000000000001";

/// `serve` in direct Discord mode against `api_base`, keeping its session in `state_file`.
fn serve(api_base: &str, state_file: &std::path::Path) -> Host {
    let state_file = state_file.to_str().expect("a UTF-8 temp path");
    Host::start(&[
        ("DISCORD_BOT_TOKEN", TOKEN),
        ("DISCORD_API_BASE", api_base),
        ("DISCORD_STATE_FILE", state_file),
    ])
}

#[test]
fn a_restarted_host_resumes_its_discord_session() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeDiscord::start(FakeOptions::new(TOKEN)))
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("discord-state.json");

    let first = serve(&fake.api_base(), &state);
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

    let second = serve(&fake.api_base(), &state);
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
