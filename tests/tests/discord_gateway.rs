//! Direct Discord mode, gateway side, against the fake Discord on loopback: identify →
//! dispatches on the bus and to an SSE client (compressed and not), zombie detection →
//! resume with nothing lost or repeated, op 7, op 9 (both kinds, the non-resumable one
//! marking the loss), and the fatal close codes stopping with a clear error and no retry.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_tests::commands::{Request, TestHost, test_config};
use gateway_tests::discord::{
    CHANNEL, close_fatally, content, discord_to, fast_discord_config, start_fake,
};
use gateway_tests::{collect, sse_client, wait_state, wait_until};

const T: Duration = Duration::from_secs(10);

async fn identify_and_receive(compress: bool) -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let (_bus, mut sub, link) = discord_to(&fake, |c| {
        c.compress = compress;
        c.intents = 513;
    })?;
    wait_state(&link, LinkState::Connected, T).await?;
    let ready = collect(&mut sub, 1, T).await?;
    assert_eq!(ready[0].t, "READY");
    let (session, _) = fake.control().session().expect("a session");
    assert_eq!(&*ready[0].session_id, session);
    assert_eq!(fake.control().identifies(), 1);
    assert_eq!(fake.control().compressed_connections(), u64::from(compress));
    let identify = fake.control().last_identify().expect("identified");
    assert_eq!(identify["intents"], 513);

    for i in 0..50 {
        fake.control().message_create(CHANNEL, &format!("m{i}"));
    }
    let events = collect(&mut sub, 50, T).await?;
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.t, "MESSAGE_CREATE");
        assert_eq!(ev.seq, i as u64 + 2, "seq order after READY (seq 1)");
        assert_eq!(content(ev), format!("m{i}"), "raw d intact");
        assert!(ev.loss_before.is_none());
    }
    // Heartbeats flow and are ACKed (an RTT was measured).
    wait_until(T, "a heartbeat ACK", || link.stats().rtt_samples > 0).await?;
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn identify_then_dispatches_reach_the_bus_uncompressed() -> anyhow::Result<()> {
    identify_and_receive(false).await
}

#[tokio::test]
async fn identify_then_dispatches_reach_the_bus_with_zlib_stream() -> anyhow::Result<()> {
    identify_and_receive(true).await
}

