//! App-side publishing: `POST /api/internal/events` lets an app backend put its own events
//! on the bus, beside the upstream's.
//!
//! Why on the bus and not straight to subscribers: published events must be treated exactly
//! like upstream ones — routed once by the router slot (topics, redaction), given a host id,
//! kept in the replay ring, filtered for the legacy voice clients. Off unless enabled
//! (`[internal-events]`, `GATEWAY_INTERNAL_EVENTS`); the caller needs a token whose `publish`
//! claim matches the event type, and may only name guilds and channels its `topics` grant.
//!
//! In cluster mode the event is routed by this host and stored in the cluster's stream
//! *before* the answer ([`AppEventSink::Store`]): `202` then means every host will serve
//! it, and a stream that cannot store it is a `503` the caller can retry, never a `202`
//! for an event that goes nowhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::api_error::{ApiError, new_trace_id};
use crate::auth::{Authenticator, Claims};
use crate::bus::{Bus, BusEvent};
use crate::policy::version::unix_ms;

/// The upstream session name published events carry (`upstreamSession` in the envelope).
pub const APP_SESSION: &str = "app";
/// Longest event type name.
const MAX_TYPE_LEN: usize = 64;

/// `[internal-events]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct InternalEventsSettings {
    /// Mount the route (`GATEWAY_INTERNAL_EVENTS`).
    pub enabled: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for InternalEventsSettings {
    fn default() -> Self {
        InternalEventsSettings {
            enabled: false,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Stores an accepted app event durably (cluster mode: routed and stored in the stream).
pub trait StoreAppEvent: Send + Sync {
    /// Resolves once the event is stored (or, routed to nothing, dropped by the router).
    fn store(&self, event: Arc<BusEvent>) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// Where accepted app events go.
#[derive(Clone)]
pub enum AppEventSink {
    /// Single-host mode: the host's bus, where the hub routes them like upstream events.
    Bus(Bus),
    /// Cluster mode: stored before the answer; the session numbers this process's events
    /// (unique per process, so two hosts' events never de-duplicate each other).
    Store {
        store: Arc<dyn StoreAppEvent>,
        session: Arc<str>,
    },
}

#[derive(Clone)]
struct PublishState {
    sink: AppEventSink,
    auth: Authenticator,
    session: Arc<str>,
    seq: Arc<AtomicU64>,
}

/// The route (mount it only when enabled).
pub fn router(bus: Bus, auth: Authenticator, settings: &InternalEventsSettings) -> Router {
    router_to(AppEventSink::Bus(bus), auth, settings)
}

/// [`router`] with app events going to `sink`.
pub fn router_to(
    sink: AppEventSink,
    auth: Authenticator,
    settings: &InternalEventsSettings,
) -> Router {
    let session: Arc<str> = match &sink {
        AppEventSink::Bus(_) => APP_SESSION.into(),
        AppEventSink::Store { session, .. } => session.clone(),
    };
    Router::new()
        .route("/api/internal/events", post(publish))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(PublishState {
            sink,
            auth,
            session,
            seq: Arc::new(AtomicU64::new(0)),
        })
}

/// What an app publishes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Published {
    /// The event name, like a Discord dispatch name: `A-Z`, digits, `_`.
    #[serde(rename = "type")]
    kind: String,
    /// The payload; `guild_id` / `channel_id` in it route the event as for upstream ones.
    data: Box<RawValue>,
}

async fn publish(
    State(state): State<PublishState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let claims = state.auth.authenticate(&headers)?;
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the event as application/json",
        ));
    }
    let event = parse(&body)?;
    authorize(&claims, &event)?;
    let trace_id = new_trace_id();
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let bus_event = Arc::new(BusEvent {
        session_id: state.session.clone(),
        seq,
        trace_id: trace_id.clone(),
        t: event.kind.clone(),
        ts: unix_ms(),
        d: event.data,
        received_at: Instant::now(),
        loss_before: None,
    });
    match &state.sink {
        AppEventSink::Bus(bus) => {
            bus.publish(bus_event);
        }
        AppEventSink::Store { store, .. } => {
            if let Err(e) = store.store(bus_event).await {
                tracing::warn!(traceId = %trace_id, event = %event.kind, error = %format!("{e:#}"), "app event not stored in the cluster stream; refused");
                metrics::counter!("gateway_internal_events_refused_total").increment(1);
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cluster_unavailable",
                    format!(
                        "the cluster's stream did not acknowledge the event ({e}); retry later (an attempt that timed out may still be stored)"
                    ),
                )
                .traced(&trace_id)
                .retry_after(1));
            }
        }
    }
    tracing::info!(
        traceId = %trace_id, event = %event.kind, user = %claims.sub,
        "app event published"
    );
    metrics::counter!("gateway_internal_events_total").increment(1);
    let body = json!({"version": "1.0", "accepted": true, "type": event.kind, "traceId": trace_id});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", message)
}

fn parse(body: &[u8]) -> Result<Published, ApiError> {
    let event: Published = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the body must be {{\"type\": \"NAME\", \"data\": {{…}}}}: {e}"
        ))
    })?;
    let valid_type = !event.kind.is_empty()
        && event.kind.len() <= MAX_TYPE_LEN
        && event.kind.starts_with(|c: char| c.is_ascii_uppercase())
        && event
            .kind
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid_type {
        return Err(invalid(format!(
            "type must be 1..={MAX_TYPE_LEN} characters of A-Z, 0-9 and _, starting with a letter"
        )));
    }
    if !event.data.get().trim_start().starts_with('{') {
        return Err(invalid("data must be a JSON object"));
    }
    Ok(event)
}

/// The token must allow the type, and the guild and channel the payload names.
fn authorize(claims: &Claims, event: &Published) -> Result<(), ApiError> {
    let forbidden = |message: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", message);
    if !claims.allows_publish(&event.kind) {
        return Err(forbidden(format!(
            "the token's publish claim does not allow {}",
            event.kind
        )));
    }
    let data: Map<String, Value> = serde_json::from_str(event.data.get()).unwrap_or_default();
    for (key, prefix) in [("guild_id", "guild"), ("channel_id", "channel")] {
        match data.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) if claims.allows_topic(&format!("{prefix}:{id}")) => {}
            Some(Value::String(id)) => {
                return Err(forbidden(format!(
                    "the token's topics do not grant {prefix}:{id}"
                )));
            }
            Some(_) => return Err(invalid(format!("data.{key} must be a string id"))),
        }
    }
    Ok(())
}
