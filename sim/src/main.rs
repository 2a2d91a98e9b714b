//! `gateway-sim`: run the upstream simulator from the command line.
//!
//! Run `gateway-sim --help` for every flag; faults can also be toggled at runtime
//! through the control API (`--control ADDR`, routes listed in the crate docs).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gateway_sim::{SimConfig, Simulator, StartupFaults, parse_fail_mode};
use tracing_subscriber::EnvFilter;

/// Upstream gateway simulator speaking link protocol v1 (see docs/link-protocol.md).
#[derive(Debug, Parser)]
#[command(name = "gateway-sim", version)]
struct Args {
    /// Address of the link listener (WebSocket at path /link).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Bearer token the host must present; development only.
    #[arg(
        long,
        env = "LINK_TOKEN",
        default_value = "dev-token",
        hide_env_values = true
    )]
    token: String,
    /// Events per second (0 = only on request through the control API).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Extra events sent at once at every burst.
    #[arg(long, default_value_t = 0)]
    burst_size: usize,
    /// Seconds between bursts.
    #[arg(long, value_name = "SECS")]
    burst_every: Option<f64>,
    /// Address of the HTTP control API for faults (off when absent).
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Events kept in the replay buffer for resume.
    #[arg(long, default_value_t = 10_000)]
    replay_capacity: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault: answer 401 to every upgrade, even with the right token.
    #[arg(long)]
    refuse_auth: bool,
    /// Fault: delay every ack by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    ack_delay_ms: u64,
    /// Fault: fail every command: "retryable" or "fatal".
    #[arg(long, value_name = "MODE", value_parser = parse_fail_flag)]
    fail_acks: Option<gateway_sim::FailMode>,
    /// Fault: after every N-th event, send a malformed frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    malformed_every: u64,
    /// Fault: on every resume, re-send N events the host already had (at-least-once replay).
    #[arg(long, value_name = "N", default_value_t = 0)]
    replay_overlap: u64,
    /// Fault: drop every live link every SECS seconds.
    #[arg(long, value_name = "SECS")]
    drop_every: Option<f64>,
    /// Fault: stall the live links once, SECS seconds after start (TCP open, nothing sent).
    #[arg(long, value_name = "SECS")]
    stall_after: Option<f64>,
    /// Fault: restart the session (new sessionId, seq from 1) every SECS seconds.
    #[arg(long, value_name = "SECS")]
    restart_every: Option<f64>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn parse_fail_flag(s: &str) -> Result<gateway_sim::FailMode, String> {
    match parse_fail_mode(s) {
        Ok(Some(mode)) => Ok(mode),
        _ => Err("expected retryable or fatal".into()),
    }
}

fn secs(s: Option<f64>) -> Option<Duration> {
    s.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
}

impl Args {
    fn into_config(self) -> SimConfig {
        let mut config = SimConfig::new(self.token);
        config.listen = self.listen;
        config.rate = self.rate.max(0.0);
        config.burst_size = self.burst_size;
        config.burst_every = secs(self.burst_every);
        config.control = self.control;
        config.replay_capacity = self.replay_capacity;
        config.seed = self.seed;
        config.faults = StartupFaults {
            refuse_auth: self.refuse_auth,
            ack_delay: Duration::from_millis(self.ack_delay_ms),
            fail_acks: self.fail_acks,
            malformed_every: self.malformed_every,
            replay_overlap: self.replay_overlap,
            drop_every: secs(self.drop_every),
            stall_after: secs(self.stall_after),
            restart_every: secs(self.restart_every),
        };
        config
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    match run(args.into_config()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("gateway-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SimConfig) -> anyhow::Result<()> {
    let sim = Simulator::start(config).await?;
    tracing::info!(url = %sim.url(), control = ?sim.control_addr(), "gateway-sim listening");
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
