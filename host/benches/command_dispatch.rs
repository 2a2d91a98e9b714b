//! Command dispatch latency at a steady 200 commands/s on loopback.
//!
//! The whole path, as a browser sees it: `POST /api/commands/send-message` over HTTP/1.1
//! keep-alive → auth → validator component → limiter component → queue → dispatcher →
//! link WebSocket → simulator → ack → 200. Two figures per command:
//! * `http`: from the *scheduled* send time to the full response (open-loop pacing, so a
//!   stall is not hidden by the generator waiting for it: no coordinated omission);
//! * `pipeline`: the host's own `latencyMs` (accepted → ack received).
//!
//! Run: `cargo bench -p gateway-host --bench command_dispatch` (optionally
//! `-- --rate 200 --count 3000`). Prints a Markdown table.

use std::time::{Duration, Instant};

use gateway_host::config::{Config, Secret};
use gateway_host::link::{LinkConfig, LinkState, LinkToken};
use gateway_host::policy::{SlotKind, SlotSettings};
use gateway_host::server::{Host, public_router};
use gateway_sim::{SimConfig, Simulator};

const LINK_TOKEN: &str = "bench-link-token";
const WARMUP: usize = 200;
/// Client threads (each with its own keep-alive connection from the agent's pool).
const WORKERS: usize = 16;

struct Args {
    rate: f64,
    count: usize,
}

fn args() -> Args {
    let mut a = Args {
        rate: 200.0,
        count: 3000,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--rate" => a.rate = pair[1].parse().unwrap_or(a.rate),
            "--count" => a.count = pair[1].parse().unwrap_or(a.count),
            _ => {}
        }
    }
    a
}

fn config() -> anyhow::Result<Config> {
    let mut config = Config::load(None)?;
    config.jwt_secret = Some(Secret::new("bench-secret-of-at-least-thirty-two-bytes"));
    config.components_dir = None;
    let mut limiter = SlotSettings::defaults(SlotKind::RateLimiter);
    limiter.config = vec![("burst".into(), "1000000".into())];
    config.policy.slots.insert(SlotKind::RateLimiter, limiter);
    Ok(config)
}

/// Starts simulator + host + public listener; returns the base URL and a token.
async fn start(
    rt_keep: &mut Vec<Box<dyn std::any::Any + Send>>,
) -> anyhow::Result<(String, String)> {
    let sim = Simulator::start(SimConfig::new(LINK_TOKEN)).await?;
    let host = Host::start(
        &config()?,
        LinkConfig::new(sim.url(), LinkToken::new(LINK_TOKEN)),
    )?;
    let mut state = host.link.watch_state();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == LinkState::Connected),
    )
    .await??;
    let token = host
        .auth
        .mint("1", vec![], vec!["*".into()], Duration::from_secs(3600))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = public_router(&host);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    rt_keep.push(Box::new(sim));
    rt_keep.push(Box::new(host));
    Ok((base, token))
}

/// Sends `count` commands at `rate`/s from `WORKERS` threads (open loop: command `i` is
/// due at `start + i / rate` whatever happened before); returns (http, pipeline)
/// latencies in ms, warm-up excluded.
fn drive(base: &str, token: &str, rate: f64, count: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{base}/api/commands/send-message");
    let auth = format!("Bearer {token}");
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (agent, url, auth) = (agent.clone(), &url, &auth);
                scope.spawn(move || -> anyhow::Result<Vec<(usize, f64, f64)>> {
                    let mut out = Vec::new();
                    for i in (w..count).step_by(WORKERS) {
                        let due = start + period.mul_f64(i as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let (http, pipeline) = one(&agent, url, auth, i, due)?;
                        out.push((i, http, pipeline));
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("worker panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let mut all: Vec<(usize, f64, f64)> = results.into_iter().flatten().collect();
    all.retain(|(i, _, _)| *i >= WARMUP);
    Ok(all.into_iter().map(|(_, h, p)| (h, p)).unzip())
}

/// One command; returns (ms from `due` to the response, the host's `latencyMs`).
fn one(
    agent: &ureq::Agent,
    url: &str,
    auth: &str,
    i: usize,
    due: Instant,
) -> anyhow::Result<(f64, f64)> {
    let body = format!(
        r#"{{"channelId":"{}","content":"bench {i}"}}"#,
        100 + i % 50
    );
    let mut response = agent
        .post(url)
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .send(body.as_str())?;
    let text = response.body_mut().read_to_string()?;
    let took = due.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        response.status() == 200,
        "command {i}: {} {text}",
        response.status()
    );
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    Ok((took, doc["latencyMs"].as_f64().unwrap_or(f64::NAN)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn row(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 95.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut keep = Vec::new();
    let (base, token) = runtime.block_on(start(&mut keep))?;
    let (http, pipeline) = drive(&base, &token, a.rate, a.count + WARMUP)?;
    println!(
        "\ncommand dispatch, {} commands/s, {} measured after {WARMUP} warm-up (ms)\n",
        a.rate, a.count
    );
    println!("| latency | n | p50 | p95 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    row("HTTP POST → 200 (from scheduled send)", http);
    row("pipeline (accepted → ack)", pipeline);
    drop(keep);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
