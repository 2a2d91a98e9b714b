//! A restarted `gateway-host serve` process resumes its previous upstream session from
//! `GATEWAY_LINK_STATE_FILE`: the events the upstream emitted while no host was running
//! reach the new process (counted in its `/metrics`), and no replay gap is recorded.

use std::time::Duration;

mod common;
use common::{Host, total, wait};

use gateway_sim::{SimConfig, Simulator};

const TOKEN: &str = "state-file-link-token";

/// `serve` in link mode against `link_url`, keeping its session in `state_file`.
fn serve(link_url: &str, state_file: &std::path::Path) -> Host {
    let state_file = state_file.to_str().expect("a UTF-8 temp path");
    Host::start(&[
        ("LINK_URL", link_url),
        ("LINK_TOKEN", TOKEN),
        ("GATEWAY_LINK_STATE_FILE", state_file),
    ])
}

#[test]
fn a_restarted_host_resumes_its_upstream_session() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new(TOKEN)))
        .expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("link-state.json");

    let first = serve(&sim.url(), &state);
    sim.control().emit(20);
    wait(
        Duration::from_secs(10),
        "20 events in the first host",
        || first.events_in() >= 20.0,
    );
    first.stop();
    let saved = std::fs::read_to_string(&state).expect("state file written");
    let (session, _) = sim.control().session();
    assert!(
        saved.contains(&session) && saved.contains("\"lastSeq\":20"),
        "{saved}"
    );

    sim.control().emit(15); // while no host runs

    let second = serve(&sim.url(), &state);
    wait(
        Duration::from_secs(10),
        "the 15 missed events in the second host",
        || second.events_in() >= 15.0,
    );
    sim.control().emit(5);
    wait(Duration::from_secs(10), "live events after them", || {
        second.events_in() >= 20.0
    });
    let (_, metrics) = second.get("/metrics").expect("metrics");
    assert_eq!(
        total(&metrics, "gateway_events_in_total"),
        20.0,
        "no repeat"
    );
    assert_eq!(
        total(&metrics, "gateway_link_replay_gaps_total"),
        0.0,
        "no gap"
    );
    second.stop();
    runtime.block_on(sim.shutdown());
}
