//! Legacy WebSocket protocol v1: JSON text frames with `"v":1` and an `"op"`.
//!
//! Parsing is strict about shape (unknown fields in a known op are an error the client
//! hears about) and never fatal: a bad frame gets an `error` frame, not a close.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Protocol version spoken here.
pub const VERSION: u8 = 1;
/// The subprotocol the host answers with.
pub const SUBPROTOCOL: &str = "gateway.v1";
/// Prefix of the subprotocol entry that carries the caller's token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// Largest client frame accepted.
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    Join {
        v: u8,
        #[serde(rename = "guildId")]
        guild_id: String,
    },
    Leave {
        v: u8,
        #[serde(rename = "guildId")]
        guild_id: String,
    },
    Ping {
        v: u8,
        #[serde(default)]
        nonce: Option<String>,
    },
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub code: &'static str,
    pub message: String,
}

impl ClientFrame {
    /// Parse one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, BadFrame> {
        #[derive(Deserialize)]
        struct Head<'a> {
            v: Option<u8>,
            #[serde(borrow)]
            op: Option<&'a str>,
        }
        let head: Head = serde_json::from_str(text).map_err(|e| BadFrame {
            code: "bad_frame",
            message: format!("not a JSON object with v and op: {e}"),
        })?;
        if head.v != Some(VERSION) {
            return Err(BadFrame {
                code: "bad_frame",
                message: format!("\"v\" must be {VERSION}"),
            });
        }
        match head.op {
            Some("join" | "leave" | "ping") => {}
            Some(other) => {
                return Err(BadFrame {
                    code: "unknown_op",
                    message: format!("unknown op {:?}", truncate(other, 32)),
                });
            }
            None => {
                return Err(BadFrame {
                    code: "bad_frame",
                    message: "missing \"op\"".into(),
                });
            }
        }
        let frame: ClientFrame = serde_json::from_str(text).map_err(|e| BadFrame {
            code: "bad_frame",
            message: e.to_string(),
        })?;
        match &frame {
            ClientFrame::Join { guild_id, .. } | ClientFrame::Leave { guild_id, .. }
                if !is_snowflake(guild_id) =>
            {
                Err(BadFrame {
                    code: "bad_frame",
                    message: "guildId must be a snowflake id".into(),
                })
            }
            ClientFrame::Ping { nonce: Some(n), .. } if n.len() > 64 => Err(BadFrame {
                code: "bad_frame",
                message: "nonce is longer than 64 bytes".into(),
            }),
            _ => Ok(frame),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A Discord snowflake: a non-zero u64 in decimal.
pub fn is_snowflake(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u64>().is_ok_and(|n| n > 0)
}

/// A frame to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum HostFrame<'a> {
    Hello {
        v: u8,
        user: &'a str,
        #[serde(rename = "heartbeatMs")]
        heartbeat_ms: u64,
        protocol: u8,
    },
    Joined {
        v: u8,
        #[serde(rename = "guildId")]
        guild_id: &'a str,
    },
    Left {
        v: u8,
        #[serde(rename = "guildId")]
        guild_id: &'a str,
    },
    Pong {
        v: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        nonce: Option<&'a str>,
    },
    Error {
        v: u8,
        code: &'a str,
        message: &'a str,
        #[serde(rename = "guildId", skip_serializing_if = "Option::is_none")]
        guild_id: Option<&'a str>,
    },
    Event {
        v: u8,
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(rename = "guildId")]
        guild_id: &'a str,
        #[serde(rename = "channelId")]
        channel_id: Option<&'a str>,
        #[serde(rename = "traceId")]
        trace_id: &'a str,
        /// Upstream emission time, ms since the Unix epoch.
        timestamp: u64,
        data: &'a RawValue,
    },
}

impl HostFrame<'_> {
    /// The frame as one line of JSON.
    pub fn encode(&self) -> String {
        // Serializing borrowed strings and raw JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_ops() {
        assert_eq!(
            ClientFrame::parse(r#"{"v":1,"op":"join","guildId":"42"}"#),
            Ok(ClientFrame::Join {
                v: 1,
                guild_id: "42".into()
            })
        );
        assert!(matches!(
            ClientFrame::parse(r#"{"v":1,"op":"leave","guildId":"42"}"#),
            Ok(ClientFrame::Leave { .. })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"v":1,"op":"ping","nonce":"n"}"#),
            Ok(ClientFrame::Ping { nonce: Some(_), .. })
        ));
    }

    #[test]
    fn refuses_with_a_code() {
        let code = |t: &str| {
            ClientFrame::parse(t)
                .map(|_| "ok")
                .unwrap_or_else(|e| e.code)
        };
        assert_eq!(code("nope"), "bad_frame");
        assert_eq!(code(r#"{"v":2,"op":"join","guildId":"1"}"#), "bad_frame");
        assert_eq!(code(r#"{"v":1,"op":"dance"}"#), "unknown_op");
        assert_eq!(code(r#"{"v":1,"op":"join","guildId":"x"}"#), "bad_frame");
        assert_eq!(code(r#"{"v":1,"op":"join","guildId":"0"}"#), "bad_frame");
        assert_eq!(
            code(r#"{"v":1,"op":"join","guildId":"1","extra":1}"#),
            "bad_frame"
        );
    }

    #[test]
    fn event_frames_are_one_line() {
        let data = RawValue::from_string("{\"a\":\n1}".into()).expect("json");
        let text = HostFrame::Event {
            v: 1,
            kind: "VOICE_STATE_UPDATE",
            guild_id: "1",
            channel_id: None,
            trace_id: "t",
            timestamp: 0,
            data: &data,
        }
        .encode();
        assert!(text.starts_with(r#"{"op":"event","v":1,"type":"VOICE_STATE_UPDATE""#));
        let back: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(back["data"]["a"], 1);
    }
}
