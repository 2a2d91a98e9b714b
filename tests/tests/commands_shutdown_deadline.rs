//! Queued commands at shutdown when the link stays down: at the drain deadline every
//! queued command ends `shutdown`; each waiting caller gets `503` with
//! `outcome: "shutdown"`, the outcome store says `shutdown`, a WARN record names each one,
//! and nothing new is accepted (`503 shutting_down`). Own binary: the log capture is per
//! thread.

use std::time::{Duration, Instant};

use gateway_host::link::LinkState;
use gateway_tests::commands::{TestHost, post_in_background, test_config};
use gateway_tests::{LogCapture, bounded, start_sim, wait_state, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn queued_commands_end_shutdown_at_the_drain_deadline() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    let config = test_config(|c| c.commands.ack_wait_ms = 30_000)?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.take_link_down(&sim).await?;
    let token = host.token("3001", &["*"]);
    let callers: Vec<_> = (0..3)
        .map(|i| post_in_background(host.addr, &token, &format!("{}", 810 + i)))
        .collect();
    let commands = host.host.commands.clone();
    wait_until(T, "three commands queued", || commands.outstanding() == 3).await?;

    let started = Instant::now();
    bounded(T, "the drain", async {
        host.host.commands.drain(Duration::from_millis(300)).await;
        Ok(())
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(host.host.commands.outstanding(), 0);

    for caller in callers {
        let reply = bounded(T, "a waiting caller's answer", async { caller.await? }).await?;
        assert_eq!(reply.status, 503, "{}", reply.body);
        let doc = reply.json()?;
        assert_eq!(doc["error"]["code"], "shutdown", "{doc}");
        assert_eq!(doc["error"]["outcome"], "shutdown");
        assert_eq!(doc["error"]["attempts"], 0, "never written to the link");
        let id = doc["error"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = host.status(&id, &token).await?;
        assert_eq!(
            status.json()?["outcome"],
            "shutdown",
            "the outcome store agrees"
        );
        assert!(logs.text().contains(&id), "its end is logged");
    }
    assert!(logs.text().contains("not delivered before shutdown"));

    let late = json!({"channelId": "820", "content": "too late"});
    let reply = host.command("send-message", &token, &late).await?;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()?["error"]["code"], "shutting_down");
    assert!(reply.header("Retry-After").is_some());
    assert!(sim.received_commands().is_empty());
    Ok(())
}
