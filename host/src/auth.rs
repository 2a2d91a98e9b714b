//! Caller authentication for the public API: HS256 JWTs signed with `GATEWAY_JWT_SECRET`.
//!
//! One token serves the stream and the commands. Claims: `sub` (the user id), `exp`,
//! `topics` (patterns the caller may subscribe to, `*` as a trailing wildcard:
//! `guild:*`, `channel:42`, or `*` for everything) and `cmds` (command kinds it may send:
//! `send-message`, `add-reaction`, `typing-start`, or `*`). The token comes from
//! `Authorization: Bearer` or, because `EventSource` cannot send headers, from the
//! `gateway_token` cookie.
//!
//! Hardening, because the token is the only thing between the internet and the commands:
//! the secret must be at least [`MIN_SECRET_BYTES`] long (a short HS256 secret falls to a
//! brute-force search from one token), `exp` and `nbf` are both checked with the same
//! leeway, `sub` must not be empty, a token longer than `max-token-bytes` is refused
//! before any parsing, and `iss`/`aud` are checked when `[auth]` configures them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::config::Secret;

/// Name of the cookie carrying the token.
pub const TOKEN_COOKIE: &str = "gateway_token";
/// Shortest `GATEWAY_JWT_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// `[auth]` in the config file: what a token must carry besides a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSettings {
    /// Required `iss` claim (tokens minted by `gateway-host token` carry it).
    pub issuer: Option<String>,
    /// Required `aud` claim (tokens minted by `gateway-host token` carry it).
    pub audience: Option<String>,
    /// Longest token accepted, in bytes; longer ones are refused unparsed (401).
    pub max_token_bytes: usize,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: None,
            audience: None,
            max_token_bytes: 4096,
            leeway_secs: 5,
        }
    }
}

impl AuthSettings {
    /// Refuses settings that would let no token (or any size of token) through.
    pub fn check(&self) -> Result<(), String> {
        if self.max_token_bytes < 64 {
            return Err("[auth] max-token-bytes must be at least 64".into());
        }
        for (name, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("[auth] {name} must not be empty when set"));
            }
        }
        Ok(())
    }
}

/// Refuses a signing secret too short to resist a brute-force search.
pub fn check_secret(secret: &Secret) -> Result<(), String> {
    let len = secret.expose().len();
    if len < MIN_SECRET_BYTES {
        return Err(format!(
            "GATEWAY_JWT_SECRET is too short ({len} bytes; at least {MIN_SECRET_BYTES} are \
             required): a short HS256 secret can be recovered from a single token by brute \
             force. Generate one with e.g. `openssl rand -hex 32`"
        ));
    }
    Ok(())
}

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
    /// Not before, seconds since the Unix epoch (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer (checked when `[auth] issuer` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: a string or a list (checked when `[auth] audience` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
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
    settings: AuthSettings,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(HS256, secret redacted)")
    }
}

impl Authenticator {
    /// An authenticator for `secret` with the default [`AuthSettings`]. The secret's
    /// length is not checked here (tests forge tokens with other secrets); `serve` and
    /// `token` check it with [`check_secret`].
    pub fn new(secret: &Secret) -> Authenticator {
        Authenticator::with_settings(secret, AuthSettings::default())
    }

    /// An authenticator for `secret` enforcing `settings`.
    pub fn with_settings(secret: &Secret, settings: AuthSettings) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &settings.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Authenticator {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            settings,
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
            nbf: None,
            iss: self.settings.issuer.clone(),
            aud: self
                .settings
                .audience
                .clone()
                .map(serde_json::Value::String),
        };
        self.sign(&claims)
    }

    /// Sign `claims` as they are (no check): for tools and tests that need a token
    /// `mint` would not make (another lifetime, `nbf`, a foreign issuer).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Verify a raw token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let refuse =
            |message: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let max = self.settings.max_token_bytes;
        if token.len() > max {
            return Err(refuse(format!("token too large (over {max} bytes)")));
        }
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| refuse(refusal_message(e.kind())))?;
        if claims.sub.trim().is_empty() {
            return Err(refuse("token has an empty subject (sub)".into()));
        }
        Ok(claims)
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

/// Why a token was refused, for the caller (never the token or the secret).
fn refusal_message(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf is in the future)".into(),
        ErrorKind::InvalidSignature => "token signature invalid".into(),
        ErrorKind::InvalidIssuer => "token issuer (iss) not accepted".into(),
        ErrorKind::InvalidAudience => "token audience (aud) not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token lacks the {claim} claim"),
        _ => "token invalid".into(),
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

    const SECRET: &str = "test-secret-of-at-least-32-bytes!";

    fn auth() -> Authenticator {
        Authenticator::new(&Secret::new(SECRET))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            exp: now() + 60,
            topics: vec![],
            cmds: vec![],
            publish: vec![],
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    fn sign(claims: &Claims) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
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
            exp: 1,
            ..claims("1")
        };
        assert_eq!(
            auth().verify(&sign(&expired)).unwrap_err().message,
            "token expired"
        );
    }

    #[test]
    fn future_nbf_and_empty_sub_are_refused() {
        let later = Claims {
            nbf: Some(now() + 3600),
            ..claims("1")
        };
        let err = auth().verify(&sign(&later)).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert!(err.message.contains("nbf"), "{}", err.message);
        let within_leeway = Claims {
            nbf: Some(now() + 2),
            ..claims("1")
        };
        assert!(auth().verify(&sign(&within_leeway)).is_ok());
        for sub in ["", "  "] {
            let err = auth().verify(&sign(&claims(sub))).unwrap_err();
            assert!(err.message.contains("sub"), "{}", err.message);
        }
    }

    #[test]
    fn oversize_tokens_are_refused_unparsed() {
        let big = Claims {
            topics: vec!["x".repeat(5000)],
            ..claims("1")
        };
        let err = auth().verify(&sign(&big)).unwrap_err();
        assert!(err.message.contains("too large"), "{}", err.message);
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let settings = AuthSettings {
            issuer: Some("gw".into()),
            audience: Some("app".into()),
            ..AuthSettings::default()
        };
        let strict = Authenticator::with_settings(&Secret::new(SECRET), settings);
        let minted = strict
            .mint("7", vec![], vec![], Duration::from_secs(60))
            .unwrap();
        assert_eq!(strict.verify(&minted).unwrap().iss.as_deref(), Some("gw"));
        // Only iss is missing (when several required claims are missing, which one the
        // library names first is not fixed).
        let no_issuer = Claims {
            aud: Some("app".into()),
            ..claims("7")
        };
        assert!(
            strict
                .verify(&sign(&no_issuer))
                .unwrap_err()
                .message
                .contains("iss")
        );
        let neither = sign(&claims("7"));
        assert_eq!(
            strict.verify(&neither).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let wrong = Claims {
            iss: Some("gw".into()),
            aud: Some("other".into()),
            ..claims("7")
        };
        assert!(
            strict
                .verify(&sign(&wrong))
                .unwrap_err()
                .message
                .contains("aud")
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        let err = check_secret(&Secret::new("x")).unwrap_err();
        assert!(
            err.contains("GATEWAY_JWT_SECRET") && err.contains("1 bytes"),
            "{err}"
        );
        assert!(check_secret(&Secret::new(SECRET)).is_ok());
    }

    #[test]
    fn topic_grants() {
        let c = Claims {
            topics: vec!["guild:*".into(), "channel:7".into()],
            ..claims("1")
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
