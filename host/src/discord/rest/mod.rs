//! The Discord REST client: `Authorization: Bot …`, a `User-Agent` of the documented
//! form, rate limits honoured before sending (see [`buckets`]), `429` answered by waiting
//! exactly the bucket (or, when global, everything), errors mapped (see [`errors`]).
//!
//! The Authorization header is marked sensitive, and the token is never formatted into a
//! log line; the HTTP crates' trace output is filtered (see `link::redact`).

pub mod buckets;
pub mod errors;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};

pub use buckets::{Learned, RateLimits, RouteKey};
pub use errors::RestError;

use super::config::DiscordConfig;

/// 429s in a row for one request before it is handed back as retryable.
const MAX_429_IN_A_ROW: u32 = 5;

/// Longest sleep before re-checking a bucket.
const RECHECK: Duration = Duration::from_millis(20);

/// What `GET /gateway/bot` said.
#[derive(Debug, Clone)]
pub struct GatewayBot {
    pub url: String,
    pub shards: u64,
    pub remaining: u64,
    pub reset_after_ms: u64,
    pub max_concurrency: u64,
}

/// The REST client. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Arc<str>,
    limits: Arc<Mutex<RateLimits>>,
}

impl RestClient {
    pub fn new(config: &DiscordConfig) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bot {}", config.token.expose()))
            .map_err(|_| anyhow::anyhow!("DISCORD_BOT_TOKEN is not a valid header value"))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!(
                "DiscordBot (https://github.com/gateway-host/gateway-host, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            )),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()?;
        Ok(Self {
            http,
            base: config.api_base.trim_end_matches('/').into(),
            limits: Arc::new(Mutex::new(RateLimits::new(config.global_per_second))),
        })
    }

    /// `GET /gateway/bot`.
    pub async fn gateway_bot(&self) -> Result<GatewayBot, RestError> {
        #[derive(Deserialize)]
        struct Limit {
            remaining: u64,
            reset_after: u64,
            max_concurrency: u64,
        }
        #[derive(Deserialize)]
        struct Bot {
            url: String,
            shards: u64,
            session_start_limit: Limit,
        }
        let route = RouteKey {
            route: "GET /gateway/bot",
            major: String::new(),
        };
        let v = self
            .request(Method::GET, "/gateway/bot".into(), route, None)
            .await?;
        let bot: Bot = serde_json::from_value(v)
            .map_err(|e| RestError::Unavailable(format!("unexpected /gateway/bot answer: {e}")))?;
        Ok(GatewayBot {
            url: bot.url,
            shards: bot.shards,
            remaining: bot.session_start_limit.remaining,
            reset_after_ms: bot.session_start_limit.reset_after,
            max_concurrency: bot.session_start_limit.max_concurrency,
        })
    }

    /// One request, waiting for its bucket first and through any 429s (up to a bound).
    /// Returns the JSON body (`null` for 204).
    pub async fn request(
        &self,
        method: Method,
        path: String,
        route: RouteKey,
        body: Option<Value>,
    ) -> Result<Value, RestError> {
        let url = format!("{}{}", self.base, path);
        let mut limited_in_a_row = 0;
        loop {
            self.wait_for_permit(&route).await;
            let mut request = self.http.request(method.clone(), &url);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| {
                RestError::Unavailable(format!("{} {path}: {}", method, e.without_url()))
            })?;
            let status = response.status();
            let learned = learned(response.headers());
            let global_header = header(response.headers(), "x-ratelimit-global")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let scope = header(response.headers(), "x-ratelimit-scope").map(str::to_string);
            let bytes = response.bytes().await.map_err(|e| {
                RestError::Unavailable(format!("{method} {path}: {}", e.without_url()))
            })?;
            let json: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let now = Instant::now();
            self.limits.lock().learn(&route, &learned, now);
            if status == StatusCode::TOO_MANY_REQUESTS {
                limited_in_a_row += 1;
                let global = global_header || json["global"].as_bool().unwrap_or(false);
                let retry_after = json["retry_after"]
                    .as_f64()
                    .or_else(|| learned.reset_after.map(|d| d.as_secs_f64()))
                    .unwrap_or(1.0)
                    .max(0.0);
                let retry_after = Duration::from_secs_f64(retry_after);
                let scope_label = if global { "global" } else { "bucket" };
                metrics::counter!("gateway_discord_rest_429_total", "scope" => scope_label)
                    .increment(1);
                warn!(route = route.route, global, scope = ?scope, retry_after_ms = retry_after.as_millis() as u64, "Discord rate-limited a request (429)");
                self.limits.lock().limited(&route, global, retry_after, now);
                if limited_in_a_row >= MAX_429_IN_A_ROW {
                    return Err(RestError::Unavailable(format!(
                        "{method} {path}: rate limited {limited_in_a_row} times in a row"
                    )));
                }
                continue;
            }
            metrics::counter!("gateway_discord_rest_requests_total", "route" => route.route, "status" => status.as_u16().to_string()).increment(1);
            debug!(
                route = route.route,
                status = status.as_u16(),
                "Discord REST answer"
            );
            if status.is_success() {
                return Ok(json);
            }
            if status.is_server_error() {
                return Err(RestError::Unavailable(format!(
                    "{method} {path}: HTTP {status}"
                )));
            }
            return Err(RestError::Rejected {
                status: status.as_u16(),
                code: json["code"].as_u64().unwrap_or(0),
                message: json["message"].as_str().unwrap_or("no message").to_string(),
            });
        }
    }

    async fn wait_for_permit(&self, route: &RouteKey) {
        loop {
            let verdict = self.limits.lock().permit(route, Instant::now());
            match verdict {
                Ok(()) => return,
                Err(until) => {
                    metrics::counter!("gateway_discord_rest_waits_total").increment(1);
                    debug!(
                        route = route.route,
                        wait_ms =
                            until.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "waiting for the rate-limit bucket"
                    );
                    // Re-check at least every RECHECK: a probe's answer can free the
                    // bucket before `until`.
                    tokio::time::sleep_until(until.min(Instant::now() + RECHECK)).await;
                }
            }
        }
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn learned(headers: &reqwest::header::HeaderMap) -> Learned {
    Learned {
        bucket: header(headers, "x-ratelimit-bucket").map(str::to_string),
        remaining: header(headers, "x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        reset_after: header(headers, "x-ratelimit-reset-after")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64),
    }
}
