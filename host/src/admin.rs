//! The operator listener (`GATEWAY_ADMIN_ADDR`, separate from the public one): component
//! status, hot swap and rollback. Every request needs `Authorization: Bearer
//! <GATEWAY_ADMIN_TOKEN>`; without a configured token the admin API refuses everything.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::config::Secret;
use crate::policy::{LoadError, Policies, SlotKind};

#[derive(Clone)]
struct AdminState {
    policies: Arc<Policies>,
    token: Option<Secret>,
}

/// The admin routes.
pub fn router(
    policies: Arc<Policies>,
    token: Option<Secret>,
    max_component_bytes: usize,
) -> Router {
    let state = AdminState { policies, token };
    Router::new()
        .route("/admin/components", get(list))
        .route("/admin/components/{slot}", get(show).put(load))
        .route("/admin/components/{slot}/rollback", post(rollback))
        .layer(DefaultBodyLimit::max(max_component_bytes))
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
    axum::Json(json!({ "slots": state.policies.infos() })).into_response()
}

async fn show(
    State(state): State<AdminState>,
    Path(slot): Path<String>,
) -> Result<Response, ApiError> {
    let kind = parse_slot(&slot)?;
    Ok(axum::Json(state.policies.slot(kind).info()).into_response())
}

async fn load(
    State(state): State<AdminState>,
    Path(slot): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = parse_slot(&slot)?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the component's wasm bytes as the body",
        ));
    }
    match state
        .policies
        .load(kind, body.to_vec(), "admin".into())
        .await
    {
        Ok(info) => Ok(axum::Json(json!({ "slot": kind, "loaded": info })).into_response()),
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

/// The check a refused candidate failed, for clients that branch on it.
pub fn load_step(e: &LoadError) -> &'static str {
    match e {
        LoadError::Compile(_) => "compile",
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
        Ok(info) => Ok(axum::Json(json!({ "slot": kind, "current": info })).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_previous_version",
            e.to_string(),
        )),
    }
}
