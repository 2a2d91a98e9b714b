//! The bodies of the non-command frames.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `hello` (upstream → host): answers the host's `resume`, names the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The upstream session; seq numbers belong to it.
    pub session_id: String,
    /// True when the requested session was found and every event after the
    /// requested `lastSeq` follows (replay, then live). False for a new session, when
    /// the replay buffer no longer reaches back to `lastSeq`, when `lastSeq` is ahead of
    /// the session, and for a fresh start (a `resume` without `sessionId`), where the
    /// host ignores it.
    pub resumed: bool,
    /// The last seq the upstream has emitted in this session (0 if none yet).
    pub seq: u64,
}

/// `event` (upstream → host): one Discord dispatch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the session, strictly increasing by 1, starting at 1.
    pub seq: u64,
    /// Correlates logs across upstream, host and browsers.
    pub trace_id: String,
    /// Discord dispatch name, e.g. `MESSAGE_CREATE`.
    pub t: String,
    /// Discord dispatch payload (Discord API v10 shape), kept raw.
    pub d: Box<RawValue>,
    /// When the upstream emitted the event, in ms since the Unix epoch.
    pub ts: u64,
}

/// `ack` (upstream → host): the outcome of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The `requestId` of the command.
    pub request_id: String,
    /// True when Discord accepted the command.
    pub ok: bool,
    /// On success: what Discord returned (e.g. `{"messageId": "…"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// On failure: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
}

impl Ack {
    /// A successful ack.
    pub fn success(request_id: impl Into<String>, result: serde_json::Value) -> Self {
        Self {
            request_id: request_id.into(),
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failed ack; `retryable` follows from the code.
    pub fn failure(
        request_id: impl Into<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            ok: false,
            result: None,
            error: Some(AckError {
                code,
                message: message.into(),
                retryable: code.is_retryable(),
            }),
        }
    }
}

/// The error part of a failed `ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckError {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail (never shown to end users verbatim).
    pub message: String,
    /// True when sending the same command again (same requestId) may succeed.
    pub retryable: bool,
}

/// Error codes of a failed `ack` (see the table in `docs/link-protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The command is malformed or violates Discord's rules. Final.
    InvalidCommand,
    /// The channel, message or emoji does not exist. Final.
    NotFound,
    /// The bot lacks the permission. Final.
    Forbidden,
    /// Discord rate-limited the upstream. Retryable.
    RateLimited,
    /// Discord is unreachable or failed. Retryable.
    Unavailable,
    /// A code from a newer upstream; treated as final.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether the code means "try again later".
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }
}

/// `ping` (host → upstream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ping {
    /// Unique per ping; echoed by the `pong`.
    pub trace_id: String,
}

/// `pong` (upstream → host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The `traceId` of the `ping` answered.
    pub trace_id: String,
    /// Upstream clock when answering, ms since the Unix epoch (informative).
    pub ts: u64,
}

/// `resume` (host → upstream): the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// The session to resume; absent to start from the live edge of the current session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The last seq the host has taken from that session (0 = none).
    #[serde(default)]
    pub last_seq: u64,
}
