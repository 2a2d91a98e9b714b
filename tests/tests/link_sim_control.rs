//! The simulator's HTTP control API and its command faults, as seen through the host.

use std::time::Duration;

use gateway_host::link::LinkState;
use gateway_protocol::{Command, CommandBody, ErrorCode, TypingStart};
use gateway_sim::{FailMode, SimConfig, Simulator};
use gateway_tests::{TOKEN, collect, link_to, wait_state};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(10);

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(T, tcp.read_to_string(&mut out)).await??;
    Ok(out)
}

#[tokio::test]
async fn control_api_emits_and_drops() -> anyhow::Result<()> {
    let mut config = SimConfig::new(TOKEN);
    config.control = Some("127.0.0.1:0".parse()?);
    let sim = Simulator::start(config).await?;
    let control = sim
        .control_addr()
        .ok_or_else(|| anyhow::anyhow!("no control listener"))?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;

    let reply = http(control, "POST", "/emit?count=4").await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(collect(&mut sub, 4, T).await?.len(), 4);

    let reply = http(control, "POST", "/drop").await?;
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    gateway_tests::wait_until(T, "a second link", || sim.control().links_accepted() == 2).await?;
    let state = http(control, "GET", "/state").await?;
    assert!(state.contains(r#""linksAccepted":2"#), "{state}");
    let bad = http(control, "POST", "/fail-acks?mode=sometimes").await?;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

fn typing(request_id: &str) -> Command {
    Command {
        request_id: request_id.into(),
        trace_id: format!("trace-{request_id}"),
        body: CommandBody::TypingStart(TypingStart {
            channel_id: "42".into(),
        }),
    }
}

#[tokio::test]
async fn retryable_failure_then_success_with_the_same_request_id() -> anyhow::Result<()> {
    let sim = gateway_tests::start_sim().await?;
    let (_bus, mut sub, link) = link_to(&sim, |_| {});
    wait_state(&link, LinkState::Connected, T).await?;
    let mut acks = link.acks();

    sim.control().set_fail_acks(Some(FailMode::Retryable));
    link.send_command(typing("r1"))?;
    let ack = tokio::time::timeout(T, acks.recv()).await??;
    let error = ack
        .error
        .clone()
        .ok_or_else(|| anyhow::anyhow!("expected a failure"))?;
    assert!(!ack.ok && error.retryable && error.code == ErrorCode::Unavailable);

    sim.control().set_fail_acks(None);
    sim.control().set_ack_delay(Duration::from_millis(100));
    link.send_command(typing("r1"))?;
    let ack = tokio::time::timeout(T, acks.recv()).await??;
    assert!(ack.ok, "{ack:?}");
    let echo = collect(&mut sub, 1, T).await?;
    assert_eq!(
        (echo[0].t.as_str(), echo[0].trace_id.as_str()),
        ("TYPING_START", "trace-r1")
    );
    assert_eq!(sim.received_commands().len(), 2);
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn commands_are_refused_while_not_connected() -> anyhow::Result<()> {
    let sim = gateway_tests::start_sim().await?;
    sim.control().set_refuse_auth(true);
    let (_bus, _sub, link) = link_to(&sim, |_| {});
    let refused = link.send_command(typing("r1"));
    assert_eq!(refused, Err(gateway_host::link::SendError::NotConnected));
    link.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
