//! `gateway-sim`: an upstream gateway service that speaks link protocol v1, for tests,
//! benchmarks and the demo.
//!
//! Why a real server rather than mocks: the host's hardest duties (reconnect, resume
//! without loss or repeats, zombie detection, exactly-once commands) only show up over a
//! real socket with real faults. The simulator emits realistic Discord v10 dispatches,
//! keeps a bounded replay buffer for `resume`, acks and de-duplicates commands, and
//! injects faults on demand.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use gateway_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::new("secret")).await?;
//! println!("link at {}", sim.url());
//! sim.control().emit(10);          // ten events, now
//! sim.control().drop_links();      // cut the link
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod commands;
mod connection;
mod control;
mod generator;
pub mod payloads;
mod server;
mod session;
mod state;
pub mod voice;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use commands::{FailMode, ReceivedCommand};
pub use control::{Control, parse_fail_mode};
pub use state::{Attempt, AttemptOutcome};

use state::{LinkSignal, Shared};

/// Faults active from the start, and periodic faults (the CLI's fault flags).
#[derive(Debug, Clone, Default)]
pub struct StartupFaults {
    /// Answer 401 to every upgrade.
    pub refuse_auth: bool,
    /// Delay every ack by this much.
    pub ack_delay: Duration,
    /// Fail every command.
    pub fail_acks: Option<FailMode>,
    /// After every N-th event, send a malformed frame (0 = never).
    pub malformed_every: u64,
    /// Re-send this many already-delivered events on every successful resume.
    pub replay_overlap: u64,
    /// Drop every live link at this period.
    pub drop_every: Option<Duration>,
    /// Stall the live links once, this long after start.
    pub stall_after: Option<Duration>,
    /// Restart the session at this period.
    pub restart_every: Option<Duration>,
}

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Link listener (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The bearer token links must present.
    pub token: String,
    /// Events per second; 0 emits only on request ([`Control::emit`]).
    pub rate: f64,
    /// Extra events emitted at once every `burst_every`.
    pub burst_size: usize,
    /// Period of bursts (`None` = no bursts).
    pub burst_every: Option<Duration>,
    /// HTTP control listener (`None` = in-process control only).
    pub control: Option<SocketAddr>,
    /// Events kept for `resume`.
    pub replay_capacity: usize,
    /// Seed of the payload generator.
    pub seed: u64,
    /// Faults.
    pub faults: StartupFaults,
}

impl SimConfig {
    /// Loopback on a free port, on-demand events only, no control listener:
    /// the setting tests want.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.into(),
            rate: 0.0,
            burst_size: 0,
            burst_every: None,
            control: None,
            replay_capacity: 10_000,
            seed: 1,
            faults: StartupFaults::default(),
        }
    }
}

/// Entry point.
pub struct Simulator;

impl Simulator {
    /// Binds the listeners and starts serving.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let shared = Arc::new(Shared::new(
            config.token.clone(),
            config.replay_capacity,
            config.seed,
        ));
        let control = Control {
            shared: shared.clone(),
        };
        apply_faults(&control, &config.faults);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the link listener on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let mut tasks = vec![spawn_server(
            listener,
            server::router(shared.clone()),
            shutdown_rx.clone(),
        )];
        let control_addr = match config.control {
            Some(at) => {
                let l = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("binding the control listener on {at}"))?;
                let bound = l.local_addr()?;
                tasks.push(spawn_server(
                    l,
                    control::router(control.clone()),
                    shutdown_rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        tasks.extend(generator::spawn_all(&config, &control, &shutdown_rx));
        Ok(SimHandle {
            control,
            addr,
            control_addr,
            shutdown_tx,
            tasks,
        })
    }
}

fn apply_faults(control: &Control, faults: &StartupFaults) {
    control.set_refuse_auth(faults.refuse_auth);
    control.set_ack_delay(faults.ack_delay);
    control.set_fail_acks(faults.fail_acks);
    control.set_malformed_every(faults.malformed_every);
    control.set_replay_overlap(faults.replay_overlap);
}

fn spawn_server(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        // TCP_NODELAY: event frames are small; without it Nagle and delayed ACKs hold
        // them back by tens of milliseconds.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "simulator listener failed");
        }
    })
}

/// A running simulator.
pub struct SimHandle {
    control: Control,
    addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The link listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/link`.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, gateway_protocol::LINK_PATH)
    }

    /// The HTTP control listener's address, if one was asked for.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// In-process fault injection and records.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Every command frame received, duplicates included.
    pub fn received_commands(&self) -> Vec<ReceivedCommand> {
        self.control.received_commands()
    }

    /// Stops the listeners, drops every link and waits (bounded) for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let _ = self.control.shared.signals.send(LinkSignal::Drop);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}
