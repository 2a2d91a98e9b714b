//! The `command` frame: what the host asks the upstream to do on Discord.

use serde::{Deserialize, Serialize};

/// `command` (host → upstream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// Idempotency key: the upstream acks a repeated requestId with the first answer
    /// and does not act twice.
    pub request_id: String,
    /// Correlates logs.
    pub trace_id: String,
    /// What to do.
    #[serde(flatten)]
    pub body: CommandBody,
}

/// The kind-specific part of a command, as `"kind"` + `"body"` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "kebab-case")]
pub enum CommandBody {
    /// Post a message in a channel.
    SendMessage(SendMessage),
    /// React to a message.
    AddReaction(AddReaction),
    /// Show "typing…" in a channel.
    TypingStart(TypingStart),
}

impl CommandBody {
    /// The kind, for metrics and logs.
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::SendMessage(_) => CommandKind::SendMessage,
            Self::AddReaction(_) => CommandKind::AddReaction,
            Self::TypingStart(_) => CommandKind::TypingStart,
        }
    }
}

/// Command kinds, as named on the wire and in the HTTP routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `send-message`.
    SendMessage,
    /// `add-reaction`.
    AddReaction,
    /// `typing-start`.
    TypingStart,
}

impl CommandKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendMessage => "send-message",
            Self::AddReaction => "add-reaction",
            Self::TypingStart => "typing-start",
        }
    }
}

/// Body of `send-message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Snowflake of the channel.
    pub channel_id: String,
    /// Message text (1–2000 characters).
    pub content: String,
    /// Client nonce, echoed in the resulting MESSAGE_CREATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Body of `add-reaction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddReaction {
    /// Snowflake of the channel.
    pub channel_id: String,
    /// Snowflake of the message.
    pub message_id: String,
    /// A unicode emoji or `name:id` for a custom one.
    pub emoji: String,
}

/// Body of `typing-start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingStart {
    /// Snowflake of the channel.
    pub channel_id: String,
}
