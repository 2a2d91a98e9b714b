//! Gateway v10 payloads and close codes, as documented by Discord: opcodes, the payload
//! envelope `{op, d, s, t}`, and which close codes allow a reconnect.

use gateway_protocol::RawValue;
use serde::Deserialize;
use serde_json::{Value, json};

/// Opcodes used by this client.
pub mod op {
    pub const DISPATCH: u8 = 0;
    pub const HEARTBEAT: u8 = 1;
    pub const IDENTIFY: u8 = 2;
    pub const RESUME: u8 = 6;
    pub const RECONNECT: u8 = 7;
    pub const INVALID_SESSION: u8 = 9;
    pub const HELLO: u8 = 10;
    pub const HEARTBEAT_ACK: u8 = 11;
}

/// A received payload; `d` stays raw so dispatches reach the bus exactly as sent.
#[derive(Debug, Deserialize)]
pub struct Received {
    pub op: u8,
    #[serde(default)]
    pub d: Option<Box<RawValue>>,
    #[serde(default)]
    pub s: Option<u64>,
    #[serde(default)]
    pub t: Option<String>,
}

impl Received {
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// `d` parsed as a value (for the few payloads the client reads itself).
    pub fn d_value(&self) -> Value {
        self.d
            .as_ref()
            .and_then(|d| serde_json::from_str(d.get()).ok())
            .unwrap_or(Value::Null)
    }
}

/// Hello's `d`.
#[derive(Debug, Deserialize)]
pub struct Hello {
    pub heartbeat_interval: u64,
}

/// Ready's fields the client keeps.
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub session_id: String,
    pub resume_gateway_url: String,
}

/// Op 1 with the last seq (or null).
pub fn heartbeat(seq: Option<u64>) -> String {
    json!({"op": op::HEARTBEAT, "d": seq}).to_string()
}

/// Op 2 Identify. Holds the token: never log the result.
pub fn identify(token: &str, intents: u64, shard: Option<[u32; 2]>) -> String {
    let mut d = json!({
        "token": token,
        "intents": intents,
        "properties": {"os": std::env::consts::OS, "browser": "gateway-host", "device": "gateway-host"},
        "compress": false,
        "large_threshold": 50,
    });
    if let Some(shard) = shard {
        d["shard"] = json!(shard);
    }
    json!({"op": op::IDENTIFY, "d": d}).to_string()
}

/// Op 6 Resume. Holds the token: never log the result.
pub fn resume(token: &str, session_id: &str, seq: u64) -> String {
    json!({"op": op::RESUME, "d": {"token": token, "session_id": session_id, "seq": seq}})
        .to_string()
}

/// What a close code from Discord means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect and resume the session.
    Resume,
    /// Reconnect with a new Identify (the session is gone).
    Identify,
    /// Do not reconnect: the configuration is wrong.
    Fatal(String),
}

/// Discord's documented Gateway close codes.
pub fn close_action(code: u16) -> CloseAction {
    let fatal =
        |why: &str| CloseAction::Fatal(format!("Discord closed the gateway with {code}: {why}"));
    match code {
        4004 => fatal("authentication failed (check DISCORD_BOT_TOKEN)"),
        4010 => fatal("invalid shard (check DISCORD_SHARD)"),
        4011 => fatal("sharding required (set DISCORD_SHARD)"),
        4012 => fatal("invalid API version"),
        4013 => fatal("invalid intents (check DISCORD_INTENTS)"),
        4014 => fatal(
            "disallowed intents: enable the privileged intents in the developer portal or remove them from DISCORD_INTENTS",
        ),
        4007 | 4009 => CloseAction::Identify,
        _ => CloseAction::Resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_close_codes_are_exactly_the_documented_ones() {
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            assert!(
                matches!(close_action(code), CloseAction::Fatal(m) if m.contains(&code.to_string()))
            );
        }
        for code in [1000, 1001, 1006, 4000, 4001, 4002, 4003, 4005, 4008] {
            assert_eq!(close_action(code), CloseAction::Resume, "{code}");
        }
        assert_eq!(close_action(4007), CloseAction::Identify);
        assert_eq!(close_action(4009), CloseAction::Identify);
    }

    #[test]
    fn payloads_have_the_documented_shape() {
        let v: Value = serde_json::from_str(&identify("tok", 513, Some([0, 2]))).expect("json");
        assert_eq!(
            (v["op"].clone(), v["d"]["intents"].clone()),
            (json!(2), json!(513))
        );
        assert_eq!(v["d"]["shard"], json!([0, 2]));
        let r = Received::decode(br#"{"op":0,"s":5,"t":"X","d":{"a":1}}"#).expect("decode");
        assert_eq!(
            (r.op, r.s, r.d.expect("d").get()),
            (0, Some(5), r#"{"a":1}"#)
        );
        assert_eq!(heartbeat(None), r#"{"d":null,"op":1}"#);
    }
}
