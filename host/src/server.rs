//! Running a host: the policy runtime, the components watcher, the upstream link, the
//! stream hub, the public and admin listeners, and graceful shutdown.
//!
//! Connection budget: at start the host raises its file limit to the hard limit and
//! derives the public connection cap below it, and the stream cap below that (see
//! [`crate::fd_limit`]), so streams can never take the last connections: `/healthz`,
//! `/readyz` and commands still get through when the stream cap is reached. The admin
//! listener (its own small connection cap, inside the descriptor reserve) also answers
//! `/healthz`, `/readyz` and `/metrics`, so health stays observable even when the public
//! listener is full. Shutdown is bounded by `[listener] shutdown-timeout-ms`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::commands::CommandPipeline;
use crate::config::Config;
use crate::cors::CorsOrigins;
use crate::discord::DiscordConfig;
use crate::http1::Limits;
use crate::internal_events::AppEventSink;
use crate::legacy_ws::LegacyBridge;
use crate::link::{self, LinkConfig, LinkHandle, LinkState};
use crate::policy::Policies;
use crate::policy::watch::{ComponentsWatcher, watch_components_dir};
use crate::sse::StreamHub;
use crate::{admin, demo, metrics, sse};

/// How often expired rate-limit buckets are swept.
const BUCKET_SWEEP: Duration = Duration::from_secs(30);

/// A running host's shared parts.
pub struct Host {
    pub policies: Arc<Policies>,
    pub auth: Authenticator,
    /// The events this host serves: single-host mode, the upstream's bus (app events
    /// too); cluster mode, the stream's events (fed to the legacy voice bridge).
    pub bus: Bus,
    /// Where `POST /api/internal/events` puts accepted events.
    pub app_events: AppEventSink,
    pub link: LinkHandle,
    pub commands: CommandPipeline,
    pub hub: StreamHub,
    /// The legacy voice bridge, when `[legacy-ws]` enables it.
    pub legacy: Option<LegacyBridge>,
    /// App-side publishing settings (`POST /api/internal/events`).
    pub internal_events: crate::internal_events::InternalEventsSettings,
    /// Serve the demo page with a ready-made token (the `demo` command only).
    pub demo_mode: bool,
    /// The embedded simulator's controls (the `demo` command only: `/demo/*` routes).
    pub demo_sim: Option<crate::demo::controls::DemoUpstream>,
    /// The public listener's connection cap (resolved from the file limit if not set).
    pub max_connections: usize,
    /// The last minutes of link state, events/s, latency and clients, for the console.
    pub series: Arc<crate::console::Series>,
    /// Cluster mode's parts (`[cluster]` / `GATEWAY_NATS_URL`); `None`: single-host mode.
    pub cluster: Option<Arc<crate::cluster::runtime::ClusterRuntime>>,
    cors_origins: CorsOrigins,
    _watcher: Option<ComponentsWatcher>,
}

/// Which upstream the host talks to: an upstream gateway service over link protocol v1
/// (the default), or Discord itself (direct Discord mode, `docs/discord.md`).
#[derive(Debug, Clone)]
pub enum Upstream {
    Link(LinkConfig),
    Discord(DiscordConfig),
}

impl From<LinkConfig> for Upstream {
    fn from(config: LinkConfig) -> Self {
        Upstream::Link(config)
    }
}

impl From<DiscordConfig> for Upstream {
    fn from(config: DiscordConfig) -> Self {
        Upstream::Discord(config)
    }
}

