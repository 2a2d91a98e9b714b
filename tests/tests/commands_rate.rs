//! The limiter slot through HTTP: the 11th command to one channel inside the bucket's
//! burst gets 429 with `Retry-After` and `retryAfterMs`; after the refill it passes again;
//! and a limiter swapped mid-burst keeps the buckets (the state lives in the host).

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_host::policy::SlotKind;
use gateway_host::policy::defaults::default_component;
use gateway_tests::commands::{TestHost, limiter_config, test_config};
use gateway_tests::{start_sim, wait_state};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn eleventh_send_is_429_until_the_refill() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        limiter_config(
            c,
            &[
                ("burst", "10"),
                ("refill-tokens", "10"),
                ("refill-interval-ms", "1500"),
            ],
        )
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let token = host.token("42", &["*"]);
    let body = |i: usize| json!({"channelId": "77", "content": format!("burst {i}")});

    for i in 0..10 {
        let reply = host.command("send-message", &token, &body(i)).await?;
        assert_eq!(reply.status, 200, "send {i}: {}", reply.body);
    }
    let limited = host.command("send-message", &token, &body(10)).await?;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let doc = limited.json()?;
    assert_eq!(doc["error"]["code"], "rate_limited");
    let retry_ms = doc["error"]["retryAfterMs"].as_u64().unwrap_or(0);
    assert!((1..=1500).contains(&retry_ms), "{doc}");
    let header: u64 = limited.header("Retry-After").unwrap_or("").parse()?;
    assert_eq!(header, retry_ms.div_ceil(1000).max(1));

    // Another channel has its own bucket.
    let other = json!({"channelId": "78", "content": "other channel"});
    assert_eq!(
        host.command("send-message", &token, &other).await?.status,
        200
    );

    tokio::time::sleep(Duration::from_millis(retry_ms + 20)).await;
    let again = host.command("send-message", &token, &body(11)).await?;
    assert_eq!(again.status, 200, "after the refill: {}", again.body);
    assert_eq!(
        sim.received_commands().len(),
        12,
        "a 429 never reaches the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn limiter_swap_mid_burst_keeps_the_buckets() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    // A refill far away, so only the kept bucket can explain the 429.
    let config = test_config(|c| {
        limiter_config(
            c,
            &[
                ("burst", "10"),
                ("refill-tokens", "10"),
                ("refill-interval-ms", "600000"),
            ],
        )
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let token = host.token("43", &["typing-start"]);
    let body = json!({"channelId": "88"});
    let before = host.host.policies.slot(SlotKind::RateLimiter).info().swaps;

    for i in 0..6 {
        let reply = host.command("typing-start", &token, &body).await?;
        assert_eq!(reply.status, 200, "send {i}: {}", reply.body);
    }
    let bytes = default_component(SlotKind::RateLimiter).to_vec();
    // The same component with the same configuration, swapped in.
    let config = host
        .host
        .policies
        .slot(SlotKind::RateLimiter)
        .current()
        .config()
        .clone();
    host.host
        .policies
        .load(SlotKind::RateLimiter, bytes, "test".into(), config)
        .await?;
    assert_eq!(
        host.host.policies.slot(SlotKind::RateLimiter).info().swaps,
        before + 1,
        "the limiter was swapped"
    );
    for i in 6..10 {
        let reply = host.command("typing-start", &token, &body).await?;
        assert_eq!(reply.status, 200, "send {i} after the swap: {}", reply.body);
    }
    let limited = host.command("typing-start", &token, &body).await?;
    assert_eq!(
        limited.status, 429,
        "a fresh bucket would have allowed this: {}",
        limited.body
    );
    assert!(limited.header("Retry-After").is_some());
    Ok(())
}
