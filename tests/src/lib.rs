//! Helpers shared by the end-to-end tests.
//!
//! Every wait here has a deadline and reports what it was waiting for, so a missing
//! feature fails the test with a message instead of hanging it.

pub mod admin;
pub mod cluster;
pub mod cluster_process;
pub mod commands;
pub mod discord;
pub mod foreign;
pub mod host;
pub mod legacy_ws;
pub mod nats;
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

/// A token from `auth` for `sub` granting `topics` and every command, valid 10 minutes.
pub fn token_for(auth: &gateway_host::auth::Authenticator, sub: &str, topics: &[&str]) -> String {
    auth.mint(
        sub,
        topics.iter().map(|t| t.to_string()).collect(),
        vec!["*".into()],
        Duration::from_secs(600),
    )
    .expect("mint")
}

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
///
/// One process-wide subscriber writes every record to every live capture. A
/// per-thread (`set_default`) subscriber loses records when tests of one binary run in
/// parallel: `tracing` caches a callsite's interest globally, and a callsite first hit
/// on a thread with no subscriber can stay silenced for another thread's subscriber.
/// Captures therefore see the lines of concurrent tests too: assert on lines that name
/// something of your own (a session id, a trace id), or on absence.
#[derive(Clone, Default)]
pub struct LogCapture(Buffer);

/// One capture's bytes.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// Keeps a capture registered; dropping it stops the capture.
pub struct CaptureGuard(Buffer);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if let Ok(mut live) = live_captures().lock() {
            live.retain(|c| !Arc::ptr_eq(c, &self.0));
        }
    }
}

fn live_captures() -> &'static Mutex<Vec<Arc<Mutex<Vec<u8>>>>> {
    static LIVE: std::sync::OnceLock<Mutex<Vec<Buffer>>> = std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// Writes one record to every live capture.
#[derive(Clone, Copy)]
struct FanOut;

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(live) = live_captures().lock() {
            for capture in live.iter() {
                if let Ok(mut b) = capture.lock() {
                    b.extend_from_slice(buf);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Starts capturing everything this process logs at DEBUG and above; keep the
    /// guard alive for as long as you capture.
    pub fn install() -> (Self, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(|| FanOut)
                .finish();
            // Fails only if another global subscriber is set; then nothing is captured
            // and the test's assertions say so.
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let capture = Self::default();
        if let Ok(mut live) = live_captures().lock() {
            live.push(capture.0.clone());
        }
        (capture.clone(), CaptureGuard(capture.0))
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
