//! Every log record about a command carries its traceId: the handler's records and the
//! dispatcher's (sent, delivered) alike. Own binary: the log capture is per thread.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::commands::{TestHost, test_config};
use gateway_tests::{LogCapture, start_sim, wait_state};
use serde_json::json;

#[tokio::test]
async fn command_logs_carry_the_trace_id() -> anyhow::Result<()> {
    let (logs, _guard) = LogCapture::install();
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    wait_state(
        &host.host.link,
        LinkState::Connected,
        Duration::from_secs(10),
    )
    .await?;
    let token = host.token("9", &["*"]);
    let reply = host
        .command("typing-start", &token, &json!({"channelId": "3"}))
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let trace_id = reply.json()?["traceId"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let text = logs.text();
    for message in ["command queued", "sent on the link", "command delivered"] {
        // Other tests of this binary log too: look for this command's record.
        assert!(
            text.lines()
                .any(|l| l.contains(message) && l.contains(&trace_id)),
            "no {message:?} record with the traceId {trace_id} in:\n{text}"
        );
    }
    Ok(())
}
