//! `GET /api/stream`: authenticate, check the requested topics against the token, apply
//! the stream caps (all streams: `503 too_many_streams`; one user's: `429
//! too_many_user_streams`), and answer with the client's event stream.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::hub::{StreamHub, SubscribeError};
use super::stream::client_stream;
use crate::api_error::ApiError;
use crate::auth::{Authenticator, Claims};

/// Most topic patterns in one subscription.
const MAX_TOPICS: usize = 64;
/// Longest topic pattern.
const MAX_TOPIC_LEN: usize = 128;

#[derive(Clone)]
struct StreamState {
    hub: StreamHub,
    auth: Authenticator,
}

/// The stream route.
pub fn router(hub: StreamHub, auth: Authenticator) -> Router {
    Router::new()
        .route("/api/stream", get(stream))
        .with_state(StreamState { hub, auth })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    topics: Option<String>,
    last_event_id: Option<String>,
}

async fn stream(
    State(state): State<StreamState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let claims = state.auth.authenticate(&headers)?;
    let patterns = requested_topics(query.topics.as_deref(), &claims)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.last_event_id)
        .filter(|id| !id.is_empty());
    let sub = state
        .hub
        .subscribe(&claims.sub, patterns, last_event_id.as_deref())
        .map_err(refused)?;
    tracing::debug!(user = %claims.sub, "stream opened");
    let body = Body::from_stream(client_stream(sub, state.hub.settings()));
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn refused(e: SubscribeError) -> ApiError {
    let (status, code) = match e {
        SubscribeError::AtCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
        SubscribeError::UserAtCapacity(_) => {
            (StatusCode::TOO_MANY_REQUESTS, "too_many_user_streams")
        }
    };
    ApiError::new(status, code, e.to_string()).retry_after(5)
}

/// The patterns asked for (default: everything the token grants), each checked.
fn requested_topics(raw: Option<&str>, claims: &Claims) -> Result<Vec<String>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        if claims.topics.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_topic",
                "the token grants no topics",
            ));
        }
        return Ok(claims.topics.clone());
    };
    let topics: Vec<String> = raw
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.len() > MAX_TOPICS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_topics",
            format!("at most {MAX_TOPICS} topics"),
        ));
    }
    if let Some(bad) = topics.iter().find(|t| !valid_topic(t)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_topics",
            format!(
                "invalid topic {bad:?}: letters, digits, ':', '_', '-', optionally ending in '*'"
            ),
        ));
    }
    let denied: Vec<&String> = topics.iter().filter(|t| !claims.allows_topic(t)).collect();
    if !denied.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_topic",
            "the token does not grant these topics",
        )
        .with("topics", serde_json::json!(denied)));
    }
    Ok(topics)
}

fn valid_topic(t: &str) -> bool {
    let body = t.strip_suffix('*').unwrap_or(t);
    t.len() <= MAX_TOPIC_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}
