//! A redacting router that fails intermittently must never let an original payload reach
//! an SSE client under the redacting-safe failure policies (issue 10).
//!
//! `redacting-router` replaces every MESSAGE_CREATE's `content` with `"[redacted]"` and
//! traps on every 5th call. It is hot-loaded through the admin API, a real SSE client
//! subscribes to everything, the simulator sends a few hundred events, and the client's
//! MESSAGE_CREATE events are compared with the originals the simulator sent:
//!
//! * `fail-closed`: the failed calls' events are dropped; nothing original gets out.
//! * `fail-previous` (previous = the same redacting router, loaded first, that never traps,
//!   tagged `previous`): the previous version answers the failed calls (some events carry
//!   its tag); nothing original gets out.
//! * `fail-open` (the default for the router): the failed calls' events are delivered with
//!   the original payload, a leak this test shows exists, so the other two prove the
//!   policy is what keeps the content in.

use std::collections::HashSet;
use std::time::Duration;

use gateway_host::policy::{FailurePolicy, SlotKind, SlotSettings};
use gateway_tests::admin::AdminServer;
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::policy::{REDACTING_ROUTER, relaxed_limits};
use gateway_tests::sse_client::get;
use gateway_tests::wait_until;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const EVENTS: usize = 400;

/// What the SSE client got, against what the simulator sent.
struct Outcome {
    /// MESSAGE_CREATE events received.
    messages: usize,
    /// Of those, how many carried an original content.
    leaked: usize,
    /// Of those, how many the previous version answered (`redactedBy: previous`).
    by_previous: usize,
    /// MESSAGE_CREATE events the simulator sent.
    sent: usize,
}

async fn run(failure: FailurePolicy, with_previous: bool) -> anyhow::Result<Outcome> {
    let h = start_host(|c| {
        // Not about deadlines: a descheduled call thread must not look like a failure.
        c.policy.limits = relaxed_limits();
        c.policy.slots.insert(
            SlotKind::EventRouter,
            SlotSettings {
                failure,
                config: Vec::new(),
            },
        );
    })
    .await?;
    let admin = AdminServer::start(h.host().policies.clone()).await?;
    if with_previous {
        let (status, body) = admin
            .put_with_config(
                "event-router",
                REDACTING_ROUTER,
                "trap-every = 0\ntag = \"previous\"\n",
            )
            .await?;
        anyhow::ensure!(status == 200, "{body}");
    }
    let (status, body) = admin
        .put_with_config(
            "event-router",
            REDACTING_ROUTER,
            "trap-every = 5\ntag = \"current\"\n",
        )
        .await?;
    anyhow::ensure!(status == 200, "{body}");
    route_and_collect(&h).await
}

async fn route_and_collect(h: &TestHost) -> anyhow::Result<Outcome> {
    let auth = h.bearer(&["*"]);
    let mut client = get(
        &h.addr,
        "/api/stream?topics=*",
        &[("Authorization", auth.as_str())],
    )
    .await?;
    anyhow::ensure!(client.status == 200, "stream refused");
    let slot = h.host().policies.slot(SlotKind::EventRouter);
    let calls_before = slot.current().info().calls;
    h.sim.control().emit(EVENTS);
    // Every event has been through the live version once the call count says so; then
    // the hub has published them all and the client drains what it was sent.
    wait_until(T, "every event routed", || {
        slot.current().info().calls >= calls_before + EVENTS as u64
    })
    .await?;
    // The simulator's own record of what it sent (a fresh simulator: from seq 1).
    let upstream: Vec<Value> = h
        .sim
        .control()
        .event_frames(1)
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter(|v| v["t"] == "MESSAGE_CREATE")
        .collect();
    let sent = upstream.len();
    let originals: HashSet<String> = upstream
        .iter()
        .filter_map(|v| v["d"]["content"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(
        !originals.is_empty(),
        "the simulator sent messages with content"
    );
    let mut outcome = Outcome {
        messages: 0,
        leaked: 0,
        by_previous: 0,
        sent,
    };
    // Drain: everything was published before this point, so a quiet second means done.
    while let Ok(Some((_, name, data))) = client.next_event(Duration::from_secs(1)).await {
        if name != "MESSAGE_CREATE" {
            continue;
        }
        outcome.messages += 1;
        let content = data["data"]["content"].as_str().unwrap_or_default();
        if content != "[redacted]" || originals.contains(content) {
            outcome.leaked += 1;
        }
        if data["data"]["redactedBy"] == "previous" {
            outcome.by_previous += 1;
        }
    }
    Ok(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_never_delivers_the_original_content() -> anyhow::Result<()> {
    let o = run(FailurePolicy::FailClosed, false).await?;
    assert!(
        o.messages >= 30,
        "many messages get through: {}",
        o.messages
    );
    assert_eq!(o.leaked, 0, "no original content reached the client");
    assert!(
        o.messages < o.sent,
        "the failed calls' events were dropped ({} of {})",
        o.messages,
        o.sent
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_previous_answers_with_the_previous_redacting_version() -> anyhow::Result<()> {
    let o = run(FailurePolicy::FailPrevious, true).await?;
    assert!(
        o.messages >= 30,
        "many messages get through: {}",
        o.messages
    );
    assert_eq!(o.leaked, 0, "no original content reached the client");
    assert!(
        o.by_previous > 0,
        "the previous version answered the failed calls"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_leaks_the_original_content() -> anyhow::Result<()> {
    let o = run(FailurePolicy::FailOpen, false).await?;
    assert!(
        o.leaked > 0,
        "fail-open delivers the original payload of the failed calls ({} messages)",
        o.messages
    );
    Ok(())
}
