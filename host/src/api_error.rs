//! The one JSON error shape of every HTTP API:
//! `{"version":"1.0","error":{"code","message",...},"traceId"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the `error` object (e.g. `fields`, `retryAfterMs`).
    pub details: Map<String, Value>,
    pub trace_id: String,
    /// `Retry-After` header, in seconds.
    pub retry_after_secs: Option<u64>,
}

/// A fresh random trace id (16 hex digits).
pub fn new_trace_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ApiError {
    /// An error with a new trace id.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            trace_id: new_trace_id(),
            retry_after_secs: None,
        }
    }

    /// Add a member to the `error` object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Use an existing trace id.
    pub fn traced(mut self, trace_id: &str) -> ApiError {
        self.trace_id = trace_id.to_string();
        self
    }

    /// Set `Retry-After` (seconds).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(self.details);
        let body = json!({ "version": "1.0", "error": error, "traceId": self.trace_id });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Middleware that gives every error answer the JSON shape, whoever produced it.
///
/// Handlers answer with [`ApiError`] already; this catches the rest: axum's own 404 for an
/// unknown path, 405 for a known path with another method, 413 from a body limit, 400/422
/// from an extractor's rejection. Their status and headers (`Allow`, `Retry-After`) stay; the
/// plain-text body becomes `{"version":"1.0","error":{"code","message"},"traceId"}`.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Keep the framework's own wording as the message; it is short and says what was wrong.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match std::str::from_utf8(&text).map(str::trim) {
        Ok(t) if !t.is_empty() => t.to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut rebuilt = ApiError::new(status, code_for(status), message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (name, value) in rebuilt.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    *rebuilt.headers_mut() = parts.headers;
    rebuilt
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The `error.code` of an error the framework produced.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::http::Request;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/echo", post(|body: axum::body::Bytes| async move { body }))
            .layer(DefaultBodyLimit::max(8))
            .layer(axum::middleware::from_fn(json_errors))
    }

    async fn call(method: &str, uri: &str, body: &'static str) -> (StatusCode, HeaderMapLite) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .expect("valid request");
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let allow = response.headers().get(header::ALLOW).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let json: Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        (status, HeaderMapLite { allow, json })
    }

    struct HeaderMapLite {
        allow: Option<HeaderValue>,
        json: Value,
    }

    #[tokio::test]
    async fn framework_errors_get_the_json_shape() {
        let (status, r) = call("GET", "/nowhere", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(r.json["error"]["code"], "not_found");
        assert_eq!(r.json["version"], "1.0");
        assert!(r.json["traceId"].is_string());

        let (status, r) = call("GET", "/echo", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.json["error"]["code"], "method_not_allowed");
        assert!(r.allow.is_some(), "Allow header kept");

        let (status, r) = call("POST", "/echo", "far more than eight bytes").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.json["error"]["code"], "payload_too_large");
    }
}
