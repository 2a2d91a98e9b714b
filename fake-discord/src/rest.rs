//! The fake's REST side (`/api/v10/...`): `GET /gateway/bot`, create message (with
//! `nonce` + `enforce_nonce` de-duplication), add reaction, trigger typing.
//!
//! Rate limits as documented: every answer carries `X-RateLimit-Limit`, `-Remaining`,
//! `-Reset`, `-Reset-After` and `-Bucket`; buckets are per route and major parameter
//! (the channel id). A request into an exhausted bucket, into a bucket paused by a 429, or
//! during a global pause is answered `429` **and counted as a violation**, so tests can
//! prove the host never sends into a bucket it knows is empty.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::state::{Control, Fault, RecordedRequest};

/// `/api/v10/{*path}`.
pub fn router(control: Control) -> Router {
    Router::new()
        .route("/api/v10/{*path}", any(handle))
        .with_state(control)
}

/// Which documented route a request is, with its bucket and major parameter.
enum Route {
    GatewayBot,
    CreateMessage {
        channel: String,
    },
    AddReaction {
        channel: String,
        message: String,
        emoji: String,
    },
    Typing {
        channel: String,
    },
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/api/v10/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["gateway", "bot"]) => Some(Route::GatewayBot),
            ("POST", ["channels", c, "messages"]) => Some(Route::CreateMessage {
                channel: c.to_string(),
            }),
            ("PUT", ["channels", c, "messages", m, "reactions", e, "@me"]) => {
                Some(Route::AddReaction {
                    channel: c.to_string(),
                    message: m.to_string(),
                    emoji: percent_decode(e)?,
                })
            }
            ("POST", ["channels", c, "typing"]) => Some(Route::Typing {
                channel: c.to_string(),
            }),
            _ => None,
        }
    }

    /// (bucket hash, major parameter); `None` for unlimited routes.
    fn bucket(&self) -> Option<(String, String)> {
        match self {
            Route::GatewayBot => None,
            Route::CreateMessage { channel } => Some(("b-messages".into(), channel.clone())),
            Route::AddReaction { channel, .. } => Some(("b-reactions".into(), channel.clone())),
            Route::Typing { channel } => Some(("b-typing".into(), channel.clone())),
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(
    State(control): State<Control>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let response = answer(&control, &method, &path, &headers, body_json.as_ref());
    control.inner.requests.lock().push(RecordedRequest {
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body_json,
        at: Instant::now(),
        status: response.status().as_u16(),
    });
    response
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn answer(
    control: &Control,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Response {
    let inner = &control.inner;
    let expected = format!("Bot {}", inner.options.token);
    if headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v != expected)
    {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let Some(route) = Route::parse(method, path) else {
        return error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    };
    let now = Instant::now();
    let Some(key) = route.bucket() else {
        return gateway_bot(control);
    };
    // Limits first: a request the host should not have sent is a violation.
    let window = inner.options.bucket_window;
    let limit = inner.options.bucket_limit;
    let (remaining, reset_after) = {
        let mut b = inner.buckets.lock();
        if let Some(until) = b.global_until.filter(|u| *u > now) {
            inner
                .counters
                .global_violations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return limited(until - now, true, None);
        }
        if let Some(until) = b.route_until.get(&key).copied().filter(|u| *u > now) {
            inner
                .counters
                .bucket_violations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return limited(until - now, false, Some((&key.0, limit)));
        }
        let entry = b.windows.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        let reset_after = window.saturating_sub(now.duration_since(entry.0));
        if entry.1 >= limit {
            inner
                .counters
                .bucket_violations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return limited(reset_after, false, Some((&key.0, limit)));
        }
        entry.1 += 1;
        (limit - entry.1, reset_after)
    };
    let fault = {
        let mut faults = inner.faults.lock();
        let at = faults
            .iter()
            .position(|(filter, _)| filter.as_ref().is_none_or(|f| path.contains(f.as_str())));
        at.and_then(|i| faults.remove(i)).map(|(_, f)| f)
    };
    let mut commit_then_500 = false;
    match fault {
        Some(Fault::RateLimited {
            retry_after,
            global,
        }) => {
            let pause = Duration::from_secs_f64(retry_after);
            let mut b = inner.buckets.lock();
            if global {
                b.global_until = Some(now + pause);
            } else {
                b.route_until.insert(key.clone(), now + pause);
            }
            return limited(pause, global, (!global).then_some((&key.0, limit)));
        }
        Some(Fault::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, 0, "injected failure");
        }
        Some(Fault::Error {
            status,
            code,
            message,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, code, &message);
        }
        Some(Fault::CommitThen500) => commit_then_500 = true,
        None => {}
    }
    let mut response = perform(control, route, body);
    if commit_then_500 {
        response = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            0,
            "500: Internal Server Error",
        );
    }
    let h = response.headers_mut();
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + reset_after;
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-reset",
            format!("{:.3}", reset_at.as_secs_f64()),
        ),
        (
            "x-ratelimit-reset-after",
            format!("{:.3}", reset_after.as_secs_f64()),
        ),
        ("x-ratelimit-bucket", key.0.clone()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

fn limited(retry_after: Duration, global: bool, bucket: Option<(&str, u32)>) -> Response {
    let secs = retry_after.as_secs_f64();
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "message": "You are being rate limited.",
            "retry_after": (secs * 1000.0).ceil() / 1000.0,
            "global": global,
        })),
    )
        .into_response();
    let h = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("retry-after", format!("{}", secs.ceil() as u64));
    set(
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.into(),
    );
    if global {
        set("x-ratelimit-global", "true".into());
    }
    if let Some((bucket, limit)) = bucket {
        set("x-ratelimit-limit", limit.to_string());
        set("x-ratelimit-remaining", "0".into());
        set("x-ratelimit-reset-after", format!("{secs:.3}"));
        set("x-ratelimit-bucket", bucket.to_string());
    }
    response
}

