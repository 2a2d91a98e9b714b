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
