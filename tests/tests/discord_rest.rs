//! Direct Discord mode, REST side, against the fake Discord: the three command kinds
//! reach the right method, path and headers; bucket headers are honoured (the fake counts
//! every request sent into a bucket known to be empty); a bucket 429 delays only that
//! bucket, a global 429 pauses everything; 50013 becomes `rejected` with the code; a
//! send-message retried after a lost answer is not posted twice (nonce).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_discord::{FakeDiscord, FakeOptions, Fault};
use gateway_host::link::{LinkHandle, LinkState};
use gateway_protocol::{Ack, AddReaction, Command, CommandBody, SendMessage, TypingStart};
use gateway_tests::commands::{TestHost, test_config};
use gateway_tests::discord::{BOT_TOKEN, discord_to, fast_discord_config, start_fake};
use gateway_tests::{bounded, wait_state};
use serde_json::json;
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(10);
const C1: &str = "1110000000000000001";
const C2: &str = "1110000000000000002";

fn send_message(rid: &str, channel: &str, content: &str) -> Command {
    Command {
        request_id: rid.into(),
        trace_id: format!("t-{rid}"),
        body: CommandBody::SendMessage(SendMessage {
            channel_id: channel.into(),
            content: content.into(),
            nonce: None,
        }),
    }
}

/// Acks in arrival order, kept so that none is lost while waiting for another.
struct Acks {
    rx: broadcast::Receiver<Arc<Ack>>,
    seen: Vec<(Instant, Arc<Ack>)>,
}

impl Acks {
    fn new(link: &LinkHandle) -> Acks {
        Acks {
            rx: link.acks(),
            seen: Vec::new(),
        }
    }

    /// The ack for `rid` and when it arrived.
    async fn get(&mut self, rid: &str) -> anyhow::Result<(Instant, Arc<Ack>)> {
        bounded(T, &format!("ack {rid}"), async {
            loop {
                if let Some(found) = self.seen.iter().find(|(_, a)| a.request_id == rid) {
                    return Ok(found.clone());
                }
                let ack = self.rx.recv().await?;
                self.seen.push((Instant::now(), ack));
            }
        })
        .await
    }
}

async fn ack_for(acks: &mut Acks, rid: &str) -> anyhow::Result<Arc<Ack>> {
    Ok(acks.get(rid).await?.1)
}