impl Upstream {
    /// The mode from the environment: direct Discord mode when `DISCORD_BOT_TOKEN` is set
    /// and `LINK_URL` is not; link mode otherwise; both set is an error.
    pub fn from_env() -> anyhow::Result<Upstream> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Upstream::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String> + Copy) -> anyhow::Result<Upstream> {
        Self::from_config_and_lookup(&crate::discord::DiscordFile::default(), get)
    }

    /// The mode from the environment, with the configuration file's `[discord]` section
    /// under the `DISCORD_*` variables.
    pub fn from_config_and_lookup(
        discord: &crate::discord::DiscordFile,
        get: impl Fn(&str) -> Option<String> + Copy,
    ) -> anyhow::Result<Upstream> {
        let set = |k: &str| get(k).is_some_and(|v| !v.trim().is_empty());
        match (set("LINK_URL"), set("DISCORD_BOT_TOKEN")) {
            (true, true) => anyhow::bail!(
                "both LINK_URL and DISCORD_BOT_TOKEN are set: choose one upstream (unset LINK_URL \
                 for direct Discord mode, or DISCORD_BOT_TOKEN for link mode)"
            ),
            (false, true) => Ok(Upstream::Discord(DiscordConfig::from_file_and_lookup(
                discord, get,
            )?)),
            _ => Ok(Upstream::Link(LinkConfig::from_lookup(get)?)),
        }
    }
}

impl Host {
    /// Load the policies (each slot: its components-directory file if any, else the
    /// default), watch the directory, start the upstream (link or Discord) and the stream
    /// hub. Single-host mode only (cluster mode connects to NATS: [`Host::start_async`]).
    /// Needs a tokio runtime.
    pub fn start(config: &Config, upstream: impl Into<Upstream>) -> anyhow::Result<Host> {
        anyhow::ensure!(
            config.cluster.is_none(),
            "cluster mode (GATEWAY_NATS_URL / [cluster]) needs an async start: use Host::start_async"
        );
        let base = Base::new(config)?;
        let bus = Bus::new();
        let hub = StreamHub::start(&bus, base.policies.clone(), base.stream.clone());
        let link = match upstream.into() {
            Upstream::Link(c) => link::spawn(c, bus.clone()),
            Upstream::Discord(c) => crate::discord::spawn(c, bus.clone())?,
        };
        let parts = Parts {
            app_events: AppEventSink::Bus(bus.clone()),
            bus,
            hub,
            link,
            commands: None,
        };
        Ok(base.assemble(config, parts, None))
    }

    /// [`Host::start`], or in cluster mode: connect to NATS, contend for the upstream
    /// link, and serve SSE from the cluster's stream.
    pub async fn start_async(
        config: &Config,
        upstream: impl Into<Upstream>,
    ) -> anyhow::Result<Host> {
        let Some(settings) = config.cluster.clone() else {
            return Host::start(config, upstream);
        };
        let base = Base::new(config)?;
        let cluster = crate::cluster::runtime::ClusterRuntime::start(
            settings,
            upstream.into(),
            base.policies.clone(),
        )
        .await?;
        // The stream's events, for the legacy voice bridge (SSE is fed from the stream
        // directly). App events: stored in the stream by this host before the answer.
        let bus = Bus::new();
        let hub = StreamHub::start_cluster(
            cluster.stream.clone(),
            base.stream.clone(),
            config.legacy_ws.enabled.then(|| bus.clone()),
        );
        cluster.measure_lag(hub.clone());
        let (commands, link) =
            cluster.start_commands(config.commands.clone(), base.policies.clone());
        let parts = Parts {
            app_events: cluster.app_events(base.policies.clone()),
            bus,
            hub,
            link,
            commands: Some(commands),
        };
        Ok(base.assemble(config, parts, Some(Arc::new(cluster))))
    }
}

/// What differs between the modes.
struct Parts {
    /// The events this host serves, as the legacy voice bridge reads them (single-host
    /// mode: the upstream's bus; cluster mode: the stream's events).
    bus: Bus,
    /// Where app events go.
    app_events: AppEventSink,
    hub: StreamHub,
    /// What commands are handed to (cluster mode: the relay to the link holder).
    link: LinkHandle,
    /// The command pipeline, when the mode starts its own (cluster mode); otherwise one is
    /// started on `link`.
    commands: Option<CommandPipeline>,
}