#[tokio::test]
async fn dispatches_reach_an_sse_client() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let ready = Request::get("/readyz").send(host.addr).await?;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let token = host
        .host
        .auth
        .mint("42", vec!["*".into()], vec![], Duration::from_secs(60))?;
    let topic = format!("/api/stream?topics=channel:{CHANNEL}");
    let mut stream = sse_client::get(
        &host.addr.to_string(),
        &topic,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await?;
    assert_eq!(stream.status, 200);
    fake.control().message_create(CHANNEL, "to the browser");
    let (_, name, data) = stream.next_event(T).await?.expect("an event");
    assert_eq!(name, "MESSAGE_CREATE");
    assert_eq!(data["data"]["content"], "to the browser", "{data}");
    host.host.link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_zombie_connection_is_resumed_with_no_event_lost_or_repeated() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let (_bus, mut sub, link) = discord_to(&fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    collect(&mut sub, 1, T).await?; // READY
    for i in 0..3 {
        fake.control()
            .message_create(CHANNEL, &format!("before {i}"));
    }
    collect(&mut sub, 3, T).await?;
    assert!(fake.control().zombie(), "a live connection went silent");
    for i in 0..3 {
        fake.control()
            .message_create(CHANNEL, &format!("during {i}"));
    }
    // The fake neither ACKs nor delivers: only zombie detection can bring these.
    let events = collect(&mut sub, 4, T).await?;
    let names: Vec<(String, u64)> = events.iter().map(|e| (content(e), e.seq)).collect();
    assert_eq!(
        names,
        vec![
            ("during 0".into(), 5),
            ("during 1".into(), 6),
            ("during 2".into(), 7),
            (String::new(), 8)
        ]
    );
    assert_eq!(events[3].t, "RESUMED");
    assert!(events.iter().all(|e| e.loss_before.is_none()));
    assert_eq!(link.stats().zombies, 1);
    assert_eq!(fake.control().resumes(), 1);
    assert_eq!(
        fake.control().resumes_on_resume_url(),
        1,
        "resumed on resume_gateway_url"
    );
    assert_eq!(fake.control().identifies(), 1, "no new session");
    fake.control().message_create(CHANNEL, "after");
    let after = collect(&mut sub, 1, T).await?;
    assert_eq!((content(&after[0]), after[0].seq), ("after".into(), 9));
    assert!(sub.try_recv()?.is_none(), "nothing repeated");
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn op7_reconnect_resumes_the_session() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let (_bus, mut sub, link) = discord_to(&fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    collect(&mut sub, 1, T).await?;
    assert!(fake.control().reconnect());
    wait_until(T, "a resume", || fake.control().resumes() == 1).await?;
    let resumed = collect(&mut sub, 1, T).await?;
    assert_eq!(resumed[0].t, "RESUMED");
    fake.control().message_create(CHANNEL, "x");
    let ev = collect(&mut sub, 1, T).await?;
    assert_eq!(content(&ev[0]), "x");
    assert_eq!(fake.control().identifies(), 1);
    assert_eq!(fake.control().connections(), 2);
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn op9_resumable_resumes_and_op9_not_resumable_identifies_and_marks_the_loss()
-> anyhow::Result<()> {
    let fake = start_fake().await?;
    let (_bus, mut sub, link) = discord_to(&fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    collect(&mut sub, 1, T).await?;
    let (first_session, _) = fake.control().session().expect("session");

    assert!(fake.control().invalid_session(true));
    wait_until(T, "a resume", || fake.control().resumes() == 1).await?;
    assert_eq!(collect(&mut sub, 1, T).await?[0].t, "RESUMED");
    assert_eq!(fake.control().identifies(), 1);

    assert!(fake.control().invalid_session(false));
    // Events Discord had for the old session are gone for good.
    fake.control().message_create(CHANNEL, "lost");
    wait_until(T, "a second identify", || fake.control().identifies() == 2).await?;
    let ready = collect(&mut sub, 1, T).await?;
    assert_eq!(ready[0].t, "READY");
    assert_ne!(&*ready[0].session_id, first_session);
    assert!(
        ready[0].loss_before.is_some(),
        "the new session's first event marks the loss (SSE: reset)"
    );
    fake.control().message_create(CHANNEL, "new");
    let ev = collect(&mut sub, 1, T).await?;
    assert_eq!((content(&ev[0]), ev[0].loss_before), ("new".into(), None));
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn close_4004_stops_with_a_clear_error_no_retry_and_readyz_503() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    close_fatally(&fake, &host.host.link).await?;
    let reason = host.host.link.stopped_reason().unwrap_or_default();
    assert!(
        reason.contains("4004") && reason.contains("DISCORD_BOT_TOKEN"),
        "{reason}"
    );
    let ready = Request::get("/readyz").send(host.addr).await?;
    assert_eq!(ready.status, 503);
    let doc = ready.json()?;
    assert!(
        doc["error"].as_str().is_some_and(|e| e.contains("4004")),
        "{doc}"
    );
    // Several backoff periods later: no new connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.control().connections(), 1, "no retry loop");
    assert_eq!(host.host.link.state(), LinkState::Idle);
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn every_fatal_close_code_stops_and_4000_resumes() -> anyhow::Result<()> {
    for code in [4010u16, 4011, 4012, 4013, 4014] {
        let fake = start_fake().await?;
        let (_bus, _sub, link) = discord_to(&fake, |_| {})?;
        wait_state(&link, LinkState::Connected, T).await?;
        fake.control().close(code);
        wait_until(T, "the stop reason", || link.stopped_reason().is_some()).await?;
        assert!(
            link.stopped_reason()
                .is_some_and(|r| r.contains(&code.to_string()))
        );
        fake.shutdown().await;
    }
    let fake = start_fake().await?;
    let (_bus, _sub, link) = discord_to(&fake, |_| {})?;
    wait_state(&link, LinkState::Connected, T).await?;
    fake.control().close(4000);
    wait_until(T, "a resume after 4000", || fake.control().resumes() == 1).await?;
    assert!(link.stopped_reason().is_none());
    link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_refused_resume_reaches_sse_clients_as_reset() -> anyhow::Result<()> {
    let fake = start_fake().await?;
    let host = TestHost::start_upstream(fast_discord_config(&fake), test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let token = host
        .host
        .auth
        .mint("42", vec!["*".into()], vec![], Duration::from_secs(60))?;
    let topic = format!("/api/stream?topics=channel:{CHANNEL}");
    let mut stream = sse_client::get(
        &host.addr.to_string(),
        &topic,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await?;
    fake.control().message_create(CHANNEL, "before");
    let (_, name, _) = stream.next_event(T).await?.expect("an event");
    assert_eq!(name, "MESSAGE_CREATE");
    // The session is invalidated (op 9 false) and this event dies with it.
    fake.control().invalid_session(false);
    fake.control().message_create(CHANNEL, "lost");
    wait_until(T, "a new session", || fake.control().identifies() == 2).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    fake.control().message_create(CHANNEL, "after");
    let (_, name, data) = stream.next_event(T).await?.expect("the reset");
    assert_eq!(name, "reset", "{data}");
    assert_eq!(data["cause"], "upstream_loss", "{data}");
    let (_, name, data) = stream.next_event(T).await?.expect("the next event");
    assert_eq!(
        (name.as_str(), &data["data"]["content"]),
        ("MESSAGE_CREATE", &serde_json::json!("after"))
    );
    host.host.link.shutdown().await;
    fake.shutdown().await;
    Ok(())
}
