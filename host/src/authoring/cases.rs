//! Case files: recorded inputs and the verdict a component must give, one JSON object per
//! line (see `docs/component-authors.md`).
//!
//! The whole file is parsed before anything runs, so a typo in line 40 is reported (with its
//! line number and what is wrong) instead of half a run. Parsing produces the host's own WIT
//! types ([`Event`], [`Command`], [`RateRequest`]) so the runner hands the component exactly
//! what the host would.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::policy::SlotKind;
use crate::policy::types::{
    AddReaction, Command, CommandKind, Event, EventMeta, RateRequest, SendMessage, TypingStart,
};

/// One case of a case file.
#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based line number in the file.
    pub line: usize,
    pub name: String,
    pub body: CaseBody,
}

/// The slot-specific input and expectation of a case.
#[derive(Debug, Clone)]
pub enum CaseBody {
    Router {
        event: Event,
        expect: ExpectRoute,
    },
    Voice {
        event: Event,
        expect: ExpectVoice,
    },
    Validator {
        user_id: String,
        command: Command,
        expect: ExpectValidation,
    },
    Limiter {
        requests: Vec<(RateRequest, u64)>,
        expect: Vec<ExpectLimit>,
    },
}

/// What the router must answer.
#[derive(Debug, Clone)]
pub enum ExpectRoute {
    Drop,
    /// Topics compared as a set; `payload: None` means the original payload is kept.
    Deliver {
        topics: BTreeSet<String>,
        payload: Option<Value>,
    },
}

/// What the voice filter must answer.
#[derive(Debug, Clone)]
pub enum ExpectVoice {
    Reject,
    Relay(String),
}

/// What the validator must answer.
#[derive(Debug, Clone)]
pub enum ExpectValidation {
    Valid(Command),
    /// `(field, code)` pairs, compared as a multiset (messages are not compared).
    Invalid(Vec<(String, String)>),
}

/// What the limiter must answer for one request.
#[derive(Debug, Clone, Copy)]
pub enum ExpectLimit {
    /// Allowed; with `Some(n)`, exactly `n` tokens left.
    Allow(Option<u32>),
    /// Denied; with `Some(ms)`, exactly this retry-after.
    Deny(Option<u64>),
}

/// A case file that cannot be run: which line and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CaseError {
    pub line: usize,
    pub message: String,
}

/// Parse a whole case file for `slot`. Blank lines and lines starting with `#` are skipped.
pub fn parse(slot: SlotKind, text: &str) -> Result<Vec<Case>, CaseError> {
    let mut cases = Vec::new();
    let mut names = BTreeSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fail = |message: String| CaseError { line, message };
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| fail(format!("not valid JSON: {e}")))?;
        let case = parse_case(slot, line, &value).map_err(fail)?;
        if !names.insert(case.name.clone()) {
            return Err(fail(format!("duplicate case name {:?}", case.name)));
        }
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(CaseError {
            line: 0,
            message: "the file holds no cases".into(),
        });
    }
    Ok(cases)
}

type Obj = Map<String, Value>;

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Obj, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

/// Refuse keys this format does not know, so a typo is not silently ignored.
fn known_keys(obj: &Obj, what: &str, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what}: unknown key {k:?} (expected {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn string(obj: &Obj, key: &str, what: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{what}.{key} must be a string")),
        None => Err(format!("{what}: missing {key:?}")),
    }
}

fn optional_string(obj: &Obj, key: &str, what: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{what}.{key} must be a string")),
    }
}

fn parse_case(slot: SlotKind, line: usize, value: &Value) -> Result<Case, String> {
    let obj = object(value, "a case")?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Err("\"name\" must be a non-empty string".into()),
        None => return Err("missing \"name\"".into()),
    };
    let body = match slot {
        SlotKind::EventRouter => {
            known_keys(obj, "case", &["name", "event", "expect"])?;
            CaseBody::Router {
                event: parse_event(obj.get("event"))?,
                expect: parse_expect_route(obj.get("expect"))?,
            }
        }
        SlotKind::VoiceFilter => {
            known_keys(obj, "case", &["name", "event", "expect"])?;
            CaseBody::Voice {
                event: parse_event(obj.get("event"))?,
                expect: parse_expect_voice(obj.get("expect"))?,
            }
        }
        SlotKind::CommandValidator => {
            known_keys(obj, "case", &["name", "userId", "command", "expect"])?;
            let user_id = optional_string(obj, "userId", "case")?.unwrap_or_else(|| "1".into());
            let command = match obj.get("command") {
                Some(c) => parse_command(c, "command")?,
                None => return Err("missing \"command\"".into()),
            };
            CaseBody::Validator {
                user_id,
                command,
                expect: parse_expect_validation(obj.get("expect"))?,
            }
        }
        SlotKind::RateLimiter => {
            known_keys(obj, "case", &["name", "requests", "expect"])?;
            let requests = match obj.get("requests") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| parse_rate_request(r, i))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err("\"requests\" must be a non-empty array".into()),
                None => return Err("missing \"requests\"".into()),
            };
            let expect = match obj.get("expect") {
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| parse_expect_limit(e, i))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err("\"expect\" must be an array (one verdict per request)".into());
                }
                None => return Err("missing \"expect\"".into()),
            };
            if expect.len() != requests.len() {
                return Err(format!(
                    "{} requests but {} expected verdicts",
                    requests.len(),
                    expect.len()
                ));
            }
            CaseBody::Limiter { requests, expect }
        }
    };
    Ok(Case { line, name, body })
}

