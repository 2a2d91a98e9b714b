//! CORS for the public listener: which browser origins may call the API
//! (`GATEWAY_CORS_ORIGINS` / `cors-origins`).
//!
//! Why its own parse step at start: tower-http panics when handed `*` inside a list (the
//! host used to crash with exit 101 once the link was up), and an origin it cannot use
//! was dropped silently, leaving an operator to wonder why the browser is refused. Here
//! every entry is checked when the configuration is loaded, and a bad one is a start
//! error naming it. Two forms are accepted:
//!
//! * `*` alone: any origin may call, **without credentials** (the `gateway_token` cookie
//!   is then not sent cross-origin; use `Authorization: Bearer`).
//! * a list of origins `scheme://host[:port]` (http or https, no path, no trailing
//!   slash): those origins, with credentials (the cookie works).

use axum::http::{HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins allowed by CORS, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No cross-origin calls (the default).
    #[default]
    None,
    /// `*`: any origin, without credentials.
    Any,
    /// These origins, with credentials.
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// Checks the configured entries (already split and trimmed).
    pub fn parse(entries: &[String]) -> Result<CorsOrigins, String> {
        if entries.iter().any(|e| e == "*") {
            if entries.len() > 1 {
                return Err(
                    "CORS origins: `*` (any origin) must be the only entry, not mixed with a list"
                        .into(),
                );
            }
            return Ok(CorsOrigins::Any);
        }
        if entries.is_empty() {
            return Ok(CorsOrigins::None);
        }
        entries
            .iter()
            .map(|e| parse_origin(e))
            .collect::<Result<Vec<_>, _>>()
            .map(CorsOrigins::List)
    }

    /// The layer enforcing these origins.
    pub fn layer(&self) -> CorsLayer {
        let base = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ]);
        match self {
            CorsOrigins::None => base.allow_origin(AllowOrigin::list([])),
            CorsOrigins::Any => base.allow_origin(AllowOrigin::any()),
            CorsOrigins::List(list) => base
                .allow_origin(AllowOrigin::list(list.iter().cloned()))
                .allow_credentials(true),
        }
    }
}

/// One origin as a browser sends it: `scheme://host[:port]`, nothing more.
fn parse_origin(entry: &str) -> Result<HeaderValue, String> {
    let bad = |why: &str| {
        Err(format!(
            "CORS origin {entry:?} is not usable: {why} (expected scheme://host[:port], e.g. https://app.example.com, or `*` alone)"
        ))
    };
    let Ok(uri) = entry.parse::<Uri>() else {
        return bad("it does not parse as a URL");
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return bad("the scheme must be http or https"),
    }
    let Some(authority) = uri.authority() else {
        return bad("it has no host");
    };
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return bad("it must be a plain host, without user information");
    }
    // `Uri` reports "/" for a missing path; an origin has no path, not even "/".
    let has_path = entry
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path || uri.query().is_some() {
        return bad("an origin has no path, query or trailing slash");
    }
    HeaderValue::from_str(entry).or_else(|_| bad("it is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<CorsOrigins, String> {
        CorsOrigins::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn star_alone_is_any_and_mixed_is_refused() {
        assert_eq!(parse(&["*"]), Ok(CorsOrigins::Any));
        assert!(
            parse(&["*", "https://a.example"])
                .unwrap_err()
                .contains('*')
        );
        assert_eq!(parse(&[]), Ok(CorsOrigins::None));
        // Building the layers never panics.
        for origins in [
            CorsOrigins::Any,
            CorsOrigins::None,
            parse(&["http://a:1"]).unwrap(),
        ] {
            let _ = origins.layer();
        }
    }

    #[test]
    fn origins_are_validated_and_named() {
        assert!(matches!(
            parse(&["https://app.example.com", "http://127.0.0.1:5173"]),
            Ok(CorsOrigins::List(l)) if l.len() == 2
        ));
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/x",
            "ftp://app.example.com",
            "https://u@app.example.com",
            "https://a.example?x=1",
            "null",
        ] {
            let err = parse(&["https://ok.example", bad]).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
