//! Running a host: the policy runtime, the components watcher, the public and admin
//! listeners, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::commands::CommandPipeline;
use crate::config::Config;
use crate::link::{self, LinkConfig, LinkHandle, LinkState};
use crate::policy::Policies;
use crate::policy::watch::{ComponentsWatcher, watch_components_dir};
use crate::{admin, metrics};

/// How often expired rate-limit buckets are swept.
const BUCKET_SWEEP: Duration = Duration::from_secs(30);

/// A running host's shared parts.
pub struct Host {
    pub policies: Arc<Policies>,
    pub auth: Authenticator,
    pub bus: Bus,
    pub link: LinkHandle,
    pub commands: CommandPipeline,
    _watcher: Option<ComponentsWatcher>,
}

impl Host {
    /// Load the policies (defaults, then the components directory if configured) and
    /// start the upstream link. Needs a tokio runtime.
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
        let link = link::spawn(link_config, bus.clone());
        let commands = CommandPipeline::start(config.commands.clone(), link.clone());
        Ok(Host {
            policies,
            auth,
            bus,
            link,
            commands,
            _watcher: watcher,
        })
    }
}

/// `/healthz` (the process answers), `/readyz` (the upstream link is connected) and
/// `/metrics`.
pub fn health_router(link: LinkHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move { readiness(link.state()) }),
        )
        .route("/metrics", get(|| async { metrics_response() }))
}

/// Every public route: health, and the feature routers.
pub fn public_router(host: &Host) -> Router {
    health_router(host.link.clone()).merge(crate::commands::router(
        host.auth.clone(),
        host.policies.clone(),
        host.commands.clone(),
    ))
}

fn readiness(state: LinkState) -> impl IntoResponse {
    let ready = state == LinkState::Connected;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": ready, "link": state.as_str() });
    (status, axum::Json(body))
}

fn metrics_response() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics::render(),
    )
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    config: Config,
    link_config: LinkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics::install();
    let host = Host::start(&config, link_config)?;
    if config.admin_token.is_none() {
        tracing::warn!("GATEWAY_ADMIN_TOKEN is not set: the admin API will refuse every request");
    }
    let public = TcpListener::bind(config.http_addr).await?;
    let admin_listener = TcpListener::bind(config.admin_addr).await?;
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
    let mut public_stop = stop_rx;
    let public_result = axum::serve(public, public_router(&host))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = public_stop.wait_for(|s| *s) => {}
            }
        })
        .await;
    let _ = stop_tx.send(true);
    sweeper.abort();
    admin_task.await??;
    host.link.shutdown().await;
    host.link.shutdown().await;
    public_result?;
    tracing::info!("gateway-host stopped");
    Ok(())
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