fn parse_event(value: Option<&Value>) -> Result<Event, String> {
    let obj = object(value.ok_or("missing \"event\"")?, "\"event\"")?;
    known_keys(
        obj,
        "event",
        &[
            "name",
            "seq",
            "guildId",
            "channelId",
            "userId",
            "messageId",
            "payload",
        ],
    )?;
    let seq = match obj.get("seq") {
        None => 1,
        Some(v) => v
            .as_u64()
            .ok_or("event.seq must be a non-negative integer")?,
    };
    let payload = match obj.get("payload") {
        None => "{}".to_string(),
        Some(v) => v.to_string(),
    };
    Ok(Event {
        meta: EventMeta {
            name: string(obj, "name", "event")?,
            seq,
            guild_id: optional_string(obj, "guildId", "event")?,
            channel_id: optional_string(obj, "channelId", "event")?,
            user_id: optional_string(obj, "userId", "event")?,
            message_id: optional_string(obj, "messageId", "event")?,
        },
        payload,
    })
}

/// The one key of a `{"verdict": ...}` object.
fn single_key<'a>(value: Option<&'a Value>, what: &str) -> Result<(&'a str, &'a Value), String> {
    let obj = object(value.ok_or_else(|| format!("missing {what:?}"))?, what)?;
    let mut entries = obj.iter();
    match (entries.next(), entries.next()) {
        (Some((k, v)), None) => Ok((k.as_str(), v)),
        _ => Err(format!("{what} must have exactly one key")),
    }
}

fn expect_true(v: &Value, what: &str) -> Result<(), String> {
    match v {
        Value::Bool(true) => Ok(()),
        _ => Err(format!("{what} must be true")),
    }
}

fn parse_expect_route(value: Option<&Value>) -> Result<ExpectRoute, String> {
    match single_key(value, "expect")? {
        ("drop", v) => expect_true(v, "expect.drop").map(|()| ExpectRoute::Drop),
        ("deliver", v) => {
            let obj = object(v, "expect.deliver")?;
            known_keys(obj, "expect.deliver", &["topics", "payload"])?;
            let topics = match obj.get("topics") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(String::from)
                            .ok_or("expect.deliver.topics must hold strings")
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?,
                _ => return Err("expect.deliver.topics must be an array of strings".into()),
            };
            Ok(ExpectRoute::Deliver {
                topics,
                payload: obj.get("payload").cloned(),
            })
        }
        (other, _) => Err(format!(
            "expect: unknown verdict {other:?} (expected drop or deliver)"
        )),
    }
}

fn parse_expect_voice(value: Option<&Value>) -> Result<ExpectVoice, String> {
    match single_key(value, "expect")? {
        ("reject", v) => expect_true(v, "expect.reject").map(|()| ExpectVoice::Reject),
        ("relay", Value::String(guild)) => Ok(ExpectVoice::Relay(guild.clone())),
        ("relay", _) => Err("expect.relay must be a guild id string".into()),
        (other, _) => Err(format!(
            "expect: unknown verdict {other:?} (expected reject or relay)"
        )),
    }
}

