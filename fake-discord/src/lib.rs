//! `fake-discord`: a fake Discord (Gateway v10 over WebSocket, and the three REST routes
//! the host uses) on loopback, for tests and `gateway-host demo --discord-fake`.
//!
//! Why a fake and not mocks: the host's duties in direct Discord mode (heartbeats, zombie
//! detection, resume without loss or repeats, invalid sessions, fatal close codes,
//! per-route and global rate limits, idempotent retries) only show over real sockets. It
//! is written from Discord's public documentation (Gateway: opcodes, Hello / Identify /
//! Ready / Resume, close codes, `zlib-stream`; REST: `X-RateLimit-*` headers, `429`
//! bodies, JSON error codes), not from this project's link simulator.
//!
//! * [`state`]: sessions, recorded requests, injected faults, counters.
//! * [`gateway`]: the WebSocket side.
//! * [`rest`]: the HTTP side (`/api/v10/...`).

pub mod gateway;
pub mod rest;
pub mod state;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use state::{Control, FakeOptions, Fault, RecordedRequest};

/// A running fake Discord.
pub struct FakeDiscord {
    addr: SocketAddr,
    control: Control,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FakeDiscord {
    /// Starts on `127.0.0.1` with a random port.
    pub async fn start(options: FakeOptions) -> anyhow::Result<FakeDiscord> {
        Self::start_on("127.0.0.1:0".parse()?, options).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, options: FakeOptions) -> anyhow::Result<FakeDiscord> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("fake discord cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let control = Control::new(options, addr);
        let app = gateway::router(control.clone()).merge(rest::router(control.clone()));
        let (stop, mut stopped) = watch::channel(false);
        if control.inner.options.events_per_second > 0 {
            let generator = control.clone();
            let mut halt = stop.subscribe();
            let every =
                std::time::Duration::from_secs(1) / generator.inner.options.events_per_second;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                let mut n = 0u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            n += 1;
                            generator.message_create("1110000000000000001", &format!("fake message {n}"));
                        }
                        _ = halt.wait_for(|s| *s) => return,
                    }
                }
            });
        }
        let shutdown_control = control.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
                shutdown_control.close_all();
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake discord stopped with an error");
            }
        });
        Ok(FakeDiscord {
            addr,
            control,
            stop,
            task,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST base, as `DISCORD_API_BASE` expects it (`http://…/api/v10`).
    pub fn api_base(&self) -> String {
        format!("http://{}/api/v10", self.addr)
    }

    /// The gateway URL that `GET /gateway/bot` announces.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}/gateway", self.addr)
    }

    /// Fault injection and observation.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops the server and closes every connection.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}
