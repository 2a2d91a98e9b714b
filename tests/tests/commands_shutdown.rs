//! Queued commands at shutdown each reach a terminal outcome (the drain deadline case,
//! with its log records, is in `commands_shutdown_deadline.rs`: log capture needs its own
//! binary).
//!
//! * The link comes back during the drain: every queued command is delivered and the
//!   drain ends as soon as they are, well before its deadline.
//! * Through `serve_host`: a shutdown signal with a caller waiting on a queued command
//!   answers that caller `503 shutdown` and returns within `[server] shutdown-timeout-ms`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_host::link::LinkState;
use gateway_host::server::{Host, serve_host};
use gateway_tests::commands::{TestHost, post_in_background, test_config};
use gateway_tests::{TOKEN, bounded, fast_link_config, start_sim, wait_state, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn queued_commands_are_delivered_within_the_drain_deadline() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| c.commands.ack_wait_ms = 0)?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    host.take_link_down(&sim).await?;
    let token = host.token("3002", &["*"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"channelId": format!("{}", 830 + i), "content": "queued"});
        let reply = host.command("send-message", &token, &body).await?;
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.push(
            reply.json()?["requestId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }

    let commands = host.host.commands.clone();
    let started = Instant::now();
    let drain = tokio::spawn(async move { commands.drain(Duration::from_secs(30)).await });
    sim.control().set_refuse_auth(false);
    bounded(
        Duration::from_secs(25),
        "the drain to end once all are delivered",
        async {
            drain.await?;
            Ok(())
        },
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "ended before its deadline"
    );
    assert_eq!(sim.received_commands().len(), 3);
    for id in &ids {
        let status = host.status(id, &token).await?;
        assert_eq!(status.json()?["outcome"], "delivered", "{id}");
    }
    Ok(())
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_host_answers_waiting_callers_before_it_returns() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.commands.ack_wait_ms = 30_000;
        c.server.shutdown_timeout_ms = 2_000;
    })?;
    let mut config = config;
    config.http_addr = free_addr()?;
    config.admin_addr = free_addr()?;
    let host = Host::start(&config, fast_link_config(&sim.url(), TOKEN))?;
    let (link, commands, auth) = (host.link.clone(), host.commands.clone(), host.auth.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served_config = config.clone();
    let server = tokio::spawn(async move {
        serve_host(host, &served_config, async move {
            let _ = stopped.await;
        })
        .await
    });
    wait_state(&link, LinkState::Connected, T).await?;
    sim.control().set_refuse_auth(true);
    sim.control().drop_links();
    wait_state(&link, LinkState::Reconnecting, T).await?;

    let token = auth.mint(
        "3003",
        vec!["*".into()],
        vec!["*".into()],
        Duration::from_secs(600),
    )?;
    let caller = post_in_background(config.http_addr, &token, "840");
    wait_until(T, "the command queued", || commands.outstanding() == 1).await?;
    let started = Instant::now();
    let _ = stop.send(());
    let reply = bounded(T, "the waiting caller's answer", async { caller.await? }).await?;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()?["error"]["outcome"], "shutdown");
    bounded(T, "serve_host to return", async { server.await? }).await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    Ok(())
}
