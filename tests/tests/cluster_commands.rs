//! Cluster-mode commands (issue 12, "Deliver 4"): two hosts on one private `nats-server`,
//! each with its own NATS connection, policies, `cluster::start_commands` (relay link,
//! command pipeline with the remote limiter, command server) and `commands::router` on
//! loopback; the link holder's real link goes to a real
//! simulator. Which host holds the link is driven by hand through the `held` watch.
//!
//! * A command posted to the host without the link is delivered once (the simulator's
//!   record by requestId) and its outcome is read back on that host.
//! * Commands in flight when the holder changes are each delivered once and all end
//!   `delivered`, well before `resend-after` (only the relay's generation change can
//!   explain the re-send).
//! * One user's commands alternated across two hosts are limited as one bucket.
//! * With no holder, a rate request is refused `503 limiter_unavailable` and a queued
//!   command waits and ends by the pipeline's rules (`expired`, never sent).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_host::auth::Authenticator;
use gateway_host::cluster::relay_link::METRIC_RELAYED;
use gateway_host::cluster::{self, ClusterCommands, CommandServer, Nats, start_commands};
use gateway_host::commands::{self, CommandPipeline, Finished, Outcome};
use gateway_host::config::{Config, Secret};
use gateway_host::link::{LinkHandle, LinkState};
use gateway_host::policy::Policies;
use gateway_protocol::{CommandBody, SendMessage};
use gateway_sim::SimHandle;
use gateway_tests::commands::{JWT_SECRET, Reply, Request, limiter_config, test_config};
use gateway_tests::nats::NatsServer;
use gateway_tests::{bounded, link_to, start_sim, wait_state, wait_until};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(10);

/// One host of the cluster, without the parts commands do not use.
struct ClusterHost {
    relay: LinkHandle,
    pipeline: CommandPipeline,
    held: watch::Sender<Option<LinkHandle>>,
    auth: Authenticator,
    addr: SocketAddr,
    server: Option<CommandServer>,
    http: JoinHandle<()>,
}

impl Drop for ClusterHost {
    fn drop(&mut self) {
        self.http.abort();
    }
}

impl ClusterHost {
    async fn start(nats_url: &str, id: &str, config: &Config) -> anyhow::Result<ClusterHost> {
        let mut settings = cluster::config::ClusterSettings::new(nats_url);
        settings.holder_id = id.to_string();
        settings.command_status_every = Duration::from_millis(50);
        settings.request_timeout = Duration::from_secs(5);
        let nats: Nats = cluster::connect(nats_url, Duration::from_secs(5)).await?;
        let policies = Arc::new(Policies::start(
            config.policy.clone(),
            None,
            config.max_component_bytes,
        )?);
        let (held, held_rx) = watch::channel(None);
        let ClusterCommands {
            pipeline,
            relay,
            server,
        } = start_commands(
            &nats,
            &settings,
            config.commands.clone(),
            held_rx,
            policies.clone(),
        );
        let auth = Authenticator::with_settings(&Secret::new(JWT_SECRET), config.auth.clone());
        let app = commands::router(auth.clone(), policies, pipeline.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ClusterHost {
            relay,
            pipeline,
            held,
            auth,
            addr,
            server: Some(server),
            http,
        })
    }

    fn token(&self, sub: &str) -> String {
        self.auth
            .mint(
                sub,
                vec!["*".into()],
                vec!["*".into()],
                Duration::from_secs(600),
            )
            .unwrap_or_default()
    }

    async fn send_message(
        &self,
        token: &str,
        channel: &str,
        content: &str,
    ) -> anyhow::Result<Reply> {
        Request::post(
            "/api/commands/send-message",
            json!({"channelId": channel, "content": content}).to_string(),
        )
        .bearer(token)
        .json()
        .send(self.addr)
        .await
    }

    async fn status(&self, token: &str, request_id: &str) -> anyhow::Result<Reply> {
        Request::get(&format!("/api/commands/{request_id}"))
            .bearer(token)
            .send(self.addr)
            .await
    }
}