/// What every host has whatever its mode: auth, CORS, policies and their watcher, the
/// connection budget.
struct Base {
    auth: Authenticator,
    cors_origins: CorsOrigins,
    policies: Arc<Policies>,
    watcher: Option<ComponentsWatcher>,
    max_connections: usize,
    stream: crate::sse::StreamSettings,
}

impl Base {
    fn new(config: &Config) -> anyhow::Result<Base> {
        let secret = config.jwt_secret.as_ref().ok_or_else(|| {
            anyhow::anyhow!("GATEWAY_JWT_SECRET is not set: it signs and verifies caller tokens")
        })?;
        crate::auth::check_secret(secret).map_err(anyhow::Error::msg)?;
        let auth = Authenticator::with_settings(secret, config.auth.clone());
        let cors_origins = CorsOrigins::parse(&config.cors_origins).map_err(anyhow::Error::msg)?;
        let policies = Arc::new(Policies::start(
            config.policy.clone(),
            config.components_dir.as_deref(),
            config.max_component_bytes,
        )?);
        let watcher = match &config.components_dir {
            Some(dir) => Some(watch_components_dir(
                dir,
                policies.clone(),
                config.max_component_bytes,
            )?),
            None => None,
        };
        let (max_connections, stream) = connection_budget(config);
        Ok(Base {
            auth,
            cors_origins,
            policies,
            watcher,
            max_connections,
            stream,
        })
    }

    fn assemble(
        self,
        config: &Config,
        parts: Parts,
        cluster: Option<Arc<crate::cluster::runtime::ClusterRuntime>>,
    ) -> Host {
        let Parts {
            bus,
            app_events,
            hub,
            link,
            commands,
        } = parts;
        let legacy = config
            .legacy_ws
            .enabled
            .then(|| LegacyBridge::start(&bus, self.policies.clone(), config.legacy_ws.clone()));
        let commands = commands
            .unwrap_or_else(|| CommandPipeline::start(config.commands.clone(), link.clone()));
        let series = crate::console::Series::start(link.clone(), hub.clone());
        Host {
            policies: self.policies,
            auth: self.auth,
            bus,
            app_events,
            link,
            commands,
            hub,
            legacy,
            internal_events: config.internal_events.clone(),
            demo_mode: false,
            demo_sim: None,
            max_connections: self.max_connections,
            series,
            cluster,
            cors_origins: self.cors_origins,
            _watcher: self.watcher,
        }
    }
}

/// The public connection cap and the stream settings with the stream cap resolved: both
/// derived from the file limit unless configured.
fn connection_budget(config: &Config) -> (usize, crate::sse::StreamSettings) {
    let fd_limit = crate::fd_limit::raise_to_hard();
    let max_connections = match config.listener.max_connections {
        0 => crate::fd_limit::default_max_connections(fd_limit),
        n => n,
    };
    let mut stream = config.stream.clone();
    if stream.max_clients == 0 {
        stream.max_clients = crate::fd_limit::default_max_streams(max_connections);
    }
    if stream.max_clients >= max_connections {
        tracing::warn!(
            max_connections,
            max_streams = stream.max_clients,
            "the stream cap is not below the connection cap: at the cap, /healthz and /readyz \
             answer only on the admin listener"
        );
    }
    tracing::info!(
        fd_limit,
        max_connections,
        max_streams = stream.max_clients,
        max_streams_per_user = stream.max_streams_per_user,
        "connection budget"
    );
    (max_connections, stream)
}

/// `/healthz` (the process answers), `/readyz` (the upstream link is connected; the body
/// also shows the live components) and `/metrics`.
pub fn health_router(link: LinkHandle, policies: Arc<Policies>) -> Router {
    health_routes(get(move || async move {
        readiness(link.state(), link.stopped_reason(), &policies)
    }))
}

/// `/healthz`, `/metrics`, and `readyz` at `/readyz`.
fn health_routes(readyz: axum::routing::MethodRouter) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", readyz)
        .route("/metrics", get(|| async { metrics_response() }))
}

