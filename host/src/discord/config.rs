//! Direct Discord mode configuration: the bot token (redacted), intents, optional shard,
//! base URLs (overridable so tests and the demo run a fake Discord on loopback) and the
//! timing knobs (documented defaults; tests shrink them).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Discord's REST base for API v10.
pub const DEFAULT_API_BASE: &str = "https://discord.com/api/v10";

/// Default intents: GUILDS (1<<0), GUILD_VOICE_STATES (1<<7), GUILD_MESSAGES (1<<9),
/// GUILD_MESSAGE_REACTIONS (1<<10), GUILD_MESSAGE_TYPING (1<<11). None is privileged.
pub const DEFAULT_INTENTS: u64 = (1 << 0) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 11);

/// The bot token. `Debug` never shows it.
#[derive(Clone)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token (a leading `Bot ` is accepted and removed).
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        let token = token
            .strip_prefix("Bot ")
            .map(str::to_string)
            .unwrap_or(token);
        Self(token.trim().to_string())
    }

    /// The secret itself, for the Identify/Resume payloads and the Authorization header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Why the Discord configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscordConfigError {
    #[error("DISCORD_BOT_TOKEN is required in direct Discord mode")]
    MissingToken,
    #[error(
        "DISCORD_INTENTS ([discord] intents) must be a number (a bit set of gateway intents), got {0:?}"
    )]
    BadIntents(String),
    #[error("DISCORD_SHARD ([discord] shard) must be \"<id>,<count>\" with id < count, got {0:?}")]
    BadShard(String),
    #[error("{0} must be an http(s):// or ws(s):// URL as appropriate, got {1:?}")]
    BadUrl(&'static str, String),
    #[error("DISCORD_COMPRESS ([discord] compress) must be \"zlib-stream\" or \"none\", got {0:?}")]
    BadCompress(String),
}

/// The configuration file's `[discord]` section. The token is not here on purpose: it
/// stays in `DISCORD_BOT_TOKEN` (a secret does not belong in a file that is shared and
/// versioned). Every key is overridden by its environment variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiscordFile {
    /// `DISCORD_INTENTS`.
    pub intents: Option<u64>,
    /// `DISCORD_SHARD`, as `[id, count]`.
    pub shard: Option<[u32; 2]>,
    /// `DISCORD_COMPRESS`: `"zlib-stream"` or `"none"`.
    pub compress: Option<String>,
    /// `DISCORD_API_BASE`.
    pub api_base: Option<String>,
    /// `DISCORD_GATEWAY_URL`.
    pub gateway_url: Option<String>,
    /// `DISCORD_STATE_FILE`.
    pub state_file: Option<PathBuf>,
}

impl DiscordFile {
    /// The file's value for an environment variable's key, in the variable's text form.
    fn get(&self, var: &str) -> Option<String> {
        match var {
            "DISCORD_INTENTS" => self.intents.map(|v| v.to_string()),
            "DISCORD_SHARD" => self.shard.map(|[id, count]| format!("{id},{count}")),
            "DISCORD_COMPRESS" => self.compress.clone(),
            "DISCORD_API_BASE" => self.api_base.clone(),
            "DISCORD_GATEWAY_URL" => self.gateway_url.clone(),
            "DISCORD_STATE_FILE" => self
                .state_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            _ => None,
        }
    }
}

/// Everything the Discord gateway session and the REST client need.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub token: BotToken,
    /// Gateway intents (bit set).
    pub intents: u64,
    /// `[shard_id, num_shards]`, or none for a single unsharded session.
    pub shard: Option<[u32; 2]>,
    /// REST base, e.g. `https://discord.com/api/v10`.
    pub api_base: String,
    /// Gateway URL override; without it, `GET /gateway/bot` tells.
    pub gateway_url: Option<String>,
    /// `zlib-stream` transport compression.
    pub compress: bool,
    /// First reconnect delay (1 s); doubles to `backoff_cap` (30 s).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Wait range after op 9 Invalid Session (documented: 1–5 s).
    pub invalid_session_wait: (Duration, Duration),
    /// Minimum time between two Identify of this process (Discord: 1 per 5 s per
    /// `max_concurrency` bucket).
    pub identify_interval: Duration,
    /// Gateway sends allowed per `send_window` (Discord: 120 per 60 s).
    pub send_limit: u32,
    pub send_window: Duration,
    /// REST requests per second across all routes (Discord: 50).
    pub global_per_second: u32,
    /// Bound on connect + upgrade + Hello.
    pub connect_timeout: Duration,
    /// Bound on one REST request.
    pub request_timeout: Duration,
    /// Largest inbound gateway message (after decompression).
    pub max_message_bytes: usize,
    /// Where the session id, resume URL and last seq are kept across restarts
    /// (`DISCORD_STATE_FILE`); none: a restart identifies afresh.
    pub state_file: Option<PathBuf>,
    /// At most one state-file write per interval while events flow.
    pub state_interval: Duration,
    /// Start by resuming this session (cluster mode: the previous link holder's, from the
    /// cluster stream); wins over the state file. Default: none.
    pub resume: Option<super::state_file::Saved>,
    /// Close with a resumable code at shutdown so another process can resume the session
    /// (cluster mode; implied by a state file). Default: false (1000 ends the session).
    pub keep_session_on_close: bool,
}

