//! `GET /api/ws`: authenticate, check the client cap, upgrade.
//!
//! A browser WebSocket cannot set headers, so besides `Authorization` and the
//! `gateway_token` cookie the token may come as a subprotocol entry `bearer.<token>` next to
//! `gateway.v1`; the host answers with `gateway.v1` only, never echoing the token.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

use super::LegacyBridge;
use super::connection;
use super::protocol::{MAX_CLIENT_FRAME, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX};
use crate::api_error::ApiError;
use crate::auth::{Authenticator, Claims};

#[derive(Clone)]
struct RouteState {
    bridge: LegacyBridge,
    auth: Authenticator,
}

/// The `/api/ws` route (mount it only when the bridge is enabled).
pub fn router(bridge: LegacyBridge, auth: Authenticator) -> Router {
    Router::new()
        .route("/api/ws", get(upgrade))
        .with_state(RouteState { bridge, auth })
}

async fn upgrade(
    State(state): State<RouteState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let claims = authenticate(&state.auth, &headers)?;
    let ws = ws.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("/api/ws is a WebSocket endpoint: {e}"),
        )
    })?;
    if state.bridge.registry.client_count() >= state.bridge.settings.max_clients {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_clients",
            "the legacy voice bridge is at its client cap",
        )
        .retry_after(5));
    }
    let bridge = state.bridge.clone();
    Ok(ws
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| connection::serve(socket, claims, bridge)))
}

/// Header or cookie first (the usual path), then the `bearer.<token>` subprotocol.
fn authenticate(auth: &Authenticator, headers: &HeaderMap) -> Result<Claims, ApiError> {
    match subprotocol_token(headers) {
        Some(token) if auth.authenticate(headers).is_err() => auth.verify(token),
        _ => auth.authenticate(headers),
    }
}

fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
}
