//! Helpers shared by the end-to-end tests.
//!
//! Every wait here has a deadline and reports what it was waiting for, so a missing
//! feature fails the test with a message instead of hanging it.

pub mod commands;
pub mod host;
pub mod legacy_ws;
pub mod policy;
pub mod sse_client;

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_host::bus::{Bus, BusEvent, Subscription};
use gateway_host::link::{self, LinkConfig, LinkHandle, LinkState, LinkToken};
use gateway_sim::{SimConfig, SimHandle, Simulator};

/// The token the test simulators accept.
pub const TOKEN: &str = "test-link-token";

/// A simulator on a free loopback port, events on request only.
pub async fn start_sim() -> anyhow::Result<SimHandle> {
    Simulator::start(SimConfig::new(TOKEN)).await
}

/// Link timings scaled down for tests: backoff 20 ms → 200 ms, ping every 100 ms,
/// dead after 300 ms without a pong (zombie bound 400 ms).
pub fn fast_link_config(url: &str, token: &str) -> LinkConfig {
    let mut c = LinkConfig::new(url, LinkToken::new(token));
    c.backoff_base = Duration::from_millis(20);
    c.backoff_cap = Duration::from_millis(200);
    c.stable_after = Duration::from_secs(5);
    c.ping_interval = Duration::from_millis(100);
    c.pong_timeout = Duration::from_millis(300);
    c.connect_timeout = Duration::from_secs(2);
    c.hello_timeout = Duration::from_secs(2);
    c
}

/// A bus, a subscriber and a link to `sim`, with `config` tweaks applied.
pub fn link_to(
    sim: &SimHandle,
    tweak: impl FnOnce(&mut LinkConfig),
) -> (Bus, Subscription, LinkHandle) {
    let mut config = fast_link_config(&sim.url(), TOKEN);
    tweak(&mut config);
    let bus = Bus::new();
    let sub = bus.subscribe(100_000);
    let handle = link::spawn(config, bus.clone());
    (bus, sub, handle)
}

/// Polls `cond` every 5 ms until it holds or `within` passes.
pub async fn wait_until(
    within: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until the link reports `state`.
pub async fn wait_state(
    link: &LinkHandle,
    state: LinkState,
    within: Duration,
) -> anyhow::Result<()> {
    let mut rx = link.watch_state();
    bounded(
        within,
        &format!("link state {}", state.as_str()),
        async move {
            rx.wait_for(|s| *s == state)
                .await
                .map(|_| ())
                .context("link task ended")
        },
    )
    .await
}

/// Runs `fut` with a deadline.
pub async fn bounded<T>(
    within: Duration,
    what: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(within, fut).await {
        Ok(result) => result,
        Err(_) => bail!("timed out after {within:?} waiting for {what}"),
    }
}

/// Receives exactly `n` events within `within`.
pub async fn collect(
    sub: &mut Subscription,
    n: usize,
    within: Duration,
) -> anyhow::Result<Vec<Arc<BusEvent>>> {
    let mut out = Vec::with_capacity(n);
    let result = bounded(within, &format!("{n} events"), async {
        while out.len() < n {
            out.push(sub.recv().await?);
        }
        Ok(())
    })
    .await;
    result.with_context(|| format!("received {} of {n}", out.len()))?;
    Ok(out)
}

/// Captures `tracing` output (plain text) for assertions on log lines.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a capturing subscriber for the current thread (use a current-thread
    /// runtime so the link task logs on this thread too); keep the guard alive.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