fn parse_expect_validation(value: Option<&Value>) -> Result<ExpectValidation, String> {
    match single_key(value, "expect")? {
        ("valid", v) => Ok(ExpectValidation::Valid(parse_command(v, "expect.valid")?)),
        ("invalid", Value::Array(items)) => {
            let errors = items
                .iter()
                .map(|e| {
                    let obj = object(e, "expect.invalid[]")?;
                    known_keys(obj, "expect.invalid[]", &["field", "code", "message"])?;
                    Ok((
                        string(obj, "field", "expect.invalid[]")?,
                        string(obj, "code", "expect.invalid[]")?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if errors.is_empty() {
                return Err("expect.invalid must list at least one error".into());
            }
            Ok(ExpectValidation::Invalid(errors))
        }
        ("invalid", _) => Err("expect.invalid must be an array of {field, code}".into()),
        (other, _) => Err(format!(
            "expect: unknown verdict {other:?} (expected valid or invalid)"
        )),
    }
}

fn parse_kind(value: &str, what: &str) -> Result<CommandKind, String> {
    match value {
        "send-message" => Ok(CommandKind::SendMessage),
        "add-reaction" => Ok(CommandKind::AddReaction),
        "typing-start" => Ok(CommandKind::TypingStart),
        other => Err(format!(
            "{what}: unknown kind {other:?} (expected send-message, add-reaction or typing-start)"
        )),
    }
}

/// A command in the client's JSON spelling plus `"kind"`.
pub fn parse_command(value: &Value, what: &str) -> Result<Command, String> {
    let obj = object(value, what)?;
    let kind = parse_kind(&string(obj, "kind", what)?, what)?;
    Ok(match kind {
        CommandKind::SendMessage => {
            known_keys(obj, what, &["kind", "channelId", "content", "nonce"])?;
            Command::SendMessage(SendMessage {
                channel_id: string(obj, "channelId", what)?,
                content: string(obj, "content", what)?,
                nonce: optional_string(obj, "nonce", what)?,
            })
        }
        CommandKind::AddReaction => {
            known_keys(obj, what, &["kind", "channelId", "messageId", "emoji"])?;
            Command::AddReaction(AddReaction {
                channel_id: string(obj, "channelId", what)?,
                message_id: string(obj, "messageId", what)?,
                emoji: string(obj, "emoji", what)?,
            })
        }
        CommandKind::TypingStart => {
            known_keys(obj, what, &["kind", "channelId"])?;
            Command::TypingStart(TypingStart {
                channel_id: string(obj, "channelId", what)?,
            })
        }
    })
}

/// The case-file spelling of `command` (for `expected …, got …`).
pub fn command_json(command: &Command) -> Value {
    match command {
        Command::SendMessage(m) => {
            let mut v = serde_json::json!({"kind": "send-message", "channelId": m.channel_id, "content": m.content});
            if let Some(n) = &m.nonce {
                v["nonce"] = Value::String(n.clone());
            }
            v
        }
        Command::AddReaction(r) => serde_json::json!({
            "kind": "add-reaction", "channelId": r.channel_id, "messageId": r.message_id, "emoji": r.emoji
        }),
        Command::TypingStart(t) => {
            serde_json::json!({"kind": "typing-start", "channelId": t.channel_id})
        }
    }
}

fn parse_rate_request(value: &Value, index: usize) -> Result<(RateRequest, u64), String> {
    let what = format!("requests[{index}]");
    let obj = object(value, &what)?;
    known_keys(obj, &what, &["userId", "channelId", "kind", "nowMs"])?;
    let kind = match optional_string(obj, "kind", &what)? {
        Some(k) => parse_kind(&k, &what)?,
        None => CommandKind::SendMessage,
    };
    let now_ms = match obj.get("nowMs") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("{what}.nowMs must be a non-negative integer"))?,
        None => return Err(format!("{what}: missing \"nowMs\"")),
    };
    Ok((
        RateRequest {
            user_id: string(obj, "userId", &what)?,
            channel_id: string(obj, "channelId", &what)?,
            kind,
        },
        now_ms,
    ))
}

fn parse_expect_limit(value: &Value, index: usize) -> Result<ExpectLimit, String> {
    let what = format!("expect[{index}]");
    match single_key(Some(value), &what)? {
        ("allow", Value::Bool(true)) => Ok(ExpectLimit::Allow(None)),
        ("allow", v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| ExpectLimit::Allow(Some(n)))
            .ok_or_else(|| format!("{what}.allow must be true or the tokens left")),
        ("deny", Value::Bool(true)) => Ok(ExpectLimit::Deny(None)),
        ("deny", v) => v
            .as_u64()
            .map(|n| ExpectLimit::Deny(Some(n)))
            .ok_or_else(|| format!("{what}.deny must be true or the retry-after in ms")),
        (other, _) => Err(format!(
            "{what}: unknown verdict {other:?} (expected allow or deny)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let text = "# router cases\n\n{\"name\":\"a\",\"event\":{\"name\":\"X\"},\"expect\":{\"drop\":true}}\n{\"name\":\"b\",\"event\":{\"name\":\"X\"},\"expect\":{\"deliver\":{\"topics\":\"guild:1\"}}}\n";
        let err = parse(SlotKind::EventRouter, text).expect_err("topics not an array");
        assert_eq!(err.line, 4);
        assert!(err.message.contains("topics"), "{err}");
        let ok = parse(
            SlotKind::EventRouter,
            &text.lines().take(3).collect::<Vec<_>>().join("\n"),
        )
        .expect("parses");
        assert_eq!((ok.len(), ok[0].line), (1, 3));
    }

    #[test]
    fn limiter_counts_must_match_and_typos_are_refused() {
        let text =
            r#"{"name":"x","requests":[{"userId":"1","channelId":"2","nowMs":0}],"expect":[]}"#;
        let err = parse(SlotKind::RateLimiter, text).expect_err("count mismatch");
        assert!(err.message.contains("1 requests but 0"), "{err}");
        let text = r#"{"name":"x","requests":[{"userId":"1","chanelId":"2","nowMs":0}],"expect":[{"allow":true}]}"#;
        let err = parse(SlotKind::RateLimiter, text).expect_err("typo");
        assert!(err.message.contains("\"chanelId\""), "{err}");
    }

    #[test]
    fn validator_commands_round_trip() {
        let v = serde_json::json!({"kind":"add-reaction","channelId":"1","messageId":"2","emoji":"x:3"});
        let command = parse_command(&v, "command").expect("parses");
        assert_eq!(command_json(&command), v);
    }
}