fn gateway_bot(control: &Control) -> Response {
    let inner = &control.inner;
    let (remaining, reset_after) = control.start_limit();
    axum::Json(json!({
        "url": format!("ws://{}/gateway", inner.addr),
        "shards": 1,
        "session_start_limit": {
            "total": 1000, "remaining": remaining, "reset_after": reset_after,
            "max_concurrency": inner.options.max_concurrency,
        },
    }))
    .into_response()
}

fn perform(control: &Control, route: Route, body: Option<&Value>) -> Response {
    let inner = &control.inner;
    match route {
        Route::GatewayBot => gateway_bot(control),
        Route::CreateMessage { channel } => {
            let Some(content) = body.and_then(|b| b["content"].as_str()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    50006,
                    "Cannot send an empty message",
                );
            };
            let nonce = body.and_then(|b| match &b["nonce"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let enforce = body.is_some_and(|b| b["enforce_nonce"] == json!(true));
            if let Some(n) = nonce.as_ref().filter(|n| n.len() > 25) {
                let _ = n;
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body (nonce)");
            }
            let mut nonces = inner.nonces.lock();
            if enforce
                && let Some(n) = &nonce
                && let Some(existing) = nonces.get(&(channel.clone(), n.clone()))
            {
                return axum::Json(existing.clone()).into_response();
            }
            let message = json!({
                "id": control.snowflake(), "channel_id": channel, "content": content,
                "nonce": nonce, "type": 0, "tts": false, "mentions": [], "attachments": [],
                "embeds": [], "pinned": false, "timestamp": "2026-01-01T00:00:00.000000+00:00",
                "author": {"id": "1000000000000000001", "username": "fake-bot", "discriminator": "0", "bot": true},
            });
            if enforce && let Some(n) = &nonce {
                nonces.insert((channel.clone(), n.clone()), message.clone());
            }
            drop(nonces);
            inner.messages.lock().push(message.clone());
            control.dispatch("MESSAGE_CREATE", message.clone());
            axum::Json(message).into_response()
        }
        Route::AddReaction {
            channel,
            message,
            emoji,
        } => {
            let emoji_json = match emoji.split_once(':') {
                Some((name, id)) => json!({"name": name, "id": id}),
                None => json!({"name": emoji, "id": null}),
            };
            control.dispatch(
                "MESSAGE_REACTION_ADD",
                json!({"user_id": "1000000000000000001", "channel_id": channel,
                       "message_id": message, "emoji": emoji_json}),
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Route::Typing { channel } => {
            control.dispatch(
                "TYPING_START",
                json!({"user_id": "1000000000000000001", "channel_id": channel,
                       "timestamp": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()}),
            );
            StatusCode::NO_CONTENT.into_response()
        }
    }
}
