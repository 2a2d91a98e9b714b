//! A busy inbound stream does not starve the link's outgoing side: while the host is
//! still working through a large backlog of events, a command is sent and acked, and
//! pings keep producing RTT samples.

use std::time::Duration;

use gateway_host::bus::Bus;
use gateway_host::link::{self, LinkState};
use gateway_protocol::{Command, CommandBody, TypingStart};
use gateway_sim::{SimConfig, Simulator};
use gateway_tests::{TOKEN, bounded, fast_link_config, wait_state, wait_until};

const T: Duration = Duration::from_secs(30);
const BACKLOG: usize = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_pings_are_served_during_a_backlog() -> anyhow::Result<()> {
    let mut sim_config = SimConfig::new(TOKEN);
    sim_config.replay_capacity = 2 * BACKLOG;
    let sim = Simulator::start(sim_config).await?;
    let mut config = fast_link_config(&sim.url(), TOKEN);
    config.ping_interval = Duration::from_millis(20);
    config.pong_timeout = Duration::from_secs(20); // only starvation is under test here
    let bus = Bus::new();
    let _sub = bus.subscribe(2 * BACKLOG);
    let link = link::spawn(config, bus.clone());
    wait_state(&link, LinkState::Connected, T).await?;
    let mut acks = link.acks();

    sim.control().emit(BACKLOG);
    wait_until(T, "the backlog to start arriving", || {
        link.stats().events > 0
    })
    .await?;
    let samples_before = link.stats().rtt_samples;
    link.send_command(Command {
        request_id: "during-backlog".into(),
        trace_id: "t".into(),
        body: CommandBody::TypingStart(TypingStart {
            channel_id: "1234567890123456789".into(),
        }),
    })?;
    let ack = bounded(T, "the ack", async { Ok(acks.recv().await?) }).await?;
    let at_ack = link.stats();
    assert!(ack.ok, "{ack:?}");
    assert!(
        at_ack.events < BACKLOG as u64,
        "the ack only came after the whole backlog ({} events taken)",
        at_ack.events
    );
    wait_until(T, "an RTT sample during the backlog", || {
        link.stats().rtt_samples > samples_before
    })
    .await?;
    let at_rtt = link.stats().events;
    assert!(
        at_rtt < BACKLOG as u64,
        "pings were starved until the backlog was done ({at_rtt} events taken)"
    );
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