/// [`health_router`] for `host`: in cluster mode `/readyz` says whether this host can
/// serve (NATS connected, the stream readable) and whether it holds the upstream link.
fn host_health_router(host: &Host) -> Router {
    let Some(cluster) = host.cluster.clone() else {
        return health_router(host.link.clone(), host.policies.clone());
    };
    let (link, policies, hub) = (host.link.clone(), host.policies.clone(), host.hub.clone());
    health_routes(get(move || async move {
        cluster_readiness(&cluster, &hub, &link, &policies)
    }))
}

/// Every admin-listener route: the admin API, the operator console, health.
pub fn admin_router(host: &Host, config: &Config) -> Router {
    admin::router_with(
        host.policies.clone(),
        config.admin_token.clone(),
        config.max_component_bytes,
        host.cluster.as_ref().map(|c| c.components.clone()),
    )
    .merge(crate::console::router(
        host.series.clone(),
        config.admin_token.clone(),
    ))
    .merge(host_health_router(host))
}

/// Every public route: health, the demo page, the stream, the commands; CORS by allow-list.
pub fn public_router(host: &Host) -> Router {
    let legacy = match &host.legacy {
        Some(bridge) => crate::legacy_ws::router(bridge.clone(), host.auth.clone()),
        None => Router::new(),
    };
    let publishing = if host.internal_events.enabled {
        crate::internal_events::router_to(
            host.app_events.clone(),
            host.auth.clone(),
            &host.internal_events,
        )
    } else {
        Router::new()
    };
    host_health_router(host)
        .merge(legacy)
        .merge(publishing)
        .merge(demo::page_router(host.demo_mode.then(|| host.auth.clone())))
        .merge(match &host.demo_sim {
            Some(upstream) => demo::controls::router(upstream.clone(), host.hub.clone()),
            None => Router::new(),
        })
        .merge(crate::client_js::router())
        .merge(sse::router(host.hub.clone(), host.auth.clone()))
        .merge(crate::commands::router(
            host.auth.clone(),
            host.policies.clone(),
            host.commands.clone(),
        ))
        .layer(axum::middleware::from_fn(crate::api_error::json_errors))
        .layer(host.cors_origins.layer())
}

fn readiness(
    state: LinkState,
    stopped: Option<String>,
    policies: &Policies,
) -> axum::response::Response {
    let ready = state == LinkState::Connected;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({
        "ready": ready, "link": state.as_str(), "components": components_json(policies),
    });
    if let Some(reason) = stopped {
        body["error"] = serde_json::Value::String(reason);
    }
    (status, axum::Json(body)).into_response()
}

/// Cluster mode: ready when NATS is connected and this host reads the stream (it can serve
/// streams whichever host holds the link).
fn cluster_readiness(
    cluster: &crate::cluster::runtime::ClusterRuntime,
    hub: &StreamHub,
    link: &LinkHandle,
    policies: &Policies,
) -> axum::response::Response {
    let nats = cluster.nats_connected();
    let stream = hub.stream_ok();
    let ready = nats && stream;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let held = cluster.holder.held().borrow().clone();
    let body = serde_json::json!({
        "ready": ready,
        "link": link.state().as_str(),
        "cluster": {
            "hostId": cluster.host_id(),
            "nats": if nats { "connected" } else { "disconnected" },
            "stream": if stream { "reading" } else { "unreachable" },
            "lastEventId": hub.last_id().map(|id| id.to_string()),
            "holdsLink": held.is_some(),
            "heldLink": held.map(|l| l.state().as_str()),
            "componentsInSync": cluster.components.in_sync(),
        },
        "components": components_json(policies),
    });
    (status, axum::Json(body)).into_response()
}

