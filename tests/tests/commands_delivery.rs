//! Each command kind goes through HTTP, the real default components, the link and the
//! simulator, comes back as a 200 with the outcome, and the simulator's follow-up event
//! (with the command's traceId) reaches the host's bus. The outcome can be read back by
//! its owner only.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::commands::{TestHost, test_config};
use gateway_tests::{bounded, start_sim, wait_state};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

async fn echo_of(
    sub: &mut gateway_host::bus::Subscription,
    trace_id: &str,
) -> anyhow::Result<(String, Value)> {
    bounded(T, &format!("the follow-up event of {trace_id}"), async {
        loop {
            let event = sub.recv().await?;
            if event.trace_id == trace_id {
                return Ok((event.t.clone(), serde_json::from_str(event.d.get())?));
            }
        }
    })
    .await
}

#[tokio::test]
async fn every_kind_is_delivered_and_echoed() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let mut sub = host.host.bus.subscribe(1000);
    let token = host.token("1001", &["*"]);
    let channel = "200000000000000001";

    let cases = [
        (
            "send-message",
            json!({"channelId": channel, "content": "hello from the test", "nonce": "n-1"}),
            "MESSAGE_CREATE",
        ),
        (
            "add-reaction",
            json!({"channelId": channel, "messageId": "300000000000000001", "emoji": "👍"}),
            "MESSAGE_REACTION_ADD",
        ),
        (
            "typing-start",
            json!({"channelId": channel}),
            "TYPING_START",
        ),
    ];
    for (kind, body, event_name) in cases {
        let reply = host.command(kind, &token, &body).await?;
        assert_eq!(reply.status, 200, "{kind}: {}", reply.body);
        let doc = reply.json()?;
        assert_eq!(doc["outcome"], "delivered", "{doc}");
        assert_eq!(doc["kind"], kind);
        assert_eq!(doc["attempts"], 1);
        assert!(
            doc["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{doc}"
        );
        let request_id = doc["requestId"].as_str().unwrap_or_default().to_string();
        let trace_id = doc["traceId"].as_str().unwrap_or_default().to_string();
        assert_eq!(request_id.len(), 32, "{doc}");

        let (t, d) = echo_of(&mut sub, &trace_id).await?;
        assert_eq!(t, event_name);
        assert_eq!(d["channel_id"], channel, "{d}");
        if kind == "send-message" {
            assert_eq!(d["content"], "hello from the test");
            assert_eq!(doc["result"]["messageId"], d["id"]);
        }

        let status = host.status(&request_id, &token).await?;
        assert_eq!(status.status, 200);
        assert_eq!(status.json()?["outcome"], "delivered");
        let stranger = host.token("1002", &["*"]);
        let hidden = host.status(&request_id, &stranger).await?;
        assert_eq!(hidden.status, 404, "another user must not see it");
    }
    let received = sim.received_commands();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| !r.duplicate));
    Ok(())
}

#[tokio::test]
async fn custom_emoji_markup_is_normalised_before_sending() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let token = host.token("1001", &["add-reaction"]);
    let body = json!({"channelId": "5", "messageId": "6", "emoji": "<:party:123456789>"});
    let reply = host.command("add-reaction", &token, &body).await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = sim.received_commands();
    let wire = serde_json::to_value(&sent[0].command)?;
    assert_eq!(wire["body"]["emoji"], "party:123456789");
    Ok(())
}

#[tokio::test]
async fn status_needs_a_token() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    let reply = gateway_tests::commands::Request::get("/api/commands/abc")
        .send(host.addr)
        .await?;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()?["error"]["code"], "unauthorized");
    Ok(())
}