impl DiscordConfig {
    /// A configuration with Discord's documented defaults.
    pub fn new(token: BotToken) -> Self {
        Self {
            token,
            intents: DEFAULT_INTENTS,
            shard: None,
            api_base: DEFAULT_API_BASE.to_string(),
            gateway_url: None,
            compress: true,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            invalid_session_wait: (Duration::from_secs(1), Duration::from_secs(5)),
            identify_interval: Duration::from_secs(5),
            send_limit: 120,
            send_window: Duration::from_secs(60),
            global_per_second: 50,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_message_bytes: 16 << 20,
            state_file: None,
            state_interval: Duration::from_secs(1),
            resume: None,
            keep_session_on_close: false,
        }
    }

    /// Reads `DISCORD_BOT_TOKEN` (required), `DISCORD_INTENTS`, `DISCORD_SHARD`,
    /// `DISCORD_API_BASE`, `DISCORD_GATEWAY_URL`, `DISCORD_COMPRESS`.
    pub fn from_env() -> Result<Self, DiscordConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`DiscordConfig::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DiscordConfigError> {
        Self::from_file_and_lookup(&DiscordFile::default(), get)
    }

    /// The `[discord]` section of the configuration file, each key overridden by its
    /// environment variable (the token comes from the environment only).
    pub fn from_file_and_lookup(
        file: &DiscordFile,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DiscordConfigError> {
        let get = |k: &str| {
            get(k)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| file.get(k))
        };
        let token = get("DISCORD_BOT_TOKEN").ok_or(DiscordConfigError::MissingToken)?;
        let mut config = Self::new(BotToken::new(token));
        if let Some(v) = get("DISCORD_INTENTS") {
            config.intents = v
                .trim()
                .parse()
                .map_err(|_| DiscordConfigError::BadIntents(v.clone()))?;
        }
        if let Some(v) = get("DISCORD_SHARD") {
            config.shard = Some(parse_shard(&v).ok_or(DiscordConfigError::BadShard(v))?);
        }
        if let Some(v) = get("DISCORD_API_BASE") {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(DiscordConfigError::BadUrl(
                    "DISCORD_API_BASE ([discord] api-base)",
                    v,
                ));
            }
            config.api_base = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get("DISCORD_GATEWAY_URL") {
            if !(v.starts_with("ws://") || v.starts_with("wss://")) {
                return Err(DiscordConfigError::BadUrl(
                    "DISCORD_GATEWAY_URL ([discord] gateway-url)",
                    v,
                ));
            }
            config.gateway_url = Some(v);
        }
        if let Some(v) = get("DISCORD_COMPRESS") {
            config.compress = match v.as_str() {
                "zlib-stream" => true,
                "none" => false,
                _ => return Err(DiscordConfigError::BadCompress(v)),
            };
        }
        config.state_file = get("DISCORD_STATE_FILE").map(PathBuf::from);
        Ok(config)
    }
}

fn parse_shard(v: &str) -> Option<[u32; 2]> {
    let (id, count) = v.split_once([',', '/'])?;
    let (id, count) = (id.trim().parse().ok()?, count.trim().parse().ok()?);
    (id < count).then_some([id, count])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_token_is_required_and_never_shown() {
        assert_eq!(
            DiscordConfig::from_lookup(env(&[])).unwrap_err(),
            DiscordConfigError::MissingToken
        );
        let c =
            DiscordConfig::from_lookup(env(&[("DISCORD_BOT_TOKEN", "Bot s3cr3t")])).expect("valid");
        assert_eq!(c.token.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(c.intents, DEFAULT_INTENTS);
        assert!(c.compress);
    }

    #[test]
    fn intents_shard_and_urls_are_parsed_and_checked() {
        let c = DiscordConfig::from_lookup(env(&[
            ("DISCORD_BOT_TOKEN", "t"),
            ("DISCORD_INTENTS", "513"),
            ("DISCORD_SHARD", "1,4"),
            ("DISCORD_API_BASE", "http://127.0.0.1:1/api/v10/"),
            ("DISCORD_COMPRESS", "none"),
        ]))
        .expect("valid");
        assert_eq!((c.intents, c.shard), (513, Some([1, 4])));
        assert_eq!(c.api_base, "http://127.0.0.1:1/api/v10");
        assert!(!c.compress);
        for bad in [
            &[("DISCORD_BOT_TOKEN", "t"), ("DISCORD_SHARD", "4,4")][..],
            &[("DISCORD_BOT_TOKEN", "t"), ("DISCORD_INTENTS", "x")],
            &[
                ("DISCORD_BOT_TOKEN", "t"),
                ("DISCORD_GATEWAY_URL", "http://x"),
            ],
        ] {
            let pairs: &'static [(&'static str, &'static str)] = bad;
            assert!(DiscordConfig::from_lookup(env(pairs)).is_err(), "{bad:?}");
        }
    }
}
