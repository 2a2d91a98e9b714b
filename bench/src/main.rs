//! `sse-bench`: drives a real `gateway-host serve` process (release build) from an embedded
//! simulator and measures what browsers would see.
//!
//! * `latency`: events/s × SSE clients; per-event latency from the moment the simulator
//!   emitted it to the moment a client read its frame (p50/p95/p99/max), deliveries/s,
//!   and whether any client was dropped.
//! * `idle`: opens N idle streams and reports the host's resident memory per client.
//! * `cluster` / `failover`: the same fan-out over three hosts in cluster mode, and a
//!   SIGKILL of the link holder under load ([`cluster`]).
//!
//! Everything runs on 127.0.0.1, bounded in count and time.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod cluster;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gateway_host::auth::Authenticator;
use gateway_host::config::Secret;
use gateway_sim::{SimConfig, Simulator};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JWT: &str = "bench-jwt-secret-of-at-least-32-bytes";
const LINK: &str = "bench-link-token";

#[derive(Parser)]
#[command(about = "gateway-host SSE load harness (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Latency and throughput at a fixed event rate and client count.
    Latency {
        /// Events per second emitted upstream.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// SSE clients, all subscribed to every topic.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Measured seconds (after a 2 s warm-up).
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Resident memory of the host per idle SSE client.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
    },
    /// Fan-out latency with the clients spread over three hosts in cluster mode.
    Cluster {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 300)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 3000)]
        lease_ttl_ms: u64,
    },
    /// SIGKILL the link holder of a three-host cluster at a steady event rate.
    Failover {
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 3000)]
        lease_ttl_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.cmd {
            Cmd::Latency {
                rate,
                clients,
                secs,
            } => latency(rate, clients, secs).await,
            Cmd::Idle { clients } => idle(clients).await,
            Cmd::Cluster {
                rate,
                clients,
                secs,
                lease_ttl_ms,
            } => cluster::fan_out(rate, clients, secs, lease_ttl_ms).await,
            Cmd::Failover { rate, lease_ttl_ms } => cluster::failover(rate, lease_ttl_ms).await,
        }
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn host_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("gateway-host");
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release -p gateway-host`)",
            path.display()
        );
    }
    Ok(path)
}

struct HostProcess {
    child: Child,
    addr: String,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HostProcess {
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")
    }
}

async fn start_host(sim_url: &str) -> anyhow::Result<HostProcess> {
    let (http, admin) = (free_port()?, free_port()?);
    let child = Command::new(host_binary()?)
        .arg("serve")
        .env("LINK_URL", sim_url)
        .env("LINK_TOKEN", LINK)
        .env("GATEWAY_JWT_SECRET", JWT)
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let host = HostProcess {
        child,
        addr: format!("127.0.0.1:{http}"),
    };
    wait_ready(&host).await?;
    Ok(host)
}

/// Waits until the host's `/readyz` answers 200.
async fn wait_ready(host: &HostProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(&host.addr).await {
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("host did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token for client `i`: one user per client (the host caps streams per user).
fn token(i: usize) -> anyhow::Result<String> {
    Authenticator::new(&Secret::new(JWT)).mint(
        &format!("{}", 1 + i),
        vec!["*".into()],
        vec![],
        Duration::from_secs(3600),
    )
}

async fn open_stream(addr: &str, token: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    Ok(s)
}

/// Emission times by upstream seq, in ns since `start`.
struct Clock {
    start: Instant,
    sent: Vec<AtomicU64>,
}

async fn latency(rate: u64, clients: usize, secs: u64) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::new(LINK)).await?;
    let host = start_host(&sim.url()).await?;
    measure(
        &sim,
        std::slice::from_ref(&host.addr),
        rate,
        clients,
        secs,
        "",
    )
    .await?;
    drop(host);
    sim.shutdown().await;
    Ok(())
}

/// Opens `clients` streams spread round-robin over `addrs`, emits at `rate` for `secs`
/// (plus a 2 s warm-up), and prints the table row (`label` before the load).
async fn measure(
    sim: &gateway_sim::SimHandle,
    addrs: &[String],
    rate: u64,
    clients: usize,
    secs: u64,
    label: &str,
) -> anyhow::Result<()> {
    let total = (rate * (secs + 2)) as usize;
    let clock = Arc::new(Clock {
        start: Instant::now(),
        sent: (0..total + 2).map(|_| AtomicU64::new(0)).collect(),
    });
    let warmup_seq = rate * 2;
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let stream = open_stream(&addrs[i % addrs.len()], &token(i)?).await?;
        let (clock, stop, dropped) = (clock.clone(), stop.clone(), dropped.clone());
        tasks.push(tokio::spawn(read_client(
            stream, clock, stop, dropped, warmup_seq,
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if sim.control().session().1 != 0 {
        bail!("the simulator already emitted events");
    }
    let emit_secs = emit(sim, &clock, rate, total).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut delivered = 0u64;
    for t in tasks {
        let (h, n) = t.await??;
        merged.add(&h)?;
        delivered += n;
    }
    let measured = (total as u64 - warmup_seq) * clients as u64;
    println!(
        "| {label}{rate} × {clients} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
        merged.value_at_quantile(0.50) as f64 / 1e6,
        merged.value_at_quantile(0.95) as f64 / 1e6,
        merged.value_at_quantile(0.99) as f64 / 1e6,
        merged.max() as f64 / 1e6,
        (total as u64 * clients as u64) as f64 / emit_secs,
        dropped.load(Ordering::Relaxed),
        if delivered == measured {
            "all".to_string()
        } else {
            format!("{delivered}/{measured}")
        },
    );
    Ok(())
}

/// Emits `total` events at `rate` in 1 ms ticks, recording each one's emit time; returns
/// the seconds it took.
async fn emit(sim: &gateway_sim::SimHandle, clock: &Clock, rate: u64, total: usize) -> f64 {
    let per_tick = rate as f64 / 1000.0;
    let mut owed = 0.0;
    let mut seq = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let started = Instant::now();
    while seq < total {
        tick.tick().await;
        owed += per_tick;
        let n = (owed as usize).min(total - seq);
        owed -= n as f64;
        if n > 0 {
            let now = clock.start.elapsed().as_nanos() as u64;
            for s in seq + 1..=seq + n {
                clock.sent[s].store(now, Ordering::Relaxed);
            }
            sim.control().emit(n);
            seq += n;
        }
    }
    started.elapsed().as_secs_f64()
}

/// Read one client's stream; record latency of every event past the warm-up.
async fn read_client(
    mut stream: TcpStream,
    clock: Arc<Clock>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    warmup_seq: u64,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut count = 0u64;
    let needle = b"\"upstreamSeq\":";
    loop {
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(0)) => {
                if !stop.load(Ordering::Relaxed) {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => continue,
        };
        let now = clock.start.elapsed().as_nanos() as u64;
        carry.extend_from_slice(&buf[..n]);
        let mut consumed = 0;
        for pos in memchr::memmem::find_iter(&carry, needle) {
            let digits = &carry[pos + needle.len()..];
            let end = match digits.iter().position(|b| !b.is_ascii_digit()) {
                Some(e) => e,
                None => break,
            };
            let seq: u64 = std::str::from_utf8(&digits[..end])?.parse()?;
            consumed = pos + needle.len() + end;
            if seq > warmup_seq {
                let sent = clock
                    .sent
                    .get(seq as usize)
                    .map(|s| s.load(Ordering::Relaxed))
                    .unwrap_or(0);
                hist.record(now.saturating_sub(sent).max(1))?;
                count += 1;
            }
        }
        carry.drain(..consumed);
    }
    Ok((hist, count))
}

async fn idle(clients: usize) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::new(LINK)).await?;
    let host = start_host(&sim.url()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = host.rss_kib()?;
    let mut streams = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut s = open_stream(&host.addr, &token(i)?).await?;
        let mut head = [0u8; 512];
        let n = s.read(&mut head).await?;
        if !head[..n].starts_with(b"HTTP/1.1 200") {
            bail!("stream refused: {}", String::from_utf8_lossy(&head[..n]));
        }
        streams.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = host.rss_kib()?;
    println!(
        "| {clients} idle clients | host RSS {before} KiB → {after} KiB | {:.1} KiB per client |",
        (after.saturating_sub(before)) as f64 / clients as f64
    );
    drop(streams);
    drop(host);
    sim.shutdown().await;
    Ok(())
}
