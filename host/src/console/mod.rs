//! The operator console on the admin listener: `GET /admin/console` serves a page (with its
//! script and style) that charts the last minutes of the host and manages the components;
//! `GET /admin/series` serves the time series it charts.
//!
//! The page itself holds no data, so it is served without the admin token: it asks for the
//! token, keeps it in `sessionStorage` and sends it as `Authorization: Bearer` on every API
//! call (`/admin/series`, `/admin/components`, uploads, rollbacks), all of which need it.
//! No external assets and no inline script or style: the page works under the strict
//! `Content-Security-Policy` it is served with (`'self'` only).
//!
//! * [`latency`]: the per-second gateway→SSE latency histogram the stream hub feeds.
//! * [`series`]: the 1 s sampler and its fixed-size ring.

pub mod latency;
pub mod series;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::ApiError;
use crate::config::Secret;
use crate::policy::version::unix_ms;
pub use series::{Sample, Series};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Only this origin's script, style and API; no frames, no forms posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: the page and its assets (open), the series (admin token).
pub fn router(series: Arc<Series>, token: Option<Secret>) -> Router {
    let assets = Router::new()
        .route(
            "/admin/console",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/admin/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        );
    let data = crate::admin::guarded(
        Router::new()
            .route("/admin/series", get(series_route))
            .with_state(series),
        token,
    );
    assets.merge(data)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[derive(Deserialize)]
struct SeriesQuery {
    /// Only samples taken after this moment (milliseconds since the Unix epoch).
    since: Option<String>,
}

/// `GET /admin/series?since=<ms>`.
async fn series_route(
    State(series): State<Arc<Series>>,
    Query(query): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let since = match query.since.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_since",
                "since must be a time in milliseconds since the Unix epoch (an unsigned integer)",
            )
        })?),
    };
    let samples = series.since(since);
    Ok(axum::Json(json!({
        "intervalMs": series::INTERVAL.as_millis() as u64,
        "capacity": series.capacity(),
        "nowMs": unix_ms(),
        "samples": samples,
    }))
    .into_response())
}
