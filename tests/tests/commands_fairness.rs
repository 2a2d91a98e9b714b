//! Fairness between users of the command API.
//!
//! * While the link is down, one user flooding commands (each to a new channel, so each
//!   gets a fresh rate-limit bucket) is stopped at its share of the queue with
//!   `429 too_many_pending`; another user's command is still accepted (202), where before
//!   the whole queue filled and everyone else got `503 queue_full`.
//! * A user flooding invalid commands gets `429 too_many_invalid` once its budget is
//!   spent, before any body parsing or validator call: the command-validator's call count
//!   stops moving. Other users are unaffected.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_host::policy::SlotKind;
use gateway_tests::commands::{Request, TestHost, test_config};
use gateway_tests::{start_sim, wait_state, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn one_users_flood_leaves_another_users_command_accepted() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    // The default per-user share (100) below a queue of 150 the flood would otherwise fill.
    let config = test_config(|c| {
        c.commands.queue_capacity = 150;
        c.commands.ack_wait_ms = 0;
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.take_link_down(&sim).await?;

    let alice = host.token("1001", &["*"]);
    let mut accepted = 0;
    let mut limited = None;
    for i in 0..150 {
        // A new channel each time: a fresh rate-limit bucket each time.
        let body = json!({"channelId": format!("{}", 5000 + i), "content": "flood"});
        let reply = host.command("send-message", &alice, &body).await?;
        match reply.status {
            202 => accepted += 1,
            429 => {
                limited = Some(reply);
                break;
            }
            other => anyhow::bail!("flood command {i}: unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(accepted, 100, "the flood stops at the per-user share");
    let limited = limited.ok_or_else(|| anyhow::anyhow!("the flood was never limited"))?;
    let doc = limited.json()?;
    assert_eq!(doc["error"]["code"], "too_many_pending", "{doc}");
    assert_eq!(doc["error"]["limit"], 100);
    assert!(limited.header("Retry-After").is_some());

    let bob = host.token("1002", &["*"]);
    let body = json!({"channelId": "6000", "content": "hello from bob"});
    let reply = host.command("send-message", &bob, &body).await?;
    assert_eq!(
        reply.status, 202,
        "another user is unaffected: {}",
        reply.body
    );

    // The link comes back: everything is delivered, and alice may send again.
    sim.control().set_refuse_auth(false);
    let commands = host.host.commands.clone();
    wait_until(
        Duration::from_secs(60),
        "every queued command finished",
        || commands.outstanding() == 0,
    )
    .await?;
    assert_eq!(sim.received_commands().len(), 101);
    assert_eq!(host.host.commands.outstanding_for("1001"), 0);
    let again = json!({"channelId": "5000", "content": "after"});
    let reply = host.command("send-message", &alice, &again).await?;
    assert!(reply.status == 200 || reply.status == 202, "{}", reply.body);
    Ok(())
}

#[tokio::test]
async fn invalid_command_flood_is_refused_before_the_validator() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    // No refill within the test: the budget only comes back after 10 minutes.
    let config = test_config(|c| c.commands.invalid_refill_ms = 600_000)?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let validator_calls = || {
        host.host
            .policies
            .slot(SlotKind::CommandValidator)
            .info()
            .current
            .calls
    };
    let mallory = host.token("2001", &["*"]);
    // A string where a snowflake belongs: only the validator component can say no.
    let invalid = json!({"channelId": "not-a-snowflake"});
    let burst = host.host.commands.settings().invalid_burst;
    assert_eq!(burst, 20, "the documented default");
    let before = validator_calls();
    for i in 0..burst {
        let reply = host.command("typing-start", &mallory, &invalid).await?;
        assert_eq!(reply.status, 400, "invalid {i}: {}", reply.body);
        assert_eq!(reply.json()?["error"]["code"], "validation_failed");
    }
    assert_eq!(validator_calls(), before + u64::from(burst));

    let limited = host.command("typing-start", &mallory, &invalid).await?;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let doc = limited.json()?;
    assert_eq!(doc["error"]["code"], "too_many_invalid", "{doc}");
    assert!(doc["error"]["retryAfterMs"].as_u64().unwrap_or(0) > 0);
    assert!(limited.header("Retry-After").is_some());
    let spent = validator_calls();
    for i in 0..50 {
        let reply = host.command("typing-start", &mallory, &invalid).await?;
        assert_eq!(reply.status, 429, "flood {i}: {}", reply.body);
    }
    let garbage = Request::post("/api/commands/typing-start", "{not json")
        .bearer(&mallory)
        .json()
        .send(host.addr)
        .await?;
    assert_eq!(garbage.status, 429, "refused unread: {}", garbage.body);
    assert_eq!(
        validator_calls(),
        spent,
        "no validator call while the budget is spent"
    );

    let alice = host.token("2002", &["*"]);
    let valid = json!({"channelId": "7001"});
    let reply = host.command("typing-start", &alice, &valid).await?;
    assert_eq!(
        reply.status, 200,
        "another user is unaffected: {}",
        reply.body
    );
    assert_eq!(host.host.commands.invalid_budget().tracked(), 1);
    Ok(())
}