fn components_json(policies: &Policies) -> Vec<serde_json::Value> {
    policies
        .infos()
        .into_iter()
        .map(|i| {
            serde_json::json!({
                "slot": i.slot, "sha256": i.current.sha256, "loadedAtMs": i.current.loaded_at_ms,
                "calls": i.current.calls, "failures": i.current.failures,
                "breaker": i.breaker.state,
            })
        })
        .collect()
}

fn metrics_response() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Serve `host` until `shutdown` resolves: streams are told to end, listeners drain.
pub async fn serve_host(
    host: Host,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let public = bind(config.http_addr).await?;
    let admin = bind(config.admin_addr).await?;
    tracing::info!(http = %config.http_addr, admin = %config.admin_addr, "gateway-host listening");
    serve_host_on(host, config, public, admin, shutdown).await
}

/// [`serve_host`] on listeners already bound (tests bind port 0).
pub async fn serve_host_on(
    host: Host,
    config: &Config,
    public: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.admin_token.is_none() {
        tracing::warn!("GATEWAY_ADMIN_TOKEN is not set: the admin API will refuse every request");
    }

    let sweeper = {
        let policies = host.policies.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BUCKET_SWEEP);
            loop {
                tick.tick().await;
                policies.sweep_buckets();
            }
        })
    };
    // Set to the moment shutdown was asked for: both listeners drain at once, and the
    // whole shutdown (listeners, then the link) is bounded by one deadline from then.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let admin_app = admin_router(&host, config);
    let mut admin_stop = stop_rx.clone();
    let admin_limits = Limits::new(
        "admin",
        &config.listener,
        config.listener.admin_max_connections,
        config.server.shutdown_timeout(),
    );
    let admin_task = tokio::spawn(crate::http1::serve(
        admin_listener,
        admin_app,
        admin_limits,
        async move {
            let _ = admin_stop.wait_for(|s| s.is_some()).await;
        },
    ));
    let hub = host.hub.clone();
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = drain_commands_on(begun_rx, &host, config);
    let deadline = config.server.shutdown_timeout();
    let public_limits = Limits::new("public", &config.listener, host.max_connections, deadline);
    crate::http1::serve(public, public_router(&host), public_limits, async move {
        shutdown.await;
        hub.shutdown();
        let _ = stop_tx.send(Some(tokio::time::Instant::now()));
        let _ = begun_tx.send(());
    })
    .await;
    sweeper.abort();
    let asked = stop_rx.borrow().unwrap_or_else(tokio::time::Instant::now);
    let end = asked + deadline;
    if tokio::time::timeout_at(end, admin_task).await.is_err() {
        tracing::warn!("the admin listener did not drain within the shutdown deadline");
    }
    // The drain ends a little before the deadline by itself (see drain_commands_on).
    let _ = tokio::time::timeout_at(end, drain).await;
    if tokio::time::timeout_at(end, host.link.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the upstream link did not close within the shutdown deadline");
    }
    if let Some(cluster) = &host.cluster
        && tokio::time::timeout_at(end, cluster.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("the cluster parts did not stop within the shutdown deadline");
    }
    tracing::info!("gateway-host stopped");
    Ok(())
}

/// Once shutdown begins, gives queued commands their last chance on the (still open)
/// link: delivered, or ended `shutdown`, a little before the shutdown deadline so callers
/// still waiting get their answer while the listener drains.
fn drain_commands_on(
    begun: tokio::sync::oneshot::Receiver<()>,
    host: &Host,
    config: &Config,
) -> tokio::task::JoinHandle<()> {
    let commands = host.commands.clone();
    let total = config.server.shutdown_timeout();
    let within = total.saturating_sub((total / 4).min(Duration::from_secs(1)));
    tokio::spawn(async move {
        if begun.await.is_ok() {
            commands.drain(within).await;
        }
    })
}

/// `gateway-host serve`.
pub async fn serve(
    config: Config,
    upstream: impl Into<Upstream>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics::install();
    let host = Host::start_async(&config, upstream).await?;
    serve_host(host, &config, shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
