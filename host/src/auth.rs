//! Caller authentication for the public API: HS256 JWTs signed with `GATEWAY_JWT_SECRET`.
//!
//! One token serves the stream and the commands. Claims: `sub` (the user id), `exp`,
//! `topics` (patterns the caller may subscribe to, `*` as a trailing wildcard:
//! `guild:*`, `channel:42`, or `*` for everything) and `cmds` (command kinds it may send:
//! `send-message`, `add-reaction`, `typing-start`, or `*`). The token comes from
//! `Authorization: Bearer` or, because `EventSource` cannot send headers, from the
//! `gateway_token` cookie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::config::Secret;

/// Name of the cookie carrying the token.
pub const TOKEN_COOKIE: &str = "gateway_token";

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Topic patterns the caller may subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Command kinds the caller may send.
    #[serde(default)]
    pub cmds: Vec<String>,
    /// Event types the caller may publish through `POST /api/internal/events` (patterns
    /// with a trailing `*`, e.g. `APP_*`); empty: none. App backends only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// Does `pattern` (exact, or ending in `*`) match `topic`?
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

impl Claims {
    /// May the caller subscribe to the topic pattern `requested`? A requested wildcard
    /// needs a granted pattern at least as wide (`guild:*` is granted by `guild:*` or `*`).
    pub fn allows_topic(&self, requested: &str) -> bool {
        self.topics.iter().any(|granted| {
            match (granted.strip_suffix('*'), requested.strip_suffix('*')) {
                (Some(g), Some(r)) => r.starts_with(g),
                (Some(g), None) => requested.starts_with(g),
                (None, _) => granted == requested,
            }
        })
    }

    /// May the caller publish events named `event_type`?
    pub fn allows_publish(&self, event_type: &str) -> bool {
        self.publish.iter().any(|p| pattern_matches(p, event_type))
    }

    /// May the caller send commands of `kind`?
    pub fn allows_command(&self, kind: &str) -> bool {
        self.cmds.iter().any(|c| c == "*" || c == kind)
    }
}

/// Verifies (and, for development, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(HS256, secret redacted)")
    }
}

impl Authenticator {
    /// An authenticator for `secret`.
    pub fn new(secret: &Secret) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Mint a token for `sub` valid for `ttl`.
    pub fn mint(
        &self,
        sub: &str,
        topics: Vec<String>,
        cmds: Vec<String>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.mint_with_publish(sub, topics, cmds, Vec::new(), ttl)
    }

    /// Mint a token that may also publish the event types `publish` (app backends).
    pub fn mint_with_publish(
        &self,
        sub: &str,
        topics: Vec<String>,
        cmds: Vec<String>,
        publish: Vec<String>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: sub.to_string(),
            exp: now + ttl.as_secs(),
            topics,
            cmds,
            publish,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verify a raw token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                let message = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => "token signature invalid",
                    _ => "token invalid",
                };
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            })
    }

    /// Authenticate a request from its `Authorization` header or `gateway_token` cookie.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        match token_from(headers) {
            Some(token) => self.verify(&token),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing token: send Authorization: Bearer <token> or the gateway_token cookie",
            )),
        }
    }
}

/// The value of an `Authorization: Bearer <value>` header, as sent.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = bearer_token(headers) {
        return Some(bearer.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&Secret::new("test-secret"))
    }

    #[test]
    fn minted_tokens_verify_from_header_or_cookie() {
        let a = auth();
        let token = a
            .mint(
                "42",
                vec!["guild:*".into()],
                vec!["send-message".into()],
                Duration::from_secs(60),
            )
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert_eq!(a.authenticate(&headers).unwrap().sub, "42");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("theme=dark; gateway_token={token}")
                .parse()
                .unwrap(),
        );
        let claims = a.authenticate(&headers).unwrap();
        assert!(claims.allows_command("send-message") && !claims.allows_command("typing-start"));
    }

    #[test]
    fn bad_tokens_are_401() {
        let other = Authenticator::new(&Secret::new("other"))
            .mint("1", vec![], vec![], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            auth().verify(&other).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            auth().verify("garbage").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(auth().authenticate(&HeaderMap::new()).is_err());
        let expired = Claims {
            sub: "1".into(),
            exp: 1,
            topics: vec![],
            cmds: vec![],
            publish: vec![],
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap();
        assert_eq!(auth().verify(&token).unwrap_err().message, "token expired");
    }

    #[test]
    fn topic_grants() {
        let c = Claims {
            sub: "1".into(),
            exp: 0,
            topics: vec!["guild:*".into(), "channel:7".into()],
            cmds: vec![],
            publish: vec![],
        };
        assert!(
            c.allows_topic("guild:1") && c.allows_topic("guild:*") && c.allows_topic("channel:7")
        );
        assert!(
            !c.allows_topic("channel:8") && !c.allows_topic("channel:*") && !c.allows_topic("*")
        );
        let all = Claims {
            topics: vec!["*".into()],
            ..c
        };
        assert!(all.allows_topic("*") && all.allows_topic("voice:3"));
        assert!(pattern_matches("guild:*", "guild:5") && !pattern_matches("guild:5", "guild:50"));
    }
}
