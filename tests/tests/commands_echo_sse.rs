//! A command's echo reaches browsers: a send-message posted over HTTP comes back as a
//! MESSAGE_CREATE on `/api/stream` for the channel's topic, with the command's traceId.

use std::time::Duration;

use gateway_tests::host::start_host;
use gateway_tests::sse_client::get;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_arrives_on_the_stream() -> anyhow::Result<()> {
    let h = start_host(|_| {}).await?;
    let channel = "200000000000000042";
    let auth = h.bearer(&[&format!("channel:{channel}")]);
    let mut stream = get(
        &h.addr,
        &format!("/api/stream?topics=channel:{channel}"),
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(stream.status, 200);

    let token = h.token("100000000000000001", &["*"]);
    let body = json!({ "channelId": channel, "content": "hello from the browser", "nonce": "n-1" });
    let answer = h.server().command("send-message", &token, &body).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let reply = answer.json()?;
    let trace_id = reply["traceId"].as_str().expect("traceId").to_string();

    let (_, name, envelope) = stream
        .next_event(Duration::from_secs(10))
        .await?
        .expect("the echo");
    assert_eq!(name, "MESSAGE_CREATE");
    assert_eq!(envelope["channelId"], channel);
    assert_eq!(envelope["traceId"], trace_id.as_str());
    assert_eq!(envelope["data"]["content"], "hello from the browser");
    assert_eq!(envelope["data"]["nonce"], "n-1");
    Ok(())
}
