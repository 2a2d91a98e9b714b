//! The JSON bodies of `POST /api/commands/*` and their checks before any component runs.
//!
//! Why a pre-check on the raw JSON object before serde: serde stops at the first problem
//! and reports it as prose; a client fixing a form wants every field at fault, by name,
//! in the same `fields` list the validator component uses. The typed structs still carry
//! `deny_unknown_fields`, so nothing unknown can slip through even if the two disagree.

use gateway_protocol::{CommandBody, CommandKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::policy::types::{self, Command, FieldError};

/// `send-message`: `{"channelId","content","nonce"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendMessageBody {
    pub channel_id: String,
    pub content: String,
    #[serde(default)]
    pub nonce: Option<String>,
}

/// `add-reaction`: `{"channelId","messageId","emoji"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddReactionBody {
    pub channel_id: String,
    pub message_id: String,
    pub emoji: String,
}

/// `typing-start`: `{"channelId"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TypingStartBody {
    pub channel_id: String,
}

/// A body field: its JSON name and whether it must be present.
struct Field(&'static str, bool);

fn fields_of(kind: CommandKind) -> &'static [Field] {
    match kind {
        CommandKind::SendMessage => &[
            Field("channelId", true),
            Field("content", true),
            Field("nonce", false),
        ],
        CommandKind::AddReaction => &[
            Field("channelId", true),
            Field("messageId", true),
            Field("emoji", true),
        ],
        CommandKind::TypingStart => &[Field("channelId", true)],
    }
}

/// Why a body was refused before validation.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON at all.
    Syntax(String),
    /// JSON, but not an object with the right fields.
    Fields(Vec<FieldError>),
}

fn field_error(field: &str, code: &str, message: String) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message,
    }
}

/// Every field at fault: unknown, missing, or not a string (`nonce` may be null).
fn check_fields(kind: CommandKind, object: &Map<String, Value>) -> Vec<FieldError> {
    let known = fields_of(kind);
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|k| !known.iter().any(|f| f.0 == k.as_str()))
        .map(|k| field_error(k, "unknown_field", format!("unknown field {k:?}")))
        .collect();
    for Field(name, required) in known {
        match object.get(*name) {
            None if *required => errors.push(field_error(
                name,
                "missing_field",
                format!("{name} is required"),
            )),
            None | Some(Value::String(_)) => {}
            Some(Value::Null) if !required => {}
            Some(_) => errors.push(field_error(
                name,
                "invalid_type",
                format!("{name} must be a string"),
            )),
        }
    }
    errors
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, BodyError> {
    serde_json::from_value(value).map_err(|e| BodyError::Syntax(e.to_string()))
}

/// Parses a request body of `kind` into the command handed to the validator.
pub fn parse(kind: CommandKind, bytes: &[u8]) -> Result<Command, BodyError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| BodyError::Syntax(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(BodyError::Syntax("the body must be a JSON object".into()));
    };
    let errors = check_fields(kind, object);
    if !errors.is_empty() {
        return Err(BodyError::Fields(errors));
    }
    Ok(match kind {
        CommandKind::SendMessage => {
            let b: SendMessageBody = typed(value)?;
            Command::SendMessage(types::SendMessage {
                channel_id: b.channel_id,
                content: b.content,
                nonce: b.nonce,
            })
        }
        CommandKind::AddReaction => {
            let b: AddReactionBody = typed(value)?;
            Command::AddReaction(types::AddReaction {
                channel_id: b.channel_id,
                message_id: b.message_id,
                emoji: b.emoji,
            })
        }
        CommandKind::TypingStart => {
            let b: TypingStartBody = typed(value)?;
            Command::TypingStart(types::TypingStart {
                channel_id: b.channel_id,
            })
        }
    })
}

/// The channel a (validated) command targets: the rate-limit and ordering key.
pub fn channel_of(command: &Command) -> &str {
    match command {
        Command::SendMessage(m) => &m.channel_id,
        Command::AddReaction(r) => &r.channel_id,
        Command::TypingStart(t) => &t.channel_id,
    }
}

/// The policy world's kind of a command.
pub fn policy_kind(kind: CommandKind) -> types::CommandKind {
    match kind {
        CommandKind::SendMessage => types::CommandKind::SendMessage,
        CommandKind::AddReaction => types::CommandKind::AddReaction,
        CommandKind::TypingStart => types::CommandKind::TypingStart,
    }
}

/// The wire body of a validated (normalised) command.
pub fn to_wire(command: Command) -> CommandBody {
    match command {
        Command::SendMessage(m) => CommandBody::SendMessage(gateway_protocol::SendMessage {
            channel_id: m.channel_id,
            content: m.content,
            nonce: m.nonce,
        }),
        Command::AddReaction(r) => CommandBody::AddReaction(gateway_protocol::AddReaction {
            channel_id: r.channel_id,
            message_id: r.message_id,
            emoji: r.emoji,
        }),
        Command::TypingStart(t) => CommandBody::TypingStart(gateway_protocol::TypingStart {
            channel_id: t.channel_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_codes(kind: CommandKind, body: &str) -> Vec<(String, String)> {
        match parse(kind, body.as_bytes()) {
            Err(BodyError::Fields(f)) => f.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn good_bodies_parse() {
        let c = parse(
            CommandKind::SendMessage,
            br#"{"channelId":"1","content":"hi","nonce":null}"#,
        )
        .expect("valid");
        assert_eq!(channel_of(&c), "1");
        assert!(matches!(
            to_wire(c),
            CommandBody::SendMessage(gateway_protocol::SendMessage { nonce: None, .. })
        ));
        assert!(parse(CommandKind::TypingStart, br#"{"channelId":"2"}"#).is_ok());
    }

    #[test]
    fn every_bad_field_is_reported() {
        let codes = field_codes(
            CommandKind::AddReaction,
            r#"{"channelId":5,"emoji":"x","extra":true}"#,
        );
        assert!(codes.contains(&("extra".into(), "unknown_field".into())));
        assert!(codes.contains(&("messageId".into(), "missing_field".into())));
        assert!(codes.contains(&("channelId".into(), "invalid_type".into())));
    }

    #[test]
    fn non_objects_and_junk_are_syntax_errors() {
        for junk in ["[1]", "{", "", "\"x\""] {
            assert!(matches!(
                parse(CommandKind::TypingStart, junk.as_bytes()),
                Err(BodyError::Syntax(_))
            ));
        }
    }
}
