//! Events reach the bus in seq order with payloads intact; commands are acked, echoed
//! as events, and de-duplicated by requestId.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_protocol::{Command, CommandBody, SendMessage, UpstreamFrame};
use gateway_tests::{collect, link_to, start_sim, wait_state};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn events_reach_the_bus_in_seq_order_with_payloads_intact() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;

    let last = sim.control().emit(500);
    assert_eq!(last, 500);
    let events = collect(&mut sub, 500, T).await?;
    let (session, _) = sim.control().session();

    let frames = sim.control().event_frames(1);
    assert_eq!(frames.len(), 500);
    for (i, (ev, frame)) in events.iter().zip(&frames).enumerate() {
        assert_eq!(ev.seq, i as u64 + 1, "seq order");
        assert_eq!(&*ev.session_id, session);
        let UpstreamFrame::Event(sent) = UpstreamFrame::decode(frame)? else {
            panic!("the simulator buffered a non-event frame");
        };
        assert_eq!(
            ev.d.get(),
            sent.d.get(),
            "payload of seq {} changed",
            ev.seq
        );
        assert_eq!(
            (ev.t.as_str(), ev.trace_id.as_str(), ev.ts),
            (sent.t.as_str(), sent.trace_id.as_str(), sent.ts)
        );
    }
    assert!(sub.try_recv()?.is_none(), "no extra events");
    assert_eq!(link.stats().events, 500);
    link.shutdown().await;
    assert_eq!(link.state(), LinkState::Idle);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_command_is_acked_echoed_once_and_deduplicated() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let mut acks = link.acks();
    let cmd = Command {
        request_id: "req-1".into(),
        trace_id: "trace-1".into(),
        body: CommandBody::SendMessage(SendMessage {
            channel_id: "1234567890123456789".into(),
            content: "hello from a test".into(),
            nonce: Some("n-1".into()),
        }),
    };

    link.send_command(cmd.clone())?;
    let ack = tokio::time::timeout(T, acks.recv()).await??;
    assert!(ack.ok && ack.request_id == "req-1", "{ack:?}");
    let echo = collect(&mut sub, 1, T).await?;
    assert_eq!(echo[0].t, "MESSAGE_CREATE");
    assert_eq!(echo[0].trace_id, "trace-1");
    let d: serde_json::Value = serde_json::from_str(echo[0].d.get())?;
    assert_eq!(d["content"], "hello from a test");
    assert_eq!(d["nonce"], "n-1");

    // The same requestId again: same ack, no second event.
    link.send_command(cmd)?;
    let again = tokio::time::timeout(T, acks.recv()).await??;
    assert_eq!(*again, *ack);
    sim.control().emit(1); // a marker: the next event must be this, not a second echo
    let next = collect(&mut sub, 1, T).await?;
    assert_eq!(next[0].seq, echo[0].seq + 1);
    assert_ne!(next[0].trace_id, "trace-1");

    let received = sim.received_commands();
    assert_eq!(received.len(), 2);
    assert_eq!(received.iter().filter(|c| !c.duplicate).count(), 1);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
