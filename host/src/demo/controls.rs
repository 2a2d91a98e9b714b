//! Demo-only routes that make the embedded simulator and the stream do something on
//! request, so a visitor (and the browser test) can see the voice panel and resuming work
//! without waiting for chance. Mounted by `gateway-host demo` only; `serve` has none.
//!
//! * `GET /demo/info`: `{"demo": true, "mode": "simulator" | "discord-fake"}` (the page
//!   shows its simulate buttons when present, and which upstream runs).
//! * `POST /demo/voice?action=join|mute|deafen|dropout|leave&guild=N&user=M`: the simulator
//!   emits that member's VOICE_STATE_UPDATE (indexes into its small world); a dropout
//!   rejoins by itself a few events later. Under `--discord-fake`, the fake Discord
//!   dispatches a VOICE_STATE_UPDATE of the same shape on the live gateway session.
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

/// What the demo's upstream is.
#[derive(Clone)]
pub enum DemoUpstream {
    /// `gateway-host demo`: the link simulator.
    Simulator(Control),
    /// `gateway-host demo --discord-fake`: direct Discord mode against the fake Discord.
    DiscordFake(fake_discord::Control),
}

impl DemoUpstream {
    fn mode(&self) -> &'static str {
        match self {
            DemoUpstream::Simulator(_) => "simulator",
            DemoUpstream::DiscordFake(_) => "discord-fake",
        }
    }
}

#[derive(Clone)]
struct DemoState {
    upstream: DemoUpstream,
    hub: StreamHub,
}

/// The demo routes.
pub fn router(upstream: DemoUpstream, hub: StreamHub) -> Router {
    let mode = upstream.mode();
    Router::new()
        .route(
            "/demo/info",
            get(move || async move { axum::Json(json!({"demo": true, "mode": mode})) }),
        )
        .route("/demo/voice", post(voice))
        .route("/demo/streams/drop", post(drop_streams))
        .with_state(DemoState { upstream, hub })
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
    let (seq, d) = match &state.upstream {
        DemoUpstream::Simulator(sim) => {
            let (seq, d) = sim.voice(q.guild as usize, q.user as usize, action);
            (Some(seq), d)
        }
        DemoUpstream::DiscordFake(fake) => {
            let d = fake_voice_state(q.guild, q.user, action);
            (fake.dispatch("VOICE_STATE_UPDATE", d.clone()), d)
        }
    };
    axum::Json(json!({
        "emitted": "VOICE_STATE_UPDATE", "upstreamSeq": seq,
        "guildId": d["guild_id"], "channelId": d["channel_id"], "userId": d["user_id"],
    }))
    .into_response()
}

/// A VOICE_STATE_UPDATE `d` as Discord sends it, for member `user` of guild `guild` of the
/// fake (a leave or a dropout has `channel_id: null`).
fn fake_voice_state(guild: u32, user: u32, action: VoiceAction) -> serde_json::Value {
    let in_channel = !matches!(action, VoiceAction::Leave | VoiceAction::Dropout);
    let guild_id = format!("{}", 1_100_000_000_000_000_001u64 + u64::from(guild % 4));
    let channel_id = format!("{}", 1_130_000_000_000_000_001u64 + u64::from(guild % 4));
    json!({
        "guild_id": guild_id,
        "channel_id": in_channel.then_some(channel_id),
        "user_id": format!("{}", 1_200_000_000_000_000_001u64 + u64::from(user % 16)),
        "session_id": format!("{:032x}", rand::random::<u128>()),
        "deaf": false, "mute": false,
        "self_deaf": matches!(action, VoiceAction::Deafen),
        "self_mute": matches!(action, VoiceAction::Mute | VoiceAction::Deafen),
        "self_video": false, "suppress": false,
    })
}

async fn drop_streams(State(state): State<DemoState>) -> Response {
    let ended = state.hub.disconnect_all();
    axum::Json(json!({"ended": ended})).into_response()
}
