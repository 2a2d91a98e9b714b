//! The operator listener (`GATEWAY_ADMIN_ADDR`, separate from the public one): component
//! status, hot swap and rollback. Every request needs `Authorization: Bearer
//! <GATEWAY_ADMIN_TOKEN>`; without a configured token the admin API refuses everything.
//!
//! A hot load carries the component's own configuration: `PUT /admin/components/{slot}`
//! takes either the raw wasm bytes (the component gets an empty configuration) or
//! `multipart/form-data` with a `component` part (the wasm) and an optional `config` part
//! (a flat TOML table). The candidate's `init` sees that configuration before any swap.
//!
//! In cluster mode ([`router_with`] given a [`ClusterComponents`]) a load or rollback runs
//! here first, then is published so every host applies it; a publish that fails after the
//! local change answers `502 cluster_publish_failed` (live here, not cluster-wide). The
//! listing adds each slot's `cluster` state.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::cluster::components::ClusterComponents;
use crate::config::Secret;
use crate::policy::component_config::{ComponentConfig, ConfigSource, MAX_CONFIG_BYTES};
use crate::policy::wit_version::wit_info;
use crate::policy::{LoadError, Policies, SlotInfo, SlotKind};

#[derive(Clone)]
struct AdminState {
    policies: Arc<Policies>,
    token: Option<Secret>,
    max_component_bytes: usize,
    cluster: Option<ClusterComponents>,
}

/// The admin routes of a single host.
pub fn router(
    policies: Arc<Policies>,
    token: Option<Secret>,
    max_component_bytes: usize,
) -> Router {
    router_with(policies, token, max_component_bytes, None)
}

/// The admin routes; with `cluster`, loads and rollbacks are published cluster-wide after
/// they succeed here, and the listing shows the cluster's versions.
pub fn router_with(
    policies: Arc<Policies>,
    token: Option<Secret>,
    max_component_bytes: usize,
    cluster: Option<ClusterComponents>,
) -> Router {
    let state = AdminState {
        policies,
        token,
        max_component_bytes,
        cluster,
    };
    // Room for a multipart body: the component, its configuration and the part headers.
    let body_limit = max_component_bytes
        .saturating_add(MAX_CONFIG_BYTES)
        .saturating_add(16 * 1024);
    Router::new()
        .route("/admin/components", get(list))
        .route("/admin/components/{slot}", get(show).put(load))
        .route("/admin/components/{slot}/rollback", post(rollback))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(crate::api_error::json_errors))
        .with_state(state)
}

/// Admin-only routes defined in other modules (the console's series): the same admin token
/// check and JSON errors as the component routes.
pub fn guarded(routes: Router, token: Option<Secret>) -> Router {
    routes
        .layer(middleware::from_fn_with_state(token, authorize_token))
        .layer(middleware::from_fn(crate::api_error::json_errors))
}

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    authorize_token(State(state.token), request, next).await
}

async fn authorize_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &token else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_disabled",
            "the admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it",
        )
        .into_response();
    };
    match bearer_token(request.headers()) {
        Some(p) if token.matches(p) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "admin token not accepted",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <admin token>",
        )
        .into_response(),
    }
}

fn parse_slot(slot: &str) -> Result<SlotKind, ApiError> {
    slot.parse()
        .map_err(|e: crate::policy::slot_kind::UnknownSlot| {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_slot", e.to_string())
        })
}

async fn list(State(state): State<AdminState>) -> Response {
    let slots: Vec<serde_json::Value> = state
        .policies
        .infos()
        .into_iter()
        .map(|info| with_cluster(&state, info))
        .collect();
    axum::Json(json!({ "wit": wit_info(), "slots": slots })).into_response()
}

async fn show(
    State(state): State<AdminState>,
    Path(slot): Path<String>,
) -> Result<Response, ApiError> {
    let kind = parse_slot(&slot)?;
    Ok(axum::Json(with_cluster(&state, state.policies.slot(kind).info())).into_response())
}

/// A slot's info, plus its `cluster` object in cluster mode.
fn with_cluster(state: &AdminState, info: SlotInfo) -> serde_json::Value {
    let slot = info.slot;
    let mut value = serde_json::to_value(info).unwrap_or_default();
    if let (Some(cluster), Some(object)) = (&state.cluster, value.as_object_mut())
        && let Some(sync) = cluster.sync_status().into_iter().find(|s| s.slot == slot)
    {
        object.insert(
            "cluster".into(),
            serde_json::to_value(sync).unwrap_or_default(),
        );
    }
    value
}

