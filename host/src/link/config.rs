//! Link configuration: where the upstream is, the token, and the timing knobs.
//!
//! The defaults are the contract (backoff 1 s → 30 s, ping every 5 s, dead after 10 s
//! without a pong); the knobs exist so tests can run the same code in milliseconds.
//! The token lives in [`LinkToken`], whose `Debug` never shows it, so no log line or
//! panic message can leak it by accident.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default upstream URL.
pub const DEFAULT_LINK_URL: &str = "ws://127.0.0.1:7070/link";

/// Default largest inbound frame (and message): 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Smallest accepted `GATEWAY_LINK_MAX_FRAME_BYTES` (a Discord dispatch can be tens of KiB).
pub const MIN_MAX_FRAME_BYTES: usize = 64 << 10;

/// The bearer token for the upstream. Never printed.
#[derive(Clone)]
pub struct LinkToken(String);

impl LinkToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the Authorization header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(<redacted>)")
    }
}

/// Why the link configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `LINK_TOKEN` is not set (or empty).
    #[error("LINK_TOKEN is required: set it to the bearer token of the upstream gateway link")]
    MissingToken,
    /// `LINK_URL` is not a ws:// URL (TLS is terminated by a local proxy, not built in).
    #[error(
        "LINK_URL must be a ws:// URL (wss:// is not built in: terminate TLS in a local proxy), got {0:?}"
    )]
    BadUrl(String),
    /// `GATEWAY_LINK_MAX_FRAME_BYTES` is not a number of bytes ≥ 64 KiB.
    #[error("GATEWAY_LINK_MAX_FRAME_BYTES must be a number of bytes of at least 65536, got {0:?}")]
    BadMaxFrame(String),
    /// A timing variable that is not a positive number of milliseconds.
    #[error("{0} must be a positive number of milliseconds, got {1:?}")]
    BadMillis(&'static str, String),
}

/// Everything the link client needs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Upstream WebSocket URL.
    pub url: String,
    /// Bearer token.
    pub token: LinkToken,
    /// First reconnect delay (default 1 s); doubles per failed attempt.
    pub backoff_base: Duration,
    /// Longest reconnect delay (default 30 s).
    pub backoff_cap: Duration,
    /// A link that stayed up this long resets the backoff (default 10 s).
    pub stable_after: Duration,
    /// Time between pings (default 5 s).
    pub ping_interval: Duration,
    /// A ping unanswered this long means the link is dead (default 10 s).
    pub pong_timeout: Duration,
    /// Bound on TCP connect + WebSocket upgrade (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on the wait for `hello` after `resume` (default 10 s).
    pub hello_timeout: Duration,
    /// Commands buffered towards the socket (default 1024).
    pub command_capacity: usize,
    /// Largest inbound WebSocket frame or message (default 1 MiB); larger ones are
    /// counted and skipped (see `docs/link-protocol.md`).
    pub max_frame_bytes: usize,
    /// Where the session id and last seq are kept across host restarts (default: none).
    pub state_file: Option<PathBuf>,
    /// Shortest time between two writes of the state file (default 1 s).
    pub state_interval: Duration,
    /// Start by resuming this upstream session after this seq (cluster mode: the position
    /// of the stream's last frame); wins over the state file. Default: none.
    pub resume: Option<(String, u64)>,
}

impl LinkConfig {
    /// A config with the contract defaults.
    pub fn new(url: impl Into<String>, token: LinkToken) -> Self {
        Self {
            url: url.into(),
            token,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            command_capacity: 1024,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            state_file: None,
            state_interval: Duration::from_secs(1),
            resume: None,
        }
    }