/// A simulator, a NATS server and two hosts `a` and `b`, neither holding the link yet.
async fn cluster(
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<(SimHandle, NatsServer, ClusterHost, ClusterHost)> {
    let sim = start_sim().await?;
    let nats = NatsServer::start()?;
    let config = test_config(tweak)?;
    let a = ClusterHost::start(&nats.url(), "host-a", &config).await?;
    let b = ClusterHost::start(&nats.url(), "host-b", &config).await?;
    Ok((sim, nats, a, b))
}

/// A real link from a holder to `sim`, connected.
async fn connected_link(sim: &SimHandle) -> anyhow::Result<LinkHandle> {
    let (_bus, _sub, link) = link_to(sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    Ok(link)
}

/// How many times the simulator *acted* on each requestId (duplicates are not acted on).
fn acted(sim: &SimHandle) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in sim.received_commands() {
        if !r.duplicate {
            *counts.entry(r.command.request_id).or_default() += 1;
        }
    }
    counts
}

fn message(channel: &str, content: &str) -> CommandBody {
    CommandBody::SendMessage(SendMessage {
        channel_id: channel.into(),
        content: content.into(),
        nonce: None,
    })
}

#[tokio::test]
async fn a_command_posted_to_a_host_without_the_link_is_delivered_once_and_read_back_there()
-> anyhow::Result<()> {
    gateway_host::metrics::install();
    let (sim, _nats, a, b) = cluster(|_| {}).await?;
    let link = connected_link(&sim).await?;
    a.held.send_replace(Some(link));
    wait_state(&b.relay, LinkState::Connected, T).await?;

    let token = b.token("501");
    let reply = b.send_message(&token, "900", "via host b").await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["outcome"], "delivered", "{doc}");
    let request_id = doc["requestId"].as_str().unwrap_or_default().to_string();
    let message_id = doc["result"]["messageId"].clone();
    assert!(
        message_id.is_string(),
        "the upstream's result comes back: {doc}"
    );

    let counts = acted(&sim);
    assert_eq!(counts.get(&request_id), Some(&1), "{counts:?}");
    assert_eq!(sim.received_commands().len(), 1, "sent once, no repeat");

    let status = b.status(&token, &request_id).await?;
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json()?;
    assert_eq!(status["outcome"], "delivered", "{status}");
    assert_eq!(status["result"]["messageId"], message_id);

    let text = gateway_host::metrics::render();
    for direction in ["sent", "received", "acked"] {
        let series = format!("{METRIC_RELAYED}{{direction=\"{direction}\"}}");
        assert!(text.contains(&series), "no {series} in /metrics");
    }
    Ok(())
}

#[tokio::test]
async fn commands_in_flight_across_a_holder_change_are_delivered_once_each() -> anyhow::Result<()> {
    // resend-after far beyond the test's bounds: only the holder change can re-send.
    let (sim, _nats, a, b) = cluster(|c| {
        c.commands.resend_after_ms = 600_000;
        c.commands.expiry_ms = 600_000;
    })
    .await?;
    let link_a = connected_link(&sim).await?;
    a.held.send_replace(Some(link_a.clone()));
    wait_state(&a.relay, LinkState::Connected, T).await?;
    wait_state(&b.relay, LinkState::Connected, T).await?;
    // Acks come late, so the holder change happens while every command is in flight.
    sim.control().set_ack_delay(Duration::from_millis(800));

    let mut waiting = Vec::new();
    for (i, host) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let accepted = host
            .pipeline
            .submit("600", "trace", message(&format!("70{i}"), &format!("m{i}")))
            .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
        waiting.push(accepted);
    }
    wait_until(T, "the holder's link to carry all 8 commands", || {
        sim.received_commands().len() >= 8
    })
    .await?;

    // A loses the lease: it stops serving and its link goes; B takes over.
    a.held.send_replace(None);
    link_a.shutdown().await;
    let link_b = connected_link(&sim).await?;
    b.held.send_replace(Some(link_b));

    let mut outcomes: Vec<Finished> = Vec::new();
    for accepted in waiting {
        let finished = bounded(T, "an outcome after the holder change", async {
            Ok(accepted.outcome.await?)
        })
        .await?;
        outcomes.push(finished);
    }
    for f in &outcomes {
        assert!(
            matches!(f.outcome, Outcome::Delivered { result: Some(_) }),
            "{f:?}"
        );
    }
    let counts = acted(&sim);
    assert_eq!(counts.len(), 8, "{counts:?}");
    for f in &outcomes {
        assert_eq!(
            counts.get(&f.request_id),
            Some(&1),
            "acted once: {counts:?}"
        );
    }
    let repeats = sim
        .received_commands()
        .iter()
        .filter(|r| r.duplicate)
        .count();
    assert!(
        repeats > 0 && outcomes.iter().any(|f| f.attempts >= 2),
        "the new holder got the re-sent commands (same requestIds)"
    );
    Ok(())
}

