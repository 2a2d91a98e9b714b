//! Cluster mode in direct Discord mode (issue 12): the link holder holds the Discord
//! Gateway session; when it hands over, the next holder **resumes** that session (Ready's
//! resume URL travels in the cluster stream) instead of identifying, so no dispatch is lost
//! or repeated and clients see no `reset`.

use std::time::Duration;

use gateway_tests::cluster::{ClusterHost, wait_one_holder};
use gateway_tests::discord::{CHANNEL, fast_discord_config, start_fake};
use gateway_tests::nats::NatsServer;
use gateway_tests::wait_until;

const T: Duration = Duration::from_secs(15);

/// Reads until `contents` holds `n` messages: their contents and upstream seqs, and the
/// name of every event read.
async fn read_messages(
    client: &mut gateway_tests::sse_client::SseResponse,
    n: usize,
    contents: &mut Vec<String>,
    seqs: &mut Vec<u64>,
    names: &mut Vec<String>,
) -> anyhow::Result<()> {
    while contents.len() < n {
        let (_, name, data) = client
            .next_event(T)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ended"))?;
        if name == "MESSAGE_CREATE" {
            contents.push(
                data["data"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            seqs.push(data["upstreamSeq"].as_u64().unwrap_or(0));
        }
        names.push(name);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_holder_resumes_the_discord_session_of_the_previous_one() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let fake = start_fake().await?;
    let mut hosts = Vec::new();
    for id in ["discord-a", "discord-b"] {
        let h = ClusterHost::start_upstream(&nats.url(), fast_discord_config(&fake), id, |_| {})
            .await?;
        h.wait_reading().await?;
        hosts.push(h);
    }
    let refs: Vec<&ClusterHost> = hosts.iter().collect();
    let holder = wait_one_holder(&refs).await?;
    wait_until(T, "the holder's Discord session", || {
        fake.control().has_live_connection() && fake.control().session().is_some()
    })
    .await?;
    let watcher = 1 - holder;
    let mut client = hosts[watcher].open_stream(None).await?;
    let mut contents = Vec::new();
    let mut seqs = Vec::new();
    let mut names = Vec::new();
    for i in 0..10 {
        fake.control().message_create(CHANNEL, &format!("m{i}"));
    }
    read_messages(&mut client, 10, &mut contents, &mut seqs, &mut names).await?;
    let identifies = fake.control().identifies();
    let old = hosts.remove(holder);
    old.stop().await?;
    // Dispatched while the link changes hands: Discord replays them on the resume.
    for i in 10..20 {
        fake.control().message_create(CHANNEL, &format!("m{i}"));
    }
    let refs: Vec<&ClusterHost> = hosts.iter().collect();
    wait_one_holder(&refs).await?;
    read_messages(&mut client, 20, &mut contents, &mut seqs, &mut names).await?;
    assert_eq!(
        contents,
        (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "every dispatch once, in order"
    );
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert!(!names.iter().any(|n| n == "reset"), "no loss: {names:?}");
    assert_eq!(
        fake.control().identifies(),
        identifies,
        "the session was resumed, not identified anew"
    );
    assert!(
        fake.control().resumes_on_resume_url() >= 1,
        "resumed on Ready's resume URL"
    );
    Ok(())
}
