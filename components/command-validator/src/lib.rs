//! Default `command-validator` component: the seed's command rules.
//!
//! * send-message: `channelId` is a snowflake; `content` has 1..=2000 characters and is not
//!   blank; the optional `nonce` has at most 25 characters.
//! * add-reaction: `channelId` and `messageId` are snowflakes; `emoji` is a unicode emoji or a
//!   custom emoji `name:id` (`<:name:id>` and `<a:name:id>` are accepted and normalised).
//! * typing-start: `channelId` is a snowflake.
//!
//! Every error is reported, not only the first, with the field in the client's spelling.
//!
//! Configuration (`init`), all optional: `max-content-length` (default 2000),
//! `max-nonce-length` (default 25).

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::{AddReaction, SendMessage, TypingStart};

wit_bindgen::generate!({ world: "command-validator", path: "../../wit" });

#[derive(Clone, Copy)]
struct Settings {
    max_content_length: usize,
    max_nonce_length: usize,
}

const DEFAULTS: Settings = Settings {
    max_content_length: 2000,
    max_nonce_length: 25,
};

static SETTINGS: Mutex<Settings> = Mutex::new(DEFAULTS);

fn settings() -> Settings {
    *SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut s = DEFAULTS;
    for (key, value) in config {
        let number = || match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{key}: expected a positive integer, got {value:?}")),
        };
        match key.as_str() {
            "max-content-length" => s.max_content_length = number()?,
            "max-nonce-length" => s.max_nonce_length = number()?,
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(s)
}

fn error(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// A Discord snowflake: a non-zero unsigned 64-bit integer in decimal.
fn is_snowflake(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u64>().is_ok_and(|v| v > 0)
}

fn check_snowflake(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if !is_snowflake(value) {
        errors.push(error(
            field,
            "invalid_snowflake",
            format!("{field} must be a snowflake id (a non-zero 64-bit integer in decimal)"),
        ));
    }
}

fn check_content(content: &str, s: &Settings, errors: &mut Vec<FieldError>) {
    let chars = content.chars().count();
    if chars == 0 {
        errors.push(error("content", "empty", "content must not be empty"));
    } else if content.trim().is_empty() {
        errors.push(error(
            "content",
            "blank",
            "content must contain more than whitespace",
        ));
    }
    if chars > s.max_content_length {
        errors.push(error(
            "content",
            "too_long",
            format!(
                "content has {chars} characters, at most {} are allowed",
                s.max_content_length
            ),
        ));
    }
}

/// Characters that may appear in a unicode emoji sequence.
fn is_emoji_part(c: char) -> bool {
    matches!(c as u32,
        0x00A9 | 0x00AE | 0x200D | 0x20E3 | 0xFE0F
        | 0x203C..=0x3299
        | 0x1F000..=0x1FAFF
        | 0xE0020..=0xE007F)
}

/// Characters that make a sequence pictographic (not only joiners and selectors).
fn is_pictographic(c: char) -> bool {
    matches!(c as u32, 0x00A9 | 0x00AE | 0x203C..=0x3299 | 0x1F000..=0x1FAFF)
}

fn is_unicode_emoji(s: &str) -> bool {
    let count = s.chars().count();
    if count == 0 || count > 16 {
        return false;
    }
    // Keycaps: a digit, '#' or '*', optionally U+FE0F, then U+20E3.
    let mut chars = s.chars();
    if let Some(first) = chars.next()
        && (first.is_ascii_digit() || first == '#' || first == '*')
    {
        let rest: String = chars.collect();
        return rest == "\u{20E3}" || rest == "\u{FE0F}\u{20E3}";
    }
    s.chars().all(is_emoji_part) && s.chars().any(is_pictographic)
}

/// `name:id` with a 2..=32 character name of letters, digits and underscores.
fn is_custom_emoji(s: &str) -> bool {
    let Some((name, id)) = s.split_once(':') else {
        return false;
    };
    (2..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && is_snowflake(id)
}

/// Accept the message-markup forms `<:name:id>` and `<a:name:id>` as `name:id`.
fn normalize_emoji(emoji: &str) -> String {
    let trimmed = emoji.trim();
    let inner = trimmed
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .map(|s| {
            s.strip_prefix("a:")
                .or_else(|| s.strip_prefix(':'))
                .unwrap_or(s)
        });
    inner.unwrap_or(trimmed).to_string()
}

fn validate_send(m: SendMessage, s: &Settings) -> Result<Command, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_snowflake("channelId", &m.channel_id, &mut errors);
    check_content(&m.content, s, &mut errors);
    if let Some(nonce) = &m.nonce {
        let n = nonce.chars().count();
        if n == 0 || n > s.max_nonce_length {
            errors.push(error(
                "nonce",
                "invalid_nonce",
                format!("nonce must have 1..={} characters", s.max_nonce_length),
            ));
        }
    }
    if errors.is_empty() {
        Ok(Command::SendMessage(m))
    } else {
        Err(errors)
    }
}

fn validate_reaction(r: AddReaction) -> Result<Command, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_snowflake("channelId", &r.channel_id, &mut errors);
    check_snowflake("messageId", &r.message_id, &mut errors);
    let emoji = normalize_emoji(&r.emoji);
    if !is_unicode_emoji(&emoji) && !is_custom_emoji(&emoji) {
        errors.push(error(
            "emoji",
            "invalid_emoji",
            "emoji must be a unicode emoji or a custom emoji as name:id",
        ));
    }
    if errors.is_empty() {
        Ok(Command::AddReaction(AddReaction { emoji, ..r }))
    } else {
        Err(errors)
    }
}

fn validate_typing(t: TypingStart) -> Result<Command, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_snowflake("channelId", &t.channel_id, &mut errors);
    if errors.is_empty() {
        Ok(Command::TypingStart(t))
    } else {
        Err(errors)
    }
}

struct Validator;

impl Guest for Validator {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn validate(_user_id: String, command: Command) -> Result<Command, Vec<FieldError>> {
        let s = settings();
        match command {
            Command::SendMessage(m) => validate_send(m, &s),
            Command::AddReaction(r) => validate_reaction(r),
            Command::TypingStart(t) => validate_typing(t),
        }
    }
}

export!(Validator);
