//! Direct Discord mode in operation, against the fake Discord on loopback: the `[discord]`
//! section of the configuration file (env overriding it), commands over REST while the
//! gateway is down (and failing clearly once the session stopped for good), the session
//! resumed across a host restart from the state file (no event lost, RESUME not
//! IDENTIFY), and no Identify while `session_start_limit.remaining` is 0.

use std::time::{Duration, Instant};

use gateway_host::bus::Bus;
use gateway_host::config::Config;
use gateway_host::link::LinkState;
use gateway_host::server::Upstream;
use gateway_tests::commands::{TestHost, test_config};
use gateway_tests::discord::{
    BOT_TOKEN, CHANNEL, close_fatally, content, discord_to, fast_discord_config, start_fake,
};
use gateway_tests::{collect, wait_state, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_discord_config_section_configures_the_session_and_env_overrides_it()
-> anyhow::Result<()> {
    let fake = start_fake().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("host.toml");
    std::fs::write(
        &path,
        format!(
            "[discord]\nintents = 513\ncompress = \"none\"\napi-base = \"{}\"\n\
             gateway-url = \"{}\"\nshard = [0, 2]\n",
            fake.api_base(),
            fake.gateway_url()
        ),
    )?;
    // The token comes from the environment only; DISCORD_INTENTS overrides the file.
    let env = |k: &str| match k {
        "DISCORD_BOT_TOKEN" => Some(BOT_TOKEN.to_string()),
        "DISCORD_INTENTS" => Some("515".to_string()),
        _ => None,
    };
    let config = Config::load_with(Some(&path), env)?;
    let Upstream::Discord(discord) = Upstream::from_config_and_lookup(&config.discord, env)? else {
        anyhow::bail!("a bot token selects direct Discord mode");
    };
    assert_eq!(discord.api_base, fake.api_base());
    let link = gateway_host::discord::spawn(discord, Bus::new())?;
    wait_state(&link, LinkState::Connected, T).await?;
    let identify = fake.control().last_identify().expect("identified");
    assert_eq!(identify["intents"], 515, "env overrides the file");
    assert_eq!(identify["shard"], json!([0, 2]), "shard from the file");
    assert_eq!(
        fake.control().compressed_connections(),
        0,
        "compress from the file"
    );
    link.shutdown().await;

    // A token in the file is refused: it stays in the environment.
    std::fs::write(&path, "[discord]\ntoken = \"nope\"\n")?;
    let err = format!(
        "{:#}",
        Config::load_with(Some(&path), env).expect_err("refused")
    );
    assert!(err.contains("token"), "{err}");
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn commands_flow_over_rest_while_the_gateway_is_down() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    fake.control().refuse_gateway(true);
    assert!(fake.control().close(4000));
    wait_until(T, "the gateway session down", || {
        host.host.link.state() != LinkState::Connected
    })
    .await?;
    let token = host.token("42", &["*"]);
    let reply = host
        .command(
            "send-message",
            &token,
            &json!({"channelId": CHANNEL, "content": "while down"}),
        )
        .await?;
    let doc = reply.json()?;
    assert_eq!(doc["outcome"], "delivered", "{doc}");
    assert_eq!(fake.control().messages().len(), 1);
    assert_ne!(
        host.host.link.state(),
        LinkState::Connected,
        "delivered while the gateway was still down"
    );
    // The gateway comes back by itself.
    fake.control().refuse_gateway(false);
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.host.link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn after_a_fatal_close_commands_fail_clearly_at_once() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    close_fatally(&fake, &host.host.link).await?;
    let token = host.token("42", &["*"]);
    let started = Instant::now();
    let reply = host
        .command(
            "send-message",
            &token,
            &json!({"channelId": CHANNEL, "content": "never"}),
        )
        .await?;
    let doc = reply.json()?;
    assert_eq!(doc["error"]["outcome"], "rejected", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("4004"), "{doc}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not left to expire"
    );
    assert!(fake.control().messages().is_empty());
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_restarted_host_resumes_its_session_from_the_state_file() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("discord.json");
    let with_state = |c: &mut gateway_host::discord::DiscordConfig| {
        c.state_file = Some(state.clone());
        c.state_interval = Duration::from_millis(10);
    };

    let (_bus, mut sub, link) = discord_to(&fake, with_state)?;
    wait_state(&link, LinkState::Connected, T).await?;
    for i in 0..3 {
        fake.control()
            .message_create(CHANNEL, &format!("first {i}"));
    }
    let first = collect(&mut sub, 4, T).await?; // READY + 3
    assert_eq!(first[3].seq, 4);
    link.shutdown().await;
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state)?)?;
    assert_eq!(saved["lastSeq"], 4, "{saved}");

    // Emitted while no host runs: Discord keeps them for a resume.
    for i in 0..2 {
        fake.control()
            .message_create(CHANNEL, &format!("missed {i}"));
    }
    let (_bus, mut sub, link) = discord_to(&fake, with_state)?;
    wait_state(&link, LinkState::Connected, T).await?;
    let events = collect(&mut sub, 3, T).await?;
    let got: Vec<(String, u64, String)> = events
        .iter()
        .map(|e| (e.t.clone(), e.seq, content(e)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("MESSAGE_CREATE".into(), 5, "missed 0".into()),
            ("MESSAGE_CREATE".into(), 6, "missed 1".into()),
            ("RESUMED".into(), 7, String::new()),
        ]
    );
    assert!(events.iter().all(|e| e.loss_before.is_none()));
    assert_eq!(fake.control().identifies(), 1, "RESUME, not IDENTIFY");
    assert_eq!(fake.control().resumes(), 1);
    link.shutdown().await;

    // A corrupt file is not trusted: the host identifies afresh.
    std::fs::write(&state, "{\"v\":1,\"sessionId\":")?;
    let (_bus, _sub, link) = discord_to(&fake, with_state)?;
    wait_state(&link, LinkState::Connected, T).await?;
    assert_eq!(fake.control().identifies(), 2);
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn no_identify_while_session_starts_are_exhausted() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let (_bus, _sub, link) = discord_to(&fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    assert_eq!(fake.control().identifies(), 1);
    // No starts left for 800 ms; the session is then invalidated (a new Identify needed).
    fake.control().set_start_limit(0, 800);
    let started = Instant::now();
    assert!(fake.control().invalid_session(false));
    wait_until(T, "a second Identify", || fake.control().identifies() == 2).await?;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "identified after {:?}, before reset_after",
        started.elapsed()
    );
    assert_eq!(fake.control().start_limit_violations(), 0);
    wait_state(&link, LinkState::Connected, T).await?;
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}