/// The local change succeeded but could not be published.
fn not_cluster_wide(kind: SlotKind, what: &str, e: &anyhow::Error) -> ApiError {
    tracing::warn!(slot = %kind, error = %format!("{e:#}"), "admin: {what} is live on this host but was not published to the cluster");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "cluster_publish_failed",
        format!("the {what} is live on this host but not cluster-wide: {e:#}"),
    )
}

async fn load(
    State(state): State<AdminState>,
    Path(slot): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let kind = parse_slot(&slot)?;
    let (body, config) = read_upload(request, state.max_component_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the component's wasm bytes as the body (or as the `component` part)",
        ));
    }
    let replaced = state.policies.slot(kind).current();
    match state
        .policies
        .load(kind, body.to_vec(), "admin".into(), config.clone())
        .await
    {
        Ok(info) => {
            let mut answer = json!({ "slot": kind, "loaded": info });
            if let Some(cluster) = &state.cluster {
                let record = cluster
                    .publish_load(kind, &body, &config, &replaced)
                    .await
                    .map_err(|e| {
                        not_cluster_wide(kind, "component", &e)
                            .with("loaded", serde_json::to_value(&info).unwrap_or_default())
                    })?;
                answer["cluster"] = serde_json::to_value(record).unwrap_or_default();
            }
            Ok(axum::Json(answer).into_response())
        }
        Err(e) => {
            tracing::warn!(slot = %kind, error = %e, "admin: candidate component refused");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "component_rejected",
                e.to_string(),
            )
            .with("step", load_step(&e)))
        }
    }
}

/// The component bytes and configuration of an upload: multipart (`component`, optional
/// `config`) or the raw body (empty configuration).
async fn read_upload(
    request: Request,
    max_component_bytes: usize,
) -> Result<(Bytes, ComponentConfig), ApiError> {
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !multipart {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| rejected(e.status(), e.body_text()))?;
        if body.len() > max_component_bytes {
            return Err(too_large(max_component_bytes));
        }
        return Ok((body, ComponentConfig::none()));
    }
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", message);
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    let (mut component, mut config) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| rejected(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| rejected(e.status(), e.body_text()))?;
        match name.as_str() {
            "component" if component.is_none() => component = Some(data),
            "config" if config.is_none() => config = Some(data),
            "component" | "config" => return Err(bad(format!("more than one `{name}` part"))),
            other => {
                return Err(bad(format!(
                    "unknown part {other:?}: send `component` (the wasm) and optionally `config` (TOML)"
                )));
            }
        }
    }
    let component = component.ok_or_else(|| bad("missing the `component` part".into()))?;
    if component.len() > max_component_bytes {
        return Err(too_large(max_component_bytes));
    }
    let config = match config {
        None => ComponentConfig::none(),
        Some(text) => {
            if text.len() > MAX_CONFIG_BYTES {
                return Err(bad(format!(
                    "the `config` part is larger than {MAX_CONFIG_BYTES} bytes"
                )));
            }
            let text = std::str::from_utf8(&text)
                .map_err(|_| bad("the `config` part is not UTF-8 text".into()))?;
            ComponentConfig::from_toml(text, ConfigSource::Admin).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_config",
                    format!("the `config` part: {e}"),
                )
            })?
        }
    };
    Ok((component, config))
}

/// A body the framework could not read (too large, cut short, malformed multipart).
fn rejected(status: StatusCode, message: String) -> ApiError {
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "payload_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, message)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the component is larger than the {max}-byte limit (max-component-mib)"),
    )
}

/// The check a refused candidate failed, for clients that branch on it.
pub fn load_step(e: &LoadError) -> &'static str {
    match e {
        LoadError::Compile(_) => "compile",
        LoadError::Version(_) => "version",
        LoadError::Imports(_) => "imports",
        LoadError::WrongWorld { .. } => "world",
        LoadError::Instantiate(_) => "instantiate",
        LoadError::Init(_) => "init",
    }
}

async fn rollback(
    State(state): State<AdminState>,
    Path(slot): Path<String>,
) -> Result<Response, ApiError> {
    let kind = parse_slot(&slot)?;
    match state.policies.slot(kind).rollback() {
        Ok(info) => {
            let mut answer = json!({ "slot": kind, "current": info });
            if let Some(cluster) = &state.cluster {
                let record = cluster.publish_rollback(kind).await.map_err(|e| {
                    not_cluster_wide(kind, "rollback", &e)
                        .with("current", serde_json::to_value(&info).unwrap_or_default())
                })?;
                answer["cluster"] = serde_json::to_value(record).unwrap_or_default();
            }
            Ok(axum::Json(answer).into_response())
        }
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_previous_version",
            e.to_string(),
        )),
    }
}
