//! No secret reaches the logs, even at `RUST_LOG=trace`: `gateway-host serve` runs as a
//! real process against the real simulator with every log target at trace, links up
//! (the upgrade request that tungstenite traces carries the link token), serves an
//! authenticated request, and its whole output must not contain the link token, the JWT
//! secret, the admin token or the caller's token.

use std::process::Command;
use std::time::Duration;

mod common;
use common::TracedHost;

use gateway_sim::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const LINK_TOKEN: &str = "link-token-9f3a1c77e2b54d08";
const JWT_SECRET: &str = "jwt-secret-5b0e8d2f41c97a36aa0e8d2f41c97a36";
const ADMIN_TOKEN: &str = "admin-token-c41d7e9a03b6f258";

fn get(url: &str, bearer: Option<&str>) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(token) = bearer {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    req.call().ok().map(|r| r.status().as_u16())
}

#[test]
fn no_secret_is_logged_at_trace_level() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new(LINK_TOKEN)))
        .expect("sim starts");
    let link_url = sim.url();
    let host = TracedHost::start(&[
        ("LINK_URL", link_url.as_str()),
        ("LINK_TOKEN", LINK_TOKEN),
        ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN),
        ("GATEWAY_JWT_SECRET", JWT_SECRET),
    ]);
    let (http, admin) = (host.http, host.admin);
    let caller = Command::new(BIN)
        .args(["token", "--sub", "42", "--topics", "guild:*"])
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("token");
    let caller = String::from_utf8_lossy(&caller.stdout).trim().to_string();
    assert!(caller.len() > 20, "a caller token was minted");
    // Authenticated requests on both listeners (their headers must not be traced either).
    assert_eq!(
        get(
            &format!("http://127.0.0.1:{http}/api/commands/nope"),
            Some(&caller)
        )
        .map(|s| s != 401),
        Some(true)
    );
    assert_eq!(
        get(
            &format!("http://127.0.0.1:{admin}/admin/components"),
            Some(ADMIN_TOKEN)
        ),
        Some(200)
    );
    runtime.block_on(async {
        sim.control().emit(5);
        tokio::time::sleep(Duration::from_millis(300)).await;
    });

    let logs = host.stop();
    assert!(
        logs.contains("TRACE"),
        "the host really logged at trace level"
    );
    assert!(
        logs.contains("link connected"),
        "the link came up during the run"
    );
    for (name, secret) in [
        ("LINK_TOKEN", LINK_TOKEN),
        ("GATEWAY_JWT_SECRET", JWT_SECRET),
        ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN),
        ("the caller token", caller.as_str()),
    ] {
        assert!(!logs.contains(secret), "{name} appears in the trace logs");
    }
    runtime.block_on(sim.shutdown());
}