#[tokio::test]
async fn one_users_rate_limit_holds_across_hosts() -> anyhow::Result<()> {
    let (sim, _nats, a, b) = cluster(|c| {
        limiter_config(
            c,
            &[
                ("burst", "4"),
                ("refill-tokens", "4"),
                ("refill-interval-ms", "600000"),
            ],
        )
    })
    .await?;
    let link = connected_link(&sim).await?;
    a.held.send_replace(Some(link));
    wait_state(&a.relay, LinkState::Connected, T).await?;
    wait_state(&b.relay, LinkState::Connected, T).await?;

    let mut statuses = Vec::new();
    for i in 0..8 {
        let host = if i % 2 == 0 { &b } else { &a };
        let reply = host
            .send_message(&host.token("700"), "901", &format!("n{i}"))
            .await?;
        if reply.status == 429 {
            assert_eq!(
                reply.json()?["error"]["code"],
                "rate_limited",
                "{}",
                reply.body
            );
        }
        statuses.push(reply.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (accepted, limited),
        (4, 4),
        "one bucket of 4 for both hosts: {statuses:?}"
    );
    assert_eq!(
        sim.received_commands().len(),
        4,
        "a 429 never reaches the upstream"
    );
    // Another user has a bucket of their own.
    let other = b.send_message(&b.token("701"), "901", "other user").await?;
    assert_eq!(other.status, 200, "{}", other.body);
    Ok(())
}

#[tokio::test]
async fn with_no_holder_rate_requests_are_503_and_commands_wait_then_expire() -> anyhow::Result<()>
{
    let (sim, _nats, _a, b) = cluster(|c| {
        c.commands.expiry_ms = 600;
    })
    .await?;
    let reply = b
        .send_message(&b.token("800"), "902", "nobody holds")
        .await?;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply.json()?["error"]["code"],
        "limiter_unavailable",
        "{}",
        reply.body
    );
    assert!(reply.header("Retry-After").is_some());

    assert_ne!(b.relay.state(), LinkState::Connected);
    let accepted = b
        .pipeline
        .submit("800", "trace", message("903", "queued"))
        .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
    let finished = bounded(T, "the expiry", async { Ok(accepted.outcome.await?) }).await?;
    assert_eq!(finished.outcome, Outcome::Expired, "{finished:?}");
    assert_eq!(finished.attempts, 0, "never sent without a holder");
    assert!(sim.received_commands().is_empty());
    Ok(())
}

#[tokio::test]
async fn relays_follow_the_holders_link_and_notice_a_silent_holder() -> anyhow::Result<()> {
    let (sim, _nats, mut a, b) = cluster(|_| {}).await?;
    let link = connected_link(&sim).await?;
    a.held.send_replace(Some(link.clone()));
    wait_state(&b.relay, LinkState::Connected, T).await?;
    let before = b.relay.stats().connects;

    // The holder's own link goes down: commands must wait on every host.
    sim.control().set_refuse_auth(true);
    sim.control().drop_links();
    wait_state(&link, LinkState::Reconnecting, T).await?;
    wait_state(&b.relay, LinkState::Reconnecting, T).await?;
    assert!(b.relay.send_command(wire("1", "while down")).is_err());

    // It comes back on a new connection: the relay's generation moves (in-flight re-sent).
    sim.control().set_refuse_auth(false);
    wait_state(&link, LinkState::Connected, T).await?;
    wait_state(&b.relay, LinkState::Connected, T).await?;
    assert!(
        b.relay.stats().connects > before,
        "a holder reconnect is a new generation"
    );

    // The holder's command server dies without a goodbye: its status goes stale.
    let silent = std::time::Instant::now();
    drop(a.server.take());
    wait_state(&b.relay, LinkState::Reconnecting, T).await?;
    eprintln!("a silent holder noticed after {:?}", silent.elapsed());
    Ok(())
}

fn wire(request_id: &str, content: &str) -> gateway_protocol::Command {
    gateway_protocol::Command {
        request_id: request_id.into(),
        trace_id: "t".into(),
        body: message("904", content),
    }
}
