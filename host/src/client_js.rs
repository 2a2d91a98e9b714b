//! `GET /client.js`: the browser client, served by the host it talks to.
//!
//! Why the host serves it: a page needs no bundler and no npm to use the stream, the
//! commands and the voice helper (`import { connect } from '/client.js'`), and the client
//! always matches the host's wire format. The file is `clients/js/src/client.js`, the same
//! one the npm package `@gateway-host/client` exports, embedded at build time; it is one
//! self-contained ES module (the React hook, which imports `react`, ships only in the
//! package). `Cache-Control: no-cache` with an `ETag`: browsers revalidate on every load
//! (a `304` when unchanged), so a host upgrade is never masked by a cached old client.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The module, as committed in `clients/js/src/client.js`.
pub const CLIENT_JS: &str = include_str!("../../clients/js/src/client.js");

/// A strong validator: the first 16 bytes of the module's SHA-256, quoted.
static ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(CLIENT_JS.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
});

/// `/client.js`, no authentication (the code is public; the API it calls is not).
pub fn router() -> Router {
    Router::new().route(
        "/client.js",
        get(|headers: HeaderMap| async move { serve(&headers) }),
    )
}

fn serve(request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&ETAG).unwrap_or(HeaderValue::from_static("\"\""));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == ETAG.as_str() || t.trim() == "*")
        });
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    (StatusCode::OK, common, [content_type], CLIENT_JS).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(if_none_match: Option<&str>) -> Response {
        let mut request = Request::get("/client.js");
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let request = request.body(Body::empty()).expect("static request");
        router().oneshot(request).await.expect("infallible")
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn serves_the_module_as_javascript_that_revalidates() {
        let response = get(None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        assert_eq!(header_of(&response, header::ETAG), ETAG.as_str());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("in-memory body");
        let text = std::str::from_utf8(&body).expect("utf-8");
        assert_eq!(text, CLIENT_JS);
        assert!(text.contains("export function connect("));
        assert!(text.contains("export function voiceChannel("));
        assert!(!text.contains("\nimport "), "self-contained: no imports");
    }

    #[tokio::test]
    async fn answers_304_when_the_client_has_this_version() {
        let response = get(Some(ETAG.as_str())).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&response, header::ETAG), ETAG.as_str());
        let stale = get(Some("\"0000\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }
}
