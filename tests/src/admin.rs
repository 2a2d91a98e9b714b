//! The admin API of a test host over a real loopback socket, for the tests that hot-load
//! components the way operators do: raw bytes, or multipart with the component's config
//! (encoded by the same function `gateway-host component load` uses).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_host::cluster::components::ClusterComponents;
use gateway_host::config::Secret;
use gateway_host::policy::Policies;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The admin token of [`AdminServer`].
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Default bound on one admin exchange (a load compiles a component).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The admin router of `policies` served on 127.0.0.1:0; stops when dropped.
pub struct AdminServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    timeout: Duration,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminServer {
    /// Serve the production admin router (auth, body limit, error shape) for `policies`.
    pub async fn start(policies: Arc<Policies>) -> anyhow::Result<AdminServer> {
        AdminServer::start_with(policies, None).await
    }

    /// The admin router of one cluster host: loads and rollbacks go cluster-wide through
    /// `cluster` (see `gateway_host::admin::router_with`).
    pub async fn start_with(
        policies: Arc<Policies>,
        cluster: Option<ClusterComponents>,
    ) -> anyhow::Result<AdminServer> {
        let app = gateway_host::admin::router_with(
            policies,
            Some(Secret::new(ADMIN_TOKEN)),
            64 << 20,
            cluster,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AdminServer {
            addr,
            task,
            timeout: TIMEOUT,
        })
    }

    /// A client for the admin API of a host served elsewhere at `addr` (whose admin token
    /// is [`ADMIN_TOKEN`]); nothing is served by this value.
    pub fn at(addr: SocketAddr) -> AdminServer {
        AdminServer {
            addr,
            task: tokio::spawn(async {}),
            timeout: TIMEOUT,
        }
    }

    /// The same server with another bound on each exchange (components that take long to
    /// compile, such as the Python and JavaScript ones).
    pub fn with_timeout(mut self, timeout: Duration) -> AdminServer {
        self.timeout = timeout;
        self
    }

    /// `GET /admin/components` (or `/admin/components/{slot}` with `Some(slot)`).
    pub async fn get(&self, slot: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let path = match slot {
            Some(s) => format!("/admin/components/{s}"),
            None => "/admin/components".into(),
        };
        self.send("GET", &path, None, Vec::new()).await
    }

    /// `PUT /admin/components/{slot}` with the raw wasm bytes.
    pub async fn put_raw(&self, slot: &str, wasm: &[u8]) -> anyhow::Result<(u16, Value)> {
        let path = format!("/admin/components/{slot}");
        self.send("PUT", &path, Some("application/wasm".into()), wasm.to_vec())
            .await
    }

    /// `PUT /admin/components/{slot}` as multipart: the wasm and its TOML configuration.
    pub async fn put_with_config(
        &self,
        slot: &str,
        wasm: &[u8],
        config: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let (content_type, body) = gateway_host::cli::multipart_body(wasm, config.as_bytes());
        let path = format!("/admin/components/{slot}");
        self.send("PUT", &path, Some(content_type), body).await
    }

    /// `POST /admin/components/{slot}/rollback`.
    pub async fn rollback(&self, slot: &str) -> anyhow::Result<(u16, Value)> {
        let path = format!("/admin/components/{slot}/rollback");
        self.send("POST", &path, None, Vec::new()).await
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("http://{}{path}", self.addr);
        let what = format!("{method} {path}");
        let timeout = self.timeout;
        let call = tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, Value)> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into();
            let auth = format!("Bearer {ADMIN_TOKEN}");
            let mut response = match method {
                "GET" => agent.get(&url).header("Authorization", &auth).call()?,
                "POST" => agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .send(&body[..])?,
                _ => {
                    let mut r = agent.put(&url).header("Authorization", &auth);
                    if let Some(ct) = &content_type {
                        r = r.header("Content-Type", ct);
                    }
                    r.send(&body[..])?
                }
            };
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string()?;
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        });
        tokio::time::timeout(timeout + Duration::from_secs(5), call)
            .await
            .with_context(|| format!("timed out: {what}"))??
            .with_context(|| what)
    }
}
