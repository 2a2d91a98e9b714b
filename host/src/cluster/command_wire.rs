//! The NATS subjects and messages of cluster-mode commands, shared by the relay (every
//! host) and the command server (the link holder).
//!
//! Why a file of its own: both sides must agree on every subject and field, and one place
//! makes a mismatch impossible. Payloads are JSON; command and ack frames travel as the
//! link protocol's own text frames (`HostFrame::Command`, `UpstreamFrame::Ack`), so the
//! holder hands them to its link unchanged.

use serde::{Deserialize, Serialize};

/// Commands from any host to the holder (queue group [`HOLDER_QUEUE`]); the message's
/// reply subject is the sender's [`acks_subject`].
pub const COMMANDS_SUBJECT: &str = "gateway.commands";
/// The holder's link status heartbeat ([`LinkStatus`]).
pub const STATUS_SUBJECT: &str = "gateway.link.status";
/// Rate requests ([`LimitRequest`] → [`LimitAnswer`]), answered by the holder.
pub const LIMIT_SUBJECT: &str = "gateway.limit";
/// The queue group the holder serves [`COMMANDS_SUBJECT`] and [`LIMIT_SUBJECT`] in: if two
/// hosts briefly both serve, each message is still taken once.
pub const HOLDER_QUEUE: &str = "gateway-holder";

/// Where the holder sends the acks of the commands `holder_id` relayed.
pub fn acks_subject(holder_id: &str) -> String {
    let token: String = holder_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("gateway.acks.{token}")
}

/// The holder's view of its real upstream, published every `command_status_every` and on
/// every change while it serves, and once with `serving: false` when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// The holder's id.
    pub holder: String,
    /// False in the last message of a holder that stopped serving.
    pub serving: bool,
    /// Whether its link accepts commands now (`LinkHandle::accepts_commands`).
    pub accepts: bool,
    /// Its link's command generation: a command sent on an older one is re-sent.
    pub generation: u64,
    /// Its link's state, for logs.
    pub state: String,
    /// Why its upstream stopped for good, if it did (direct Discord mode, e.g. 4004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// A rate request to the holder's limiter slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitRequest {
    pub user_id: String,
    pub channel_id: String,
    /// `send-message`, `add-reaction` or `typing-start`.
    pub kind: String,
}

/// The holder's answer when it is answering too many rate requests at once already.
pub const BUSY_ANSWER: &[u8] = br#"{"verdict":"busy"}"#;

/// The holder's limiter verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum LimitAnswer {
    Allow { remaining: u32 },
    Deny { retry_after_ms: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_are_single_tokens() {
        assert_eq!(
            acks_subject("web-1.local *>"),
            "gateway.acks.web-1_local___"
        );
    }

    #[test]
    fn limit_answers_round_trip() {
        for answer in [
            LimitAnswer::Allow { remaining: 3 },
            LimitAnswer::Deny { retry_after_ms: 7 },
        ] {
            let text = serde_json::to_string(&answer).expect("encodes");
            assert_eq!(
                serde_json::from_str::<LimitAnswer>(&text).ok(),
                Some(answer)
            );
        }
    }
}
