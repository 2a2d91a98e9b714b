//! Host event ids and SSE frames.
//!
//! The SSE `id` is the host's own: `<epoch>-<seq>`, where `epoch` is fixed per host process
//! (its start time in ms) and `seq` counts the events the host has published. An id from
//! another epoch (a host restart) or outside the replay ring cannot be placed, and the
//! client gets an explicit `reset` event instead of a silent gap.
//!
//! Every frame's `data:` is one line whatever the upstream or a router sent: a payload is
//! kept as raw JSON, and raw JSON may hold line breaks between its tokens (pretty-printed
//! JSON), which would end the SSE field early. Inside JSON strings line breaks are always
//! escaped, so every raw CR or LF in a valid JSON text is insignificant whitespace; they
//! are turned into spaces, once per event, and the JSON value is unchanged.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::bus::BusEvent;

/// A host event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for EventId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(())?;
        Ok(EventId {
            epoch: epoch.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// One event, serialized once, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Frame {
    pub id: EventId,
    /// Topics the router gave it.
    pub topics: Vec<String>,
    /// Goes to every subscriber whatever its topics (a `reset` announcing a loss).
    pub to_all: bool,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub bytes: Bytes,
    /// When the host read the upstream frame (for latency metrics).
    pub received_at: std::time::Instant,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    version: &'static str,
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    trace_id: &'a str,
    guild_id: Option<&'a str>,
    channel_id: Option<&'a str>,
    /// Upstream emission time, ms since the Unix epoch.
    timestamp: u64,
    /// Upstream session and seq, for diagnostics.
    upstream_session: &'a str,
    upstream_seq: u64,
    data: &'a RawValue,
}

impl Frame {
    /// Serialize `event` as an SSE frame with host id `id`; `payload` replaces `d` if set.
    pub fn build(
        id: EventId,
        event: &BusEvent,
        meta: &crate::policy::types::EventMeta,
        topics: Vec<String>,
        payload: Option<&RawValue>,
    ) -> Frame {
        let envelope = Envelope {
            version: "1.0",
            id: id.to_string(),
            kind: &event.t,
            trace_id: &event.trace_id,
            guild_id: meta.guild_id.as_deref(),
            channel_id: meta.channel_id.as_deref(),
            timestamp: event.ts,
            upstream_session: &event.session_id,
            upstream_seq: event.seq,
            data: payload.unwrap_or(&event.d),
        };
        // Serializing borrowed strings and raw JSON cannot fail.
        let data = one_line(serde_json::to_string(&envelope).unwrap_or_default());
        let name = sanitize_line(&event.t);
        let bytes = Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"));
        Frame {
            id,
            topics,
            to_all: false,
            bytes,
            received_at: event.received_at,
        }
    }

    /// A `reset` frame with its own host id: events were lost before the next one. It
    /// goes to every subscriber and sits in the replay ring like any event.
    pub fn loss(id: EventId, cause: &'static str, reason: &str) -> Frame {
        let body = reset_body(Some(id), cause, reason, None, None);
        Frame {
            id,
            topics: Vec::new(),
            to_all: true,
            bytes: Bytes::from(format!("id: {id}\nevent: reset\ndata: {body}\n\n")),
            received_at: std::time::Instant::now(),
        }
    }

    /// Bytes this frame holds (for the replay ring's byte bound).
    pub fn cost(&self) -> usize {
        self.bytes.len() + self.topics.iter().map(|t| t.len() + 24).sum::<usize>() + 96
    }
}

/// `json` (a valid JSON text) on one line: raw CR/LF can only be whitespace between
/// tokens, so they become spaces. No copy when there is none (the usual case).
fn one_line(json: String) -> String {
    if json.bytes().any(|b| b == b'\n' || b == b'\r') {
        json.replace(['\n', '\r'], " ")
    } else {
        json
    }
}

/// Event names come from upstream: keep them on one line.
fn sanitize_line(s: &str) -> String {
    s.chars().filter(|c| *c != '\n' && *c != '\r').collect()
}

/// `cause` of a reset whose resume id could not be placed.
pub const CAUSE_UNPLACEABLE: &str = "unplaceable_id";
/// `cause` of a reset announcing events the upstream lost (a seq gap, a new session).
pub const CAUSE_UPSTREAM_LOSS: &str = "upstream_loss";
/// `cause` of a reset announcing events the host lost (the hub fell behind the bus).
pub const CAUSE_HUB_LAG: &str = "hub_lag";

/// The `reset` event at stream start: the requested id could not be placed, live events
/// follow. It has no `id:` line (the client's position is unknown).
pub fn reset_frame(last_event_id: &str, reason: &str, oldest: Option<EventId>) -> Bytes {
    let body = reset_body(None, CAUSE_UNPLACEABLE, reason, Some(last_event_id), oldest);
    Bytes::from(format!("event: reset\ndata: {body}\n\n"))
}

/// The one shape of a `reset` event's data.
fn reset_body(
    id: Option<EventId>,
    cause: &str,
    reason: &str,
    last_event_id: Option<&str>,
    oldest: Option<EventId>,
) -> serde_json::Value {
    serde_json::json!({
        "version": "1.0",
        "type": "reset",
        "id": id.map(|id| id.to_string()),
        "cause": cause,
        "reason": reason,
        "lastEventId": last_event_id,
        "oldestAvailable": oldest.map(|id| id.to_string()),
    })
}

/// Does any of `patterns` match any of `topics`? Patterns may end in `*`.
pub fn matches(patterns: &[String], topics: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| topics.iter().any(|t| crate::auth::pattern_matches(p, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::EventMeta;

    fn meta() -> EventMeta {
        EventMeta {
            name: "MESSAGE_CREATE".into(),
            seq: 1,
            guild_id: None,
            channel_id: None,
            user_id: None,
            message_id: None,
        }
    }

    fn event(d: &str) -> BusEvent {
        BusEvent {
            session_id: "s".into(),
            seq: 1,
            trace_id: "t".into(),
            t: "MESSAGE_CREATE".into(),
            ts: 0,
            d: RawValue::from_string(d.into()).expect("valid json"),
            received_at: std::time::Instant::now(),
            loss_before: None,
        }
    }

    /// The `data:` value of a frame, checking the frame is one SSE event of three lines.
    fn data_line(bytes: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(bytes).expect("utf8");
        let body = text.strip_suffix("\n\n").expect("ends the event");
        assert!(!body.contains('\r'), "no CR: {text:?}");
        let lines: Vec<&str> = body.split('\n').collect();
        assert_eq!(lines.len(), 3, "id, event, data: {text:?}");
        let data = lines[2].strip_prefix("data: ").expect("data line");
        serde_json::from_str(data).expect("data is JSON")
    }

    const PAYLOADS: &[&str] = &[
        "{\n  \"content\": \"a\\nb\",\n  \"n\": [1,\n 2]\n}",
        "{\"a\":\r1,\r\n\"b\":\"x\\r\"}",
        "{\"a\":1,\n\n\n\"b\":2}\n\n",
    ];

    #[test]
    fn raw_line_breaks_in_payloads_stay_on_one_data_line() {
        let id = EventId { epoch: 1, seq: 2 };
        for raw in PAYLOADS {
            let expected: serde_json::Value = serde_json::from_str(raw).expect("json");
            let e = event(raw);
            let f = Frame::build(id, &e, &meta(), vec![], None);
            assert_eq!(data_line(&f.bytes)["data"], expected, "{raw:?}");
            // The same for a router's replacement payload.
            let replacement = RawValue::from_string(raw.to_string()).expect("json");
            let f = Frame::build(id, &event("{}"), &meta(), vec![], Some(&replacement));
            assert_eq!(data_line(&f.bytes)["data"], expected, "{raw:?}");
        }
    }

    #[test]
    fn a_loss_reset_has_an_id_and_the_reset_shape() {
        let f = Frame::loss(EventId { epoch: 1, seq: 9 }, CAUSE_HUB_LAG, "lost");
        assert!(f.to_all);
        let text = std::str::from_utf8(&f.bytes).expect("utf8");
        assert!(text.starts_with("id: 1-9\nevent: reset\ndata: "), "{text}");
        let data = data_line(&f.bytes);
        assert_eq!(data["id"], "1-9");
        assert_eq!(data["cause"], "hub_lag");
        let start = reset_frame("x", "why", None);
        let start: serde_json::Value = serde_json::from_str(
            std::str::from_utf8(&start)
                .expect("utf8")
                .trim_end()
                .strip_prefix("event: reset\ndata: ")
                .expect("reset"),
        )
        .expect("json");
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(keys(&start), keys(&data), "one shape");
        assert_eq!(start["cause"], "unplaceable_id");
    }
}
