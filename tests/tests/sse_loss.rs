//! Loss is never silent: an event the link marks with `loss_before` makes the hub publish
//! a `reset` with its own host id before it. Live clients get it whatever their topics;
//! a client resuming from before it gets it in its replay, then the events after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_host::bus::BusEvent;
use gateway_protocol::RawValue;
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::sse_client::{SseResponse, get};
use gateway_tests::wait_until;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

async fn open(h: &TestHost, query: &str, extra: &[(&str, &str)]) -> anyhow::Result<SseResponse> {
    let auth = h.bearer(&["*"]);
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let r = get(&h.addr, &format!("/api/stream{query}"), &headers).await?;
    anyhow::ensure!(r.status == 200, "status {}", r.status);
    Ok(r)
}

async fn next(r: &mut SseResponse) -> anyhow::Result<(Option<String>, String, Value)> {
    r.next_event(T)
        .await?
        .ok_or_else(|| anyhow::anyhow!("stream closed"))
}

/// An event after a loss, straight onto the bus (as the link publishes it).
fn after_loss(seq: u64) -> Arc<BusEvent> {
    Arc::new(BusEvent {
        session_id: "new-session".into(),
        seq,
        trace_id: "after-loss".into(),
        t: "MESSAGE_CREATE".into(),
        ts: 0,
        d: RawValue::from_string(r#"{"guild_id":"77","channel_id":"78"}"#.into())
            .expect("valid json"),
        received_at: Instant::now(),
        loss_before: Some("upstream seq gap"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_reaches_live_and_resuming_clients_as_reset() -> anyhow::Result<()> {
    let h = start_host(|c| c.stream.heartbeat_ms = 60_000).await?;
    let mut live = open(&h, "", &[]).await?;
    // A client whose topics the next event does not match still hears of the loss.
    let mut other = open(&h, "?topics=guild:1", &[]).await?;
    h.sim.control().emit(5);
    let mut last = None;
    for _ in 0..5 {
        last = next(&mut live).await?.0;
    }
    let last = last.expect("events have ids");

    h.host().bus.publish(after_loss(1));
    let (reset_id, name, data) = next(&mut live).await?;
    assert_eq!(name, "reset", "{data}");
    let reset_id = reset_id.expect("a loss reset has a host id");
    assert_eq!(data["id"].as_str(), Some(reset_id.as_str()));
    assert_eq!(data["cause"], "upstream_loss");
    assert!(
        data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("upstream seq gap")),
        "{data}"
    );
    let (event_id, name, env) = next(&mut live).await?;
    assert_eq!(
        (name.as_str(), env["traceId"].as_str()),
        ("MESSAGE_CREATE", Some("after-loss"))
    );
    let seq = |id: &str| id.split_once('-').and_then(|(_, s)| s.parse::<u64>().ok());
    assert_eq!(
        seq(&reset_id).map(|s| s + 1),
        event_id.as_deref().and_then(seq),
        "the reset takes the host id just before the event"
    );
    let (id, name, _) = next(&mut other).await?;
    assert_eq!(
        (id.as_deref(), name.as_str()),
        (Some(reset_id.as_str()), "reset")
    );

    // Resuming from before the loss: the reset comes in the replay, then the event.
    wait_until(T, "hub published", || {
        h.host().hub.last_id().map(|i| i.to_string()) == event_id
    })
    .await?;
    let mut resumed = open(&h, "", &[("Last-Event-ID", &last)]).await?;
    let (id, name, _) = next(&mut resumed).await?;
    assert_eq!(
        (id.as_deref(), name.as_str()),
        (Some(reset_id.as_str()), "reset")
    );
    let (id, _, _) = next(&mut resumed).await?;
    assert_eq!(id, event_id);
    // Resuming from the reset itself: nothing replayed twice, no second reset.
    let mut after = open(&h, "", &[("Last-Event-ID", &reset_id)]).await?;
    let (id, name, _) = next(&mut after).await?;
    assert_eq!((id, name.as_str()), (event_id, "MESSAGE_CREATE"));
    Ok(())
}
