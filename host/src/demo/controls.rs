//! Demo-only routes that make the embedded simulator and the stream do something on
//! request, so a visitor (and the browser test) can see the voice panel and resuming work
//! without waiting for chance. Mounted by `gateway-host demo` only; `serve` has none.
//!
//! * `GET /demo/info`: `{"demo": true}` (the page shows its simulate buttons when present).
//! * `POST /demo/voice?action=join|mute|deafen|dropout|leave&guild=N&user=M`: the simulator
//!   emits that member's VOICE_STATE_UPDATE (indexes into its small world); a dropout
//!   rejoins by itself a few events later.
//! * `POST /demo/streams/drop`: every open stream ends; clients resume with `Last-Event-ID`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gateway_sim::Control;
use gateway_sim::voice::VoiceAction;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::ApiError;
use crate::sse::StreamHub;

#[derive(Clone)]
struct DemoState {
    sim: Control,
    hub: StreamHub,
}

/// The demo routes.
pub fn router(sim: Control, hub: StreamHub) -> Router {
    Router::new()
        .route(
            "/demo/info",
            get(|| async { axum::Json(json!({"demo": true})) }),
        )
        .route("/demo/voice", post(voice))
        .route("/demo/streams/drop", post(drop_streams))
        .with_state(DemoState { sim, hub })
}

#[derive(Deserialize)]
struct VoiceQuery {
    action: String,
    #[serde(default)]
    guild: u32,
    #[serde(default)]
    user: u32,
}

async fn voice(State(state): State<DemoState>, Query(q): Query<VoiceQuery>) -> Response {
    let Some(action) = VoiceAction::parse(&q.action) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_action",
            "action must be join, mute, deafen, dropout or leave",
        )
        .into_response();
    };
    let (seq, d) = state.sim.voice(q.guild as usize, q.user as usize, action);
    axum::Json(json!({
        "emitted": "VOICE_STATE_UPDATE", "upstreamSeq": seq,
        "guildId": d["guild_id"], "channelId": d["channel_id"], "userId": d["user_id"],
    }))
    .into_response()
}

async fn drop_streams(State(state): State<DemoState>) -> Response {
    let ended = state.hub.disconnect_all();
    axum::Json(json!({"ended": ended})).into_response()
}