    /// Reads `LINK_URL` (optional) and `LINK_TOKEN` (required) from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`LinkConfig::from_env`] with any variable source (testable).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let token = get("LINK_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .ok_or(ConfigError::MissingToken)?;
        let url = get("LINK_URL")
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_LINK_URL.to_owned());
        if !url.starts_with("ws://") {
            // TLS is not built in: terminate it in a local proxy (see docs/link-protocol.md).
            return Err(ConfigError::BadUrl(url));
        }
        let mut config = Self::new(url, LinkToken::new(token));
        if let Some(raw) = get("GATEWAY_LINK_MAX_FRAME_BYTES").filter(|v| !v.trim().is_empty()) {
            config.max_frame_bytes = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= MIN_MAX_FRAME_BYTES)
                .ok_or(ConfigError::BadMaxFrame(raw))?;
        }
        let millis = |key: &'static str, into: &mut Duration| -> Result<(), ConfigError> {
            if let Some(raw) = get(key).filter(|v| !v.trim().is_empty()) {
                let ms: u64 = raw
                    .trim()
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or(ConfigError::BadMillis(key, raw))?;
                *into = Duration::from_millis(ms);
            }
            Ok(())
        };
        millis("GATEWAY_LINK_PING_INTERVAL_MS", &mut config.ping_interval)?;
        millis("GATEWAY_LINK_PONG_TIMEOUT_MS", &mut config.pong_timeout)?;
        millis("GATEWAY_LINK_BACKOFF_BASE_MS", &mut config.backoff_base)?;
        millis("GATEWAY_LINK_BACKOFF_CAP_MS", &mut config.backoff_cap)?;
        config.state_file = get("GATEWAY_LINK_STATE_FILE")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        Ok(config)
    }

    /// The longest a dead (stalled) link can go unnoticed: a ping is sent at most
    /// `ping_interval` after the stall began and declared lost `pong_timeout` later.
    pub fn zombie_bound(&self) -> Duration {
        self.ping_interval + self.pong_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn missing_token_names_link_token() {
        let err = LinkConfig::from_lookup(env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::MissingToken);
        assert!(err.to_string().contains("LINK_TOKEN"));
        let err = LinkConfig::from_lookup(env(&[("LINK_TOKEN", "  ")])).unwrap_err();
        assert_eq!(err, ConfigError::MissingToken);
    }

    #[test]
    fn url_defaults_and_token_is_redacted() {
        let cfg = LinkConfig::from_lookup(env(&[("LINK_TOKEN", "s3cret")])).expect("valid");
        assert_eq!(cfg.url, DEFAULT_LINK_URL);
        assert_eq!(cfg.backoff_base, Duration::from_secs(1));
        assert_eq!(cfg.backoff_cap, Duration::from_secs(30));
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn frame_limit_and_state_file_from_env() {
        let cfg = LinkConfig::from_lookup(env(&[("LINK_TOKEN", "t")])).expect("valid");
        assert_eq!(cfg.max_frame_bytes, 1 << 20);
        assert_eq!(cfg.state_file, None);
        let cfg = LinkConfig::from_lookup(env(&[
            ("LINK_TOKEN", "t"),
            ("GATEWAY_LINK_MAX_FRAME_BYTES", "262144"),
            ("GATEWAY_LINK_STATE_FILE", "/var/lib/gw/link.json"),
        ]))
        .expect("valid");
        assert_eq!(cfg.max_frame_bytes, 262_144);
        assert_eq!(cfg.state_file, Some(PathBuf::from("/var/lib/gw/link.json")));
        let cfg = LinkConfig::from_lookup(env(&[
            ("LINK_TOKEN", "t"),
            ("GATEWAY_LINK_PING_INTERVAL_MS", "200"),
            ("GATEWAY_LINK_PONG_TIMEOUT_MS", "600"),
        ]))
        .expect("valid");
        assert_eq!(cfg.zombie_bound(), Duration::from_millis(800));
        let err = LinkConfig::from_lookup(env(&[
            ("LINK_TOKEN", "t"),
            ("GATEWAY_LINK_BACKOFF_BASE_MS", "0"),
        ]));
        assert!(matches!(err, Err(ConfigError::BadMillis(..))));
        for bad in ["12", "lots"] {
            let err = LinkConfig::from_lookup(env(&[
                ("LINK_TOKEN", "t"),
                ("GATEWAY_LINK_MAX_FRAME_BYTES", bad),
            ]));
            assert!(matches!(err, Err(ConfigError::BadMaxFrame(_))), "{bad}");
        }
    }

    #[test]
    fn url_must_be_websocket() {
        let err = LinkConfig::from_lookup(env(&[("LINK_TOKEN", "t"), ("LINK_URL", "http://x")]));
        assert!(matches!(err, Err(ConfigError::BadUrl(_))));
    }
}
