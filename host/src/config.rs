//! Configuration: an optional TOML file (`--config`), overridden by environment variables.
//!
//! Environment: `GATEWAY_HTTP_ADDR`, `GATEWAY_ADMIN_ADDR`, `GATEWAY_ADMIN_TOKEN`,
//! `GATEWAY_JWT_SECRET`, `GATEWAY_COMPONENTS_DIR`, `GATEWAY_CORS_ORIGINS`. See `docs/configuration.md` for the file format.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::commands::CommandSettings;
use crate::cors::CorsOrigins;
use crate::http1::ListenerSettings;
use crate::internal_events::InternalEventsSettings;
use crate::legacy_ws::LegacySettings;
use crate::policy::breaker::BreakerSettings;
use crate::policy::buckets::BucketLimits;
use crate::policy::{FailurePolicy, PolicySettings, RuntimeLimits, SlotKind, SlotSettings};
use crate::sse::StreamSettings;

/// Default public listener.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default admin listener.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9091";

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for comparison or use on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[server]`: settings of the process as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSettings {
    /// How long a graceful shutdown may take, in ms: listeners drain and queued commands
    /// get their last chance to be delivered within it.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl ServerSettings {
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// The resolved configuration of a host.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Required for every admin request; without it the admin API refuses everything.
    pub admin_token: Option<Secret>,
    /// HS256 secret of caller tokens (`GATEWAY_JWT_SECRET`); `serve` requires it.
    pub jwt_secret: Option<Secret>,
    /// Directory watched for `<slot>.wasm` files.
    pub components_dir: Option<PathBuf>,
    /// Largest component accepted by the admin API, in bytes.
    pub max_component_bytes: usize,
    pub policy: PolicySettings,
    /// The command pipeline's bounds and timeouts (`[commands]`).
    pub commands: CommandSettings,
    /// `/api/stream` settings.
    pub stream: StreamSettings,
    /// Listener limits (`[listener]`).
    pub listener: ListenerSettings,
    /// Origins allowed by CORS (`GATEWAY_CORS_ORIGINS`, comma-separated); empty: none;
    /// `*` alone: any origin without credentials. Checked at load and at start.
    pub cors_origins: Vec<String>,
    /// The legacy voice bridge `/api/ws` (`[legacy-ws]`, `GATEWAY_LEGACY_WS`).
    pub legacy_ws: LegacySettings,
    /// App-side publishing `POST /api/internal/events` (`[internal-events]`,
    /// `GATEWAY_INTERNAL_EVENTS`).
    pub internal_events: InternalEventsSettings,
    /// Token checks beyond the signature (`[auth]`).
    pub auth: AuthSettings,
    /// Process-wide settings (`[server]`).
    pub server: ServerSettings,
    /// Direct Discord mode settings (`[discord]`; the token is env-only).
    pub discord: crate::discord::DiscordFile,
    /// Cluster mode (`[cluster]`, `GATEWAY_NATS_URL`): `None` is single-host mode.
    pub cluster: Option<crate::cluster::config::ClusterSettings>,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    http_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    components_dir: Option<PathBuf>,
    max_component_mib: Option<usize>,
    cors_origins: Vec<String>,
    policy: PolicyFile,
    commands: CommandSettings,
    stream: StreamSettings,
    legacy_ws: LegacySettings,
    internal_events: InternalEventsSettings,
    auth: AuthSettings,
    server: ServerSettings,
    listener: ListenerSettings,
    discord: crate::discord::DiscordFile,
    cluster: crate::cluster::settings_file::ClusterFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    limits: RuntimeLimits,
    breaker: BreakerSettings,
    max_buckets: Option<usize>,
    slots: HashMap<SlotKind, SlotFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SlotFile {
    failure: Option<FailurePolicy>,
    /// Handed to the component's `init`; non-string values are passed as their TOML text.
    config: BTreeMap<String, toml::Value>,
}

impl Config {
    /// Read `path` (if any), then apply the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with(path, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// [`Config::load`] over any environment lookup (tests).
    pub fn load_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Self::from_file(file, env)
    }

    fn from_file(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let addr = |var: &str,
                    from_file: Option<SocketAddr>,
                    default: &str|
         -> anyhow::Result<SocketAddr> {
            match env(var) {
                Some(v) => v.parse().with_context(|| {
                    format!("{var}={v:?} is not a socket address like 127.0.0.1:8080")
                }),
                None => Ok(
                    from_file.unwrap_or_else(|| default.parse().expect("valid default address"))
                ),
            }
        };
        let mut policy = PolicySettings {
            limits: file.policy.limits,
            breaker: file.policy.breaker,
            ..Default::default()
        };
        if let Some(max) = file.policy.max_buckets {
            policy.buckets = BucketLimits {
                max_buckets: max,
                ..BucketLimits::default()
            };
        }
        for (kind, slot) in file.policy.slots {
            let config = slot
                .config
                .into_iter()
                .map(|(k, v)| (k, crate::policy::component_config::value_text(&v)))
                .collect();
            policy.slots.insert(
                kind,
                SlotSettings {
                    failure: slot.failure.unwrap_or(kind.default_failure_policy()),
                    config,
                },
            );
        }
        let cors_origins: Vec<String> = env("GATEWAY_CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or(file.cors_origins);
        CorsOrigins::parse(&cors_origins).map_err(anyhow::Error::msg)?;
        file.auth.check().map_err(anyhow::Error::msg)?;
        let cluster = file.cluster.resolve(&env)?;
        Ok(Config {
            cluster,
            http_addr: addr("GATEWAY_HTTP_ADDR", file.http_addr, DEFAULT_HTTP_ADDR)?,
            admin_addr: addr("GATEWAY_ADMIN_ADDR", file.admin_addr, DEFAULT_ADMIN_ADDR)?,
            admin_token: env("GATEWAY_ADMIN_TOKEN").map(Secret::new),
            jwt_secret: env("GATEWAY_JWT_SECRET").map(Secret::new),
            components_dir: env("GATEWAY_COMPONENTS_DIR")
                .map(PathBuf::from)
                .or(file.components_dir),
            max_component_bytes: file
                .max_component_mib
                .unwrap_or(64)
                .saturating_mul(1024 * 1024),
            policy,
            commands: {
                file.commands.check().map_err(anyhow::Error::msg)?;
                file.commands
            },
            stream: file.stream,
            cors_origins,
            auth: file.auth,
            server: file.server,
            listener: file.listener,
            discord: file.discord,
            legacy_ws: LegacySettings {
                enabled: match env("GATEWAY_LEGACY_WS") {
                    Some(v) => parse_flag("GATEWAY_LEGACY_WS", &v)?,
                    None => file.legacy_ws.enabled,
                },
                ..file.legacy_ws
            },
            internal_events: InternalEventsSettings {
                enabled: match env("GATEWAY_INTERNAL_EVENTS") {
                    Some(v) => parse_flag("GATEWAY_INTERNAL_EVENTS", &v)?,
                    None => file.internal_events.enabled,
                },
                ..file.internal_events
            },
        })
    }

    /// The configuration of one slot (its defaults unless the file says otherwise).
    pub fn slot(&self, kind: SlotKind) -> SlotSettings {
        self.policy
            .slots
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| SlotSettings::defaults(kind))
    }
}

/// A boolean environment flag: `1`/`true`/`on`/`yes` or `0`/`false`/`off`/`no`.
fn parse_flag(var: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => anyhow::bail!("{var}={value:?} is not a flag: use 1/true/on or 0/false/off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_combine() {
        let file: FileConfig = toml::from_str(
            r#"
            admin-addr = "127.0.0.1:9999"
            [commands]
            queue-capacity = 5
            [policy.limits]
            call-timeout-ms = 7
            max-topics = 3
            [policy.breaker]
            failures = 2
            auto-rollback = true
            [policy.slots.rate-limiter]
            failure = "fail-open"
            config = { burst = 3, key = "user" }
            "#,
        )
        .expect("valid toml");
        let config = Config::from_file(file, |name| {
            (name == "GATEWAY_HTTP_ADDR").then(|| "127.0.0.1:1234".into())
        })
        .expect("valid config");
        assert_eq!(config.http_addr.port(), 1234);
        assert_eq!(config.admin_addr.port(), 9999);
        assert_eq!(config.policy.limits.call_timeout_ms, 7);
        assert_eq!(config.policy.limits.max_topics, 3);
        assert_eq!(config.policy.limits.max_payload_bytes, 256 * 1024);
        assert_eq!(config.policy.breaker.failures, 2);
        assert!(config.policy.breaker.auto_rollback);
        assert_eq!(config.policy.breaker.cooldown_ms, 5_000);
        assert_eq!(config.commands.queue_capacity, 5);
        assert_eq!(config.commands.ack_wait_ms, 5_000);
        let limiter = config.slot(SlotKind::RateLimiter);
        assert_eq!(limiter.failure, FailurePolicy::FailOpen);
        assert_eq!(
            limiter.config,
            vec![
                ("burst".to_string(), "3".to_string()),
                ("key".to_string(), "user".to_string())
            ]
        );
        assert_eq!(
            config.slot(SlotKind::EventRouter).failure,
            FailurePolicy::FailOpen
        );
    }

    #[test]
    fn fail_previous_is_a_failure_policy() {
        let file: FileConfig =
            toml::from_str("[policy.slots.event-router]\nfailure = \"fail-previous\"\n")
                .expect("valid toml");
        let config = Config::from_file(file, |_| None).expect("valid config");
        assert_eq!(
            config.slot(SlotKind::EventRouter).failure,
            FailurePolicy::FailPrevious
        );
        assert!(
            toml::from_str::<FileConfig>("[policy.slots.event-router]\nfailure = \"fail-soft\"")
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_errors() {
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
        let err = Config::from_file(FileConfig::default(), |n| {
            (n == "GATEWAY_ADMIN_ADDR").then(|| "nope".into())
        })
        .expect_err("bad address");
        assert!(err.to_string().contains("GATEWAY_ADMIN_ADDR"));
    }

    #[test]
    fn bad_cors_origins_and_auth_settings_are_start_errors() {
        let env = |value: &'static str| {
            move |n: &str| (n == "GATEWAY_CORS_ORIGINS").then(|| value.to_string())
        };
        let star = Config::from_file(FileConfig::default(), env("*")).expect("* alone is fine");
        assert_eq!(star.cors_origins, vec!["*".to_string()]);
        let err = Config::from_file(FileConfig::default(), env("https://a.example, nope"))
            .expect_err("unparsable origin");
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let file: FileConfig =
            toml::from_str("[auth]\nissuer = \"\"\n[server]\nshutdown-timeout-ms = 3000")
                .expect("valid toml");
        assert_eq!(file.server.shutdown_timeout_ms, 3000);
        let err = Config::from_file(file, |_| None).expect_err("empty issuer");
        assert!(err.to_string().contains("issuer"), "{err}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.matches("hunter2") && !s.matches("hunter3") && !s.matches(""));
    }
}
