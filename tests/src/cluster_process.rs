//! `gateway-host serve` child processes in cluster mode (issue 12), for the tests that
//! must kill a host the hard way (SIGKILL) or measure a failover between processes.
//!
//! Each child gets free loopback ports, the cluster's NATS URL, its host id, the upstream
//! link and a configuration file with fast lease timings (TTL 2 s, acquire every 100 ms).
//! Observed only through its HTTP routes (`/readyz` says whether it holds the link).

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The JWT secret of cluster process hosts.
pub const JWT_SECRET: &str = "cluster-process-secret-of-at-least-32-bytes";

/// The configuration file every child reads.
const CONFIG: &str =
    "[cluster]\nlease-ttl-ms = 2000\nrenew-every-ms = 500\nacquire-every-ms = 100\n";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running cluster-mode `serve` process; killed on drop.
pub struct HostProcess {
    pub id: String,
    /// `127.0.0.1:port` of the public listener.
    pub addr: String,
    child: Option<Child>,
    _config: tempfile::NamedTempFile,
}

impl HostProcess {
    /// Starts host `id` in the cluster at `nats_url` with the upstream at `link_url`;
    /// returns once `/readyz` answers 200 (NATS connected, stream readable).
    pub fn start(nats_url: &str, link_url: &str, token: &str, id: &str) -> anyhow::Result<Self> {
        let bin = crate::foreign::host_binary()?;
        let mut config = tempfile::NamedTempFile::new()?;
        config.write_all(CONFIG.as_bytes())?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config.path())
            .env("GATEWAY_NATS_URL", nats_url)
            .env("GATEWAY_CLUSTER_HOST_ID", id)
            .env("LINK_URL", link_url)
            .env("LINK_TOKEN", token)
            .env("GATEWAY_LINK_BACKOFF_BASE_MS", "50")
            .env("GATEWAY_LINK_BACKOFF_CAP_MS", "500")
            .env("GATEWAY_JWT_SECRET", JWT_SECRET)
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()?))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn gateway-host serve")?;
        let host = HostProcess {
            id: id.to_string(),
            addr: format!("127.0.0.1:{port}"),
            child: Some(child),
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while host.readyz().map(|(s, _)| s) != Some(200) {
            if Instant::now() > deadline {
                bail!("host {id} did not become ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(host)
    }

    /// `/readyz`: status and body.
    pub fn readyz(&self) -> Option<(u16, Value)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let mut r = agent
            .get(format!("http://{}/readyz", self.addr))
            .call()
            .ok()?;
        let status = r.status().as_u16();
        let body = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        Some((status, body))
    }

    /// Whether `/readyz` says this host holds the upstream link.
    pub fn holds_link(&self) -> bool {
        self.readyz()
            .is_some_and(|(_, b)| b["cluster"]["holdsLink"] == Value::Bool(true))
    }

    /// SIGKILL: no graceful anything (the lease is not released).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
