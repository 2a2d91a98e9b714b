//! The `/link` WebSocket endpoint: token check, then hand the socket to a connection.

use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gateway_protocol::LINK_PATH;
use tracing::warn;

use crate::connection::serve_link;
use crate::state::{AttemptOutcome, Shared};

/// The link listener's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(LINK_PATH, get(upgrade))
        .with_state(shared)
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    match shared.authorize(&headers) {
        AttemptOutcome::Accepted => ws.on_upgrade(move |socket| serve_link(shared, socket)),
        AttemptOutcome::Unauthorized => {
            warn!("link upgrade refused: missing or wrong bearer token");
            (StatusCode::UNAUTHORIZED, "invalid link token\n").into_response()
        }
        AttemptOutcome::Refused => {
            warn!("link upgrade refused by the refuse-auth fault");
            (StatusCode::UNAUTHORIZED, "invalid link token\n").into_response()
        }
    }
}
