//! The link goes down: 1000 commands are accepted and held, the 1001st gets 503 with
//! `Retry-After`; the link comes back and all 1000 are delivered in FIFO order, each
//! exactly once at the simulator, and each ends `delivered` for its owner.

use std::collections::HashSet;
use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_protocol::CommandBody;
use gateway_tests::commands::{TestHost, limiter_config, test_config};
use gateway_tests::{start_sim, wait_state, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);
const N: usize = 1000;

#[tokio::test]
async fn thousand_queued_while_down_then_delivered_in_order() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.commands.queue_capacity = N;
        c.commands.max_per_user = N; // one user fills the whole queue here, on purpose
        c.commands.ack_wait_ms = 0; // answer 202 at once: the link is down anyway
        limiter_config(c, &[("burst", "100000")]);
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.take_link_down(&sim).await?;

    let token = host.token("5", &["send-message"]);
    let started = std::time::Instant::now();
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let body = json!({"channelId": "900", "content": format!("m{i}")});
        let reply = host.command("send-message", &token, &body).await?;
        assert_eq!(reply.status, 202, "command {i}: {}", reply.body);
        let doc = reply.json()?;
        assert_eq!(doc["outcome"], "pending");
        ids.push(doc["requestId"].as_str().unwrap_or_default().to_string());
    }
    let overflow = json!({"channelId": "900", "content": "one too many"});
    let full = host.command("send-message", &token, &overflow).await?;
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.json()?["error"]["code"], "queue_full");
    assert!(full.header("Retry-After").is_some());
    assert!(
        sim.received_commands().is_empty(),
        "nothing reached the upstream yet"
    );

    eprintln!("queued {N} in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    sim.control().set_refuse_auth(false);
    let commands = host.host.commands.clone();
    wait_until(
        Duration::from_secs(60),
        "every queued command finished",
        || commands.outstanding() == 0,
    )
    .await?;

    eprintln!("delivered {N} in {:?}", started.elapsed());
    let received = sim.received_commands();
    assert_eq!(
        received.len(),
        N,
        "each command exactly once at the simulator"
    );
    assert!(received.iter().all(|r| !r.duplicate));
    let contents: Vec<String> = received
        .iter()
        .map(|r| match &r.command.body {
            CommandBody::SendMessage(m) => m.content.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected, "FIFO order");
    let sent_ids: Vec<&str> = received
        .iter()
        .map(|r| r.command.request_id.as_str())
        .collect();
    assert_eq!(sent_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), N);

    for id in [&ids[0], &ids[N / 2], &ids[N - 1]] {
        let status = host.status(id, &token).await?;
        assert_eq!(status.json()?["outcome"], "delivered", "{id}");
    }
    // Room again: the queue accepts new commands.
    let after = host.command("send-message", &token, &overflow).await?;
    assert!(after.status == 200 || after.status == 202, "{}", after.body);
    Ok(())
}