async fn connected(fake: &FakeDiscord) -> anyhow::Result<LinkHandle> {
    let (_bus, _sub, link) = discord_to(fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    Ok(link)
}

#[tokio::test]
async fn the_three_commands_reach_rest_with_method_path_and_headers() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let link = connected(&fake).await?;
    let mut acks = Acks::new(&link);
    link.send_command(send_message("r1", C1, "hello"))?;
    let a1 = ack_for(&mut acks, "r1").await?;
    assert!(a1.ok, "{a1:?}");
    link.send_command(Command {
        request_id: "r2".into(),
        trace_id: "t2".into(),
        body: CommandBody::AddReaction(AddReaction {
            channel_id: C1.into(),
            message_id: "1300000000000000009".into(),
            emoji: "👍".into(),
        }),
    })?;
    assert!(ack_for(&mut acks, "r2").await?.ok);
    link.send_command(Command {
        request_id: "r3".into(),
        trace_id: "t3".into(),
        body: CommandBody::TypingStart(TypingStart {
            channel_id: C1.into(),
        }),
    })?;
    assert!(ack_for(&mut acks, "r3").await?.ok);

    let requests: Vec<_> = fake
        .control()
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/channels/"))
        .collect();
    let lines: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("POST".into(), format!("/api/v10/channels/{C1}/messages")),
            (
                "PUT".into(),
                format!(
                    "/api/v10/channels/{C1}/messages/1300000000000000009/reactions/%F0%9F%91%8D/@me"
                )
            ),
            ("POST".into(), format!("/api/v10/channels/{C1}/typing")),
        ]
    );
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bot {BOT_TOKEN}").as_str())
        );
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("DiscordBot (")),
            "{:?}",
            r.header("user-agent")
        );
    }
    let body = requests[0].body.clone().unwrap_or_default();
    assert_eq!(body["content"], "hello");
    assert_eq!(body["enforce_nonce"], true);
    assert!(
        body["nonce"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && n.len() <= 25)
    );
    assert_eq!(
        a1.result.as_ref().map(|r| r["messageId"].is_string()),
        Some(true)
    );
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bucket_headers_are_honoured_so_no_request_hits_an_empty_bucket() -> anyhow::Result<()> {
    // Buckets of 5 per second: 12 messages to one channel need three windows.
    let fake = start_fake().await?;
    let link = connected(&fake).await?;
    let mut acks = Acks::new(&link);
    let start = Instant::now();
    for i in 0..12 {
        link.send_command(send_message(&format!("b{i}"), C1, &format!("m{i}")))?;
    }
    for i in 0..12 {
        assert!(ack_for(&mut acks, &format!("b{i}")).await?.ok);
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "waited for resets"
    );
    assert_eq!(fake.control().bucket_violations(), 0);
    assert_eq!(fake.control().messages().len(), 12);
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_bucket_429_delays_only_that_bucket() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let link = connected(&fake).await?;
    let mut acks = Acks::new(&link);
    fake.control().inject(
        Some(C1),
        Fault::RateLimited {
            retry_after: 0.6,
            global: false,
        },
    );
    let start = Instant::now();
    link.send_command(send_message("slow", C1, "a"))?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    link.send_command(send_message("fast", C2, "b"))?;
    let (fast_at, fast) = acks.get("fast").await?;
    let (slow_at, slow) = acks.get("slow").await?;
    let (fast_at, slow_at) = (fast_at - start, slow_at - start);
    assert!(fast.ok && slow.ok);
    assert!(
        fast_at < Duration::from_millis(500),
        "other bucket not delayed: {fast_at:?}"
    );
    assert!(
        slow_at >= Duration::from_millis(600),
        "retry_after honoured: {slow_at:?}"
    );
    assert_eq!(fake.control().bucket_violations(), 0);
    assert_eq!(fake.control().messages().len(), 2);
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_global_429_pauses_every_bucket() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let link = connected(&fake).await?;
    let mut acks = Acks::new(&link);
    fake.control().inject(
        Some(C1),
        Fault::RateLimited {
            retry_after: 0.6,
            global: true,
        },
    );
    let start = Instant::now();
    link.send_command(send_message("g1", C1, "a"))?;
    bounded(T, "the 429", async {
        while !fake.control().requests().iter().any(|r| r.status == 429) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    })
    .await?;
    link.send_command(send_message("g2", C2, "b"))?;
    let (other_at, other) = acks.get("g2").await?;
    assert!(other.ok);
    assert!(other_at - start >= Duration::from_millis(600), "paused too");
    assert!(ack_for(&mut acks, "g1").await?.ok);
    assert_eq!(fake.control().global_violations(), 0);
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn missing_permissions_becomes_rejected_with_the_discord_code() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    fake.control().inject(
        None,
        Fault::Error {
            status: 403,
            code: 50013,
            message: "Missing Permissions".into(),
        },
    );
    let token = host.token("42", &["*"]);
    let reply = host
        .command(
            "send-message",
            &token,
            &json!({"channelId": C1, "content": "hi"}),
        )
        .await?;
    let doc = reply.json()?;
    assert_eq!(doc["error"]["outcome"], "rejected", "{doc}");
    assert_eq!(doc["error"]["upstreamCode"], "forbidden", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("50013") && message.contains("Missing Permissions"),
        "{doc}"
    );
    assert!(fake.control().messages().is_empty());
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_retried_send_message_is_not_duplicated() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    // Discord creates the message but the answer is lost (500): the retry must carry the
    // same nonce, and Discord answers it with the message it already has.
    fake.control().inject(None, Fault::CommitThen500);
    let token = host.token("42", &["*"]);
    let reply = host
        .command(
            "send-message",
            &token,
            &json!({"channelId": C1, "content": "once"}),
        )
        .await?;
    let doc = reply.json()?;
    assert_eq!(doc["outcome"], "delivered", "{doc}");
    assert_eq!(doc["attempts"], 2, "{doc}");
    assert_eq!(fake.control().messages().len(), 1, "posted once");
    let posts: Vec<_> = fake
        .control()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].status, 500);
    let nonce = |i: usize| posts[i].body.as_ref().map(|b| b["nonce"].clone());
    assert_eq!(nonce(0), nonce(1));
    assert_eq!(
        doc["result"]["messageId"],
        fake.control().messages()[0]["id"]
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_stops_at_gateway_bot_with_a_clear_error() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(FakeOptions::new("another-token")).await?;
    let (_bus, _sub, link) = discord_to(&fake, |_| {})?;
    bounded(T, "the stop reason", async {
        while link.stopped_reason().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    })
    .await?;
    let reason = link.stopped_reason().unwrap_or_default();
    assert!(
        reason.contains("DISCORD_BOT_TOKEN") && reason.contains("401"),
        "{reason}"
    );
    assert_eq!(fake.control().connections(), 0);
    fake.shutdown().await;
    Ok(())
}
