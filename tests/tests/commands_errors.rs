//! Every refusal before the queue, through HTTP, in the one error shape: 401, 403, 413,
//! 415, 400 for bad JSON and unknown/missing fields, and 400 for each rule of the default
//! command-validator component. Nothing refused here reaches the simulator.

use std::time::Duration;

use gateway_tests::commands::{Reply, Request, TestHost, test_config};
use gateway_tests::start_sim;
use serde_json::{Value, json};

fn assert_error(reply: &Reply, status: u16, code: &str) -> anyhow::Result<Value> {
    assert_eq!(reply.status, status, "{}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["version"], "1.0", "{doc}");
    assert_eq!(doc["error"]["code"], code, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(doc["traceId"].as_str().map(str::len), Some(16), "{doc}");
    Ok(doc)
}

/// The (field, code) pairs of a 400.
fn field_codes(doc: &Value) -> Vec<(String, String)> {
    doc["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                    (s("field"), s("code"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn auth_failures_are_401_and_403() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    let body = json!({"channelId": "1"});

    let none = Request::post("/api/commands/typing-start", body.to_string())
        .json()
        .send(host.addr)
        .await?;
    assert_error(&none, 401, "unauthorized")?;
    let garbage = host.command("typing-start", "not-a-jwt", &body).await?;
    assert_error(&garbage, 401, "unauthorized")?;
    let other_secret = gateway_host::auth::Authenticator::new(&gateway_host::config::Secret::new(
        "some-other-secret",
    ))
    .mint("1", vec![], vec!["*".into()], Duration::from_secs(60))?;
    let forged = host.command("typing-start", &other_secret, &body).await?;
    assert_error(&forged, 401, "unauthorized")?;

    let only_typing = host.token("7", &["typing-start"]);
    let denied = host
        .command(
            "send-message",
            &only_typing,
            &json!({"channelId": "1", "content": "x"}),
        )
        .await?;
    assert_error(&denied, 403, "forbidden")?;
    assert!(sim.received_commands().is_empty());
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_are_refused() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|c| c.commands.max_body_bytes = 4096)?).await?;
    let token = host.token("7", &["*"]);

    let big = json!({"channelId": "1", "content": "x".repeat(5000)});
    let oversize = host.command("send-message", &token, &big).await?;
    assert_error(&oversize, 413, "payload_too_large")?;

    let text = Request::post("/api/commands/typing-start", r#"{"channelId":"1"}"#)
        .bearer(&token)
        .header("Content-Type", "text/plain")
        .send(host.addr)
        .await?;
    assert_error(&text, 415, "unsupported_media_type")?;

    let junk = Request::post("/api/commands/typing-start", "{not json")
        .bearer(&token)
        .json()
        .send(host.addr)
        .await?;
    assert_error(&junk, 400, "invalid_json")?;

    let unknown = host
        .command(
            "typing-start",
            &token,
            &json!({"channelId": "1", "guildId": "2"}),
        )
        .await?;
    let doc = assert_error(&unknown, 400, "invalid_body")?;
    assert_eq!(
        field_codes(&doc),
        [("guildId".into(), "unknown_field".into())]
    );

    let shapes = host
        .command(
            "add-reaction",
            &token,
            &json!({"channelId": 1, "emoji": "👍"}),
        )
        .await?;
    let doc = assert_error(&shapes, 400, "invalid_body")?;
    let codes = field_codes(&doc);
    assert!(
        codes.contains(&("channelId".into(), "invalid_type".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("messageId".into(), "missing_field".into())),
        "{codes:?}"
    );
    assert!(sim.received_commands().is_empty());
    Ok(())
}

#[tokio::test]
async fn each_validator_rule_is_a_400_with_its_field() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    let token = host.token("7", &["*"]);
    let cases: [(&str, Value, &str, &str); 10] = [
        (
            "send-message",
            json!({"channelId": "abc", "content": "hi"}),
            "channelId",
            "invalid_snowflake",
        ),
        (
            "send-message",
            json!({"channelId": "0", "content": "hi"}),
            "channelId",
            "invalid_snowflake",
        ),
        (
            "send-message",
            json!({"channelId": "1", "content": ""}),
            "content",
            "empty",
        ),
        (
            "send-message",
            json!({"channelId": "1", "content": "   "}),
            "content",
            "blank",
        ),
        (
            "send-message",
            json!({"channelId": "1", "content": "é".repeat(2001)}),
            "content",
            "too_long",
        ),
        (
            "send-message",
            json!({"channelId": "1", "content": "hi", "nonce": "n".repeat(26)}),
            "nonce",
            "invalid_nonce",
        ),
        (
            "add-reaction",
            json!({"channelId": "1", "messageId": "x1", "emoji": "👍"}),
            "messageId",
            "invalid_snowflake",
        ),
        (
            "add-reaction",
            json!({"channelId": "1", "messageId": "2", "emoji": "nope"}),
            "emoji",
            "invalid_emoji",
        ),
        (
            "add-reaction",
            json!({"channelId": "1", "messageId": "2", "emoji": "a:123"}),
            "emoji",
            "invalid_emoji",
        ),
        (
            "typing-start",
            json!({"channelId": "99999999999999999999"}),
            "channelId",
            "invalid_snowflake",
        ),
    ];
    for (kind, body, field, code) in cases {
        let reply = host.command(kind, &token, &body).await?;
        let doc = assert_error(&reply, 400, "validation_failed")?;
        assert_eq!(
            field_codes(&doc),
            [(field.to_string(), code.to_string())],
            "{kind} {body}"
        );
    }
    // All rules at once are all reported.
    let all = host
        .command(
            "add-reaction",
            &token,
            &json!({"channelId": "x", "messageId": "y", "emoji": "z"}),
        )
        .await?;
    let doc = assert_error(&all, 400, "validation_failed")?;
    assert_eq!(field_codes(&doc).len(), 3);
    assert!(sim.received_commands().is_empty());
    Ok(())
}
