//! `sse-bench cluster`: three `gateway-host serve` processes in cluster mode (issue 12) on
//! one private `nats-server -js`, one embedded simulator upstream.
//!
//! Two measurements:
//! * **Fan-out**: N SSE clients spread over the three hosts; per-event latency from the
//!   simulator's emit to a client reading the frame, deliveries/s, drops — the cluster
//!   rows beside the single-host rows of `sse-bench latency`.
//! * **Failover**: at a steady event rate, the link holder is killed with SIGKILL; a client
//!   that was on it reconnects to another host with `Last-Event-ID`. Reported: time until
//!   another host holds the link, time until that client reads events again, and the
//!   upstream events it lost or saw twice (both must be 0).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gateway_sim::{SimConfig, Simulator};
use gateway_tests::nats::NatsServer;
use gateway_tests::sse_client::get;

use crate::{HostProcess, LINK, free_port, host_binary, token};

/// A cluster-mode host process.
async fn start_cluster_host(
    nats_url: &str,
    sim_url: &str,
    id: &str,
    config: &std::path::Path,
) -> anyhow::Result<HostProcess> {
    let (http, admin) = (free_port()?, free_port()?);
    let child = Command::new(host_binary()?)
        .args(["serve", "--config"])
        .arg(config)
        .env("GATEWAY_NATS_URL", nats_url)
        .env("GATEWAY_CLUSTER_HOST_ID", id)
        .env("LINK_URL", sim_url)
        .env("LINK_TOKEN", LINK)
        .env("GATEWAY_LINK_BACKOFF_BASE_MS", "50")
        .env("GATEWAY_JWT_SECRET", crate::JWT)
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let host = HostProcess {
        child,
        addr: format!("127.0.0.1:{http}"),
    };
    crate::wait_ready(&host).await?;
    Ok(host)
}

/// `/readyz` says the host holds the link.
async fn holds_link(addr: &str) -> bool {
    match get(addr, "/readyz", &[]).await {
        Ok(r) => r
            .json()
            .await
            .is_ok_and(|v| v["cluster"]["holdsLink"] == serde_json::Value::Bool(true)),
        Err(_) => false,
    }
}

struct Cluster {
    _nats: NatsServer,
    _config: tempfile::NamedTempFile,
    hosts: Vec<Option<HostProcess>>,
}

async fn start_cluster(sim_url: &str, lease_ttl_ms: u64) -> anyhow::Result<Cluster> {
    let nats = NatsServer::start()?;
    let mut config = tempfile::NamedTempFile::new()?;
    writeln!(
        config,
        "[cluster]\nlease-ttl-ms = {lease_ttl_ms}\nacquire-every-ms = 100"
    )?;
    let mut hosts = Vec::new();
    for id in ["bench-a", "bench-b", "bench-c"] {
        hosts.push(Some(
            start_cluster_host(&nats.url(), sim_url, id, config.path()).await?,
        ));
    }
    Ok(Cluster {
        _nats: nats,
        _config: config,
        hosts,
    })
}

impl Cluster {
    fn addr(&self, i: usize) -> anyhow::Result<String> {
        Ok(self.hosts[i].as_ref().context("host is gone")?.addr.clone())
    }

    async fn holder(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            for (i, h) in self.hosts.iter().enumerate() {
                if let Some(h) = h
                    && holds_link(&h.addr).await
                {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("no host holds the link");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Fan-out latency with `clients` spread over three cluster hosts.
pub async fn fan_out(
    rate: u64,
    clients: usize,
    secs: u64,
    lease_ttl_ms: u64,
) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::new(LINK)).await?;
    let cluster = start_cluster(&sim.url(), lease_ttl_ms).await?;
    cluster.holder(Duration::from_secs(15)).await?;
    let addrs = (0..3)
        .map(|i| cluster.addr(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::measure(&sim, &addrs, rate, clients, secs, "cluster of 3: ").await?;
    drop(cluster);
    sim.shutdown().await;
    Ok(())
}

/// SIGKILL the link holder at `rate` events/s; a client on it resumes on another host.
pub async fn failover(rate: u64, lease_ttl_ms: u64) -> anyhow::Result<()> {
    let mut sim_config = SimConfig::new(LINK);
    sim_config.rate = rate as f64;
    sim_config.replay_capacity = 1_000_000;
    let sim = Simulator::start(sim_config).await?;
    let mut cluster = start_cluster(&sim.url(), lease_ttl_ms).await?;
    let holder = cluster.holder(Duration::from_secs(15)).await?;
    let auth = format!("Bearer {}", token(0)?);
    let mut stream = get(
        &cluster.addr(holder)?,
        "/api/stream",
        &[("Authorization", auth.as_str())],
    )
    .await?;
    let mut seqs = Vec::new();
    let mut last_id = String::new();
    // Two seconds of events on the holder.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Some((Some(id), _, data)) = stream.next_event(Duration::from_secs(5)).await? {
            seqs.push(data["upstreamSeq"].as_u64().unwrap_or(0));
            last_id = id;
        }
    }
    let killed_at = Instant::now();
    if let Some(mut host) = cluster.hosts[holder].take() {
        let _ = host.child.kill();
        let _ = host.child.wait();
    }
    // Whatever was already on the wire.
    while let Ok(Some((Some(id), _, data))) = stream.next_event(Duration::from_secs(2)).await {
        seqs.push(data["upstreamSeq"].as_u64().unwrap_or(0));
        last_id = id;
    }
    let seq_at_kill = seqs.last().copied().unwrap_or(0);
    let new_holder = cluster.holder(Duration::from_secs(30)).await?;
    let took_link = killed_at.elapsed();
    let other = (0..3)
        .find(|&i| i != holder && i != new_holder)
        .context("a third host")?;
    let mut resumed = get(
        &cluster.addr(other)?,
        "/api/stream",
        &[
            ("Authorization", auth.as_str()),
            ("Last-Event-ID", last_id.as_str()),
        ],
    )
    .await?;
    let mut events_again = None;
    let mut resets = 0;
    let target = seq_at_kill + 3 * rate;
    while seqs.last().copied().unwrap_or(0) < target {
        match resumed.next_event(Duration::from_secs(10)).await? {
            Some((_, name, data)) if name == "reset" => {
                resets += 1;
                eprintln!("reset: {data}");
            }
            Some((_, _, data)) => {
                let seq = data["upstreamSeq"].as_u64().unwrap_or(0);
                if seq > seq_at_kill && events_again.is_none() {
                    events_again = Some(killed_at.elapsed());
                }
                seqs.push(seq);
            }
            None => bail!("the resumed stream ended"),
        }
    }
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
    let lost = (first..=last).filter(|s| !unique.contains(s)).count();
    let repeated = seqs.len() - unique.len();
    println!(
        "| failover at {rate} events/s, lease TTL {lease_ttl_ms} ms | link taken {:.2} s after SIGKILL | client reading again {:.2} s after | {} events checked | lost {lost} | repeated {repeated} | resets {resets} |",
        took_link.as_secs_f64(),
        events_again.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
        seqs.len(),
    );
    drop(cluster);
    sim.shutdown().await;
    Ok(())
}
