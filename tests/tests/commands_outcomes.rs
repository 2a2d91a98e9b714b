//! Every accepted command ends in exactly one terminal outcome, whatever the link does:
//! a slow ack gives 202 then `delivered` by GET; a drop with commands in flight re-sends
//! them with the same requestId (the simulator acts once); retryable failures are
//! retried; a final refusal is `rejected` (422); a command the link cannot take in time
//! is `expired` (504).

use std::collections::HashMap;
use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_protocol::CommandBody;
use gateway_sim::FailMode;
use gateway_tests::commands::{TestHost, limiter_config, test_config};
use gateway_tests::{start_sim, wait_state, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn request_id(doc: &serde_json::Value) -> String {
    doc["requestId"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn slow_ack_answers_202_then_get_shows_delivered() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|c| c.commands.ack_wait_ms = 50)?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    sim.control().set_ack_delay(Duration::from_millis(400));
    let token = host.token("9", &["*"]);
    let reply = host
        .command("typing-start", &token, &json!({"channelId": "1"}))
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = request_id(&reply.json()?);
    assert_eq!(
        reply.header("Location"),
        Some(format!("/api/commands/{id}").as_str())
    );
    assert_eq!(
        host.status(&id, &token).await?.json()?["outcome"],
        "pending"
    );
    let commands = host.host.commands.clone();
    wait_until(T, "the slow ack", || commands.outstanding() == 0).await?;
    let doc = host.status(&id, &token).await?.json()?;
    assert_eq!(doc["outcome"], "delivered", "{doc}");
    assert!(doc["latencyMs"].as_f64().unwrap_or(0.0) >= 400.0, "{doc}");
    Ok(())
}

#[tokio::test]
async fn drop_with_commands_in_flight_resends_and_acts_once() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.commands.ack_wait_ms = 0;
        limiter_config(c, &[("burst", "1000")]);
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    // Acks come late, so the drop catches commands executed but not yet acked.
    sim.control().set_ack_delay(Duration::from_millis(300));
    let token = host.token("9", &["*"]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let channel = format!("{}", 10 + i % 4);
        let body = json!({"channelId": channel, "content": format!("c{i}")});
        ids.push(request_id(
            &host.command("send-message", &token, &body).await?.json()?,
        ));
    }
    wait_until(T, "the first commands at the simulator", || {
        !sim.received_commands().is_empty()
    })
    .await?;
    sim.control().drop_links();
    sim.control().set_ack_delay(Duration::ZERO);
    let commands = host.host.commands.clone();
    wait_until(Duration::from_secs(30), "every command finished", || {
        commands.outstanding() == 0
    })
    .await?;

    for id in &ids {
        assert_eq!(
            host.status(id, &token).await?.json()?["outcome"],
            "delivered"
        );
    }
    let received = sim.received_commands();
    let mut firsts: HashMap<String, usize> = HashMap::new();
    let mut per_channel: HashMap<String, Vec<String>> = HashMap::new();
    for r in received.iter().filter(|r| !r.duplicate) {
        *firsts.entry(r.command.request_id.clone()).or_default() += 1;
        if let CommandBody::SendMessage(m) = &r.command.body {
            per_channel
                .entry(m.channel_id.clone())
                .or_default()
                .push(m.content.clone());
        }
    }
    assert!(
        received.iter().any(|r| r.duplicate),
        "commands in flight at the drop were re-sent (and de-duplicated)"
    );
    assert_eq!(firsts.len(), 20, "every command acted on");
    assert!(
        firsts.values().all(|n| *n == 1),
        "none acted on twice: {firsts:?}"
    );
    for (channel, contents) in per_channel {
        let mut sorted = contents.clone();
        sorted.sort_by_key(|c| c[1..].parse::<u32>().unwrap_or(0));
        assert_eq!(contents, sorted, "order kept in channel {channel}");
    }
    Ok(())
}

#[tokio::test]
async fn retryable_failures_are_retried_until_delivered() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.commands.ack_wait_ms = 0;
        c.commands.retry_base_ms = 20;
        c.commands.retry_cap_ms = 100;
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    sim.control().set_fail_acks(Some(FailMode::Retryable));
    let token = host.token("9", &["*"]);
    let reply = host
        .command("typing-start", &token, &json!({"channelId": "3"}))
        .await?;
    let id = request_id(&reply.json()?);
    wait_until(T, "three failed attempts", || {
        sim.received_commands().len() >= 3
    })
    .await?;
    sim.control().set_fail_acks(None);
    let commands = host.host.commands.clone();
    wait_until(T, "the retry that succeeds", || commands.outstanding() == 0).await?;
    let doc = host.status(&id, &token).await?.json()?;
    assert_eq!(doc["outcome"], "delivered", "{doc}");
    assert!(doc["attempts"].as_u64().unwrap_or(0) >= 4, "{doc}");
    Ok(())
}

#[tokio::test]
async fn final_refusal_is_rejected_with_422() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    sim.control().set_fail_acks(Some(FailMode::Fatal));
    let token = host.token("9", &["*"]);
    let reply = host
        .command("typing-start", &token, &json!({"channelId": "3"}))
        .await?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["error"]["code"], "rejected");
    assert_eq!(doc["error"]["upstreamCode"], "forbidden");
    assert_eq!(doc["error"]["attempts"], 1);
    let id = doc["error"]["requestId"].as_str().unwrap_or_default();
    let status = host.status(id, &token).await?.json()?;
    assert_eq!(status["outcome"], "rejected");
    assert_eq!(status["rejection"]["code"], "forbidden");
    assert_eq!(status["traceId"], doc["traceId"]);
    Ok(())
}

#[tokio::test]
async fn a_command_the_link_cannot_take_expires() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.commands.expiry_ms = 300;
        c.commands.ack_wait_ms = 2_000;
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.take_link_down(&sim).await?;
    let token = host.token("9", &["*"]);
    let reply = host
        .command("typing-start", &token, &json!({"channelId": "3"}))
        .await?;
    assert_eq!(reply.status, 504, "{}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["error"]["code"], "expired");
    assert_eq!(
        doc["error"]["attempts"], 0,
        "never sent, so certainly not acted on"
    );
    let id = doc["error"]["requestId"].as_str().unwrap_or_default();
    assert_eq!(host.status(id, &token).await?.json()?["outcome"], "expired");

    sim.control().set_refuse_auth(false);
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sim.received_commands().is_empty(),
        "an expired command is never sent"
    );
    Ok(())
}
