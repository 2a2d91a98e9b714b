//! A `command-validator` component: checks and normalises the commands clients post.
//!
//! * Every `channelId` / `messageId` is a snowflake (a non-zero 64-bit integer in decimal).
//! * send-message: `content` is trimmed, then must be non-empty and at most `max-length`
//!   characters; an empty `nonce` is dropped.
//! * add-reaction: `emoji` is trimmed and must be non-empty.
//!
//! Every error is returned, not only the first, with the field in the client's spelling and
//! a stable code clients can act on. The returned command is what the host queues.
//!
//! Configuration (`init`), optional; unknown keys are refused:
//! * `max-length`: longest message content in characters, default 2000.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::{AddReaction, SendMessage};

wit_bindgen::generate!({ world: "command-validator", path: "wit" });

static MAX_LENGTH: Mutex<usize> = Mutex::new(2000);

fn parse_config(config: &[(String, String)]) -> Result<usize, String> {
    let mut max_length = 2000;
    for (key, value) in config {
        match key.as_str() {
            "max-length" => {
                max_length = match value.trim().parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "max-length: expected a positive integer, got {value:?}"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(max_length)
}

fn error(field: &str, code: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

fn check_snowflake(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    let ok = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<u64>().is_ok_and(|v| v > 0);
    if !ok {
        errors.push(error(field, "invalid_snowflake", "must be a snowflake id"));
    }
}

struct Validator;

impl Guest for Validator {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *MAX_LENGTH.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn validate(_user_id: String, command: Command) -> Result<Command, Vec<FieldError>> {
        let max_length = *MAX_LENGTH.lock().unwrap_or_else(|e| e.into_inner());
        let mut errors = Vec::new();
        let normalised = match command {
            Command::SendMessage(m) => {
                check_snowflake("channelId", &m.channel_id, &mut errors);
                let content = m.content.trim().to_string();
                if content.is_empty() {
                    errors.push(error("content", "empty", "content must not be blank"));
                } else if content.chars().count() > max_length {
                    errors.push(error("content", "too_long", "content is too long"));
                }
                Command::SendMessage(SendMessage {
                    channel_id: m.channel_id,
                    content,
                    nonce: m.nonce.filter(|n| !n.is_empty()),
                })
            }
            Command::AddReaction(r) => {
                check_snowflake("channelId", &r.channel_id, &mut errors);
                check_snowflake("messageId", &r.message_id, &mut errors);
                let emoji = r.emoji.trim().to_string();
                if emoji.is_empty() {
                    errors.push(error("emoji", "invalid_emoji", "emoji must not be empty"));
                }
                Command::AddReaction(AddReaction { emoji, ..r })
            }
            Command::TypingStart(t) => {
                check_snowflake("channelId", &t.channel_id, &mut errors);
                Command::TypingStart(t)
            }
        };
        if errors.is_empty() {
            Ok(normalised)
        } else {
            Err(errors)
        }
    }
}

export!(Validator);
