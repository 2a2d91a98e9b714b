//! Running a host: the policy runtime, the components watcher, the upstream link, the
//! stream hub, the public and admin listeners, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::commands::CommandPipeline;
use crate::config::Config;
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
    pub bus: Bus,
    pub link: LinkHandle,
    pub commands: CommandPipeline,
    pub hub: StreamHub,
    /// Serve the demo page with a ready-made token (the `demo` command only).
    pub demo_mode: bool,
    cors_origins: Vec<String>,
    _watcher: Option<ComponentsWatcher>,
}

impl Host {
    /// Load the policies (defaults, then the components directory if configured), start
    /// the upstream link and the stream hub. Needs a tokio runtime.
    pub fn start(config: &Config, link_config: LinkConfig) -> anyhow::Result<Host> {
        let secret = config.jwt_secret.as_ref().ok_or_else(|| {
            anyhow::anyhow!("GATEWAY_JWT_SECRET is not set: it signs and verifies caller tokens")
        })?;
        let auth = Authenticator::new(secret);
        let policies = Arc::new(Policies::with_defaults(config.policy.clone())?);
        let watcher = match &config.components_dir {
            Some(dir) => Some(watch_components_dir(dir, policies.clone())?),
            None => None,
        };
        let bus = Bus::new();
        let hub = StreamHub::start(&bus, policies.clone(), config.stream.clone());
        let link = link::spawn(link_config, bus.clone());
        let commands = CommandPipeline::start(config.commands.clone(), link.clone());
        Ok(Host {
            policies,
            auth,
            bus,
            link,
            commands,
            hub,
            demo_mode: false,
            cors_origins: config.cors_origins.clone(),
            _watcher: watcher,
        })
    }
}

/// `/healthz` (the process answers), `/readyz` (the upstream link is connected; the body
/// also shows the live components) and `/metrics`.
pub fn health_router(link: LinkHandle, policies: Arc<Policies>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move { readiness(link.state(), &policies) }),
        )
        .route("/metrics", get(|| async { metrics_response() }))
}

/// Every public route: health, the demo page, the stream, the commands; CORS by allow-list.
pub fn public_router(host: &Host) -> Router {
    health_router(host.link.clone(), host.policies.clone())
        .merge(demo::page_router(host.demo_mode.then(|| host.auth.clone())))
        .merge(sse::router(host.hub.clone(), host.auth.clone()))
        .merge(crate::commands::router(
            host.auth.clone(),
            host.policies.clone(),
            host.commands.clone(),
        ))
        .layer(cors(&host.cors_origins))
}

fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "last-event-id".parse().expect("valid header"),
        ])
}

fn readiness(state: LinkState, policies: &Policies) -> axum::response::Response {
    let ready = state == LinkState::Connected;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let components: Vec<_> = policies
        .infos()
        .into_iter()
        .map(|i| {
            serde_json::json!({
                "slot": i.slot, "sha256": i.current.sha256, "loadedAtMs": i.current.loaded_at_ms,
                "calls": i.current.calls, "failures": i.current.failures,
                "breaker": i.breaker.state,
            })
        })
        .collect();
    let body =
        serde_json::json!({ "ready": ready, "link": state.as_str(), "components": components });
    (status, axum::Json(body)).into_response()
}

fn metrics_response() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
}

/// Bind a listener whose accepted sockets have `TCP_NODELAY` (small SSE writes must not
/// wait for delayed ACKs).
async fn bind(addr: SocketAddr) -> anyhow::Result<impl axum::serve::Listener<Addr = SocketAddr>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    }))
}

/// Serve `host` until `shutdown` resolves: streams are told to end, listeners drain.
pub async fn serve_host(
    host: Host,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.admin_token.is_none() {
        tracing::warn!("GATEWAY_ADMIN_TOKEN is not set: the admin API will refuse every request");
    }
    let public = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http_addr))?;
    let admin_listener = bind(config.admin_addr).await?;
    tracing::info!(http = %config.http_addr, admin = %config.admin_addr, "gateway-host listening");

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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_app = admin::router(
        host.policies.clone(),
        config.admin_token.clone(),
        config.max_component_bytes,
    );
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(async move {
        axum::serve(admin_listener, admin_app)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let hub = host.hub.clone();
    crate::http1::serve(public, public_router(&host), async move {
        shutdown.await;
        hub.shutdown();
    })
    .await;
    let _ = stop_tx.send(true);
    sweeper.abort();
    admin_task.await??;
    host.link.shutdown().await;
    tracing::info!("gateway-host stopped");
    Ok(())
}

/// `gateway-host serve`.
pub async fn serve(
    config: Config,
    link_config: LinkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics::install();
    let host = Host::start(&config, link_config)?;
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
